"""The benchmark scripts run end to end (tiny settings) and write the tables they promise; their
figures are measured by running them, not here."""
from __future__ import annotations

import pytest

from benchmarks import estimator_cost, run_profile, sweep_overhead, weight_surrogate_gain


def test_estimator_cost_writes_a_table_with_a_verdict_per_estimator(tmp_path, capsys):
    out = tmp_path / "cost.md"
    estimator_cost.main(["--estimators", "clipped_ste,fda", "--batch-size", "4", "--steps", "1", "--rounds", "1",
                         "--warmup", "0", "--threads", "1", "--no-memory", "--out", str(out)])
    table = out.read_text()
    assert "surrogate backward: fused (torch.compile)" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["clipped_ste"].rstrip().endswith("| reference | - |")
    assert "time <= 1.10x, mem <= 1.05x" in rows["fda"] and ("PASS" in rows["fda"] or "FAIL" in rows["fda"])


def test_weight_surrogate_gain_finds_a_near_constant_multiplier_on_raw_weights(tmp_path):
    """The measurement behind weight_grad=identity: on latent weights F' barely varies."""
    out = tmp_path / "gain.md"
    weight_surrogate_gain.main(["--out", str(out)])
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines()[2:]]
    assert len(rows) == 2 * 5 * 3
    assert all(float(cv) < 0.1 for *_, cv in rows)
    assert max(float(mean) for *_, mean, _ in rows) > 4  # a multiplier, far from STE's 1


@pytest.mark.slow
def test_sweep_overhead_compares_both_isolations(tmp_path, capsys):
    out = tmp_path / "overhead.md"
    sweep_overhead.main(["--runs", "2", "--rounds", "1", "--estimator", "ste", "--out", str(out)])
    table = out.read_text()
    assert "| pool |" in table and "| process |" in table and "process / pool, per round:" in table


@pytest.mark.slow
def test_run_profile_gives_every_second_of_a_run_to_one_phase(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "profile.json"
    launched = __import__("time").time()
    # the child's own entry point, in this process: the quick classification run, instrumented
    run_profile.child("classification", "ste", launched, out)
    profile = __import__("json").loads(out.read_text())
    assert profile["status"] == "finished"
    phases = profile["phases"]
    assert set(phases) == set(run_profile.PHASES)
    assert all(seconds >= 0 for seconds in phases.values())
    for phase in ("database", "load data", "build model", "batches", "train step", "evaluation", "checkpointing"):
        assert phases[phase] > 0, phase
    assert sum(phases.values()) == pytest.approx(profile["total_s"], rel=0.02)


def test_hook_overhead_times_both_arms(tmp_path):
    from benchmarks import hook_overhead

    out = tmp_path / "hooks.md"
    hook_overhead.main(["--estimators", "clipped_ste", "--rounds", "2", "--steps", "1", "--warmup", "1",
                        "--out", str(out)])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| clipped_ste"))
    bare, hooked, ratio = (cell.strip() for cell in row.split("|")[2:5])
    assert float(bare) > 0 and float(hooked) > 0 and ratio.count("[") == 1


def test_glue_tokenize_cache_times_cold_and_warm_and_sees_the_cache_reused(tmp_path):
    pytest.importorskip("datasets")
    from benchmarks import glue_tokenize_cache

    out = tmp_path / "cache.md"
    glue_tokenize_cache.main(["--pairs", "40", "--rounds", "1", "--out", str(out)])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| QQP-shaped, 40 + 4 pairs"))
    cold, warm, ratio, reused = (cell.strip() for cell in row.split("|")[2:6])
    assert float(cold.split()[0]) > 0 and float(warm.split()[0]) > 0 and reused == "True"
