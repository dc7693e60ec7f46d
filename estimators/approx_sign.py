"""ApproxSign: the piecewise-quadratic estimator of Bi-Real Net.

Paper: Liu, Wu, Luo, Yang, Liu, Cheng 2018, "Bi-Real Net: Enhancing the Performance
of 1-bit CNNs with Improved Representational Capability and Advanced Training
Algorithm", arXiv:1808.00278.

    forward   q(x)  = sign(x)
    surrogate F(x)  = 2x - x|x| for |x| <= 1, sign(x) otherwise
    backward  dL/dx = g * (2 - 2|x|) * 1{|x| <= 1}        activations
              dL/dW = g                                   weights (Bi-Real's
                                                          magnitude-aware weight STE,
                                                          here with the scale detached)

Hyperparameters: none.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from estimators.base import ElementwiseEstimator
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("approx_sign")
@dataclass
class ApproxSign(ElementwiseEstimator):
    name = "approx_sign"
    paper = "Liu et al. 2018 (Bi-Real Net), arXiv:1808.00278"
    weights_use_identity = True

    def surrogate(self, x: Tensor) -> Tensor:
        return torch.where(x.abs() <= 1, 2 * x - x * x.abs(), torch.sign(x))

    @staticmethod
    def derivative(x: Tensor) -> Tensor:
        return (2 - 2 * x.abs()).clamp_min(0)
