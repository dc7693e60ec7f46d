"""Error Decay Estimator (EDE) of IR-Net.

Paper: Qin, Gong, Liu, Bai, Song, Yu, Yan 2020, "Forward and Backward Information
Retention for Accurate Binary Neural Networks" (IR-Net), arXiv:1909.10788.

    forward   q(x)  = sign(x)
    surrogate F(x)  = k tanh(t x)
    backward  dL/dx = g * k t (1 - tanh(t x)^2)
    schedule  t = t_min * 10^(p log10(t_max / t_min)),   k = max(1/t, 1)

p is the training progress in [0, 1] (IR-Net indexes it by epoch: p = epoch / epochs).
Early (t small, k = 1/t) the gradient is an identity-like STE; late (t large, k = 1)
it approaches the true derivative of sign. Applied to: weights and activations.
Libra-PB (IR-Net's weight standardisation) is an operator variant and not part of EDE.
Hyperparameters: t_min = 0.1, t_max = 10.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator, check_positive
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("ede")
@dataclass
class EDE(ElementwiseEstimator):
    t_min: float = 0.1
    t_max: float = 10.0

    name = "ede"
    paper = "Qin et al. 2020 (IR-Net), arXiv:1909.10788"
    scheduled = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "t_min", "t_max")
        if self.t_max < self.t_min:
            raise ValueError(f"ede: t_max must be >= t_min, got {self.t_max} < {self.t_min}")

    @property
    def t(self) -> float:
        return self.t_min * 10 ** (self.progress * math.log10(self.t_max / self.t_min))

    @property
    def k(self) -> float:
        return max(1.0 / self.t, 1.0)

    def surrogate(self, x: Tensor) -> Tensor:
        return self.k * torch.tanh(self.t * x)

    @staticmethod
    def derivative(x: Tensor, t: Tensor, kt: Tensor, minus_kt: Tensor) -> Tensor:
        tanh = torch.tanh(x * t)
        return torch.addcmul(kt, tanh.mul(minus_kt), tanh)  # kt - kt tanh^2

    def constants(self) -> tuple:
        kt = self.k * self.t
        return (self.t, kt, -kt)
