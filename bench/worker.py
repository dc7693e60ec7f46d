"""Sweep workers of the local executor (bench.local_executor).

``python -m bench.worker JOB.json`` runs one job: JOB.json holds {"config": RunConfig as a dict,
"db": URL, "checkpoint_dir": path or null, "dispatched_at": time.time() of the hand-over}. The last
line printed is the JSON pair [status, detail] the sweep reads back; the exit status is 0 for a
finished (or already finished) run, 1 otherwise.

``python -m bench.worker --serve FD`` is a pool worker: it reads jobs (the same JSON, plus "log",
the run's log file) one per line from stdin until it closes, runs each with its output in its
log, and writes each [status, detail] as a line to file descriptor FD. After an interrupted run
(SIGTERM: the sweep is stopping) it exits.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from typing import Iterator

from bench.sweep import run_config_job


def main(path: str) -> int:
    with open(path) as handle:
        job = json.load(handle)
    status, detail = run_config_job(job["config"], job["db"], job["checkpoint_dir"], job.get("dispatched_at"))
    print(json.dumps([status, detail]), flush=True)
    return 0 if status in ("finished", "skipped") else 1 if status != "interrupted" else 130


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so child processes' too) go
    to ``path`` inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def serve(result_fd: int) -> int:
    # what every run needs, imported once for all the runs of this worker
    import bench.runner  # noqa: F401
    from bench.plugins import load_task_plugins

    load_task_plugins()
    with os.fdopen(result_fd, "w") as results:
        for number, line in enumerate(sys.stdin, start=1):
            job = json.loads(line)
            environment = dict(os.environ)  # what a run sets (offline flags, ...) ends with it
            with output_to(job["log"]):
                print(f"bench pool worker {os.getpid()}, its run {number}", flush=True)
                try:
                    status, detail = run_config_job(job["config"], job["db"], job["checkpoint_dir"],
                                                    job.get("dispatched_at"))
                except Exception as exc:  # noqa: BLE001 - raised before the run had a row
                    traceback.print_exc()
                    status, detail = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
                print(json.dumps([status, detail]), flush=True)  # as a one-run worker's log ends
            os.environ.clear()
            os.environ.update(environment)
            results.write(json.dumps([status, detail]) + "\n")
            results.flush()
            if status == "interrupted":
                return 130
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(serve(int(sys.argv[2])))
    sys.exit(main(sys.argv[1]))
