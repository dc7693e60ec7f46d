"""One validation stage: every value a run will use is checked before any row exists.

Values are checked where a config is built (``bench.config.build_config`` calls
:func:`check_values`); ``bench run`` and ``bench sweep`` then call :func:`check_runs` on all
their configs (device, folders, data) before the first row is written or the first worker
starts. The runner checks values and data itself only for configs that arrive from
elsewhere (a sweep worker, a Slurm job). Each fault is a one-line
:class:`~bench.errors.UserError` naming the valid values or the fix.

What is checked:
    RunConfig fields     ranges and finiteness (:data:`FIELD_RULES`), choices
    task options         the rules declared on each field of the family's ``Options`` dataclass
    estimator values     every float hyperparameter finite (the estimator checks its ranges)
    data                 ``Task.check`` (files present, formats readable), once per data source
    device               a device this machine has (``--device cuda`` without a GPU is refused)
    folders              the checkpoint folder is a folder this user can write
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from bench.errors import UserError

OPTIMIZERS = ("sgd", "sgd_nesterov", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "constant", "step")
#: the parameters weight decay applies to: all, or conv kernels only (4-D weights; Bi-Real Net's and
#: ReActNet's ``train.py``)
WEIGHT_DECAY_ON = ("all", "conv")
#: autocast dtypes of the training forward (fp16 with a gradient scaler)
PRECISIONS = ("fp32", "bf16", "fp16")
#: the named values of ``init``; anything else is a state-dict file
INITS = ("scratch", "two_step")


@dataclasses.dataclass(frozen=True)
class Range:
    """A finite number within bounds (``integer``: a whole number; ``optional``: None allowed)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        kind = "an integer" if self.integer else "a finite number"
        return f"{kind}{' ' + ' and '.join(parts) if parts else ''}{' (or none)' if self.optional else ''}"

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.integer:
            ok = float(value).is_integer()
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        if not ok:
            raise UserError(f"{name} must be {self.describe()}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class OneOf:
    choices: tuple

    def check(self, name: str, value: Any) -> None:
        if value not in self.choices:
            raise UserError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, self.choices))}")


def _weight_scales() -> tuple[str, ...]:
    from estimators.layers import WEIGHT_SCALES

    return WEIGHT_SCALES


def _weight_grads() -> tuple[str, ...]:
    from estimators.layers import WEIGHT_GRADS

    return WEIGHT_GRADS


def field_choices() -> dict[str, str]:
    """The values of each RunConfig field ``--set`` takes, for ``bench run --help`` and ``bench list
    options`` (one place: the same constants the checks use)."""
    from estimators.blocks import BLOCKS
    from estimators.layers import PAD_VALUES, WEIGHT_BALANCES, WEIGHT_CLIPS, WEIGHT_GRADS, WEIGHT_SCALES

    def one_of(values) -> str:
        return "|".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    return {
        "block": one_of(BLOCKS), "scope": "bench list scopes", "weight_scale": one_of(WEIGHT_SCALES),
        "weight_grad": one_of(WEIGHT_GRADS), "weight_balance": one_of(WEIGHT_BALANCES),
        "weight_clip": one_of(WEIGHT_CLIPS), "pad_value": one_of(PAD_VALUES), "binary_weights": "true|false",
        "weight_decay_on": one_of(WEIGHT_DECAY_ON), "init": one_of(INITS) + "|FILE", "precision": one_of(PRECISIONS),
        "channels_last": "true|false", "optimizer": one_of(OPTIMIZERS), "schedule": one_of(SCHEDULES),
        "milestones": "fractions, e.g. 0.3,0.6,0.9 (schedule step)", "warmup_start": "a factor in [0, 1)",
        "epochs": "N", "batch_size": "N", "lr": "x", "momentum": "x", "weight_decay": "x", "warmup_epochs": "x",
        "train_subset": "N|none", "eval_subset": "N|none", "eval_steps": "N (0: once per epoch)",
    }


def parse_milestones(text: str) -> list[float]:
    """``"0.3,0.6,0.9"`` -> [0.3, 0.6, 0.9]: increasing fractions of training in (0, 1)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 < v < 1 for v in values) or values != sorted(set(values)):
        raise UserError(f"milestones must be increasing fractions of training in (0, 1), comma-separated "
                        f"(e.g. 0.3,0.6,0.9), got {text!r}")
    return values


def _check_binarization(config) -> None:
    from estimators.layers import PAD_VALUES, WEIGHT_BALANCES, WEIGHT_CLIPS

    OneOf(_weight_scales()).check("weight_scale", config.weight_scale)
    OneOf(_weight_grads()).check("weight_grad", config.weight_grad)
    OneOf(WEIGHT_BALANCES).check("weight_balance", config.weight_balance)
    OneOf(WEIGHT_CLIPS).check("weight_clip", config.weight_clip)
    OneOf(PAD_VALUES).check("pad_value", config.pad_value)
    OneOf((True, False)).check("binary_weights", config.binary_weights)
    if not config.binary_weights and config.weight_scale == "learnable":
        raise UserError("weight_scale learnable scales binary weights: with binary_weights false it would be a "
                        "parameter nothing uses; choose another weight_scale")
    OneOf(WEIGHT_DECAY_ON).check("weight_decay_on", config.weight_decay_on)
    OneOf(PRECISIONS).check("precision", config.precision)
    OneOf((True, False)).check("channels_last", config.channels_last)
    Range(0, 1, high_open=True).check("warmup_start", config.warmup_start)
    if config.schedule == "step":
        parse_milestones(config.milestones)
    elif config.milestones:
        raise UserError(f"milestones apply to schedule step only; the schedule is {config.schedule!r}")
    if config.init not in INITS and not Path(config.init).expanduser().is_file():
        raise UserError(f"init {config.init!r} is neither {' nor '.join(INITS)} nor a state-dict file that exists")


#: the rules of the RunConfig fields (scope is checked against the task's scopes)
FIELD_RULES: dict[str, Any] = {
    "seed": Range(0, 2**32 - 1, integer=True),  # NumPy seeds are 32-bit
    "epochs": Range(1, integer=True),
    "batch_size": Range(1, integer=True),
    "lr": Range(0, low_open=True),
    "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0),
    "warmup_epochs": Range(0),
    "train_subset": Range(1, integer=True, optional=True),
    "eval_subset": Range(1, integer=True, optional=True),
    "eval_steps": Range(0, integer=True),
    "optimizer": OneOf(OPTIMIZERS),
    "schedule": OneOf(SCHEDULES),
}


def check_values(config, task) -> None:
    """The config's field values, task options and estimator hyperparameters (no I/O)."""
    import estimators

    for name, rule in FIELD_RULES.items():
        rule.check(name, getattr(config, name))
    _check_binarization(config)
    if config.init != "scratch" and not task.supports_init:
        raise UserError(f"task {task.name} does not start from init={config.init!r}: it has its own starting "
                        f"points (see its options); leave init=scratch")
    if config.eval_steps and not task.evaluates_every_steps():
        raise UserError(f"eval_steps {config.eval_steps}: task {task.name} trains with {task.own_loop}; "
                        f"leave eval_steps=0")
    if task.blocks:
        OneOf(tuple(task.blocks)).check(f"block for task {task.name}", config.block)
    elif config.block is not None:
        raise UserError(f"task {task.name} has no block choice; leave block unset (got {config.block!r})")
    OneOf(tuple(task.scope_rules().names())).check(f"scope for task {task.name}", config.scope)
    if config.data_root is not None and not isinstance(config.data_root, str):
        raise UserError(f"data_root must be a folder path (a string), got {config.data_root!r}")
    from bench import options as typed

    unknown = typed.unknown_keys(task.Options, config.options)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for task {task.name}; valid: "
                        f"{', '.join(typed.defaults(task.Options)) or 'none'}")
    typed.check_rules(task.Options, config.options)
    for spec in task.metric_specs(config.dataset):
        try:
            spec.definition
        except ValueError as exc:
            raise UserError(f"task {task.name} reports {spec.key}, which names no registered metric: {exc}") from None
    try:
        estimators.build(config.estimator, **config.estimator_hparams)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def check_device(requested: Optional[str]) -> None:
    """A device this machine has; None (automatic: CUDA when present) always passes."""
    if not requested:
        return
    import torch

    try:
        device = torch.device(requested)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {requested!r}; valid choices: cpu, cuda, cuda:N, mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {requested}: no CUDA GPU is visible on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {requested}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {requested}: MPS is not available on this machine; use --device cpu")


def writable_folder(path: str, what: str) -> str:
    """The folder (created if missing) as an absolute path; UserError when it is a file or this
    user cannot write there."""
    folder = Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what}: {folder} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{what}: cannot write under {folder} ({exc.strerror}); choose another folder") from None
    return str(folder)


def check_runs(configs: Iterable, device: Optional[str] = None, checkpoint_dir: Optional[str] = None) -> Optional[str]:
    """What a batch of built configs will use beyond their values, before any row exists or
    any worker starts; returns the checkpoint folder as an absolute path (None: none)."""
    import torch

    from bench.plugins import get_task
    from bench.precision import check_precision
    from estimators.fused import fused_enabled

    check_device(device)
    try:
        fused_enabled()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    folder = writable_folder(checkpoint_dir, "checkpoint folder") if checkpoint_dir is not None else None
    # the device the runs will get (bench.training.pick_device without its side effects)
    run_device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checked_sources: set[str] = set()
    for config in configs:
        task = get_task(config.task)
        try:
            check_precision(config.precision, run_device)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not task.trains_with_precision() and (config.precision != "fp32" or config.channels_last):
            raise UserError(f"task {task.name} trains with a loop of its own, which does not apply precision "
                            f"or channels_last yet; leave them at precision=fp32 and channels_last=false")
        # init is in the source: each file a sweep starts from is checked before the first run
        source = json.dumps([config.task, config.dataset, config.data_root, config.model, config.options,
                             config.init], sort_keys=True, default=str)
        if source not in checked_sources:  # the data check reads files: once per source
            task.check(config)
            checked_sources.add(source)
    return folder
