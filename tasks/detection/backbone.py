"""A BNN-ready ResNet backbone for mmdet: mmdet's ResNet with Bi-Real-style blocks.

mmdet's BasicBlock applies ReLU before every 3x3 conv, so a binarized conv would see
only non-negative inputs and sign() would map them all to +1. Here, as in the
classification family and in Bi-Real Net (Liu et al., ECCV 2018), every 3x3 conv has
its own identity shortcut, BatchNorm comes before the addition and Hardtanh after it,
so every binarized conv sees real values centred near zero:

    out = act(bn1(conv1(x)) + downsample(x))
    out = act(bn2(conv2(out)) + out)

The stem (7x7 conv, BN, act, max-pool) is unchanged except for the activation; with
``avg_down=True`` the downsample shortcut is avg-pool + 1x1 conv + BN, as in Bi-Real Net.
Parameter names match mmdet's (and torchvision's) ResNet, so ImageNet ResNet
checkpoints load into it.
"""
from __future__ import annotations

from mmdet.models.backbones.resnet import BasicBlock, ResNet
from mmdet.registry import MODELS
from torch import Tensor, nn


class SignedBasicBlock(BasicBlock):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.relu = nn.Hardtanh()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)) + identity)
        return self.relu(self.norm2(self.conv2(out)) + out)


@MODELS.register_module(name="BiRealResNet", force=True)
class BiRealResNet(ResNet):
    """mmdet ResNet-18/34 with :class:`SignedBasicBlock` and a Hardtanh stem."""

    arch_settings = {18: (SignedBasicBlock, (2, 2, 2, 2)), 34: (SignedBasicBlock, (3, 4, 6, 3))}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.relu = nn.Hardtanh()


def sign_preserving_activations(module: nn.Module) -> int:
    """Replace every nn.ReLU inside ``module`` by nn.Hardtanh (necks and heads); returns the count.

    A binarized layer fed by a ReLU sees only +1 inputs; Hardtanh keeps the sign.
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Hardtanh())
            replaced += 1
        else:
            replaced += sign_preserving_activations(child)
    return replaced
