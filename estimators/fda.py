"""Fourier Derivative Approximation (FDA) of FDA-BNN.

Paper: Xu, Han, Li, Liu, Xu, Wang, Tao 2021, "Learning Frequency Domain Approximation
for Binary Neural Networks" (FDA-BNN), NeurIPS 2021, arXiv:2103.00841.

sign is a square wave; its Fourier series truncated at n + 1 terms is the surrogate:

    forward   q(x)  = sign(x)
    surrogate F(x)  = (4/pi) sum_{i=0..n} sin((2i+1) w x) / (2i+1)   for |x| <= 1
    backward  dL/dx = g * (4w/pi) sum_{i=0..n} cos((2i+1) w x)       for |x| <= 1, 0 beyond
    schedule  n = n_start + floor((n_end - n_start) p)

The sum is evaluated in closed form, sum_{i=0..n} cos((2i+1)u) = sin(2(n+1)u) / (2 sin u)
(n + 1 at u = 0), so the backward costs two transcendental ops per element, not n + 1
(valid while w |x| < pi, which w <= 1 guarantees on |x| <= 1).
Applied to: weights and activations. FDA-BNN's noise-adaptation module (an extra
learned branch) is an operator variant and not included.
Hyperparameters: w = 0.1 (as in BiBench), n_start = 9, n_end = 18.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator, check_positive
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("fda")
@dataclass
class FDA(ElementwiseEstimator):
    w: float = 0.1
    n_start: int = 9
    n_end: int = 18

    name = "fda"
    paper = "Xu et al. 2021 (FDA-BNN), arXiv:2103.00841"
    scheduled = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "w")
        if self.w > 1:
            raise ValueError(f"fda: w must be <= 1 (the closed-form sum needs w |x| < pi), got {self.w}")
        if not 0 <= self.n_start <= self.n_end:
            raise ValueError(f"fda: need 0 <= n_start <= n_end, got {self.n_start}, {self.n_end}")

    @property
    def n(self) -> int:
        return self.n_start + math.floor((self.n_end - self.n_start) * self.progress)

    def surrogate(self, x: Tensor) -> Tensor:
        u = self.w * x.clamp(-1, 1)
        total = torch.zeros_like(x)
        for i in range(self.n + 1):
            total = total + torch.sin((2 * i + 1) * u) / (2 * i + 1)
        return 4 / math.pi * total

    @staticmethod
    def derivative(x: Tensor, w: Tensor, twice_terms: Tensor, terms: Tensor, scale: Tensor) -> Tensor:
        # sin(2Tu) / (2 sin u), T = n + 1 terms, u = w x; at u = 0 it is 0/0 = nan, whose
        # limit is T (sin u != 0 elsewhere since |u| <= w < pi inside the clip). scale = 4w/pi.
        u = x * w
        cos_sum = torch.sin(u * twice_terms).div_(torch.sin(u).mul_(2))
        cos_sum = torch.where(cos_sum.isnan(), terms, cos_sum)
        return cos_sum.mul_(x.abs().le_(1)).mul_(scale)

    def constants(self) -> tuple:
        terms = self.n + 1
        return (self.w, 2 * terms, terms, 4 * self.w / math.pi)
