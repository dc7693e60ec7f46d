"""The task-family contract: what a family declares and the functions it fills in.

A family is a folder ``tasks/<name>/`` whose ``__init__.py`` registers one :class:`Task`
(``TASKS.register(name)(MyTask())``, discovery is :mod:`bench.plugins`). Declared as data:
datasets, models, presets, options (a typed dataclass, :mod:`bench.options`) and metrics
(names from :data:`bench.metrics.METRICS`). Code: four functions for the engine
(:mod:`bench.engine`) to call::

    load_data(config)              -> an object with ``.train`` (a DataLoader) and what evaluate needs
    build_model(config, data)      -> the full-precision nn.Module (the engine binarizes it)
    train_step(model, batch, data) -> StepOutput(loss, batch_size)   (batch already on the device)
    evaluate(model, data, device)  -> {metric name: value}   (the test split, the reported one)

plus, for a family that holds out a validation split, ``validate`` (the same on it, under
``val_`` names), and :meth:`Task.check` (is the data there?). A family whose loop belongs to another
framework (detection: mmengine's Runner) overrides :meth:`Task.run` instead.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from bench.checkpoint import Checkpointer
from bench.states import ModelStates
from bench.metrics import METRICS, Metric
from bench.options import NoOptions


#: the RunConfig values of a family without its own presets (``Task.recipes`` overrides them)
GENERIC_RECIPE: dict[str, Any] = dict(
    scope="standard", weight_scale="channel", weight_grad="surrogate", epochs=1, batch_size=32, optimizer="adam",
    lr=1e-3, momentum=0.9,
    weight_decay=0.0, schedule="constant", warmup_epochs=0.0, train_subset=None, eval_subset=None,
)


@dataclasses.dataclass(frozen=True)
class PresetSource:
    """Where a preset's numbers come from (``bench list presets``, the README's preset table).

    ``alias_of`` names the preset this one stands for (``paper``: the recipe SURGE compares
    against); a run stores the preset it resolves to. ``reports`` is what the source reports:
    the ``last`` epoch, or the ``best`` epoch on the test split (a test-set selection; the report
    shows it with ``--select best``, labelled)."""

    source: str
    files: str = ""
    fixes: str = ""
    alias_of: Optional[str] = None
    reports: str = "last"


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A metric a family reports: the name it is stored under and the registered metric it is
    (``accuracy_matched`` is ``accuracy`` on MNLI's matched dev split)."""

    key: str
    metric: str = ""
    note: str = ""

    @property
    def definition(self) -> Metric:
        return METRICS.get(self.metric or self.key)

    @property
    def higher_is_better(self) -> bool:
        return self.definition.higher_is_better

    @property
    def description(self) -> str:
        return self.definition.description + (f" ({self.note})" if self.note else "")


@dataclasses.dataclass
class TaskResult:
    """What a finished run hands back to the runner."""

    metrics: dict[str, float]
    scope: Optional[dict] = None
    n_params: Optional[int] = None
    n_binary_params: Optional[int] = None
    binary_ops: Optional[float] = None
    float_ops: Optional[float] = None
    train_step_ms: Optional[float] = None
    peak_memory_mb: Optional[float] = None


class Reporter:
    """Where a run's facts go while it runs (the runner writes them to the database)."""

    def __init__(self, on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
                 on_info: Callable[[dict[str, Any]], None] | None = None,
                 on_resume: Callable[[int], None] | None = None) -> None:
        self._on_epoch, self._on_info, self._on_resume = on_epoch, on_info, on_resume

    def epoch_end(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """Curve points of a finished epoch."""
        if self._on_epoch:
            self._on_epoch(epoch, step, values)

    def info(self, **fields: Any) -> None:
        """Facts known before training ends (scope, parameter counts, OPs)."""
        if self._on_info:
            self._on_info(fields)

    def resumed(self, epoch: int) -> None:
        """Training went back to the end of ``epoch``: curve points after it are void."""
        if self._on_resume:
            self._on_resume(epoch)


@dataclasses.dataclass
class Timeline:
    """Wall-clock marks (time.time()) of one run, from which the runner stores its harness
    overhead: ``started`` when an executor handed the run over, ``first_step`` when its first
    training step began (set by the engine's Timing hook)."""

    started: Optional[float] = None
    first_step: Optional[float] = None


@dataclasses.dataclass
class RunContext:
    """Everything a run gets besides its config: the device, the reporter, the checkpoint
    (resume from it, save to it; disabled without a folder), whether to show progress, the
    run's timeline, and where it keeps its model states (disabled by default)."""

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    reporter: Reporter = dataclasses.field(default_factory=Reporter)
    checkpoint: Checkpointer = dataclasses.field(default_factory=lambda: Checkpointer(None))
    quiet: bool = False
    timeline: Timeline = dataclasses.field(default_factory=Timeline)
    states: ModelStates = dataclasses.field(default_factory=lambda: ModelStates(None))

    def private(self) -> "RunContext":
        """The same device and verbosity without reporting or checkpoints (a teacher's training)."""
        return RunContext(device=self.device, quiet=self.quiet)


class Task:
    """Base of task families: set the class attributes, fill in the four functions."""

    name: str = ""
    version: str = "1"
    description: str = ""
    datasets: tuple[str, ...] = ()
    default_dataset: str = ""
    models: tuple[str, ...] = ()
    #: the BNN blocks the family's models can be built with (the ``block`` field); empty: none
    blocks: tuple[str, ...] = ()
    presets: tuple[str, ...] = ("quick", "paper")
    #: per preset, its source (PresetSource); a family without it lists its presets unsourced
    preset_sources: dict[str, PresetSource] = {}
    #: the family's binarization scopes, a Registry of rules like :data:`estimators.SCOPES`
    #: (None: the estimator library's ``all`` / ``first_last`` / ``standard``)
    scope_registry = None
    #: names that stand for several datasets on the command line (GLUE's "all")
    dataset_groups: dict[str, tuple[str, ...]] = {}
    #: the report adds an average over this family's datasets: the GLUE table (bench.report.glue) where
    #: they are GLUE tasks, else an average column of the primary metrics
    report_average: bool = False
    #: the family's options (``--set key=value``): a dataclass, see bench.options
    Options: type = NoOptions
    #: whether the family starts from ``init`` (the engine's families do; one with its own loop and
    #: its own starting points, like detection's pre-trained detector, does not)
    supports_init: bool = True
    #: whether the family's training applies ``precision`` and ``channels_last``: None, the default,
    #: means yes for a family trained by the engine's fit, no for one that overrides ``run`` with a
    #: loop of its own unless it sets True
    applies_precision: Optional[bool] = None

    def trains_with_precision(self) -> bool:
        """Whether ``precision`` and ``channels_last`` act in this family's training."""
        if self.applies_precision is not None:
            return self.applies_precision
        return self.trains_with_fit()

    def trains_with_fit(self) -> bool:
        """Whether the family trains through the engine's ``fit`` (it does not override ``run``)."""
        return type(self).run is Task.run

    #: for a family that overrides ``run`` with a loop of its own: what it trains with, and why that
    #: cannot evaluate every ``eval_steps`` optimizer steps (the engine's fit can; see check_values)
    own_loop: str = "a loop of its own, not bench.engine.fit, which evaluates at epoch ends only"

    def evaluates_every_steps(self) -> bool:
        """Whether the family's training honours ``eval_steps`` > 0 (the engine's fit does)."""
        return self.trains_with_fit()
    #: gradient clipping of the engine's optimizer step (None: none)
    max_grad_norm: Optional[float] = None
    #: what the progress bar counts per second
    throughput_unit: str = "ex"

    # -- declarations -----------------------------------------------------------------
    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        """The metrics of a dataset, the primary one first."""
        raise NotImplementedError

    def default_model(self, dataset: str) -> str:
        return self.models[0]

    #: per preset, the RunConfig values that differ from :data:`GENERIC_RECIPE`
    recipes: dict[str, dict[str, Any]] = {}

    def preset_values(self, preset: str, dataset: str, model: str) -> dict[str, Any]:
        """RunConfig field values (and ``options``, and ``estimator_hparams``: per estimator, the
        hyperparameters the source fixes) of a preset for this dataset and model."""
        return {**GENERIC_RECIPE, **self.recipes.get(preset, {})}

    def preset_model(self, preset: str, dataset: str) -> Optional[str]:
        """The model a preset's source trains on this dataset when none is named (None: the
        dataset's default model)."""
        return None

    def resolve_preset(self, preset: str) -> str:
        """The preset an alias stands for (``paper`` -> the source SURGE compares against)."""
        source = self.preset_sources.get(preset)
        return source.alias_of if source is not None and source.alias_of else preset

    def check(self, config) -> None:
        """Raise UserError/DataMissingError before anything is written (data present, ...)."""

    def scope_rules(self):
        """The registry the ``scope`` field is looked up in."""
        import estimators

        return self.scope_registry if self.scope_registry is not None else estimators.SCOPES

    # -- the four functions the engine calls ----------------------------------------------
    def load_data(self, config) -> Any:
        raise NotImplementedError

    def build_model(self, config, data) -> torch.nn.Module:
        raise NotImplementedError

    def train_step(self, model: torch.nn.Module, batch: Any, data: Any):
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, data: Any, device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def validate(self, model: torch.nn.Module, data: Any, device: torch.device) -> Optional[dict[str, float]]:
        """The metrics on the validation split under ``val_`` names; None without one (the default)."""
        return None

    # -- optional ------------------------------------------------------------------------
    def prepare(self, config, data, model: torch.nn.Module, context: RunContext) -> None:
        """Work between building the model and binarizing it (GLUE trains its teacher here)."""

    def step_one(self, config):
        """The RunConfig of step 1 of a two-step run (``init="two_step"``, :mod:`bench.initialization`):
        the same run with real weights and binary activations (ReActNet's step 1), from scratch. The
        settings that only act on binarized weights (``weight_scale``, ``weight_grad``,
        ``weight_balance``, ``weight_clip="gradient"``) take their defaults, since a layer with
        ``binary_weights`` off uses W itself, so step-2 runs that differ only in them share one
        step 1. A family overrides this to apply its step-1 recipe (classification: its weight decay)."""
        return dataclasses.replace(
            config, binary_weights=False, init="scratch", weight_scale="channel", weight_grad="surrogate",
            weight_balance="none", weight_clip="none" if config.weight_clip == "gradient" else config.weight_clip)

    def binarize(self, model: torch.nn.Module, estimator, config) -> dict:
        """Replace the layers of ``config.scope`` by binarized ones; the record for the database."""
        import estimators

        return estimators.binarize_model(model, estimator, scope=config.scope, scopes=self.scope_rules(),
                                         **binarization_options(config)).to_dict()

    def example_inputs(self, config, data) -> tuple[tuple, dict]:
        """One example's model inputs (args, kwargs), for counting parameters and OPs: by default
        the first training batch's first input (a tuple batch) or its non-label fields (a dict).
        Drawing that batch advances the train loader's shuffling generator once (before
        training, the same in every run of a config); override to count on a synthetic input."""
        batch = next(iter(data.train))
        if isinstance(batch, dict):
            return (), {k: v[:1] for k, v in batch.items() if k != "labels"}
        return (batch[0][:1],), {}

    # -- bench diagnose ------------------------------------------------------------------
    #: why ``bench diagnose`` cannot measure this family, in one line (None: it can)
    diagnose_unsupported: Optional[str] = "the family defines no per-example loss (Task.example_losses)"

    def example_losses(self, model: torch.nn.Module, batch: Any, data: Any) -> torch.Tensor:
        """The training loss of each example of ``batch`` (a tensor of its length) whose mean is
        the training step's loss: ``bench diagnose`` differentiates their mean and forwards copies
        of single examples to measure the reference gradient."""
        raise NotImplementedError

    def probe_dataset(self, data: Any) -> torch.utils.data.Dataset:
        """The training examples ``bench diagnose`` draws its probe batches from."""
        return data.train.dataset

    def run(self, config, context: RunContext) -> TaskResult:
        """Train and evaluate one run config (the engine; raises bench.errors.Diverged on a NaN)."""
        from bench.engine import run_task

        return run_task(self, config, context)


def binarization_options(config) -> dict[str, Any]:
    """The RunConfig's binarized-layer options (:class:`estimators.layers.BinarizationOptions`)."""
    return dict(weight_scale=config.weight_scale, weight_grad=config.weight_grad,
                weight_balance=config.weight_balance, weight_clip=config.weight_clip,
                pad_value=float(config.pad_value), binary_weights=config.binary_weights)


def default_cache_dir() -> Path:
    """Where families keep what they build once (offline sets, teachers, detectors):
    $BENCH_CACHE, else ~/.cache/surge-bench."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "surge-bench"
