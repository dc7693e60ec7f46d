"""The task plugin API: what a task family declares and what the runner calls.

A task family is a sub-package of ``tasks`` that registers one :class:`Task` in
:data:`TASKS` when imported (``tasks/classification/__init__.py`` for example).
Tasks are declared, not branched on: datasets, models, metrics (with their
direction, as lm-evaluation-harness does), task options and presets are data; the
only code a task supplies is :meth:`Task.check` (is the data there?) and
:meth:`Task.run` (train and evaluate one run config).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from pathlib import Path
from typing import Any, Callable, Optional

from bench.checkpoint import Checkpointer
from estimators.registry import Registry

TASKS: Registry["Task"] = Registry("task")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    description: str = ""


@dataclasses.dataclass
class TaskResult:
    """What a finished task run hands back to the runner."""

    metrics: dict[str, float]
    primary_metric: str
    scope: Optional[dict] = None
    n_params: Optional[int] = None
    n_binary_params: Optional[int] = None
    binary_ops: Optional[float] = None
    float_ops: Optional[float] = None
    train_step_ms: Optional[float] = None
    peak_memory_mb: Optional[float] = None


class Reporter:
    """Callbacks a task uses while it runs (the runner's end writes them to the database).

    ``checkpoint`` is where the task saves its state every epoch and restores it from when
    the runner resumes an interrupted run (disabled: a Checkpointer without folder).
    """

    def __init__(self, on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
                 on_info: Callable[[dict[str, Any]], None] | None = None, quiet: bool = False,
                 checkpoint: Optional[Checkpointer] = None,
                 on_resume: Callable[[int], None] | None = None) -> None:
        self._on_epoch = on_epoch
        self._on_info = on_info
        self._on_resume = on_resume
        self.quiet = quiet
        self.checkpoint = checkpoint or Checkpointer(None)

    def resumed(self, epoch: int) -> None:
        """The task restored the state at the end of ``epoch``: later curve points are void."""
        if self._on_resume:
            self._on_resume(epoch)

    def restore(self, model, optimizer, scheduler, generator=None) -> tuple[int, int, dict[str, float]]:
        """(first epoch to train, global step, last evaluation scores), from the checkpoint if any."""
        state = self.checkpoint.restore(model=model, optimizer=optimizer, scheduler=scheduler, generator=generator)
        if state is None:
            return 1, 0, {}
        self.resumed(state["epoch"])
        return state["epoch"] + 1, state["step"], state["extra"].get("scores", {})

    def save(self, epoch: int, step: int, model, optimizer, scheduler, generator=None,
             scores: Optional[dict[str, float]] = None) -> None:
        """Checkpoint the end of ``epoch`` (a no-op without a checkpoint folder, or off rank 0)."""
        self.checkpoint.save(epoch=epoch, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                             generator=generator, extra={"scores": scores or {}})

    def epoch_end(self, epoch: int, step: int, values: dict[str, float]) -> None:
        if self._on_epoch:
            self._on_epoch(epoch, step, values)

    def info(self, **fields: Any) -> None:
        """Facts known before training ends (scope, parameter counts, OPs)."""
        if self._on_info:
            self._on_info(fields)


class Task:
    """Base of task families. Subclasses set the class attributes and implement check/run."""

    name: str = ""
    version: str = "1"
    description: str = ""
    datasets: tuple[str, ...] = ()
    default_dataset: str = ""
    models: tuple[str, ...] = ()
    presets: tuple[str, ...] = ("quick", "paper")
    #: binarization scopes this task understands (empty: the estimator library's scopes)
    scopes: tuple[str, ...] = ()
    #: names that stand for several datasets on the command line (GLUE's "all")
    dataset_groups: dict[str, tuple[str, ...]] = {}
    #: the report adds an average column over this task's datasets (GLUE score)
    report_average: bool = False
    #: task-specific options settable with --set key=value, with their defaults
    options: dict[str, Any] = {}
    #: the allowed values of those options (bench.validation.Range / OneOf), checked before a run
    option_rules: dict[str, Any] = {}

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        raise NotImplementedError

    def primary_metric(self, dataset: str) -> str:
        return self.metric_specs(dataset)[0].name

    def default_model(self, dataset: str) -> str:
        return self.models[0]

    def preset_values(self, preset: str, dataset: str, model: str) -> dict[str, Any]:
        """RunConfig field values (and ``options``) of a preset for this dataset."""
        raise NotImplementedError

    def check(self, config) -> None:
        """Raise UserError/DataMissingError before anything is written (data present, ...)."""

    def run(self, config, reporter: Reporter, device: Optional[str] = None) -> TaskResult:
        """Train and evaluate one run config; raise bench.errors.Diverged on a NaN loss."""
        raise NotImplementedError


def default_cache_dir() -> Path:
    """Where task families keep what they build once (offline sets, teachers, detectors):
    $BENCH_CACHE, else ~/.cache/surge-bench."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "surge-bench"


def load_task_plugins() -> None:
    """Import every task family under ``tasks`` so it registers itself."""
    import tasks

    for module in pkgutil.iter_modules(tasks.__path__):
        if module.ispkg:
            importlib.import_module(f"tasks.{module.name}")
