"""Detectors from mmdet's own configs, with the BNN-ready ResNet-18 backbone, and their scopes.

    faster_rcnn_r18_fpn  mmdet's faster-rcnn_r50_fpn_1x_coco.py with a ResNet-18 backbone
    faster_rcnn_r18_c4   mmdet's faster-rcnn_r50-caffe_c4-1x_coco.py (_base_/models/
                         faster-rcnn_r50-caffe-c4.py) with ResNet-18 channels: stem..layer3 the
                         backbone (stride 16, 256 channels into the RPN and the RoI extractor),
                         layer4 the RoI shared head (512 channels into the box head), as in
                         BiBench (configs/_base_/models/resnet18_faster-rcnn.py: num_stages=3,
                         out_indices=(2,), shared_head ResLayer) and BiDet (bidet_resnet.py:
                         RCNN_base = stem..layer3, RCNN_top = layer4): the papers' detector
    retinanet_r18_fpn    mmdet's retinanet_r18_fpn_1x_coco.py (one-stage, about 2.5x faster on CPU)

All use :class:`tasks.detection.backbone.BiRealResNet` with the run's ``block`` (trained from
scratch unless the ``backbone_checkpoint`` option names an ImageNet ResNet-18 file); the C4
shared head is :class:`tasks.detection.backbone.BiRealResLayer`, layer4 built from the same
block (loaded from the same file). Hardtanh replaces ReLU in neck and heads (not in the shared
head's blocks), so a binarized layer never sees only non-negative inputs. The C4 model keeps
the FPN model's data preprocessor (pytorch-style ImageNet mean/std, RGB), not the caffe one of
mmdet's C4 config: the backbone is a pytorch-style ResNet.

Scopes (the stem conv, the downsample shortcuts and the final prediction layers stay
full precision in all of them, as in BiDet and BiBench):

    backbone        the backbone's 3x3 convs: mmdet's ``backbone``, so stem..layer4 of the FPN
                    models (16 convs) and stem..layer3 of the C4 model (12 convs), whose layer4
                    is the shared head and stays full precision, as in BiBench (its bnn config
                    replaces the backbone's conv_cfg only; the shared head is mmdet's ResLayer
                    of plain convs)
    backbone+neck   ... and the FPN's lateral and output convs (the C4 model has no neck:
                    DetectionTask.check refuses this scope for it)
    all             ... and the heads' hidden layers: the C4 shared head (layer4), the RPN conv,
                    the RoI fcs, the RetinaNet towers. On C4 this is BiDet's fully binarized
                    detector ("both the backbone and detection heads of BiDet detectors are
                    binarized", BiDet README FAQ; bidet_resnet.py, rpn.py: RPN_Conv is a
                    BinarizeConv2d), the bidet preset's scope.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional

from torch import nn

from estimators.registry import Registry

DETECTORS: Registry[Callable[[int], dict]] = Registry("detection model")
SCOPES: Registry[Callable[[list[tuple[str, nn.Module]]], dict[str, str]]] = Registry("detection scope")
PREDICTION_LAYERS = ("rpn_cls", "rpn_reg", "fc_cls", "fc_reg", "retina_cls", "retina_reg")


def mmdet_config(relative: str):
    """Load one of the configs mmdet ships in its package (mmdet/.mim/configs)."""
    import mmdet
    from mmengine.config import Config

    path = Path(mmdet.__file__).parent / ".mim" / "configs" / relative
    if not path.is_file():
        raise FileNotFoundError(f"mmdet config {relative} not found under {path.parent}; reinstall mmdet==3.3.0")
    return Config.fromfile(str(path))


def _pretrained(checkpoint: Optional[str]) -> Optional[dict]:
    return dict(type="Pretrained", checkpoint=checkpoint) if checkpoint else None


def _backbone(checkpoint: Optional[str], block: str, num_stages: int = 4) -> dict:
    """The ResNet-18 backbone: all four stages (FPN), or stem..layer3 (C4, output stride 16)."""
    return dict(
        type="BiRealResNet", bnn_block=block, depth=18, num_stages=num_stages,
        strides=(1, 2, 2, 2)[:num_stages], dilations=(1, 1, 1, 1)[:num_stages],
        out_indices=tuple(range(num_stages)) if num_stages == 4 else (num_stages - 1,), frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, style="pytorch", avg_down=True,
        init_cfg=_pretrained(checkpoint),
    )


@DETECTORS.register("faster_rcnn_r18_fpn")
def faster_rcnn_r18_fpn(num_classes: int, backbone_checkpoint: Optional[str] = None, block: str = "bireal") -> dict:
    model = copy.deepcopy(mmdet_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py").model.to_dict())
    model["backbone"] = _backbone(backbone_checkpoint, block)
    model["neck"]["in_channels"] = [64, 128, 256, 512]
    model["roi_head"]["bbox_head"]["num_classes"] = num_classes
    return model


@DETECTORS.register("faster_rcnn_r18_c4")
def faster_rcnn_r18_c4(num_classes: int, backbone_checkpoint: Optional[str] = None, block: str = "bireal") -> dict:
    model = copy.deepcopy(mmdet_config("faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py").model.to_dict())
    fpn = mmdet_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py").model
    model["data_preprocessor"] = copy.deepcopy(fpn.data_preprocessor.to_dict())
    model["backbone"] = _backbone(backbone_checkpoint, block, num_stages=3)
    model["rpn_head"].update(in_channels=256, feat_channels=256)  # layer3 of a ResNet-18: 256 channels
    roi_head = model["roi_head"]
    roi_head["shared_head"] = dict(type="BiRealResLayer", depth=18, stage=3, stride=2, bnn_block=block,
                                   style="pytorch", avg_down=True, norm_cfg=dict(type="BN", requires_grad=True),
                                   norm_eval=False, init_cfg=_pretrained(backbone_checkpoint))
    roi_head["bbox_roi_extractor"]["out_channels"] = 256
    roi_head["bbox_head"].update(in_channels=512, num_classes=num_classes)  # layer4 of a ResNet-18: 512
    return model


@DETECTORS.register("retinanet_r18_fpn")
def retinanet_r18_fpn(num_classes: int, backbone_checkpoint: Optional[str] = None, block: str = "bireal") -> dict:
    model = copy.deepcopy(mmdet_config("retinanet/retinanet_r18_fpn_1x_coco.py").model.to_dict())
    model["backbone"] = _backbone(backbone_checkpoint, block)
    model["bbox_head"]["num_classes"] = num_classes
    return model


def _always_full_precision(name: str) -> Optional[str]:
    if name == "backbone.conv1":
        return "stem conv"
    if "downsample" in name:
        return "downsample shortcut"
    if name.rsplit(".", 1)[-1] in PREDICTION_LAYERS:
        return "prediction layer"
    return None


#: the parts of a detector a scope names; the C4 shared head is a part of its own
SHARED_HEAD = "roi_head.shared_head"
_HEADS = ("rpn_head", SHARED_HEAD, "roi_head", "bbox_head")


def _part(name: str) -> str:
    """The detector part a layer belongs to: its top-level module, or the C4 shared head."""
    return SHARED_HEAD if name.startswith(SHARED_HEAD + ".") else name.split(".", 1)[0]


def _scope(binarized_parts: tuple[str, ...]) -> Callable[[list[tuple[str, nn.Module]]], dict[str, str]]:
    def rule(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
        keep = {}
        for name, _ in candidates:
            part = _part(name)
            reason = _always_full_precision(name)
            if reason is None and part not in binarized_parts:
                reason = f"{part} outside the scope"
                if part == SHARED_HEAD:
                    reason += " (layer4 of the C4 ResNet; BiBench keeps it full precision)"
            if reason:
                keep[name] = reason
        return keep

    return rule


#: scope -> the parts it binarizes
SCOPE_PARTS = {
    "backbone": ("backbone",),
    "backbone+neck": ("backbone", "neck"),
    "all": ("backbone", "neck", *_HEADS),
}
for _name, _parts in SCOPE_PARTS.items():
    SCOPES.register(_name)(_scope(_parts))

#: models without a neck, for which ``backbone+neck`` would be ``backbone`` under another name
NO_NECK = ("faster_rcnn_r18_c4",)
