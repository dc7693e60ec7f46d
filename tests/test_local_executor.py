"""The local executor's worker pool (bench/local_executor.py): long-lived workers, recycling,
a killed or hung worker costs only its own run, the harness overhead stored per run, and a
run in a pool worker is the same run, bit for bit, as in a fresh process."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bench.config import build_config
from bench.db import ResultsDB
from bench.local_executor import run_local

TINY = dict(epochs=1, train_subset=128, eval_subset=64, batch_size=64)
LONG = dict(epochs=40, train_subset=480, eval_subset=100, batch_size=32)  # minutes: killed long before


def configs(estimator: str, seeds, **values):
    values = {**TINY, **values}
    epochs, sets = values.pop("epochs"), [f"{key}={value}" for key, value in values.items()]
    return [build_config("classification", estimator, dataset="digits", seed=seed, epochs=epochs, sets=sets)
            for seed in seeds]


@pytest.fixture
def where(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return dict(db_url=f"sqlite:///{tmp_path}/sweep.sqlite", checkpoint_dir=str(tmp_path / "checkpoints"),
                log_dir=tmp_path / "logs")


def execute(where, todo, **kwargs):
    done = []
    results = run_local(todo, where["db_url"], kwargs.pop("jobs", 1), where["checkpoint_dir"], where["log_dir"],
                        done.append, **kwargs)
    assert [r.config for r in results] == todo and sorted(map(id, done)) == sorted(map(id, results))
    return results


def rows(where, todo):
    """Each config's latest row."""
    latest = {run.config_hash: run for run in sorted(ResultsDB(where["db_url"]).list_runs(), key=lambda r: r.id)}
    return [latest[config.hash()] for config in todo]


def in_background(where, todo, **kwargs):
    """run_local in a thread; returns the thread and the list its results land in."""
    out = []
    thread = threading.Thread(target=lambda: out.extend(execute(where, todo, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def wait_for_running_row(where, config, thread, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert thread.is_alive(), "the sweep ended before its run could be caught running"
        try:
            row = ResultsDB(where["db_url"]).latest_run(config.hash(), "running")
        except Exception:  # noqa: BLE001 - the schema may not exist yet
            row = None
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError("the run never started")


@pytest.mark.slow
def test_a_pool_worker_runs_job_after_job_and_is_recycled_after_k_runs(where):
    todo = configs("ste", [0, 1, 2])
    results = execute(where, todo, recycle_after=2)
    assert [r.status for r in results] == ["finished"] * 3
    first, second, third = rows(where, todo)
    assert first.provenance["pid"] == second.provenance["pid"] != third.provenance["pid"]
    for row in (first, second, third):
        assert row.startup_s > 0 and 0 <= row.teardown_s < row.wall_time_s
    # a warm worker skips the interpreter start and the imports that a fresh one pays
    assert second.startup_s < first.startup_s and second.startup_s < third.startup_s
    logs = sorted(p.name for p in where["log_dir"].iterdir())
    assert logs == sorted([f"{c.hash()[:16]}.log" for c in todo] + ["worker-0.log"])
    log = (where["log_dir"] / f"{todo[1].hash()[:16]}.log").read_text().splitlines()
    assert log[0] == f"bench pool worker {second.provenance['pid']}, its run 2" and log[-1] == '["finished", ""]'


@pytest.mark.slow
def test_a_killed_pool_worker_costs_only_its_run_and_the_next_run_gets_a_new_worker(where):
    todo = configs("clipped_ste", [0], **LONG) + configs("ste", [1, 2])
    thread, results = in_background(where, todo)
    row = wait_for_running_row(where, todo[0], thread)
    os.kill(row.provenance["pid"], signal.SIGKILL)
    thread.join(timeout=600)
    assert [r.status for r in results] == ["interrupted", "finished", "finished"], results
    killed, after, last = rows(where, todo)
    # the rule for a worker that dies mid-run: interrupted with the reason, resumable by the next sweep
    assert killed.status == "interrupted" and killed.error.startswith("worker process died (signal SIGKILL)")
    assert "rerun the sweep to resume" in killed.error and results[0].detail == killed.error
    assert after.provenance["pid"] == last.provenance["pid"] != row.provenance["pid"]


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["pool", "process"])
def test_a_hung_run_is_killed_at_its_timeout_and_recorded_failed(where, isolation):
    todo = configs("clipped_ste", [0], **LONG) + configs("ste", [1])
    # the clock starts at the hand-over: room for a cold worker's start on a busy machine
    thread, results = in_background(where, todo, isolation=isolation, run_timeout=60)
    row = wait_for_running_row(where, todo[0], thread)
    os.kill(row.provenance["pid"], signal.SIGSTOP)  # hung: it neither works nor dies
    thread.join(timeout=600)
    assert [r.status for r in results] == ["failed", "finished"], results
    hung, other = rows(where, todo)
    assert hung.status == "failed" and hung.error.startswith("timed out after 60 s (--run-timeout)")
    assert other.status == "finished" and other.provenance["pid"] != row.provenance["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(row.provenance["pid"], 0)  # killed, not left stopped


@pytest.mark.slow
def test_a_run_in_a_used_pool_worker_is_bit_identical_to_one_in_a_fresh_process(where, tmp_path):
    """Nothing a run leaves in its worker (random states, compiled kernels, caches, threads)
    reaches the next run: SURGE after FDA (which compiles a fused kernel) in one pool worker
    gives exactly the metrics and curves of SURGE alone in a fresh process."""
    before, target = configs("fda", [0], epochs=2)[0], configs("surge", [1], epochs=2)[0]
    execute(where, [before, target], isolation="pool")
    fresh = dict(where, db_url=f"sqlite:///{tmp_path}/fresh.sqlite")
    execute(fresh, [target], isolation="process")
    (earlier, pooled), (alone,) = rows(where, [before, target]), rows(fresh, [target])
    assert earlier.provenance["pid"] == pooled.provenance["pid"] != alone.provenance["pid"]
    pooled, alone = ResultsDB(where["db_url"]).get_run(pooled.id), ResultsDB(fresh["db_url"]).get_run(alone.id)
    assert pooled.status == alone.status == "finished" and len(pooled.curves) > 2
    assert {m.name: m.value for m in pooled.metrics} == {m.name: m.value for m in alone.metrics}
    assert ({(c.epoch, c.name): c.value for c in pooled.curves}
            == {(c.epoch, c.name): c.value for c in alone.curves})


def test_workers_share_the_cores_and_a_users_thread_count_wins(monkeypatch):
    from bench import local_executor

    monkeypatch.setattr(local_executor.os, "cpu_count", lambda: 8)
    assert [local_executor.worker_threads(jobs) for jobs in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert local_executor._environment(4)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert local_executor._environment(4)["OMP_NUM_THREADS"] == "3"
