"""The full-precision reference: no binarization.

    forward   y = op(x, W)     backward: ordinary autograd

binarize_model patches nothing for it, so the model, its parameter count and its
speed are exactly the unbinarized network's; the scope is still recorded so the
reference row says which layers *would* have been binarized.
"""
from __future__ import annotations

from dataclasses import dataclass

from estimators.base import Estimator
from estimators.registry import ESTIMATORS


@ESTIMATORS.register("fp32")
@dataclass
class FP32(Estimator):
    name = "fp32"
    paper = "full-precision reference"
    binarizes = False
