"""One run of a sweep in its own process: ``python -m bench.worker JOB.json``.

JOB.json holds {"config": RunConfig as a dict, "db": URL, "checkpoint_dir": path or null}.
The last line printed is the JSON pair [status, detail] the sweep reads back; the exit
status is 0 for a finished (or already finished) run, 1 otherwise.
"""
from __future__ import annotations

import json
import sys

from bench.sweep import run_config_job


def main(path: str) -> int:
    with open(path) as handle:
        job = json.load(handle)
    status, detail = run_config_job(job["config"], job["db"], job["checkpoint_dir"])
    print(json.dumps([status, detail]), flush=True)
    return 0 if status in ("finished", "skipped") else 1 if status != "interrupted" else 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
