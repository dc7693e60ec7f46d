"""The results database on SQLite and on a real PostgreSQL server: schema, concurrency, staleness.

PostgreSQL runs where BENCH_TEST_POSTGRES_URL names a server (``.ci/run`` starts one with
scripts/start_test_postgres.sh); with BENCH_REQUIRE_POSTGRES=1 a missing URL is a failure.
"""
import datetime as dt
import multiprocessing

import pytest

from bench.db import ResultsDB, utcnow

WRITERS = 8
EPOCHS = 25
CURVES = ("train_loss", "val_accuracy", "lr")


def _write_one_run(url: str, worker: int) -> int:
    db = ResultsDB(url)
    run_id = db.start_run(config_hash=f"hash{worker}", config={"worker": worker}, task="classification",
                          task_version="1", dataset="d", model="m", estimator=f"e{worker}", preset="quick",
                          seed=worker)
    for epoch in range(1, EPOCHS + 1):
        db.add_curve_points(run_id, epoch, epoch * 10, {name: worker + epoch / 100 for name in CURVES})
    db.finish_run(run_id, "finished", metrics=[
        dict(name="accuracy", value=float(worker), higher_is_better=True, primary=True),
        dict(name="loss", value=1.0 / (worker + 1), higher_is_better=False, primary=False),
    ], n_params=worker)
    db.engine.dispose()
    return run_id


def test_eight_concurrent_writers_lose_nothing(backend_url):
    ResultsDB(backend_url).engine.dispose()  # the schema exists before the race (both orders are tested below)
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        ids = pool.starmap(_write_one_run, [(backend_url, w) for w in range(WRITERS)])
    db = ResultsDB(backend_url)
    runs = db.list_runs()
    assert sorted(ids) == [r.id for r in runs] and len(runs) == WRITERS
    for run in runs:
        full = db.get_run(run.id)
        worker = full.config["worker"]
        assert full.status == "finished" and full.n_params == worker
        assert {m.name: m.value for m in full.metrics} == {"accuracy": worker, "loss": pytest.approx(1 / (worker + 1))}
        assert len(full.curves) == EPOCHS * len(CURVES)
        assert {(c.epoch, c.name) for c in full.curves} == {(e, n) for e in range(1, EPOCHS + 1) for n in CURVES}
    assert len(db.metrics_frame()) == 2 * WRITERS
    assert len(db.curves_frame()) == WRITERS * EPOCHS * len(CURVES)
    print(f"concurrency ({backend_url.split(':')[0]}): {WRITERS} writers wrote {WRITERS} runs, "
          f"{WRITERS * EPOCHS * len(CURVES)} curve points, {2 * WRITERS} metrics; found {len(runs)} runs, "
          f"{len(db.curves_frame())} curve points, {len(db.metrics_frame())} metrics")


def test_writers_racing_to_create_the_schema(backend_url):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_write_one_run, [(backend_url, w) for w in range(4)])
    assert [r.status for r in ResultsDB(backend_url).list_runs()] == ["finished"] * 4


def test_a_run_without_heartbeat_is_marked_interrupted(backend_url):
    db = ResultsDB(backend_url)
    alive = db.start_run(config_hash="a", config={}, task="t", task_version="1", dataset="d", model="m",
                         estimator="e", preset="p", seed=0)
    dead = db.start_run(config_hash="b", config={}, task="t", task_version="1", dataset="d", model="m",
                        estimator="e", preset="p", seed=1)
    db.update_run(dead)
    with db.session() as s:  # its process was killed ten minutes ago
        from bench.db import Run

        s.get(Run, dead).heartbeat_at = utcnow() - dt.timedelta(minutes=10)
    assert db.mark_stale_interrupted(stale_after_s=180) == [dead]
    assert db.get_run(dead).status == "interrupted" and "no heartbeat since" in db.get_run(dead).error
    assert db.get_run(alive).status == "running"
    assert db.mark_stale_interrupted(stale_after_s=180) == []
