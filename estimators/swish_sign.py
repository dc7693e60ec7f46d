"""SignSwish: the swish-shaped estimator of BNN+.

Paper: Darabi, Belbahri, Courbariaux, Partovi Nia 2018, "BNN+: Improved Binary
Network Training", arXiv:1812.11800.

    forward   q(x)  = sign(x)
    surrogate F(x)  = 2 sigma(beta x) (1 + beta x (1 - sigma(beta x))) - 1
    backward  dL/dx = g * beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))

Applied to: weights and activations (BNN+ uses SignSwish for both).
Hyperparameters: beta = 5 (BNN+'s default).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator, check_positive
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("swish_sign")
@dataclass
class SwishSign(ElementwiseEstimator):
    beta: float = 5.0

    name = "swish_sign"
    paper = "Darabi et al. 2018 (BNN+), arXiv:1812.11800"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "beta")

    def surrogate(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.beta * x)
        return 2 * s * (1 + self.beta * x * (1 - s)) - 1

    @staticmethod
    def derivative(x: Tensor, bound: Tensor, minus_bound: Tensor, half_beta: Tensor, minus_beta: Tensor) -> Tensor:
        # The same function with 1 / (1 + cosh z) = (1 - tanh(z/2)^2) / 2, h = tanh(beta x / 2):
        #   (beta / 2) (1 - h^2) (2 - beta x h)
        # no cosh overflow in fp16, and fewer passes. Beyond |beta x| = 40 the gradient is
        # below 1e-15, so clamping there changes nothing but avoids 0 * inf.
        xc = x.clamp(minus_bound, bound)
        h = torch.tanh(xc * half_beta)
        one_minus_h2 = torch.addcmul(h.new_ones(()), h, h, value=-1)
        shape = torch.addcmul(h.new_full((), 2.0), xc.mul(minus_beta), h)
        return one_minus_h2.mul_(shape).mul_(half_beta)

    def constants(self) -> tuple:
        return (40 / self.beta, -40 / self.beta, self.beta / 2, -self.beta)
