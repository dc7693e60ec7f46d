"""Gradient estimators for binary neural networks, and the layers they drive.

Public API::

    estimators.available()                      -> ["approx_sign", "clipped_ste", ...]
    estimators.build("surge", eta=0.1)          -> an estimator object
    estimators.binarize_model(model, est, scope="standard")  -> BinarizationRecord
    estimators.set_progress(model, p)           # p in [0, 1], for scheduled estimators
    estimators.strip_auxiliary(model)           # drop SURGE's aux params for export

Each estimator lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from estimators.base import ElementwiseEstimator, Estimator, binary_sign, sign_with_surrogate_grad
from estimators.layers import BinaryConv2d, BinaryEmbedding, BinaryLayer, BinaryLinear, binary_layers
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
    "binary_layers", "SCOPES", "ESTIMATORS",
]


def available() -> list[str]:
    """Names of all registered estimators, sorted."""
    return ESTIMATORS.names()


def hparam_names(name: str) -> list[str]:
    """The hyperparameters an estimator accepts."""
    return [f.name for f in dataclasses.fields(ESTIMATORS.get(name)) if f.init]


def _coerce(estimator: str, field: dataclasses.Field, value: Any, hint: Any) -> Any:
    """Turn a command-line string into the field's type (floats, ints, bools, None)."""
    if not isinstance(value, str):
        return value
    types = [t for t in typing.get_args(hint)] or [hint]
    if value.lower() in ("none", "null") and type(None) in types:
        return None
    for kind in (bool, int, float, str):
        if kind not in types:
            continue
        if kind is bool:
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            continue
        try:
            return kind(value)
        except ValueError:
            continue
    raise ValueError(f"{estimator}: cannot read {field.name}={value!r} as {hint}")


def build(name: str, **hparams: Any) -> Estimator:
    """Build a registered estimator; unknown names and hyperparameters raise ValueError."""
    cls = ESTIMATORS.get(name)
    valid = hparam_names(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        choices = ", ".join(valid) if valid else "none"
        raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)} for estimator {name!r}; valid: {choices}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: _coerce(name, fields[k], v, hints[k]) for k, v in hparams.items()}
    return cls(**values)
