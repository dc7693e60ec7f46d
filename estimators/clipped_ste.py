"""Clipped straight-through estimator (the BNN estimator; SURGE's main path).

Paper: Hubara, Courbariaux, Soudry, El-Yaniv, Bengio 2016, "Binarized Neural
Networks", arXiv:1602.02830.

    forward   q(x)  = sign(x)                      (sign(0) = +1)
    backward  dL/dx = g * 1{|x| <= c}              activations
              dL/dW = g                            weights (identity)

Applied to: activations with the clip; weights pass straight through, as in
Bi-Real Net, ReActNet and SURGE's description of STE ("g unchanged for weights").
Hyperparameters: c = 1 (the clip).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from estimators.base import ElementwiseEstimator, check_positive
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("clipped_ste")
@dataclass
class ClippedSTE(ElementwiseEstimator):
    c: float = 1.0

    name = "clipped_ste"
    paper = "Hubara/Courbariaux et al. 2016, arXiv:1602.02830"
    weights_use_identity = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "c")

    def surrogate(self, x: Tensor) -> Tensor:
        return x.clamp(-self.c, self.c)

    @staticmethod
    def derivative(x: Tensor, c: Tensor) -> Tensor:
        return x.abs().le_(c)  # in-place compare keeps the float dtype (bool masks are slow on CPU)

    def constants(self) -> tuple:
        return (self.c,)
