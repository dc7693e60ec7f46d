"""Differentiable Soft Quantization (DSQ), the tanh soft quantizer, at 1 bit.

Paper: Gong, Liu, Jiang, Li, Hu, Lin, Yu, Yan 2019, "Differentiable Soft
Quantization: Bridging Full-Precision and Low-Bit Neural Networks", arXiv:1908.05033.

At 1 bit on the clip range [-1, 1] DSQ has one interval (width Delta = 2, centre 0):

    forward   q(x)  = sign(x)                   (DSQ keeps the forward quantized)
    surrogate F(x)  = s tanh(k x) for |x| <= 1, sign(x) beyond
    backward  dL/dx = g * s k (1 - tanh(k x)^2) * 1{|x| <= 1}
    where     k = log(2/alpha - 1) / Delta,  s = 1 / tanh(k Delta / 2)

alpha in (0, 1) is DSQ's characteristic variable (the temperature: smaller alpha,
sharper tanh). DSQ learns alpha; here it is fixed at DSQ's initial value so the
estimator changes only the gradient (a learned alpha is an operator variant).
Applied to: weights and activations. Hyperparameters: alpha = 0.2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator
from estimators.registry import ESTIMATORS

_INTERVAL = 2.0  # [-1, 1] holds one quantization interval at 1 bit


@ESTIMATORS.register("dsq")
@dataclass
class DSQ(ElementwiseEstimator):
    alpha: float = 0.2

    name = "dsq"
    paper = "Gong et al. 2019 (DSQ), arXiv:1908.05033"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha < 1:
            raise ValueError(f"dsq: alpha must be in (0, 1), got {self.alpha}")

    @property
    def k(self) -> float:
        return math.log(2 / self.alpha - 1) / _INTERVAL

    @property
    def s(self) -> float:
        return 1 / math.tanh(self.k * _INTERVAL / 2)

    def surrogate(self, x: Tensor) -> Tensor:
        return torch.where(x.abs() <= 1, self.s * torch.tanh(self.k * x), torch.sign(x))

    @staticmethod
    def derivative(x: Tensor, k: Tensor, sk: Tensor, minus_sk: Tensor) -> Tensor:
        tanh = torch.tanh(x * k)
        return torch.addcmul(sk, tanh.mul(minus_sk), tanh).mul_(x.abs().le_(1))

    def constants(self) -> tuple:
        sk = self.s * self.k
        return (self.k, sk, -sk)
