"""The ``bench`` command line.

    bench list [estimators|tasks|presets|datasets|models|scopes]
    bench run --task T --estimator E [--dataset D] [--model M] [--preset quick|paper] [--seed S]
              [--epochs N] [--data-root DIR] [--db URL] [--set key=value ...] [--force]
    bench report [--format md|latex|all] [--out reports/] [--db URL]
    bench runs [--status S] [--task T] [--db URL]
    bench show RUN_ID [--db URL]
    bench plot-estimators [--out reports/figures]

Bad input ends with one line on stderr (``bench: error: ...``) and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import estimators
from bench.config import build_config, get_task
from bench.db import DatabaseError, ResultsDB, resolve_db_url
from bench.errors import UserError
from bench.task_api import TASKS, load_task_plugins

LISTABLE = ("estimators", "tasks", "presets", "datasets", "models", "scopes")


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    load_task_plugins()
    what = args.what
    if what == "estimators":
        rows = []
        for name in estimators.available():
            est = estimators.build(name)
            hp = ", ".join(f"{k}={v}" for k, v in est.hparams().items()) or "-"
            rows.append([name, est.paper, hp])
        _print_table(rows, ["estimator", "paper", "hyperparameters (defaults)"])
    elif what == "tasks":
        rows = [[n, TASKS.get(n).version, TASKS.get(n).default_dataset, TASKS.get(n).description] for n in TASKS.names()]
        _print_table(rows, ["task", "version", "default dataset", "description"])
    elif what in ("datasets", "models", "presets"):
        rows = [[n, ", ".join(getattr(TASKS.get(n), what))] for n in TASKS.names()]
        _print_table(rows, ["task", what])
    else:
        rows = [[n, ", ".join(TASKS.get(n).scopes or estimators.SCOPES.names())] for n in TASKS.names()]
        _print_table(rows, ["task", "scopes"])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import execute

    task = get_task(args.task)
    datasets = task.dataset_groups.get(args.dataset, (args.dataset,))
    configs = [  # every config is validated before the first run starts
        build_config(task=args.task, estimator=args.estimator, dataset=dataset, model=args.model,
                     preset=args.preset, seed=args.seed, epochs=args.epochs, data_root=args.data_root,
                     sets=args.set)
        for dataset in datasets
    ]
    db = ResultsDB(args.db)
    failures = 0
    for config in configs:
        outcome = execute(config, db, force=args.force, quiet=args.quiet, device=args.device)
        label = f"{config.task}/{config.dataset}/{config.model} {config.estimator} seed {config.seed}"
        if outcome.status == "skipped":
            print(f"skipped: {label} already finished as run {outcome.run_id} (use --force to rerun)")
            continue
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in outcome.metrics.items())
        print(f"run {outcome.run_id} {outcome.status}: {label}" + (f" | {metrics}" if metrics else ""))
        if outcome.error:
            print(f"  reason: {outcome.error}", file=sys.stderr)
        failures += outcome.status != "finished"
    return 0 if failures == 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    formats = ("md", "latex") if args.format == "all" else (args.format,)
    db = ResultsDB(args.db)
    for path in write_report(db, args.out, formats=formats):
        print(path)
    return 0


def _primary(run) -> str:
    primary = [m for m in run.metrics if m.primary]
    return f"{primary[0].name}={primary[0].value:.4g}" if primary else ""


def cmd_runs(args: argparse.Namespace) -> int:
    db = ResultsDB(args.db)
    runs = db.list_runs(status=args.status, task=args.task)
    if not runs:
        print(f"no runs in {resolve_db_url(args.db)}")
        return 0
    rows = [[r.id, r.status, r.task, r.dataset, r.model, r.estimator, r.preset, r.seed, _primary(r),
             r.started_at.strftime("%Y-%m-%d %H:%M"), (r.error or "")[:60]] for r in runs]
    _print_table(rows, ["id", "status", "task", "dataset", "model", "estimator", "preset", "seed", "primary",
                        "started", "error"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    db = ResultsDB(args.db)
    run = db.get_run(args.run_id)
    if run is None:
        raise UserError(f"no run with id {args.run_id} in {resolve_db_url(args.db)}; see `bench runs`")
    fields = ["id", "status", "error", "task", "task_version", "dataset", "model", "estimator", "preset", "seed",
              "config_hash", "started_at", "finished_at", "wall_time_s", "n_params", "n_binary_params",
              "binary_ops", "float_ops", "train_step_ms", "peak_memory_mb"]
    for name in fields:
        print(f"{name:16} {getattr(run, name)}")
    print("metrics")
    for m in run.metrics:
        arrow = "higher is better" if m.higher_is_better else "lower is better"
        print(f"  {m.name:14} {m.value:.6g}  ({arrow}{', primary' if m.primary else ''})")
    epochs = sorted({c.epoch for c in run.curves})
    if epochs:
        print(f"curves           {len(epochs)} epochs: {', '.join(sorted({c.name for c in run.curves}))}")
    print("config           " + json.dumps(run.config, sort_keys=True))
    print("scope            " + json.dumps(run.scope, sort_keys=True))
    print("provenance       " + json.dumps(run.provenance, sort_keys=True))
    return 0


def cmd_plot_estimators(args: argparse.Namespace) -> int:
    from estimators.plotting import plot_estimators

    for path in plot_estimators(args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="surge-bench: gradient estimators for BNNs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list estimators, tasks, presets, datasets, models or scopes")
    p.add_argument("what", nargs="?", default="estimators", choices=LISTABLE)
    p.set_defaults(func=cmd_list)

    db_help = "results database URL (default: $BENCH_DB or sqlite:///results/bench.sqlite)"
    p = sub.add_parser("run", help="run one (task, estimator, dataset, model, seed) cell")
    p.add_argument("--task", required=True)
    p.add_argument("--estimator", required=True)
    p.add_argument("--dataset")
    p.add_argument("--model")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--data-root")
    p.add_argument("--db", help=db_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, an estimator hyperparameter or a task option")
    p.add_argument("--force", action="store_true", help="rerun even if an identical run finished")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write markdown/LaTeX tables and figures from the database")
    p.add_argument("--format", default="all", choices=("md", "latex", "all"))
    p.add_argument("--out", default="reports")
    p.add_argument("--db", help=db_help)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list runs with their status")
    p.add_argument("--status")
    p.add_argument("--task")
    p.add_argument("--db", help=db_help)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="show one run: config, metrics, provenance")
    p.add_argument("run_id", type=int)
    p.add_argument("--db", help=db_help)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plot-estimators", help="plot every estimator's forward and backward curve")
    p.add_argument("--out", default="reports/figures")
    p.set_defaults(func=cmd_plot_estimators)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, DatabaseError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
