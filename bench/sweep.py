"""``bench sweep``: expand a grid into run configs, skip the finished ones, execute the rest.

A grid is a product of tasks x datasets x models x estimators x ``--set`` value lists x
seeds, from the command line or a YAML/TOML file with the same keys::

    tasks: [classification]
    datasets: [fashion_mnist]       # default: each task's default data set
    models: []                      # default: each data set's default model
    estimators: [clipped_ste, surge]
    seeds: [0, 1, 2]
    preset: quick
    set: {eta: [0.1, 0.2], epochs: 3}

An estimator hyperparameter in ``set`` applies to the estimators that have it (``eta`` makes
two SURGE configs and one clipped_ste config above). Every config is validated before the
first run starts, so a bad grid is a one-line error and writes nothing.

Executors (each run is isolated: one crash never stops the others; a run that raised is
recorded as failed with its reason, and a worker that died without closing its row (kill -9,
out of memory) leaves it interrupted, so the next sweep resumes it from its checkpoint):

    local           N runs at once on this machine (``--jobs``, default 1), in a pool of
                    long-lived worker processes or one process per run (``--isolation``;
                    bench.local_executor)
    slurm           one Slurm job per run, as a job array, through submitit (``--slurm
                    key=value`` passes sbatch options: partition, time, gpus_per_node, ...)
    submitit-local  submitit's local executor: the Slurm code path on this machine (tests)
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Optional

import estimators
from bench.config import RunConfig, build_config
from bench.plugins import get_task
from bench.db import DatabaseError, ResultsDB
from bench.errors import RunInterrupted, UserError, sigterm_as_interrupt
from bench.local_executor import SweepResult
from bench.options import split_pair

EXECUTORS = ("local", "slurm", "submitit-local")
GRID_KEYS = ("tasks", "datasets", "models", "estimators", "seeds", "preset", "set", "data_root")


@dataclasses.dataclass
class Grid:
    tasks: list[str]
    estimators: list[str]
    datasets: list[str] = dataclasses.field(default_factory=list)
    models: list[str] = dataclasses.field(default_factory=list)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    preset: str = "quick"
    sets: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    data_root: Optional[str] = None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_grid_file(path: str) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) grid file; one-line UserError on any fault."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"grid file not found: {path}")
    try:
        if file.suffix == ".toml":
            import tomllib

            content = tomllib.loads(file.read_text())
        elif file.suffix in (".yaml", ".yml"):
            import yaml

            content = yaml.safe_load(file.read_text())
        else:
            raise UserError(f"grid file {path}: use a .yaml, .yml or .toml file")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - yaml and tomllib raise their own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"grid file {path} is not valid {file.suffix[1:].upper()}: {first}") from None
    if not isinstance(content, dict):
        raise UserError(f"grid file {path}: expected a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(content) - set(GRID_KEYS))
    if unknown:
        raise UserError(f"grid file {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(GRID_KEYS)}")
    if not isinstance(content.get("set", {}), dict):
        raise UserError(f"grid file {path}: 'set' must be a mapping of key to value or list of values")
    return content


def _seeds(values: Any) -> list[int]:
    try:
        return [int(s) for s in _as_list(values)]
    except (TypeError, ValueError):
        raise UserError(f"grid seeds must be integers, got {values!r}") from None


def grid_from(file_values: dict[str, Any], tasks: list[str], datasets: list[str], models: list[str],
              estimators_: list[str], seeds: list[int], preset: Optional[str], sets: list[str],
              data_root: Optional[str]) -> Grid:
    """Merge a grid file with command-line values (the command line wins key by key)."""
    set_values = {str(k): [str(v) for v in _as_list(vs)] for k, vs in (file_values.get("set") or {}).items()}
    for pair in sets:
        key, value = split_pair(pair, form="key=value1,value2,...")
        set_values[key] = value.split(",")
    empty = sorted(key for key, values in set_values.items() if not values)
    if empty:
        raise UserError(f"the grid's set {', '.join(empty)} has no values: give at least one, e.g. {empty[0]}: [0.1]")
    data_root = data_root or file_values.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        raise UserError(f"the grid's data_root must be a folder path (a string), got {data_root!r}")
    grid = Grid(
        tasks=tasks or [str(t) for t in _as_list(file_values.get("tasks"))],
        estimators=estimators_ or [str(e) for e in _as_list(file_values.get("estimators"))],
        datasets=datasets or [str(d) for d in _as_list(file_values.get("datasets"))],
        models=models or [str(m) for m in _as_list(file_values.get("models"))],
        seeds=seeds or _seeds(file_values.get("seeds")) or [0],
        preset=preset or str(file_values.get("preset", "quick")),
        sets=set_values,
        data_root=data_root,
    )
    if not grid.tasks:
        raise UserError("the grid names no task: give --task or 'tasks:' in the grid file")
    if not grid.estimators:
        raise UserError("the grid names no estimator: give --estimator or 'estimators:' in the grid file")
    return grid


def expand(grid: Grid) -> list[RunConfig]:
    """Every config of the grid, validated, without duplicates (by config hash)."""
    hparams_anywhere = {name for e in estimators.available() for name in estimators.hparam_names(e)}
    configs: dict[str, RunConfig] = {}
    for task_name in grid.tasks:
        task = get_task(task_name)
        datasets = [d for name in (grid.datasets or [task.default_dataset])
                    for d in task.dataset_groups.get(name, (name,))]
        for estimator, dataset, model in itertools.product(grid.estimators, datasets, grid.models or [None]):
            own = set(estimators.hparam_names(estimator)) if estimator in estimators.available() else set()
            keys = [k for k in grid.sets
                    if k.removeprefix("estimator.") in own or k.removeprefix("estimator.") not in hparams_anywhere]
            for values in itertools.product(*(grid.sets[k] for k in keys)):
                for seed in grid.seeds:
                    config = build_config(task=task_name, estimator=estimator, dataset=dataset, model=model,
                                          preset=grid.preset, seed=seed, data_root=grid.data_root,
                                          sets=[f"{k}={v}" for k, v in zip(keys, values)])
                    configs.setdefault(config.hash(), config)
    return list(configs.values())


# -- executors ----------------------------------------------------------------------------------
def label(config: RunConfig) -> str:
    hparams = ",".join(f"{k}={v}" for k, v in sorted(config.estimator_hparams.items()))
    return f"{config.task}/{config.dataset}/{config.model} {config.estimator}({hparams}) seed {config.seed}"


def run_config_job(config_values: dict, db_url: str, checkpoint_dir: Optional[str],
                   dispatched_at: Optional[float] = None) -> tuple[str, str]:
    """Execute one config in this process (the body of a local worker or a Slurm job);
    ``dispatched_at``: when the executor handed it over (the start of its stored startup_s)."""
    from bench.runner import execute

    config = RunConfig.from_dict(config_values)
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, ResultsDB(db_url), quiet=True, checkpoint_dir=checkpoint_dir,
                              started_at=dispatched_at)
    except (UserError, DatabaseError) as exc:
        return "failed", str(exc)
    except RunInterrupted as exc:
        return "interrupted", exc.message
    except KeyboardInterrupt:  # before the run had a row
        return "interrupted", "stopped before the run started"
    return outcome.status, outcome.error or ""


def parse_slurm_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` sbatch options as submitit names them; unknown keys are a one-line error."""
    import inspect

    from submitit.slurm import slurm

    valid = [p for p in inspect.signature(slurm._make_sbatch_string).parameters
             if p not in ("command", "folder", "map_count")]
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"--slurm expects key=value, got {pair!r}")
        if key not in valid:
            raise UserError(f"unknown Slurm option {key!r}; valid options: {', '.join(valid)}")
        options[key] = int(value) if value.isdigit() else value
    return options


def run_submitit(configs: list[RunConfig], db_url: str, checkpoint_dir: Optional[str], kind: str,
                 slurm_options: dict[str, Any], folder: Path, wait: bool, on_done) -> list[SweepResult]:
    """One job per config (a Slurm job array) through submitit; ``wait`` collects the outcomes."""
    import submitit

    if kind == "slurm":
        try:
            executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
        except RuntimeError as exc:
            raise UserError(f"--executor slurm: {exc} (use --executor local on this machine)") from None
        executor.update_parameters(**{f"slurm_{k}": v for k, v in slurm_options.items()})
    else:
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="local")
        executor.update_parameters(timeout_min=int(slurm_options.get("time", 24 * 60)))
    jobs = executor.map_array(run_config_job, [c.to_dict() for c in configs], [db_url] * len(configs),
                              [checkpoint_dir] * len(configs))
    results = []
    for config, job in zip(configs, jobs):
        if not wait:
            result = SweepResult(config, "submitted", f"job {job.job_id}")
        else:
            try:
                status, detail = job.result()
            except Exception as exc:  # noqa: BLE001 - a job that died without reporting
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                # its row, if it had one, is closed by the heartbeat rule (process gone, or silent)
                ResultsDB(db_url).mark_stale_interrupted()
                status, detail = "failed", f"job {job.job_id} died: {first}"
            result = SweepResult(config, status, detail)
        on_done(result)
        results.append(result)
    return results

