"""Harness overhead of ``bench sweep``'s local executor: a worker pool against a process per run.

Runs the same N tiny classification runs (digits, one epoch of 128 examples, distinct seeds)
through the local executor twice per round, once per isolation, each into its own fresh
database, alternating which goes first; prints per isolation the sweep's wall time and the
per-run harness overhead every run stored (``startup_s``: from the hand-over to the first
training step; ``teardown_s``: from the end of the task to the closing write) as median and
range, and the time ratio process / pool per round.

Usage (from the repository root)::

    python benchmarks/sweep_overhead.py --runs 20 --rounds 2 --out reports/sweep_overhead.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.config import build_config  # noqa: E402
from benchmarks.output import publish  # noqa: E402
from bench.db import ResultsDB  # noqa: E402
from bench.local_executor import ISOLATIONS, run_local  # noqa: E402

TINY = ["train_subset=128", "eval_subset=64", "batch_size=64"]  # and one epoch


def sweep_once(isolation: str, runs: int, estimator: str, jobs: int, folder: Path) -> dict:
    configs = [build_config("classification", estimator, dataset="digits", seed=seed, epochs=1, sets=TINY)
               for seed in range(runs)]
    db_url = f"sqlite:///{folder}/{isolation}.sqlite"
    started = time.perf_counter()
    results = run_local(configs, db_url, jobs, str(folder / "checkpoints"), folder / f"logs-{isolation}",
                        lambda result: None, isolation=isolation)
    wall = time.perf_counter() - started
    bad = [r for r in results if r.status != "finished"]
    if bad:
        raise SystemExit(f"{isolation}: {len(bad)} runs did not finish, e.g. {bad[0].status}: {bad[0].detail}")
    rows = ResultsDB(db_url).runs_frame()
    return {"wall_s": wall, "startup_s": list(rows["startup_s"]), "teardown_s": list(rows["teardown_s"]),
            "run_wall_s": list(rows["wall_time_s"])}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="runs per sweep (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="sweeps per isolation, alternating (default 2)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--estimator", default="clipped_ste")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    measured: dict[str, list[dict]] = {name: [] for name in ISOLATIONS}
    for round_index in range(args.rounds):
        order = ISOLATIONS if round_index % 2 == 0 else ISOLATIONS[::-1]
        for isolation in order:
            with tempfile.TemporaryDirectory() as tmp:
                result = sweep_once(isolation, args.runs, args.estimator, args.jobs, Path(tmp))
            measured[isolation].append(result)
            print(f"# round {round_index + 1}: {isolation} {result['wall_s']:.1f} s", file=sys.stderr, flush=True)

    lines = [f"## Sweep harness overhead: {args.runs} tiny runs (classification/digits, {args.estimator}, "
             f"1 epoch of 128), --jobs {args.jobs}, {args.rounds} sweeps per isolation",
             "", f"{datetime.datetime.now():%Y-%m-%d %H:%M} | {os.cpu_count()} logical cores | OMP_NUM_THREADS="
             f"{os.environ['OMP_NUM_THREADS']}", "",
             "Per-run figures are median (min-max) over all runs of all sweeps of that isolation, as stored in the "
             "database: startup = hand-over to first training step, teardown = end of the task to the closing "
             "write, run = the row's wall time (its claim to its close).", "",
             "| isolation | sweep wall s (each sweep) | startup s | teardown s | run wall s |",
             "|---|---|---:|---:|---:|"]
    for isolation in ISOLATIONS:
        sweeps = measured[isolation]
        every = lambda key: [v for s in sweeps for v in s[key]]  # noqa: E731
        walls = ", ".join(f"{s['wall_s']:.1f}" for s in sweeps)
        lines.append(f"| {isolation} | {walls} | "
                     f"{spread(every('startup_s'))} | {spread(every('teardown_s'))} | {spread(every('run_wall_s'))} |")
    ratios = [p["wall_s"] / q["wall_s"] for p, q in zip(measured["process"], measured["pool"])]
    lines += ["", f"Sweep wall time, process / pool, per round: {', '.join(f'{r:.2f}x' for r in ratios)}."]
    publish("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
