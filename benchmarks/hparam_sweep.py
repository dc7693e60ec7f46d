"""Tune estimator hyperparameters on the validation split, with the same budget for each.

    python benchmarks/hparam_sweep.py --seeds 0 1 2 --out reports/hparam_sweep.md

Every (estimator, setting, seed) is an ordinary ``bench run`` of the classification task
(quick preset, offline Fashion-MNIST by default, which holds out a validation split), recorded
in a results database (``results/hparam_sweep.sqlite`` unless --db), so finished cells are
skipped when the sweep is rerun. Each estimator gets five settings of its own hyperparameter
(SURGE's eta, clipped_ste's clip c, ReSTE's o_end, EDE's t_max). The choice per estimator is
the setting with the best mean **validation** top-1 (``val_top1``, last epoch); the test top-1
is printed beside it for the record and never used to choose.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.output import publish  # noqa: E402

#: per estimator: the hyperparameter and its five values (the default among them)
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "surge": ("eta", (0.05, 0.1, 0.2, 0.5, 1.0)),
    "clipped_ste": ("c", (0.5, 1.0, 1.5, 2.0, 3.0)),
    "reste": ("o_end", (1.5, 2.0, 3.0, 4.0, 6.0)),
    "ede": ("t_max", (1.0, 3.0, 10.0, 30.0, 100.0)),
}


def _run_cell(job: tuple) -> tuple[str, float, int, str, dict]:
    estimator, name, value, seed, dataset, preset, db_url, threads = job
    import torch

    from bench.config import build_config
    from bench.db import ResultsDB
    from bench.runner import execute

    torch.set_num_threads(threads)
    config = build_config("classification", estimator, dataset=dataset, preset=preset, seed=seed,
                          sets=[f"{name}={value}"])
    outcome = execute(config, ResultsDB(db_url), quiet=True)
    return estimator, value, seed, outcome.status, outcome.metrics


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f} (n={len(values)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--db", default="sqlite:///results/hparam_sweep.sqlite")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)

    jobs = [(est, GRIDS[est][0], value, seed, args.dataset, args.preset, args.db, args.threads)
            for est in args.estimators for value in GRIDS[est][1] for seed in args.seeds]
    started = time.time()
    val: dict[tuple[str, float], list[float]] = {}
    test: dict[tuple[str, float], list[float]] = {}
    problems = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for estimator, value, seed, status, metrics in pool.imap_unordered(_run_cell, jobs):
            if "val_top1" not in metrics:
                problems.append(f"{estimator} {GRIDS[estimator][0]}={value:g} seed {seed}: {status}"
                                + ("" if status != "finished" else " (no validation split)"))
                continue
            print(f"  {estimator} {GRIDS[estimator][0]}={value:g} seed {seed}: val {metrics['val_top1']:.2f} "
                  f"test {metrics['top1']:.2f}", flush=True)
            val.setdefault((estimator, value), []).append(metrics["val_top1"])
            test.setdefault((estimator, value), []).append(metrics["top1"])

    lines = [
        f"Hyperparameter sweep on the validation split: classification/{args.dataset}, preset {args.preset}, "
        f"seeds {args.seeds}, database {args.db} ({time.time() - started:.0f} s). Chosen: best mean validation "
        "top-1 (last epoch); test top-1 for the record only.",
        "",
        "| estimator | setting | validation top-1 % | test top-1 % | chosen |",
        "|---|---|---|---|---|",
    ]
    for estimator in args.estimators:
        name, values = GRIDS[estimator]
        means = {v: statistics.mean(val[(estimator, v)]) for v in values if val.get((estimator, v))}
        chosen = max(means, key=means.get) if means else None
        for value in values:
            lines.append(f"| {estimator} | {name}={value:g} | {_mean_std(val.get((estimator, value), []))} | "
                         f"{_mean_std(test.get((estimator, value), []))} | {'**yes**' if value == chosen else ''} |")
    if problems:
        lines += ["", "not finished: " + "; ".join(problems)]
    publish("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
