"""A BNN-ready ResNet backbone for mmdet: mmdet's ResNet with the blocks of :mod:`estimators.blocks`.

mmdet's BasicBlock applies ReLU before every 3x3 conv, so a binarized conv would see
only non-negative inputs and sign() would map them all to +1. Here, as in Bi-Real Net
(Liu et al., ECCV 2018) and BiDet (SC), every 3x3 conv has its own identity shortcut and
BatchNorm comes before the addition; ``bnn_block`` chooses what surrounds sign:

    bireal     out = bn1(conv1(x)) + downsample(x); out = bn2(conv2(out)) + out   (no activation)
    reactnet   bireal with a learnable per-channel bias before each sign and RPReLU after each addition
    irnet      Hardtanh after each addition and after the stem (|x| <= 1 reaches sign)

A conv left full precision (the ``fp32`` estimator, the full-precision pre-training) gets
ReLU of its input where sign would be (:func:`estimators.blocks.conv_input`). The stem (7x7
conv, BN, max-pool) has Hardtanh only in ``irnet``; with ``avg_down=True`` the downsample
shortcut is avg-pool + 1x1 conv + BN, as in Bi-Real Net. Parameter names match mmdet's (and
torchvision's) ResNet, so ImageNet ResNet checkpoints load into it (ReActNet's biases and
PReLU slopes start at their initial values; with ``avg_down`` the shortcut's conv and BN are
``downsample.1``/``downsample.2``, torchvision's ``downsample.0``/``downsample.1``, so those
two do not load from a torchvision file: mmengine warns and leaves them at their init).

:class:`BiRealResLayer` is one stage of that ResNet (layer4 by default) as mmdet's RoI shared
head, for C4 detectors (BiBench's ``_base_/models/resnet18_faster-rcnn.py`` and BiDet's
``bidet_resnet.py``: stem..layer3 are the backbone, layer4 runs on every RoI): the same
:class:`SignedBasicBlock` with the run's block, so it can be binarized like the backbone.
"""
from __future__ import annotations

from mmdet.models.backbones.resnet import BasicBlock, ResNet
from mmdet.models.layers import ResLayer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from estimators.blocks import before_sign, check_block, conv_input, post_activation, real_activation


class SignedBasicBlock(BasicBlock):
    def __init__(self, *args, bnn_block: str = "bireal", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_block(bnn_block)
        planes = self.conv2.out_channels
        del self.relu
        self.move1 = before_sign(bnn_block, self.conv1.in_channels)
        self.post1 = post_activation(bnn_block, planes)
        self.move2 = before_sign(bnn_block, planes)
        self.post2 = post_activation(bnn_block, planes)
        self.real = real_activation(bnn_block)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.post1(self.norm1(self.conv1(conv_input(self.conv1, self.move1(x), self.real))) + identity)
        return self.post2(self.norm2(self.conv2(conv_input(self.conv2, self.move2(out), self.real))) + out)


@MODELS.register_module(name="BiRealResNet", force=True)
class BiRealResNet(ResNet):
    """mmdet ResNet-18/34 with :class:`SignedBasicBlock` (``bnn_block``: bireal, reactnet or irnet)."""

    arch_settings = {18: (SignedBasicBlock, (2, 2, 2, 2)), 34: (SignedBasicBlock, (3, 4, 6, 3))}

    def __init__(self, bnn_block: str = "bireal", **kwargs) -> None:
        check_block(bnn_block)
        self.bnn_block = bnn_block
        super().__init__(**kwargs)
        self.relu = nn.Hardtanh() if bnn_block == "irnet" else nn.Identity()

    def make_res_layer(self, **kwargs):
        return super().make_res_layer(bnn_block=self.bnn_block, **kwargs)


@MODELS.register_module(name="BiRealResLayer", force=True)
class BiRealResLayer(BaseModule):
    """Stage ``stage`` (0-based: 3 is layer4) of :class:`BiRealResNet` as an RoI shared head.

    mmdet's own shared head (``ResLayer`` in ``mmdet/models/roi_heads/shared_heads``) builds
    mmdet's BasicBlock, whose ReLU before every conv would feed a binarized conv +1 only; this
    one builds :class:`SignedBasicBlock` with ``bnn_block``, ``avg_down`` shortcuts and the
    parameter names of mmdet's (``layer4.0.conv1.weight``), so an ImageNet ResNet file loads
    into it with ``init_cfg=dict(type="Pretrained", checkpoint=...)`` as into mmdet's.
    BatchNorm trains (``norm_eval=False``), as in the backbone.
    """

    def __init__(self, depth: int = 18, stage: int = 3, stride: int = 2, dilation: int = 1,
                 bnn_block: str = "bireal", style: str = "pytorch", avg_down: bool = True,
                 norm_cfg: dict | None = None, norm_eval: bool = False, init_cfg=None) -> None:
        super().__init__(init_cfg)
        check_block(bnn_block)
        block, stage_blocks = BiRealResNet.arch_settings[depth]
        self.stage, self.norm_eval = stage, norm_eval
        planes = 64 * 2 ** stage
        inplanes = 64 * 2 ** (stage - 1) * block.expansion
        layer = ResLayer(block, inplanes, planes, stage_blocks[stage], stride=stride, avg_down=avg_down,
                         norm_cfg=norm_cfg or dict(type="BN", requires_grad=True), dilation=dilation, style=style,
                         bnn_block=bnn_block)
        self.add_module(f"layer{stage + 1}", layer)
        if init_cfg is None:  # mmdet's ResNet and ResLayer initialisation
            self.init_cfg = [dict(type="Kaiming", layer="Conv2d"),
                             dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"])]

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, f"layer{self.stage + 1}")(x)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self


def sign_preserving_activations(module: nn.Module) -> int:
    """Replace every nn.ReLU inside ``module`` by nn.Hardtanh (necks and heads); returns the count.

    A binarized layer fed by a ReLU sees only +1 inputs; Hardtanh keeps the sign. The blocks of
    a ResNet stage used as a head (:class:`BiRealResLayer`) are left alone: their ReLU is the
    full-precision stand-in for sign (:func:`estimators.blocks.conv_input`), never a binarized
    conv's input.
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, SignedBasicBlock):
            continue
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Hardtanh())
            replaced += 1
        else:
            replaced += sign_preserving_activations(child)
    return replaced
