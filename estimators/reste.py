"""Rectified Straight-Through Estimator (ReSTE).

Paper: Wu, Liu, Lin, Wu, Shen 2023, "Estimator Meets Equilibrium Perspective: A
Rectified Straight Through Estimator for Binary Neural Networks Training", ICCV 2023.

    forward   q(x)  = sign(x)
    surrogate F(x)  = sign(x) |x|^(1/o) (linear below |x| = 0.1, constant beyond t)
    backward  dL/dx = g * 0.1^((1-o)/o)              for |x| <= 0.1
                      g * (1/o) |x|^((1-o)/o)        for 0.1 < |x| <= t
                      0                              for |x| > t
    schedule  o = 1 + (o_end - 1) (1 - cos(pi/2 * p))

At o = 1 it is a clipped STE with c = t; as o grows the estimator moves toward the
sign function (less estimating error, more instability) — ReSTE's "equilibrium".
Applied to: weights and activations. Hyperparameters: t = 1.5, o_end = 3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator, check_positive
from estimators.registry import ESTIMATORS

_THRESHOLD = 0.1  # below it the power function's derivative is held constant


@ESTIMATORS.register("reste")
@dataclass
class ReSTE(ElementwiseEstimator):
    t: float = 1.5
    o_end: float = 3.0

    name = "reste"
    paper = "Wu et al. 2023 (ReSTE), ICCV 2023"
    scheduled = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "t")
        if self.t <= _THRESHOLD:
            raise ValueError(f"reste: t must be > {_THRESHOLD}, got {self.t}")
        if self.o_end < 1:
            raise ValueError(f"reste: o_end must be >= 1, got {self.o_end}")

    @property
    def o(self) -> float:
        return 1 + (self.o_end - 1) * (1 - math.cos(math.pi / 2 * self.progress))

    def surrogate(self, x: Tensor) -> Tensor:
        o, a = self.o, x.abs()
        inner = x * _THRESHOLD ** ((1 - o) / o)
        power = torch.sign(x) * a.clamp(max=self.t) ** (1 / o)
        return torch.where(a <= _THRESHOLD, inner, power)

    @staticmethod
    def derivative(x: Tensor, t: Tensor, inv_o: Tensor, one_minus_inv_o: Tensor, exponent: Tensor) -> Tensor:
        # (1/o) max(|x|, 0.1)^((1-o)/o), times o below the threshold where the paper drops 1/o;
        # at o = 1 (p = 0) both factors are exactly 1: a clipped STE with c = t.
        inside = x.abs().le_(t)  # float masks: bool ones are slow on CPU
        factor = x.abs().le_(_THRESHOLD).mul_(one_minus_inv_o).add_(inv_o)
        power = x.abs().clamp_(min=_THRESHOLD).clamp_(max=t).log_().mul_(exponent).exp_()  # 2x faster than pow
        return power.mul_(factor).mul_(inside)

    def constants(self) -> tuple:
        o = self.o
        return (self.t, 1 / o, 1 - 1 / o, (1 - o) / o)
