"""What the detection readers share: the mmdet configs of one run's data, and the validation split."""
from __future__ import annotations

import dataclasses
from typing import Optional

@dataclasses.dataclass
class DetectionData:
    classes: tuple[str, ...]
    train: dict        # mmdet dataset config (the training images less the validation split)
    val: dict          # mmdet dataset config (test_mode): the test split, the reported one (mmdet's "val")
    evaluator: dict    # mmdet metric config of the test split
    metric_style: str  # "coco" | "voc"
    version: str = ""  # identifies generated data (cached models trained on it depend on it)
    # Images per evaluation batch. A batch pads its images to one size, and the padding reaches a
    # binarized backbone's signs at every image border, so where image sizes differ each image is
    # scored alone (mmdet's test configs also use batch 1, configs/_base_/datasets/coco_detection.py);
    # generated data of one fixed size batches freely (no padding; identical mAP, 22-27 % less time).
    eval_batch_size: int = 1
    # the validation split held out of the training images (test_mode) and its metric config;
    # None without one (val_size 0)
    validation: Optional[dict] = None
    validation_evaluator: Optional[dict] = None
