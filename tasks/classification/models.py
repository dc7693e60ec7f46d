"""The standard BNN image classifiers, built full precision and binarized afterwards.

Blocks follow the Bi-Real / IR-Net convention used by the estimators' papers on
CIFAR: every 3x3 conv has its own identity shortcut, BatchNorm before the addition,
Hardtanh after it, so the input of every binarized conv is a real value centred near
zero. Downsample shortcuts are conv1x1 + BN under the name ``downsample`` so the
``standard`` scope keeps them full precision, as do the first conv and the classifier.

    resnet18_cifar   ResNet-18 for 32x32 inputs (64-128-256-512, 2-2-2-2 blocks)
    resnet20_cifar   ResNet-20 for 32x32 inputs (16-32-64, 3-3-3 blocks)
    vgg_small        VGG-Small (LQ-Nets / IR-Net): 128-128-M-256-256-M-512-512-M-fc
    resnet18_imagenet ResNet-18 with the 7x7 stem, for 224x224 ImageNet
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from estimators.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act = nn.Hardtanh()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)) + self.downsample(x))
        return self.act(self.bn2(self.conv2(out)) + out)


class ResNet(nn.Module):
    def __init__(self, widths: list[int], depths: list[int], num_classes: int, in_channels: int,
                 imagenet_stem: bool) -> None:
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.pool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = nn.Hardtanh()
        stages, in_planes = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(in_planes, width, 2 if (j == 0 and i > 0) else 1))
                in_planes = width
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x)).flatten(1)
        return self.fc(x)


class VGGSmall(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int = 128) -> None:
        super().__init__()
        cfg = [width, width, "M", 2 * width, 2 * width, "M", 4 * width, 4 * width, "M"]
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(channels, item, 3, 1, 1, bias=False), nn.BatchNorm2d(item), nn.Hardtanh()]
            channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Linear(channels * 16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@MODELS.register("resnet18_cifar")
def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return ResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, in_channels, imagenet_stem=False)


@MODELS.register("resnet20_cifar")
def resnet20_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return ResNet([16, 32, 64], [3, 3, 3], num_classes, in_channels, imagenet_stem=False)


@MODELS.register("vgg_small")
def vgg_small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return VGGSmall(num_classes, in_channels)


@MODELS.register("resnet18_imagenet")
def resnet18_imagenet(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    return ResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, in_channels, imagenet_stem=True)
