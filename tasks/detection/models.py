"""Detectors from mmdet's own configs, with the BNN-ready ResNet-18 backbone, and their scopes.

    faster_rcnn_r18_fpn  mmdet's faster-rcnn_r50_fpn_1x_coco.py with a ResNet-18 backbone
                         (the SURGE / BiDet / BiBench setting)
    retinanet_r18_fpn    mmdet's retinanet_r18_fpn_1x_coco.py (one-stage, about 2.5x faster on CPU)

Both use :class:`tasks.detection.backbone.BiRealResNet` with the run's ``block`` (trained from
scratch unless the ``backbone_checkpoint`` option names an ImageNet ResNet-18 file) and
Hardtanh instead of ReLU in neck and heads, so a binarized layer never sees only non-negative
inputs.

Scopes (the stem conv, the downsample shortcuts and the final prediction layers stay
full precision in all of them, as in BiDet and BiBench):

    backbone        the backbone's 3x3 convs
    backbone+neck   ... and the FPN's lateral and output convs
    all             ... and the heads' hidden convs/fcs (RPN conv, RoI fcs, RetinaNet towers)
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


def _backbone(checkpoint: Optional[str], block: str) -> dict:
    return dict(
        type="BiRealResNet", bnn_block=block, depth=18, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, style="pytorch", avg_down=True,
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint) if checkpoint else None,
    )


@DETECTORS.register("faster_rcnn_r18_fpn")
def faster_rcnn_r18_fpn(num_classes: int, backbone_checkpoint: Optional[str] = None, block: str = "bireal") -> dict:
    model = copy.deepcopy(mmdet_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py").model.to_dict())
    model["backbone"] = _backbone(backbone_checkpoint, block)
    model["neck"]["in_channels"] = [64, 128, 256, 512]
    model["roi_head"]["bbox_head"]["num_classes"] = num_classes
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


def _scope(binarized_parts: tuple[str, ...]) -> Callable[[list[tuple[str, nn.Module]]], dict[str, str]]:
    def rule(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
        keep = {}
        for name, _ in candidates:
            part = name.split(".", 1)[0]
            reason = _always_full_precision(name)
            if reason is None and part not in binarized_parts:
                reason = f"{part} outside the scope"
            if reason:
                keep[name] = reason
        return keep

    return rule


SCOPES.register("backbone")(_scope(("backbone",)))
SCOPES.register("backbone+neck")(_scope(("backbone", "neck")))
SCOPES.register("all")(_scope(("backbone", "neck", "rpn_head", "roi_head", "bbox_head")))
