"""RunConfig: the one serialisable description of a run, and how the CLI builds it.

Everything that changes a result is a field of RunConfig; its hash identifies the
run, so an identical finished run is skipped. Paths that only say where data lives
on this machine (``data_root``) are kept out of the hash.

Precedence when a config is built: the task's preset < explicit flags (--epochs,
--seed, --dataset, --model) < ``--set key=value`` pairs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Optional

import estimators
from bench.errors import UserError
from bench.task_api import TASKS, Task, load_task_plugins
from bench.validation import check_values

HASH_EXCLUDED = ("data_root",)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task: str
    dataset: str
    model: str
    estimator: str
    estimator_hparams: dict
    scope: str
    weight_scale: str
    preset: str
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    warmup_epochs: float
    train_subset: Optional[int]
    eval_subset: Optional[int]
    options: dict
    data_root: Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        payload = {k: v for k, v in self.to_dict().items() if k not in HASH_EXCLUDED}
        canonical = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return cls(**values)


#: RunConfig fields settable with --set (the others have their own flags).
SETTABLE_FIELDS = (
    "scope", "weight_scale", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "schedule", "warmup_epochs", "train_subset", "eval_subset",
)


def _field_types() -> dict[str, Any]:
    import typing

    return typing.get_type_hints(RunConfig)


def _coerce_field(key: str, raw: str) -> Any:
    hint = _field_types()[key]
    text = raw.strip()
    if text.lower() in ("none", "null"):
        if "Optional" in str(hint) or "None" in str(hint):
            return None
        raise UserError(f"--set {key}=none: {key} cannot be none")
    target = next((t for t in (int, float, str) if t is hint or t in getattr(hint, "__args__", ())), str)
    try:
        return float(text) if target is float else target(text)
    except ValueError:
        raise UserError(f"--set {key}={raw!r}: expected a{'n int' if target is int else ' ' + target.__name__}") from None


def _coerce_option(key: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise UserError(f"--set {key}={raw!r}: expected true or false")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(raw)
        except ValueError:
            raise UserError(f"--set {key}={raw!r}: expected a {type(default).__name__}") from None
    if default is None and raw.lower() in ("none", "null"):
        return None
    return raw


def parse_set_pairs(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        parsed[key.strip()] = value
    return parsed


def get_task(name: str) -> Task:
    load_task_plugins()
    try:
        return TASKS.get(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def build_config(
    task: str,
    estimator: str,
    dataset: Optional[str] = None,
    model: Optional[str] = None,
    preset: str = "quick",
    seed: int = 0,
    epochs: Optional[int] = None,
    data_root: Optional[str] = None,
    sets: Optional[list[str]] = None,
) -> RunConfig:
    """Validate every choice and build the RunConfig; UserError names the valid choices."""
    task_obj = get_task(task)
    if estimator not in estimators.available():
        raise UserError(f"unknown estimator {estimator!r}; valid choices: {', '.join(estimators.available())}")
    dataset = dataset or task_obj.default_dataset
    if dataset not in task_obj.datasets:
        raise UserError(f"unknown dataset {dataset!r} for task {task}; valid choices: {', '.join(task_obj.datasets)}")
    if preset not in task_obj.presets:
        raise UserError(f"unknown preset {preset!r}; valid choices: {', '.join(task_obj.presets)}")
    model = model or task_obj.default_model(dataset)
    if model not in task_obj.models:
        raise UserError(f"unknown model {model!r} for task {task}; valid choices: {', '.join(task_obj.models)}")

    values = dict(task_obj.preset_values(preset, dataset, model))
    options = {**task_obj.options, **values.pop("options", {})}
    if epochs is not None:
        values["epochs"] = epochs
    hparams: dict[str, Any] = {}
    estimator_keys = estimators.hparam_names(estimator)
    for key, raw in parse_set_pairs(sets or []).items():
        name = key.removeprefix("estimator.")
        if key in SETTABLE_FIELDS:
            values[key] = _coerce_field(key, raw)
        elif name in estimator_keys:
            hparams[name] = raw
        elif key in options:
            options[key] = _coerce_option(key, raw, task_obj.options.get(key))
        else:
            valid = sorted(set(SETTABLE_FIELDS) | set(options) | set(estimator_keys))
            raise UserError(f"unknown --set key {key!r} for task {task} and estimator {estimator}; "
                            f"valid keys: {', '.join(valid)}")
    try:
        built = estimators.build(estimator, **hparams)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    config = RunConfig(
        task=task, dataset=dataset, model=model, estimator=estimator,
        estimator_hparams=built.hparams(), preset=preset, seed=int(seed), options=options,
        data_root=data_root, **values,
    )
    check_values(config, task_obj)
    return config
