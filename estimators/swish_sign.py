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

    def activation_grad(self, x: Tensor) -> Tensor:
        # Same function in the sigmoid form, 2 beta s (1 - s) (2 + beta x (1 - 2 s)) with
        # s = sigma(beta x): no cosh overflow in fp16, and cheaper. Beyond |beta x| = 40 the
        # gradient is below 1e-15, so clamping there changes nothing but avoids 0 * inf.
        bx = (x * self.beta).clamp_(-40, 40)
        s = torch.sigmoid(bx)
        shape = s.mul(-2).add_(1).mul_(bx).add_(2)       # 2 + beta x (1 - 2 s)
        return s.sub_(s * s).mul_(shape).mul_(2 * self.beta)  # 2 beta s (1 - s) * shape
