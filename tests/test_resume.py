"""Crash safety: a run killed with SIGKILL is marked interrupted and resumes to the same result."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import build_config
from bench.db import ResultsDB

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--task", "classification", "--estimator", "surge", "--dataset", "digits", "--epochs", "6",
        "--set", "batch_size=32", "--set", "train_subset=640", "--set", "eval_subset=200"]


def _bench(db_url: str, checkpoints: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench", "run", *ARGS, "--quiet", "--db", db_url,
                             "--checkpoint-dir", str(checkpoints)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final(db_url: str):
    db = ResultsDB(db_url)
    (run,) = db.list_runs()
    return db.get_run(run.id)


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_the_uninterrupted_metrics(tmp_path):
    config = build_config(task="classification", estimator="surge", dataset="digits", epochs=6,
                          sets=["batch_size=32", "train_subset=640", "eval_subset=200"])
    checkpoint = tmp_path / "checkpoints" / config.hash() / "last.pt"

    reference_db = f"sqlite:///{tmp_path}/reference.sqlite"
    reference = _bench(reference_db, tmp_path / "reference-checkpoints")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()

    killed_db = f"sqlite:///{tmp_path}/killed.sqlite"
    victim = _bench(killed_db, tmp_path / "checkpoints")
    deadline = time.time() + 300
    while not checkpoint.exists():  # the end of epoch 1
        assert victim.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    row = _final(killed_db)
    assert row.status == "running"  # nobody closed it
    db = ResultsDB(killed_db)
    assert db.mark_stale_interrupted() == [row.id]  # its process is gone
    assert _final(killed_db).status == "interrupted"
    epochs_done_before = {c.epoch for c in _final(killed_db).curves}
    assert 1 in epochs_done_before and 6 not in epochs_done_before

    resumed = _bench(killed_db, tmp_path / "checkpoints")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    after, expected = _final(killed_db), _final(reference_db)
    assert after.id == row.id and after.status == "finished" and after.provenance["resumed"] == 1
    print(f"resume check: uninterrupted {sorted((m.name, m.value) for m in expected.metrics)}; "
          f"killed after epoch {max(epochs_done_before)} and resumed {sorted((m.name, m.value) for m in after.metrics)}")
    assert {m.name: m.value for m in after.metrics} == {m.name: m.value for m in expected.metrics}
    assert sorted((c.epoch, c.name) for c in after.curves) == sorted((c.epoch, c.name) for c in expected.curves)
    assert not checkpoint.exists()  # discarded once finished
