"""Detection metrics, registered in the harness's metric registry; mmdet computes them
(CocoMetric, VOCMetric) and the family reads its values under the keys below, in percent."""
from __future__ import annotations

from bench.metrics import register_metric

#: our metric name -> mmdet's key, per evaluation style
MMDET_KEYS = {
    "coco": {"bbox_mAP": "coco/bbox_mAP", "bbox_mAP_50": "coco/bbox_mAP_50", "bbox_mAP_75": "coco/bbox_mAP_75"},
    "voc": {"mAP50": "pascal_voc/mAP"},
}

register_metric("bbox_mAP", True, "COCO mAP@[.5:.95] (%), mmdet's CocoMetric")
register_metric("bbox_mAP_50", True, "COCO mAP at IoU 0.5 (%), mmdet's CocoMetric")
register_metric("bbox_mAP_75", True, "COCO mAP at IoU 0.75 (%), mmdet's CocoMetric")
register_metric("mAP50", True, "VOC07 11-point mAP at IoU 0.5 (%), mmdet's VOCMetric")
