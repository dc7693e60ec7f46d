"""RunConfig: the one serialisable description of a run, and how the CLI builds it.

Everything that changes a result is a field of RunConfig; its hash identifies the run, so
an identical finished run is skipped. The hash covers every field and option, and the
family's version (a family bumps it when its training changes results), but not the
machine-local values: the ``data_root`` field and the family options declared ``local``
(cache folders; see :mod:`bench.options`), so the same experiment run from another folder
is the same run. Worker counts are not local here: loader worker processes draw the
augmentation's random numbers from their own generators, so they change results.

Fields and options added after runs were stored (``block``, ``weight_grad``, classification's
``val_size``) enter the hash only when they differ from what every earlier run did, so stored
runs keep their hashes.

Precedence when a config is built: the task's preset (with the estimator hyperparameters its
source fixes, e.g. IR-Net's EDE schedule) < explicit flags (--epochs, --seed, --dataset,
--model) < ``--set key=value`` pairs, each parsed by its field's type. A preset alias (``paper``)
is stored as the preset it stands for.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import estimators
from bench import options as typed
from bench.errors import UserError
from bench.plugins import get_task
from bench.validation import check_values

#: the version of the identity rule below; databases written under an older one are rehashed
#: when opened (bench.identity)
IDENTITY_RULE = 2


def _local(default: Any = None) -> Any:
    return dataclasses.field(default=default, metadata={"local": True})


def _added(legacy: Any) -> Any:
    """A field added after runs were stored: a stored config without it loads with ``legacy``
    (what those runs did), and the field enters the hash only when it differs from ``legacy``,
    so every stored run keeps its hash."""
    return dataclasses.field(default=legacy, metadata={"legacy": legacy})


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
    data_root: Optional[str] = _local()
    #: the BNN block around every binarized conv (estimators.blocks.BLOCKS); None for a family
    #: without blocks (GLUE)
    block: Optional[str] = _added(None)
    #: "identity": the weight gradient passes sign straight through for every estimator, so only
    #: the activation estimator differs; "surrogate": each estimator applies its own surrogate
    #: to the latent weights, as in the papers' code
    weight_grad: str = _added("surrogate")
    #: the binarization details the papers differ by (estimators.layers.BinarizationOptions;
    #: README, "Binarization options"): what the latent weight becomes before sign, ...
    weight_balance: str = _added("none")
    #: ... how the weight gradient is confined to [-1, 1] (in the STE path, or W after each update)
    weight_clip: str = _added("none")
    #: ... the value the +-1 activation maps are padded with (0: zero padding)
    pad_value: float = _added(0.0)
    #: False: weights stay real and only activations are binarized (ReActNet's step 1)
    binary_weights: bool = _added(True)
    #: which parameters the weight decay applies to: all, or conv kernels only (Bi-Real, ReActNet)
    weight_decay_on: str = _added("all")
    #: where the weights start: "scratch", "two_step" (from this config's step 1, trained and cached
    #: by the suite) or a state-dict file (a full-precision checkpoint, or a run's kept state)
    init: str = _added("scratch")
    #: the warm-up's first LR factor (it rises linearly to 1): 0 (the default), IR-Net's 0.25
    warmup_start: float = _added(0.0)
    #: schedule "step": the fractions of training after which the LR is multiplied by 0.1
    milestones: str = _added("")
    #: autocast dtype of the training forward: fp32 (none), bf16, fp16 (with a gradient scaler)
    precision: str = _added("fp32")
    #: convolution inputs and weights in channels_last memory format
    channels_last: bool = _added(False)
    #: 0: evaluate once after every epoch; N > 0: also after every N-th optimizer step (counted from
    #: the run's first), the best of all evaluations kept (BiBERT's and BiT's eval_step)
    eval_steps: int = _added(0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def _stored_values(self) -> dict:
        """Every field, less the added ones that keep their legacy value (see :func:`_added`)."""
        legacy = {f.name: f.metadata["legacy"] for f in dataclasses.fields(self) if "legacy" in f.metadata}
        return {k: v for k, v in self.to_dict().items() if k not in legacy or v != legacy[k]}

    def identity(self, task_version: Optional[str] = None) -> dict:
        """The values that make the run what it is: every field and option but the local ones,
        and the family's version (``task_version``: a stored row's; default the current one)."""
        family = get_task(self.task)
        local_options = typed.local_names(family.Options)
        payload = {k: v for k, v in self._stored_values().items() if k not in typed.local_names(RunConfig)}
        payload["options"] = {k: v for k, v in _without_legacy(self.options, family.Options).items()
                              if k not in local_options}
        payload["task_version"] = family.version if task_version is None else str(task_version)
        return payload

    def hash(self, task_version: Optional[str] = None) -> str:
        return _digest(self.identity(task_version))

    def hash_rule1(self) -> str:
        """The hash surge-bench gave this config before identity rule 2 (up to commit 36a2a7c):
        every value but ``data_root``, options under their names of then."""
        family = get_task(self.task)
        renamed = {new: old for old, new in getattr(family.Options, "renamed", {}).items()}
        payload = {k: v for k, v in self._stored_values().items() if k != "data_root"}
        payload["options"] = {renamed.get(k, k): v for k, v in _without_legacy(self.options, family.Options).items()}
        return _digest(payload)

    def cache_folder(self, root, task_version: Optional[str] = None) -> Path:
        """``root/<hash prefix>``: where a family caches what this config trains once (a teacher,
        a pre-trained detector). ``task_version`` pins the version the hash uses, so a family
        version bump that leaves this training alone keeps its cache. A folder made under
        identity rule 1 is moved to the new name."""
        folder = Path(root) / self.hash(task_version)[:16]
        legacy = Path(root) / self.hash_rule1()[:16]
        if not folder.exists() and legacy.is_dir():
            try:
                legacy.rename(folder)
            except OSError:  # another process moved it first
                pass
        return folder

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return cls(**values)


def _without_legacy(options: dict, cls: type) -> dict:
    """``options`` less the added ones that keep the value stored runs had (bench.options.option)."""
    legacy = typed.legacy_values(cls)
    return {k: v for k, v in options.items() if k not in legacy or v != legacy[k]}


def _digest(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


#: RunConfig fields settable with --set (the others have their own flags).
SETTABLE_FIELDS = (
    "block", "scope", "weight_scale", "weight_grad", "weight_balance", "weight_clip", "pad_value", "binary_weights",
    "weight_decay_on", "init", "precision", "channels_last", "epochs", "batch_size", "optimizer", "lr", "momentum",
    "weight_decay", "schedule", "warmup_epochs", "warmup_start", "milestones", "train_subset", "eval_subset",
    "eval_steps",
)


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
    preset = task_obj.resolve_preset(preset)
    model = model or task_obj.preset_model(preset, dataset) or task_obj.default_model(dataset)
    if model not in task_obj.models:
        raise UserError(f"unknown model {model!r} for task {task}; valid choices: {', '.join(task_obj.models)}")

    values = dict(task_obj.preset_values(preset, dataset, model))
    options = {**typed.defaults(task_obj.Options), **values.pop("options", {})}
    if epochs is not None:
        values["epochs"] = epochs
    hparams: dict[str, Any] = dict(values.pop("estimator_hparams", {}).get(estimator, {}))
    estimator_class = estimators.ESTIMATORS.get(estimator)
    estimator_keys = estimators.hparam_names(estimator)
    for pair in sets or []:
        key, raw = typed.split_pair(pair)
        name = key.removeprefix("estimator.")
        if key in SETTABLE_FIELDS:
            values[key] = typed.parse_into(RunConfig, key, raw, flag="--set ")
        elif name in estimator_keys:
            hparams[name] = typed.parse_into(estimator_class, name, raw, flag="--set ")
        elif key in options:
            options[key] = typed.parse_into(task_obj.Options, key, raw, flag="--set ")
        else:
            renamed = getattr(task_obj.Options, "renamed", {})
            if key in renamed:
                raise UserError(f"--set {key}: the option is now called {renamed[key]}")
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

