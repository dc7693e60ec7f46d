"""COCO-layout annotations (COCO 2017 and the offline fmnist_det): checked, subset, and
pointed at mmdet's CocoDataset and CocoMetric."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from bench.errors import DataMissingError, UserError

from tasks.detection.data.common import DetectionData


def check_coco_json(path: Path) -> dict:
    """Load a COCO instances file or raise a one-line UserError naming it and the fault."""
    if not path.is_file():
        raise DataMissingError(f"annotation file not found: {path}")
    try:
        with open(path) as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"malformed annotation file {path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise UserError(f"malformed annotation file {path}: expected a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise UserError(f"malformed annotation file {path}: no '{key}' list")
    image_ids = {image.get("id") for image in content["images"]}
    category_ids = {category.get("id") for category in content["categories"]}
    for number, ann in enumerate(content["annotations"]):
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise UserError(f"malformed annotation file {path}: annotation {number} has no [x, y, w, h] bbox")
        if ann.get("image_id") not in image_ids:
            raise UserError(f"malformed annotation file {path}: annotation {number} names unknown "
                            f"image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in category_ids:
            raise UserError(f"malformed annotation file {path}: annotation {number} names unknown "
                            f"category_id {ann.get('category_id')!r}")
    return content


def _coco_subset(ann_file: Path, size: Optional[int], work_dir: Path) -> Path:
    """The first ``size`` images of a COCO file (so the metric scores exactly the evaluated images)."""
    if size is None:
        return ann_file
    content = json.loads(ann_file.read_text())
    images = content["images"][:size]
    keep = {image["id"] for image in images}
    content["images"] = images
    content["annotations"] = [a for a in content["annotations"] if a["image_id"] in keep]
    target = work_dir / f"subset{size}_{ann_file.name}"
    target.write_text(json.dumps(content))
    return target


def coco_data(folder: Path, train_split: str, val_split: str, classes: Optional[tuple[str, ...]], pipes,
          train_subset: Optional[int], eval_subset: Optional[int], work_dir: Path) -> DetectionData:
    train_pipeline, test_pipeline = pipes
    ann = folder / "annotations"
    val_ann = _coco_subset(ann / f"instances_{val_split}.json", eval_subset, work_dir)
    if classes is None:
        categories = sorted(json.loads(val_ann.read_text())["categories"], key=lambda c: c["id"])
        classes = tuple(c["name"] for c in categories)
    metainfo = dict(classes=classes)
    train = dict(type="CocoDataset", data_root=str(folder), ann_file=str(ann / f"instances_{train_split}.json"),
                 data_prefix=dict(img=f"{train_split}/"), metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=0))
    if train_subset is not None:
        train["indices"] = train_subset
    val = dict(type="CocoDataset", data_root=str(folder), ann_file=str(val_ann), data_prefix=dict(img=f"{val_split}/"),
               metainfo=metainfo, pipeline=test_pipeline, test_mode=True)
    evaluator = dict(type="CocoMetric", ann_file=str(val_ann), metric="bbox", format_only=False)
    return DetectionData(classes, train, val, evaluator, "coco")
