"""What the detection readers share: the mmdet configs of one run's data."""
from __future__ import annotations

import dataclasses



@dataclasses.dataclass
class DetectionData:
    classes: tuple[str, ...]
    train: dict        # mmdet dataset config
    val: dict          # mmdet dataset config (test_mode)
    evaluator: dict    # mmdet metric config
    metric_style: str  # "coco" | "voc"
    version: str = ""  # identifies generated data (cached models trained on it depend on it)
    # Images per evaluation batch. A batch pads its images to one size, and the padding reaches a
    # binarized backbone's signs at every image border, so where image sizes differ each image is
    # scored alone (mmdet's test configs also use batch 1, configs/_base_/datasets/coco_detection.py);
    # generated data of one fixed size batches freely (no padding; identical mAP, 22-27 % less time).
    eval_batch_size: int = 1
