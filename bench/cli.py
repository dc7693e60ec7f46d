"""The ``bench`` command line.

    bench list [estimators|tasks|presets|datasets|models|scopes|options]
    bench run --task T --estimator E [--dataset D] [--model M] [--preset P (bench list presets)] [--seed S]
              [--epochs N] [--data-root DIR] [--db URL] [--set key=value ...] [--force]
              [--checkpoint-dir DIR|none] [--gpus N] [--keep-states]
    bench sweep [--grid FILE] [--task T ...] [--estimator E ...] [--seeds S ...] [--set key=v1,v2 ...]
                [--executor local|slurm|submitit-local] [--jobs N] [--isolation pool|process]
                [--recycle-after K] [--run-timeout SECONDS] [--slurm key=value ...] [--db URL]
    bench report [--format md|latex|all] [--out reports/] [--db URL] [--reference NAME] [--ci t|bootstrap]
                 [--select last|best_val|best]
    bench diagnose --task T [--estimator E ...|all] [--mode shared|own] [--reference E] [--run ID]
                   [--dataset D] [--model M] [--preset P] [--seed S] [--set key=value ...] [--db URL]
    bench runs [--status S] [--task T] [--db URL]
    bench show RUN_ID [--db URL]
    bench plot-estimators [--out reports/figures]

Bad input ends with one line on stderr (``bench: error: ...``) and exit status 2; Ctrl-C or
SIGTERM with one line (``bench: interrupted: ...``) and 128 + the signal number.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import estimators
from bench import options as typed
from bench.checkpoint import DEFAULT_CHECKPOINT_DIR
from bench.config import build_config
from bench.db import STATUSES, DatabaseError, ResultsDB, resolve_db_url
from bench.errors import RunInterrupted, UserError, sigterm_as_interrupt
from bench.local_executor import DEFAULT_RECYCLE_AFTER
from bench.states import DEFAULT_STATES_DIR
from bench.plugins import TASKS, get_task, load_task_plugins
from bench.validation import check_runs, field_choices, writable_folder

LISTABLE = ("estimators", "tasks", "presets", "datasets", "models", "scopes", "options")


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
    elif what == "presets":
        rows = []
        for n in TASKS.names():
            task = TASKS.get(n)
            for preset in task.presets:
                source = task.preset_sources.get(preset)
                if source is None:
                    rows.append([n, preset, "-", "", ""])
                elif source.alias_of:
                    rows.append([n, preset, f"= {source.alias_of}", "", source.source])
                else:
                    reports = "best test epoch" if source.reports == "best" else "last epoch"
                    rows.append([n, preset, source.source, reports, f"{source.fixes} [{source.files}]"])
        _print_table(rows, ["task", "preset", "source", "source reports", "what it fixes [files]"])
    elif what in ("datasets", "models"):
        rows = [[n, ", ".join(getattr(TASKS.get(n), what))] for n in TASKS.names()]
        _print_table(rows, ["task", what])
    elif what == "options":
        from bench.config import RunConfig
        from bench.validation import field_choices

        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
        rows = [["(all)", name, repr(defaults[name]) if name in defaults else "(the preset's)", "yes", choices]
                for name, choices in field_choices().items()]
        rows += [[n, name, repr(default), "no (local)" if name in typed.local_names(TASKS.get(n).Options) else "yes",
                  typed.field_help(TASKS.get(n).Options)[name] or ""]
                 for n in TASKS.names() for name, default in typed.defaults(TASKS.get(n).Options).items()]
        _print_table(rows, ["task", "option", "default", "in the hash", "meaning"])
    else:
        rows = [[n, ", ".join(TASKS.get(n).scope_rules().names())] for n in TASKS.names()]
        _print_table(rows, ["task", "scopes"])
    return 0


def _without_gpus(argv: list[str]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--gpus":
            skip = True
        elif not item.startswith("--gpus="):
            out.append(item)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from bench import distributed
    from bench.runner import execute

    if args.gpus < 1:
        raise UserError(f"--gpus must be >= 1, got {args.gpus}")
    if args.gpus > 1 and not distributed.launched():
        return _run_distributed(args)
    rank_device = distributed.init()
    if rank_device is not None:
        args.device = str(rank_device)
    try:
        return _run_configs(args, execute, distributed.is_main())
    finally:
        distributed.shutdown()


def _run_distributed(args: argparse.Namespace) -> int:
    """Validate everything here (one-line errors), then relaunch under torchrun."""
    from bench import distributed

    _configs(args)
    ResultsDB(args.db).require_writable()  # an unreachable database fails before any process starts
    return distributed.relaunch(args.gpus, _without_gpus(args.argv))


def _checkpoint_dir(args: argparse.Namespace) -> Optional[str]:
    return None if args.checkpoint_dir == "none" else args.checkpoint_dir


def _configs(args: argparse.Namespace) -> list:
    """Every config of the command, each checked (values, data, device, folders) before the first runs."""
    task = get_task(args.task)
    datasets = task.dataset_groups.get(args.dataset, (args.dataset,))
    configs = [
        build_config(task=args.task, estimator=args.estimator, dataset=dataset, model=args.model,
                     preset=args.preset, seed=args.seed, epochs=args.epochs, data_root=args.data_root,
                     sets=args.set)
        for dataset in datasets
    ]
    check_runs(configs, device=args.device, checkpoint_dir=_checkpoint_dir(args))
    return configs


def _run_configs(args: argparse.Namespace, execute, main_rank: bool) -> int:
    configs = _configs(args)
    db = ResultsDB(args.db) if main_rank else None
    if db is not None:
        db.require_writable()
    failures = 0
    for config in configs:
        outcome = execute(config, db, force=args.force, quiet=args.quiet, device=args.device,
                          checkpoint_dir=_checkpoint_dir(args), checked=True,
                          states_dir=args.states_dir if args.keep_states else None)
        if not main_rank:
            continue
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


def _absolute_sqlite(url: str) -> str:
    """Workers and Slurm jobs may start elsewhere: pin a relative SQLite path to this directory."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(
            hide_password=False)
    return url


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench import sweep
    from bench.local_executor import ISOLATIONS, run_local
    from bench.training import progress_bar

    if args.executor not in sweep.EXECUTORS:
        raise UserError(f"unknown executor {args.executor!r}; valid choices: {', '.join(sweep.EXECUTORS)}")
    if args.isolation not in ISOLATIONS:
        raise UserError(f"unknown isolation {args.isolation!r}; valid choices: {', '.join(ISOLATIONS)}")
    if args.recycle_after < 1:
        raise UserError(f"--recycle-after must be >= 1 (runs per pool worker), got {args.recycle_after}")
    if args.run_timeout is not None and not args.run_timeout > 0:
        raise UserError(f"--run-timeout must be > 0 seconds, got {args.run_timeout:g}")
    slurm_options = sweep.parse_slurm_options(args.slurm)
    file_values = sweep.load_grid_file(args.grid) if args.grid else {}
    grid = sweep.grid_from(file_values, args.task, args.dataset, args.model, args.estimator, args.seeds,
                           args.preset, args.set, args.data_root)
    configs = sweep.expand(grid)
    db_url = _absolute_sqlite(resolve_db_url(args.db))
    db = ResultsDB(db_url)
    db.require_writable()
    # data included: no worker starts on a bad config (workers may start elsewhere: absolute folder)
    checkpoint_dir = check_runs(configs, checkpoint_dir=_checkpoint_dir(args))
    log_dir = Path(writable_folder(args.log_dir, "sweep log folder"))
    db.mark_stale_interrupted()
    pending = [c for c in configs if db.finished_run(c.hash()) is None]
    print(f"sweep: {len(configs)} configs, {len(configs) - len(pending)} already finished, "
          f"{len(pending)} to run on the {args.executor} executor")
    if args.dry_run or not pending:
        for config in pending:
            print(f"  would run: {sweep.label(config)}")
        return 0

    counts: dict[str, int] = {}
    bar = progress_bar(len(pending), "sweep", args.quiet)

    def on_done(result) -> None:
        counts[result.status] = counts.get(result.status, 0) + 1
        bar.update(1)
        bar.set_postfix(counts)
        if result.status not in ("finished", "skipped", "submitted"):
            bar.write(f"{result.status}: {sweep.label(result.config)}: {result.detail}", file=sys.stderr)

    if args.executor == "local":
        results = run_local(pending, db_url, args.jobs, checkpoint_dir, log_dir, on_done, isolation=args.isolation,
                            recycle_after=args.recycle_after, run_timeout=args.run_timeout)
        unreported = sum(result.status == "not started" for result in results)
        if unreported:
            counts["not started"] = counts.get("not started", 0) + unreported
    else:
        sweep.run_submitit(pending, db_url, checkpoint_dir, args.executor, slurm_options, log_dir / "submitit",
                           wait=args.executor == "submitit-local" or args.wait, on_done=on_done)
    bar.close()
    print("sweep: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f" (logs: {log_dir})")
    return 0 if set(counts) <= {"finished", "skipped", "submitted"} else 1


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import UnknownReference, write_report

    formats = ("md", "latex") if args.format == "all" else (args.format,)
    out = writable_folder(args.out, "report folder (--out)")
    db = ResultsDB(args.db)
    try:
        paths = write_report(db, out, formats=formats, reference=args.reference, ci=args.ci, select=args.select)
    except UnknownReference as exc:
        raise UserError(str(exc)) from None
    for path in paths:
        print(path)
    return 0


def _primary(run) -> str:
    primary = [m for m in run.metrics if m.primary]
    return f"{primary[0].name}={primary[0].value:.4g}" if primary else ""


def cmd_runs(args: argparse.Namespace) -> int:
    if args.status is not None and args.status not in STATUSES:
        raise UserError(f"unknown status {args.status!r}; valid choices: {', '.join(STATUSES)}")
    if args.task is not None:
        get_task(args.task)
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
              "binary_ops", "float_ops", "train_step_ms", "peak_memory_mb", "startup_s", "teardown_s"]
    for name in fields:
        print(f"{name:16} {getattr(run, name)}")
        if name == "model":
            for added in ("block", "weight_grad"):
                print(f"{added:16} {(run.config or {}).get(added, '-')}")
    print("metrics")
    for m in run.metrics:
        arrow = "higher is better" if m.higher_is_better else "lower is better"
        print(f"  {m.name:14} {m.value:.6g}  ({arrow}{', primary' if m.primary else ''})")
    epochs = sorted({c.epoch for c in run.curves})
    if epochs:
        per_layer = {c.name.partition("/")[0] for c in run.curves if "/" in c.name}
        names = sorted({c.name for c in run.curves if "/" not in c.name} | {f"{p}/<layer>" for p in per_layer})
        print(f"curves           {len(epochs)} epochs: {', '.join(names)}")
    print("config           " + json.dumps(run.config, sort_keys=True))
    print("scope            " + json.dumps(run.scope, sort_keys=True))
    print("provenance       " + json.dumps(run.provenance, sort_keys=True))
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from bench.diagnostics.run import binary_estimators, diagnose

    names = binary_estimators() if args.estimator == ["all"] else args.estimator
    db = ResultsDB(args.db)
    db.require_writable()
    done = diagnose(args.task, names, db=db, dataset=args.dataset, model=args.model, preset=args.preset,
                    seed=args.seed, sets=args.set, data_root=args.data_root, mode=args.mode,
                    reference=args.reference, run_id=args.run, device=args.device, quiet=args.quiet,
                    states_dir=args.states_dir, checkpoint_dir=_checkpoint_dir(args))
    runs = ", ".join(f"{name}: run {run}" for name, run in done.state_runs.items())
    print(f"wrote {done.rows} gradient diagnostics to {db.display_url} (model states of {runs}); "
          "bench report shows them")
    return 0


def cmd_plot_estimators(args: argparse.Namespace) -> int:
    from estimators.plotting import plot_estimators

    for path in plot_estimators(writable_folder(args.out, "figure folder (--out)")):
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
                   help="override a config field, an estimator hyperparameter or a task option; the fields: "
                        + "; ".join(f"{k} ({v})" for k, v in field_choices().items())
                        + "; task options: bench list options")
    p.add_argument("--force", action="store_true", help="rerun even if an identical run finished (never one that is running)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-dir", default=DEFAULT_CHECKPOINT_DIR,
                   help="per-run checkpoints for resuming (default: %(default)s; 'none' disables)")
    p.add_argument("--keep-states", action="store_true",
                   help="keep the model's weights before training and after every epoch (for bench diagnose)")
    p.add_argument("--states-dir", default=DEFAULT_STATES_DIR, help="where --keep-states writes (default: %(default)s)")
    p.add_argument("--gpus", type=int, default=1,
                   help="processes with DistributedDataParallel under torchrun, one per GPU (gloo on CPUs)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a grid of configs (skipping finished ones) on local workers or Slurm")
    p.add_argument("--grid", help="a YAML or TOML grid file (keys: tasks, datasets, models, estimators, seeds, "
                                  "preset, set, data_root); command-line values override it")
    p.add_argument("--task", nargs="+", default=[])
    p.add_argument("--dataset", nargs="+", default=[])
    p.add_argument("--model", nargs="+", default=[])
    p.add_argument("--estimator", nargs="+", default=[])
    p.add_argument("--seeds", nargs="+", type=int, default=[])
    p.add_argument("--preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="a grid axis: a config field, estimator hyperparameter or task option with its values")
    p.add_argument("--data-root")
    p.add_argument("--db", help=db_help)
    p.add_argument("--executor", default="local", help="local (default), slurm or submitit-local")
    p.add_argument("--jobs", "--workers", dest="jobs", type=int, default=1,
                   help="local executor: runs at once (default 1; --workers is its former name)")
    p.add_argument("--isolation", default="pool",
                   help="local executor: pool (default: long-lived workers that import once and run job after "
                        "job) or process (a fresh process per run)")
    p.add_argument("--recycle-after", type=int, default=DEFAULT_RECYCLE_AFTER, metavar="K",
                   help=f"pool: replace a worker after K runs (default {DEFAULT_RECYCLE_AFTER}) and after a failed run")
    p.add_argument("--run-timeout", type=float, default=None, metavar="SECONDS",
                   help="local executor: kill a run (and its worker) that runs longer and record it as failed")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="sbatch option for the slurm executor, e.g. partition=gpu time=720 gpus_per_node=1")
    p.add_argument("--wait", action="store_true", help="slurm executor: wait for the jobs and report outcomes")
    p.add_argument("--checkpoint-dir", default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--log-dir", default="results/logs", help="one log file per run (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="list the configs that would run")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="write markdown/LaTeX tables and figures from the database")
    p.add_argument("--format", default="all", choices=("md", "latex", "all"))
    p.add_argument("--out", default="reports")
    p.add_argument("--db", help=db_help)
    p.add_argument("--reference", metavar="NAME",
                   help="estimator (row name) the paired differences are taken to (default: clipped_ste)")
    p.add_argument("--ci", default="t", choices=("t", "bootstrap"),
                   help="95%% interval of a paired difference: Student t or percentile bootstrap "
                        "(default: %(default)s)")
    p.add_argument("--select", default="last", choices=("last", "best_val", "best"),
                   help="the scores of the last epoch, of the epoch best on the validation split, or of "
                        "the epoch best on the test split (best: a test-set selection some papers report; "
                        "shown labelled, not ranked) (default: %(default)s)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("diagnose", help="measure each estimator's gradient against the smoothed reference gradient")
    p.add_argument("--task", required=True)
    p.add_argument("--estimator", nargs="+", default=["all"], help="estimators to measure (default: all binary ones)")
    p.add_argument("--mode", default="shared", choices=("shared", "own"),
                   help="shared: every estimator on one reference run's states; own: each on its own run's")
    p.add_argument("--reference", default="clipped_ste", help="shared mode: the estimator whose run gives the states")
    p.add_argument("--run", type=int, help="shared mode: the finished run whose states are measured")
    p.add_argument("--dataset")
    p.add_argument("--model")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0, help="the state runs' seed")
    p.add_argument("--data-root")
    p.add_argument("--db", help=db_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the reference's sigma, units, samples, probe_batches, probe_size, probe_seed; an "
                        "estimator hyperparameter (to the estimators that take it); else the state runs' config")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--states-dir", default=DEFAULT_STATES_DIR, help="where runs keep model states (default: %(default)s)")
    p.add_argument("--checkpoint-dir", default=DEFAULT_CHECKPOINT_DIR)
    p.set_defaults(func=cmd_diagnose)

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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        with sigterm_as_interrupt():
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
            return code
    except (UserError, DatabaseError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"bench: interrupted: {exc.message}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # `bench runs | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as exc:  # outside a run (validation, a sweep's scheduling): nothing to close
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(f"bench: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
