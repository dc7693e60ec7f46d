"""Sweep SURGE's eta (and the fixed-lambda ablation) through the bench runner.

    python benchmarks/eta_sweep.py --seeds 0 1 2 --out reports/eta_sweep.md

Every (setting, seed) is an ordinary ``bench run`` of the classification task (quick
preset, offline Fashion-MNIST by default), recorded in a results database
(``results/eta_sweep.sqlite`` unless --db), so finished cells are skipped when the sweep
is rerun. Settings: clipped_ste (= SURGE at eta 0), SURGE at each eta, and SURGE with a
fixed lambda (AGS off). Prints mean +- sample std of test top-1 over seeds.
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


def _settings(etas: list[float], fixed: list[float]) -> list[tuple[str, str, list[str]]]:
    rows = [("clipped_ste", "clipped_ste", [])]
    rows += [(f"surge eta={e:g}", "surge", [f"eta={e}"]) for e in etas]
    rows += [(f"surge fixed_lambda={f:g}", "surge", [f"fixed_lambda={f}"]) for f in fixed]
    return rows


def _run_cell(job: tuple) -> tuple[str, int, str, float | None]:
    label, estimator, sets, seed, dataset, preset, db_url, threads = job
    import torch

    from bench.config import build_config
    from bench.db import ResultsDB
    from bench.runner import execute

    torch.set_num_threads(threads)
    config = build_config("classification", estimator, dataset=dataset, preset=preset, seed=seed, sets=sets)
    outcome = execute(config, ResultsDB(db_url), quiet=True)
    return label, seed, outcome.status, outcome.metrics.get("top1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    parser.add_argument("--fixed-lambdas", type=float, nargs="*", default=[0.1, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--db", default="sqlite:///results/eta_sweep.sqlite")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()

    settings = _settings(args.etas, args.fixed_lambdas)
    jobs = [(label, est, sets, seed, args.dataset, args.preset, args.db, args.threads)
            for label, est, sets in settings for seed in args.seeds]
    started = time.time()
    results: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    problems = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for label, seed, status, top1 in pool.imap_unordered(_run_cell, jobs):
            print(f"  {label} seed {seed}: {status} {'' if top1 is None else f'top1={top1:.2f}'}", flush=True)
            if top1 is None:
                problems.append(f"{label} seed {seed}: {status}")
            else:
                results[label].append(top1)

    lines = [
        f"SURGE eta sweep: classification/{args.dataset}, preset {args.preset}, seeds {args.seeds}, "
        f"database {args.db} ({time.time() - started:.0f} s)",
        "",
        "| setting | test top-1 % (mean ± std) | per seed |",
        "|---|---|---|",
    ]
    for label, _, _ in settings:
        accs = sorted(results[label])
        if not accs:
            lines.append(f"| {label} | – | – |")
            continue
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {label} | {statistics.mean(accs):.2f} ± {std:.2f} (n={len(accs)}) | "
                     f"{', '.join(f'{a:.2f}' for a in accs)} |")
    if problems:
        lines += ["", "not finished: " + "; ".join(problems)]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
