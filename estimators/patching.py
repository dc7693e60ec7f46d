"""Model patching: swap nn.Conv2d / nn.Linear for binarized layers, in place.

A *scope* names which of a model's conv/linear layers stay full precision:

    all          binarize every plain nn.Conv2d, nn.Linear and nn.Embedding (weights only)
    standard     the BNN convention: keep the first conv, the last linear (classifier),
                 downsample/shortcut convs and embeddings full precision
    first_last   keep only the first conv and the last linear (and embeddings) full precision

``exclude`` adds fnmatch patterns of qualified module names to keep full precision
(e.g. ``"bert.pooler.*"``). The returned :class:`BinarizationRecord` lists every
layer with its fate and is stored with every result.
"""
from __future__ import annotations

import dataclasses
from fnmatch import fnmatch
from typing import Callable, Iterable, Optional

from torch import nn

from estimators.registry import Registry
from estimators.base import Estimator
from estimators.layers import (
    BinarizationOptions, BinaryConv2d, BinaryEmbedding, BinaryLayer, BinaryLinear, binary_layers,
)

SCOPES: Registry[Callable[[list[tuple[str, nn.Module]]], dict[str, str]]] = Registry("scope")
_BINARY_CLASS = {nn.Conv2d: BinaryConv2d, nn.Linear: BinaryLinear, nn.Embedding: BinaryEmbedding}
_SHORTCUT_WORDS = ("downsample", "shortcut")


@dataclasses.dataclass
class BinarizationRecord:
    """What binarize_model did: which layers are binary and why the others are not."""

    estimator: str
    hparams: dict
    scope: str
    weight_scale: str
    weight_grad: str
    exclude: list[str]
    binarized: list[str]
    full_precision: dict[str, str]  # qualified name -> reason
    #: the other binarization options (weight_balance, weight_clip, pad_value, binary_weights)
    options: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _first_conv_last_linear(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
    keep: dict[str, str] = {name: "embedding" for name, m in candidates if isinstance(m, nn.Embedding)}
    convs = [name for name, m in candidates if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in candidates if isinstance(m, nn.Linear)]
    if convs:
        keep[convs[0]] = "first conv"
    if linears:
        keep[linears[-1]] = "last linear (classifier)"
    return keep


@SCOPES.register("all")
def _scope_all(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
    return {}


@SCOPES.register("first_last")
def _scope_first_last(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
    return _first_conv_last_linear(candidates)


@SCOPES.register("standard")
def _scope_standard(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
    keep = _first_conv_last_linear(candidates)
    for name, _ in candidates:
        parts = name.lower().split(".")
        if any(word in part for part in parts for word in _SHORTCUT_WORDS):
            keep.setdefault(name, "downsample shortcut")
        elif any("embed" in part for part in parts):
            keep.setdefault(name, "embedding")
    return keep


def _base_name(module: nn.Module) -> str:
    return next(base.__name__ for base in _BINARY_CLASS if isinstance(module, base))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def binarize_model(
    model: nn.Module,
    estimator: Estimator,
    scope: str = "standard",
    exclude: Iterable[str] = (),
    weight_scale: str = "channel",
    scopes: Registry = SCOPES,
    weight_grad: str = "surrogate",
    **options,
) -> BinarizationRecord:
    """Replace the model's conv/linear layers in scope by binarized ones, in place.

    ``scopes`` is the registry the scope name is looked up in: a task family with its own
    notion of scope (detection's ``backbone``) passes a registry of the same kind of rules.
    ``weight_scale``, ``weight_grad`` and ``options`` (``weight_balance``, ``weight_clip``,
    ``pad_value``, ``binary_weights``) are the layers' :class:`~estimators.layers.BinarizationOptions`;
    ``weight_grad="identity"`` lets every layer's weight gradient pass sign straight through,
    whatever the estimator's surrogate.
    """
    if not isinstance(estimator, Estimator):
        raise ValueError(f"binarize_model needs an estimator object from estimators.build(), got {estimator!r}")
    rule = scopes.get(scope)
    layer_options = BinarizationOptions(weight_scale=weight_scale, weight_grad=weight_grad, **options)
    if binary_layers(model):
        raise ValueError("model is already binarized; build a fresh model to binarize it again")
    exclude = list(exclude)
    candidates = [(n, m) for n, m in model.named_modules() if type(m) in _BINARY_CLASS]
    keep = rule(candidates)
    unpatchable = {
        n: f"{type(m).__name__} is a subclass of {_base_name(m)}: not patched"
        for n, m in model.named_modules()
        if isinstance(m, tuple(_BINARY_CLASS)) and type(m) not in _BINARY_CLASS
    }
    for name, _ in candidates:
        if name not in keep and any(fnmatch(name, pattern) for pattern in exclude):
            keep[name] = "excluded by pattern"
    chosen = [(n, m) for n, m in candidates if n not in keep]
    if not estimator.binarizes:
        keep.update({n: "fp32 estimator (scope: would be binarized)" for n, _ in chosen})
        chosen = []

    replaced: dict[int, BinaryLayer] = {}
    for _, module in chosen:
        if id(module) not in replaced:
            replaced[id(module)] = _BINARY_CLASS[type(module)].from_module(
                module, estimator, **dataclasses.asdict(layer_options))
    estimator.attach(list(replaced.values()))  # may reject a layer: the model is still untouched
    for name, module in chosen:
        _set_submodule(model, name, replaced[id(module)])

    return BinarizationRecord(
        estimator=estimator.name,
        hparams=estimator.hparams(),
        scope=scope,
        weight_scale=weight_scale,
        weight_grad=weight_grad,
        exclude=exclude,
        options={k: v for k, v in dataclasses.asdict(layer_options).items()
                 if k not in ("weight_scale", "weight_grad")},
        binarized=[n for n, _ in chosen],
        full_precision={**{n: keep[n] for n, _ in candidates if n in keep}, **unpatchable},
    )


def _estimators_of(model: nn.Module) -> list[Estimator]:
    unique: dict[int, Estimator] = {}
    for _, layer in binary_layers(model):
        unique.setdefault(id(layer.estimator), layer.estimator)
    return list(unique.values())


def set_progress(model: nn.Module, p: float) -> None:
    """Tell every estimator in the model the training progress p in [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"progress p must be in [0, 1], got {p}")
    for estimator in _estimators_of(model):
        estimator.set_progress(p)
    for _, layer in binary_layers(model):
        layer.progress = float(p)


def strip_auxiliary(model: nn.Module) -> int:
    """Remove SURGE's auxiliary parameters (for export); returns how many were removed.

    The stripped model is a pure BNN with outputs identical to the trained one in eval.
    """
    removed = 0
    for _, layer in binary_layers(model):
        if getattr(layer, "aux_weight", None) is not None:
            del layer.aux_weight
            removed += 1
        if getattr(layer, "dpgc", False):
            layer.dpgc = False
            layer.aux_weight = None
    return removed


def mean_auxiliary_lambda(model: nn.Module) -> Optional[float]:
    """The mean of :func:`auxiliary_lambdas` over the layers (None without SURGE layers), for curves."""
    lambdas = auxiliary_lambdas(model)
    return sum(lambdas.values()) / len(lambdas) if lambdas else None


def auxiliary_lambdas(model: nn.Module) -> dict[str, float]:
    """Last step's AGS lambda per SURGE layer (for logging); empty for other estimators."""
    return {
        name: float(layer.last_lambda)
        for name, layer in binary_layers(model)
        if getattr(layer, "last_lambda", None) is not None
    }
