"""What a BNN block puts around its binarized convs: the three block designs of the
estimators' papers, and the pieces they are built from (models in ``tasks/`` use them).

    bireal    sign applied to the residual stream itself, BN(conv(x)) + x, with no
              activation anywhere (Bi-Real Net, Liu et al. ECCV 2018, arXiv:1808.00278,
              ``BiReal18_34/birealnet.py``; BiDet (SC) uses the same block). |x| > 1
              reaches sign, so an estimator's support beyond 1 acts.
    reactnet  bireal plus a learnable per-channel bias before sign (RSign) and an RPReLU
              (bias, PReLU, bias) after the addition (ReActNet, Liu et al. ECCV 2020,
              arXiv:2003.03488, ``resnet/2_step2/birealnet.py``: move0, move1, prelu, move2).
    irnet     Hardtanh after every addition, so sign sees |x| <= 1 only (IR-Net, Qin et al.
              CVPR 2020, arXiv:1909.10788, ``CIFAR-10/ResNet20/1w1a/resnet.py``). Every
              estimator's backward is then cut to |x| <= 1: ``ste`` equals ``clipped_ste``.
    recu      irnet, with each sample's sign input divided by its standard deviation while
              training, a / sqrt(var(a) + 1e-5) over (C, H, W), so |x| can exceed 1 again (ReCU,
              Xu et al. ICCV 2021, arXiv:2103.12369, ``cifar/modules/binarized_modules.py``);
              its ResNet-20 downsamples by average pooling and zero channels

The full-precision reference (estimator ``fp32``) of a bireal or reactnet block would have no
nonlinearity where sign is (a bireal network without sign is linear up to BN), so a conv that
stays full precision gets ``ReLU`` of its input there instead: the real-valued activation the
papers' full-precision ResNets use. :func:`conv_input` makes that choice at run time from the
conv's class, so one model serves both (detection pre-trains it full precision, then binarizes).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from estimators.layers import BinaryLayer

BLOCKS = ("bireal", "reactnet", "irnet", "recu")


#: the blocks with Hardtanh after every addition
HARDTANH_BLOCKS = ("irnet", "recu")


def check_block(block: str) -> None:
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; valid choices: {', '.join(BLOCKS)}")


def conv_input(conv: nn.Module, x: Tensor, real_activation: nn.Module) -> Tensor:
    """What ``conv`` is fed where a BNN applies sign: ``x`` itself when the conv is binarized
    (it applies sign to it), ``real_activation(x)`` when it stays full precision."""
    return x if isinstance(conv, BinaryLayer) else real_activation(x)


def real_activation(block: str) -> nn.Module:
    """The full-precision stand-in for sign: ReLU in the sign-only blocks; nothing for irnet,
    whose Hardtanh already is the network's nonlinearity."""
    check_block(block)
    return nn.Identity() if block in HARDTANH_BLOCKS else nn.ReLU()


def post_activation(block: str, channels: int) -> nn.Module:
    """What follows BN (in a ResNet: the residual addition): Hardtanh (irnet), RPReLU (reactnet),
    nothing (bireal)."""
    check_block(block)
    if block in HARDTANH_BLOCKS:
        return nn.Hardtanh()
    return RPReLU(channels) if block == "reactnet" else nn.Identity()


def before_sign(block: str, channels: int) -> nn.Module:
    """ReActNet's learnable threshold before sign (RSign), ReCU's per-sample normalisation;
    nothing in the other blocks."""
    check_block(block)
    if block == "recu":
        return SampleNormalize()
    return LearnableBias(channels) if block == "reactnet" else nn.Identity()


class SampleNormalize(nn.Module):
    """In training, each sample divided by its standard deviation over all other dimensions,
    a / sqrt(var(a) + 1e-5) (unbiased variance, as ``a.var([1, 2, 3])``); the identity in eval
    (ReCU's ``BinarizeConv2d.forward``)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        return x / torch.sqrt(x.var(dim=tuple(range(1, x.dim())), keepdim=True) + 1e-5)


class LearnableBias(nn.Module):
    """x + b with one learnable b per channel, initialised to 0 (ReActNet's ``LearnableBias``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x + self.bias.view(shape)


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, per-channel PReLU (slope initialised to 0.25), shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = LearnableBias(channels)
        self.prelu = nn.PReLU(channels)
        self.shift_out = LearnableBias(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))
