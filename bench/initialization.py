"""Where a run's weights start (``RunConfig.init``), applied by the engine right after
``build_model``, to the full-precision model, before the family's ``prepare`` and binarization:

    scratch    the model as ``build_model`` made it (seeded by the run's seed)
    <file>     a state-dict file: a full-precision checkpoint (BiBench starts its binary runs
               from one), or a run's kept state (``results/states/<hash>/epoch_<k>.pt``, the
               binarized model's state dict), or a resume checkpoint (``last.pt``, under "model")
    two_step   ReActNet's two-step recipe (Liu et al. ECCV 2020, ``resnet/1_step1`` and
               ``resnet/2_step2``; PAPERS_READ section 2.2): the run's step 1, binary activations
               with real weights (``Task.step_one``), is trained by the suite, and the run (step 2)
               starts from its final weights

**Reading a file** (:func:`read_state_dict`): a plain state dict, or one nested under
``"state_dict"`` or ``"model"`` (the usual training-script and DDP layouts), with a ``"module."``
prefix on every key (DistributedDataParallel) removed. It is read as weights only
(``torch.load(weights_only=True)``): nothing in it is executed.

**Fitting it to the model** (:func:`load_state_file`): every key of the model must be in the file
with the model's shape (BatchNorm's ``num_batches_tracked`` counter excepted: checkpoints from before
PyTorch 0.4 lack it), and every key of the file must be the model's, except the binarization-only
ones, which are ignored: the entries a binarized layer adds to the conv, linear or embedding it
replaced (SURGE's ``aux_weight``, the learnable weight ``scale``; found by structure, whatever the
name: the deepest module of the model that the key's prefix names is such a layer and the key is
not one of its own), and any key matching the caller's ``ignore`` patterns. Any other mismatch is
a one-line :class:`~bench.errors.UserError` naming the first keys and the fix. The run's record
keeps the file, its sha256 and the ignored keys (counted by name), so a table can cite exactly
what a run started from; the config hash covers the ``init`` value (the path), not the file's
content.

**Two-step caching** (:func:`two_step`): step 1 is trained once per step-1 config, with
``context.private()`` (no curves, no checkpoint: an interrupted step 1 starts again), and cached
in ``<cache>/two_step/<step-1 config hash prefix>/``: ``metrics.json`` (its final scores) and
``config.json`` first, then ``step1.pt`` (its state dict) written atomically, by rank 0 only;
``step1.pt`` being there means step 1 is done. The step-1 config (``Task.step_one``) keeps
everything of the run but ``binary_weights`` (off), ``init`` (scratch), the weight-only
binarization settings (reset: they do not act on real weights) and the family's step-1
adjustments (classification: ``step1_weight_decay`` becomes the weight decay; a distilling run's
step 1 distils from the same teacher). So it keeps the seed: step 1 of seed s is trained with seed
s, and only runs with the same seed share it (each seed stays an independent replicate of the
whole recipe, as the paired statistics assume). It keeps the estimator and its hyperparameters
(step 1 binarizes activations with them: SURGE's ``eta`` acts in step 1 too), the data, the
epochs and the rest of the recipe. Runs that differ only in ``weight_scale``, ``weight_grad``,
``weight_balance`` or a gradient weight clip share one step 1. Step 2 starts from step 1's last
epoch (not its best validation epoch).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from bench import distributed
from bench.checkpoint import CorruptCheckpoint, load_weights_only
from bench.errors import UserError
from bench.training import seed_everything

SCRATCH, TWO_STEP = "scratch", "two_step"
#: the layout a state dict is found under in a training script's file (first match wins)
NESTED_KEYS = ("state_dict", "model")
#: the cache folder of step-1 models, under bench.api.default_cache_dir()
TWO_STEP_DIR = "two_step"
STEP1_WEIGHTS, STEP1_METRICS, STEP1_CONFIG = "step1.pt", "metrics.json", "config.json"
#: model keys a file may lack (BatchNorm's counter, absent from checkpoints of PyTorch < 0.4)
_OPTIONAL_MODEL_KEYS = ("num_batches_tracked",)
_SHOWN = 3  # keys named per kind of mismatch
#: the layers binarization replaces (estimators.patching), whose added entries a file may carry
BINARIZABLE = (nn.Conv2d, nn.Linear, nn.Embedding)


def initialize(task, config, model: nn.Module, context) -> dict[str, Any]:
    """Load the start ``config.init`` names into ``model`` (full precision, built, not yet
    binarized); what the run's record keeps of it (``{"from": "scratch"}`` for scratch).

    After a file or step 1 was loaded, the random state is set to the run's seed again, so what
    follows does not depend on whether step 1 was trained now or found in the cache."""
    if config.init == SCRATCH:
        return {"from": SCRATCH}
    if config.init == TWO_STEP:
        record = two_step(task, config, model, context)
    else:
        record = {"from": "file", **load_state_file(model, Path(config.init).expanduser())}
    seed_everything(config.seed)
    return record


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path, what: str = "init") -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (plain, or nested under ``"state_dict"``/``"model"``), its
    ``"module."`` prefix removed; a one-line UserError for a file that holds none."""
    try:
        content = load_weights_only(path)
    except CorruptCheckpoint as exc:
        raise UserError(f"{what}: {exc}; give a file written by torch.save(model.state_dict(), ...)") from None
    except OSError as exc:
        raise UserError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    while isinstance(content, Mapping) and not _is_state_dict(content):
        key = next((k for k in NESTED_KEYS if k in content), None)
        if key is None:
            break
        content = content[key]
    if not isinstance(content, Mapping) or not content or not _is_state_dict(content):
        found = ", ".join(map(str, list(content)[:_SHOWN])) if isinstance(content, Mapping) else type(content).__name__
        raise UserError(f"{what}: {path} holds no state dict (found {found or 'nothing'}); give a file written by "
                        f"torch.save(model.state_dict(), ...), or one with the state dict under "
                        f"{' or '.join(map(repr, NESTED_KEYS))}")
    state = {str(k): v for k, v in content.items()}
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _is_state_dict(content: Mapping) -> bool:
    return bool(content) and all(isinstance(v, torch.Tensor) for v in content.values())


def binarization_only(key: str, modules: Mapping[str, nn.Module], ignore: Iterable[str] = ()) -> bool:
    """Whether a file's ``key`` that the full-precision model lacks is one a binarized layer adds:
    the deepest module of ``modules`` (the model's ``named_modules()``) that a prefix of the key
    names is a conv, linear or embedding layer (which binarization replaces), or the key matches
    one of the ``ignore`` patterns (fnmatch)."""
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
        return True
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        module = modules.get(".".join(parts[:end]))
        if module is not None:
            return isinstance(module, BINARIZABLE)
    return False


def load_state_file(model: nn.Module, path: Path, ignore: Iterable[str] = (), what: str = "init") -> dict[str, Any]:
    """Load the state dict in ``path`` into ``model`` (see the module doc for what must fit);
    returns ``{"file", "sha256", "ignored"}`` for the run's record (``ignored``: the number of
    binarization-only keys left out, by name: ``{"aux_weight": 18}``)."""
    path = Path(path)
    state = read_state_dict(path, what)
    own = model.state_dict()
    modules = dict(model.named_modules())
    extra = [k for k in state if k not in own]
    ignored = [k for k in extra if binarization_only(k, modules, ignore)]
    unexpected = [k for k in extra if k not in set(ignored)]
    missing = [k for k in own if k not in state and k.rsplit(".", 1)[-1] not in _OPTIONAL_MODEL_KEYS]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        faults = []
        if missing:
            faults.append(f"{len(missing)} of the model's keys missing ({_names(missing)})")
        if unexpected:
            faults.append(f"{len(unexpected)} keys the model has not ({_names(unexpected)})")
        if shapes:
            faults.append(f"{len(shapes)} shapes differ (" + ", ".join(
                f"{k}: file {list(state[k].shape)}, model {list(own[k].shape)}" for k in shapes[:_SHOWN])
                + (", ..." if len(shapes) > _SHOWN else "") + ")")
        raise UserError(f"{what}: {path} does not fit the {type(model).__name__} model: {'; '.join(faults)}; give a "
                        f"state dict of the same model, block and number of classes (a full-precision checkpoint "
                        f"or a run's kept state, results/states/<hash>/epoch_<k>.pt)")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    counts: dict[str, int] = {}
    for key in ignored:
        counts[key.rsplit(".", 1)[-1]] = counts.get(key.rsplit(".", 1)[-1], 0) + 1
    return {"file": str(path), "sha256": sha256_of(path), "ignored": counts}


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")


def step_one_config(task, config):
    """The step-1 config of ``config`` (``task.step_one``), checked: real weights, from scratch."""
    step1 = task.step_one(config)
    if step1.binary_weights or step1.init != SCRATCH:
        raise ValueError(f"{type(task).__name__}.step_one must return binary_weights=False and init='scratch', "
                         f"got {step1.binary_weights!r} and {step1.init!r}")
    return step1


def step_one_folder(task, config) -> Path:
    """Where the step 1 of ``config`` is cached: ``<cache>/two_step/<step-1 config hash prefix>``."""
    from bench.api import default_cache_dir

    return step_one_config(task, config).cache_folder(default_cache_dir() / TWO_STEP_DIR)


def two_step(task, config, model: nn.Module, context) -> dict[str, Any]:
    """Load the final weights of ``config``'s step 1 into ``model``, training step 1 first unless
    it is cached; the record: the cache key, step 1's final scores, the file and its sha256."""
    from bench.engine import train_task

    step1 = step_one_config(task, config)
    folder = step_one_folder(task, config)
    weights, metrics_file = folder / STEP1_WEIGHTS, folder / STEP1_METRICS
    if not distributed.broadcast(weights.is_file()):
        label = f"step 1 {config.estimator} {config.dataset}"
        trained, result = train_task(task, step1, context.private(), label=label)
        if distributed.is_main():
            folder.mkdir(parents=True, exist_ok=True)
            _write_text(metrics_file, json.dumps(result.metrics, sort_keys=True))
            _write_text(folder / STEP1_CONFIG, json.dumps(
                {k: v for k, v in step1.to_dict().items() if k != "data_root"}, sort_keys=True, default=str))
            partial = folder / f"{STEP1_WEIGHTS}.tmp{os.getpid()}"
            torch.save({k: v.detach().cpu() for k, v in trained.state_dict().items()}, partial)
            partial.replace(weights)
        distributed.barrier()
        del trained
    loaded = load_state_file(model, weights, what="init two_step (step 1)")
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return {"from": TWO_STEP, "two_step": folder.name, "step1_metrics": metrics, **loaded}


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.tmp{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
