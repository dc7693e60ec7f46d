"""BiT's elastic binarizer: a learnable scale alpha (and optionally a learnable bias) around sign.

Paper: Liu, Oguz, Pappu, Xiao, Yih, Mehdad, Oguz 2022, "BiT: Robustly Binarized Multi-distilled
Transformer", NeurIPS 2022, arXiv:2205.13016; code ``transformer/utils_quant.py``
(``ElasticQuantBinarizerSigned``, ``ElasticQuantBinarizerUnsigned``, ``AlphaInit``,
``LearnableBias``) of facebookresearch/bit.

With x' = x + b (b: the learnable bias, per feature, zero at start; BiT's ``move``), q = x' / alpha:

    signed      forward  alpha * sign(x')                       in {-alpha, +alpha}
                backward dx = g * sign'(q)                       BiT: 1{-1 <= q <= 1}
                         dalpha = s * sum(g * sign(x'))          BiT's 1-bit rule (no -q term)
    unsigned    forward  alpha * (sign(2q - 1) + 1) / 2          in {0, alpha}: 1 where q >= 1/2
                backward dx = g * sign'(2q - 1)                  BiT: 1{0 <= q <= 1}
                         dalpha = s * sum(g * (step - q sign'(2q - 1)))
                                                                 BiT: 1 above, round(q) - q between

where g is the gradient reaching the binarized tensor, s = 1 / sqrt(numel(x)) is LSQ's gradient
scale (Esser et al., ICLR 2020, arXiv:1902.08153) and sign' is the estimator's surrogate
derivative: with the clipped STE both lines are BiT's backward exactly; other estimators put their
own surrogate at the same point. alpha starts at 1 and is set on the first training forward to
2 mean|x'| (signed) or 4 mean|x'| (unsigned) (``AlphaInit.initialize_wrapper``; in a distributed
run, the mean over the processes of that); it is kept above 1e-5.

The binarized tensor is ``scale * sign(u) + offset`` with u = q (signed) or 2q - 1 (unsigned):
:meth:`ElasticBinarizer.affine` returns (u, scale, offset), so a layer-level estimator (SURGE) can
run its op on sign(u) and fold scale and offset into the weight and the bias.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

_ALPHA_FLOOR = 1e-5
SignFn = Callable[[Tensor], Tensor]


def _scaled_gradient(value: Tensor, scale: float) -> Tensor:
    """``value`` in the forward; its gradient multiplied by ``scale`` in the backward."""
    return (value - value * scale).detach() + value * scale


class ElasticBinarizer(nn.Module):
    """BiT's elastic binarizer (module docstring); ``features`` > 0 adds the learnable bias."""

    def __init__(self, signed: bool, features: int = 0) -> None:
        super().__init__()
        self.signed = signed
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.move: Optional[nn.Parameter] = nn.Parameter(torch.zeros(features)) if features else None
        self._ready = False  # whether ``initialized`` was seen set (a Python flag: no device read a step)

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        """alpha from the first training batch; averaged over the processes of a distributed run, so
        every replica starts from the same scale (DDP syncs parameters only when it wraps the model)."""
        value = (2.0 if self.signed else 4.0) * x.detach().abs().mean().to(self.alpha.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(value)
            value /= torch.distributed.get_world_size()
        self.alpha.copy_(value)
        self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return f"signed={self.signed}, bias={self.move is not None}"

    def _shifted(self, x: Tensor) -> Tensor:
        return x if self.move is None else x + self.move

    def _alpha(self, x: Tensor) -> Tensor:
        if not self._ready and self.training and torch.is_grad_enabled():
            if not bool(self.initialized):  # the buffer is read until it is set: once, not every step
                self._initialize(x)
            self._ready = True
        return _scaled_gradient(self.alpha.clamp(min=_ALPHA_FLOOR), 1.0 / math.sqrt(x.numel()))

    def affine(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        """(u, scale, offset): the binarized tensor is ``scale * sign(u) + offset``."""
        x = self._shifted(x)
        alpha = self._alpha(x)
        if self.signed:  # alpha detached inside: BiT's 1-bit alpha gradient has no -q term
            return x / alpha.detach(), alpha, 0.0
        half = alpha / 2
        return x / half - 1, half, half

    def forward(self, x: Tensor, sign: SignFn) -> Tensor:
        """The binarized tensor, with ``sign`` the estimator's sign (its surrogate backward)."""
        u, scale, offset = self.affine(x)
        return scale * sign(u) + offset
