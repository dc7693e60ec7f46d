"""Gradient estimators for binary neural networks, and the layers they drive.

Public API::

    estimators.available()                      -> ["approx_sign", "clipped_ste", ...]
    estimators.build("surge", eta=0.1)          -> an estimator object
    estimators.binarize_model(model, est, scope="standard")  -> BinarizationRecord
    estimators.set_progress(model, p)           # p in [0, 1], for scheduled estimators
    estimators.strip_auxiliary(model)           # drop SURGE's aux params for export
    estimators.clip_latent_weights(model)       # weight_clip="update": after each optimizer step

Each estimator lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from estimators.base import ElementwiseEstimator, Estimator, binary_sign, sign_with_surrogate_grad
from estimators.layers import (
    BinarizationOptions, BinaryConv2d, BinaryEmbedding, BinaryLayer, BinaryLinear, binary_layers, clip_latent_weights,
)
from estimators.patching import (
    SCOPES,
    BinarizationRecord,
    auxiliary_lambdas,
    mean_auxiliary_lambda,
    binarize_model,
    set_progress,
    strip_auxiliary,
)
from estimators.registry import ESTIMATORS

# Importing the modules registers the estimators.
from estimators import approx_sign, clipped_ste, dsq, ede, fda, fp32, reste, ste, swish_sign  # noqa: E402,F401
from estimators import surge  # noqa: E402,F401  (last: it builds its base through build())

__all__ = [
    "available", "build", "hparam_names", "binarize_model", "set_progress", "strip_auxiliary",
    "auxiliary_lambdas", "mean_auxiliary_lambda", "BinarizationRecord", "BinaryConv2d", "BinaryLinear", "BinaryEmbedding", "BinaryLayer",
    "Estimator", "ElementwiseEstimator", "binary_sign", "sign_with_surrogate_grad",
    "binary_layers", "SCOPES", "ESTIMATORS", "BinarizationOptions", "clip_latent_weights",
]


def available() -> list[str]:
    """Names of all registered estimators, sorted."""
    return ESTIMATORS.names()


def hparam_names(name: str) -> list[str]:
    """The hyperparameters an estimator accepts."""
    return [f.name for f in dataclasses.fields(ESTIMATORS.get(name)) if f.init]


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` has the field type ``hint`` (an int is a float; bools are only bools)."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    return any(isinstance(value, t) for t in allowed if isinstance(t, type) and t not in (int, bool))


def build(name: str, **hparams: Any) -> Estimator:
    """Build a registered estimator from typed values; unknown names and hyperparameters, and
    values of the wrong type, raise ValueError."""
    cls = ESTIMATORS.get(name)
    valid = hparam_names(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        choices = ", ".join(valid) if valid else "none"
        raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)} for estimator {name!r}; valid: {choices}")
    hints = typing.get_type_hints(cls)
    wrong = [f"{k}={v!r} (expected {hints[k]})" for k, v in hparams.items() if not _accepts(hints[k], v)]
    if wrong:
        raise ValueError(f"estimator {name!r}: {', '.join(wrong)}; command-line text is parsed by bench.options")
    return cls(**{k: float(v) if float in (typing.get_args(hints[k]) or (hints[k],)) and type(v) is int else v
                   for k, v in hparams.items()})
