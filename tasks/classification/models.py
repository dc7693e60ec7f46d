"""The standard BNN image classifiers, built full precision and binarized afterwards.

Every model takes a ``block`` (:mod:`estimators.blocks`): ``bireal`` (sign on the residual
stream, no activation: the comparison track's default), ``reactnet`` (bireal plus learnable
thresholds and RPReLU), ``irnet`` (Hardtanh after every addition: IR-Net's block) or ``recu``
(irnet with ReCU's per-sample normalisation before sign).
Every 3x3 conv of a ResNet has its own identity shortcut and BatchNorm before the addition, as
in Bi-Real Net and IR-Net's ResNet-20/ImageNet ResNet-18. Downsample shortcuts stay full
precision under the name ``downsample`` (the ``standard`` scope keeps them so, with the first
conv and the classifier):

    bireal, reactnet   AvgPool(2) + 1x1 conv + BN (Bi-Real Net / ReActNet ``birealnet.py``)
    irnet, recu        ResNet-20: IR-Net's parameter-free option A (every second pixel, zero
                       channels padded on both sides; ``CIFAR-10/ResNet20/1w1a/resnet.py``;
                       ReCU average-pools instead); the ResNet-18s: strided 1x1 conv + BN (IR-Net
                       ImageNet ResNet-18)

The stem is conv + BN (+ max-pool on ImageNet), followed by Hardtanh only in ``irnet`` and ``recu``.

    resnet18_cifar    ResNet-18 for 32x32 inputs (64-128-256-512, 2-2-2-2 blocks)
    resnet20_cifar    ResNet-20 for 32x32 inputs (16-32-64, 3-3-3 blocks)
    vgg_small         VGG-Small (LQ-Nets / IR-Net): 128-128-M-256-256-M-512-512-M-fc, each conv
                      followed by (max-pool,) BN and the block's activation, pool before BN as in
                      IR-Net's ``CIFAR-10/VGG-Small/vgg.py``
    resnet18_imagenet ResNet-18 with the 7x7 stem, for 224x224 ImageNet
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from estimators.blocks import (
    HARDTANH_BLOCKS, before_sign, check_block, conv_input, post_activation, real_activation,
)
from estimators.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class OptionAShortcut(nn.Module):
    """The parameter-free downsample: x[:, :, ::2, ::2] (IR-Net) or AvgPool2d(2) (ReCU, ``pool``),
    with zero channels padded on both sides."""

    def __init__(self, in_planes: int, planes: int, pool: bool = False) -> None:
        super().__init__()
        self.pad = (planes - in_planes) // 2
        # ceil_mode: an odd side gives the strided conv's ceil(n / 2); on CIFAR's even sides it is ReCU's pool
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False) if pool else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x) if self.pool is not None else x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


def _downsample(in_planes: int, planes: int, stride: int, block: str, option_a: bool) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    if block in HARDTANH_BLOCKS and option_a:
        return OptionAShortcut(in_planes, planes, pool=block == "recu")
    if block in HARDTANH_BLOCKS:
        return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    # ceil_mode: an odd side gives the strided conv's ceil(n / 2) too (7 -> 4), as mmdet's avg_down does
    pool = nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, nn.Conv2d(in_planes, planes, 1, 1, bias=False), nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    """Two 3x3 convs, each with its own shortcut: ``out = post(BN(conv(sign_site(x))) + shortcut)``."""

    def __init__(self, in_planes: int, planes: int, stride: int, block: str, option_a: bool = False) -> None:
        super().__init__()
        self.move1 = before_sign(block, in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.post1 = post_activation(block, planes)
        self.move2 = before_sign(block, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.post2 = post_activation(block, planes)
        self.real = real_activation(block)
        self.downsample = _downsample(in_planes, planes, stride, block, option_a)

    def forward(self, x: Tensor) -> Tensor:
        out = self.post1(self.bn1(self.conv1(conv_input(self.conv1, self.move1(x), self.real))) + self.downsample(x))
        return self.post2(self.bn2(self.conv2(conv_input(self.conv2, self.move2(out), self.real))) + out)


class ResNet(nn.Module):
    def __init__(self, widths: list[int], depths: list[int], num_classes: int, in_channels: int,
                 imagenet_stem: bool, block: str, option_a: bool = False) -> None:
        super().__init__()
        check_block(block)
        self.block = block
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.pool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = nn.Hardtanh() if block in HARDTANH_BLOCKS else nn.Identity()
        stages, in_planes = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(in_planes, width, 2 if (j == 0 and i > 0) else 1, block, option_a))
                in_planes = width
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x)).flatten(1)
        return self.fc(x)


class VGGStage(nn.Module):
    """conv -> (max-pool) -> BN -> the block's activation; the conv's input passes the sign site."""

    def __init__(self, in_channels: int, channels: int, pool: bool, block: str, first: bool) -> None:
        super().__init__()
        self.move = nn.Identity() if first else before_sign(block, in_channels)
        self.conv = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(channels)
        self.post = post_activation(block, channels)
        self.real = nn.Identity() if first else real_activation(block)

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.bn(self.pool(self.conv(conv_input(self.conv, self.move(x), self.real)))))


class VGGSmall(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, block: str, width: int = 128) -> None:
        super().__init__()
        check_block(block)
        self.block = block
        plan = [(width, False), (width, True), (2 * width, False), (2 * width, True), (4 * width, False),
                (4 * width, True)]
        stages, channels = [], in_channels
        for i, (out_channels, pool) in enumerate(plan):
            stages.append(VGGStage(channels, out_channels, pool, block, first=i == 0))
            channels = out_channels
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Linear(channels * 16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@MODELS.register("resnet18_cifar")
def resnet18_cifar(num_classes: int = 10, in_channels: int = 3, block: str = "bireal") -> nn.Module:
    return ResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, in_channels, imagenet_stem=False, block=block)


@MODELS.register("resnet20_cifar")
def resnet20_cifar(num_classes: int = 10, in_channels: int = 3, block: str = "bireal") -> nn.Module:
    return ResNet([16, 32, 64], [3, 3, 3], num_classes, in_channels, imagenet_stem=False, block=block,
                  option_a=True)


@MODELS.register("vgg_small")
def vgg_small(num_classes: int = 10, in_channels: int = 3, block: str = "bireal") -> nn.Module:
    return VGGSmall(num_classes, in_channels, block)


@MODELS.register("resnet18_imagenet")
def resnet18_imagenet(num_classes: int = 1000, in_channels: int = 3, block: str = "bireal") -> nn.Module:
    return ResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, in_channels, imagenet_stem=True, block=block)
