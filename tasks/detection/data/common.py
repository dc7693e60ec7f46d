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
