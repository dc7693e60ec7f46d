"""Bodies of the database tests' worker processes, in a module that imports only the database
layer: a spawned process imports the module of the function it runs, and the test modules
import torch and the whole harness (seconds per process on 2 cores)."""
import time

from bench.db import ResultsDB, RunClaimed


def open_at(url: str, start_at: float) -> str:
    time.sleep(max(start_at - time.time(), 0))
    db = ResultsDB(url)
    db.engine.dispose()
    return "ok"


def import_only(_: int) -> None:
    """Warm a pool worker: the imports happen here, so the race below is between openers only."""
    import bench.db  # noqa: F401

    time.sleep(0.2)  # so that each worker of the pool takes one of these calls


def claim_at(url: str, start_at: float) -> str:
    db = ResultsDB(url)
    time.sleep(max(start_at - time.time(), 0))
    try:
        run_id = db.start_run(config_hash="same", config={}, task="t", task_version="1", dataset="d", model="m",
                              estimator="e", preset="p", seed=0)
        return f"row {run_id}"
    except RunClaimed:
        return "refused"
    finally:
        db.engine.dispose()
