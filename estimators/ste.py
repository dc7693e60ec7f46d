"""Straight-through estimator (STE).

Paper: Bengio, Leonard, Courville 2013, "Estimating or Propagating Gradients Through
Stochastic Neurons for Conditional Computation", arXiv:1308.3432.

    forward   q(x)  = sign(x)            (sign(0) = +1)
    backward  dL/dx = g                  (identity: d sign/dx is taken as 1 everywhere)

Applied to: weights and activations alike. Hyperparameters: none.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from estimators.base import ElementwiseEstimator
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("ste")
@dataclass
class STE(ElementwiseEstimator):
    name = "ste"
    paper = "Bengio et al. 2013, arXiv:1308.3432"

    def surrogate(self, x: Tensor) -> Tensor:
        return x

    # derivative None: the identity (nothing saved for the backward, no multiplication by ones)
