"""COCO-layout annotations (COCO 2017 and the offline fmnist_det): checked, subset, and
pointed at mmdet's CocoDataset and CocoMetric."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from bench.errors import DataMissingError, UserError

from bench.splits import held_out
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


def _with_images(content: dict, images: list[dict]) -> dict:
    """A COCO file's content cut to ``images`` and their annotations."""
    keep = {image["id"] for image in images}
    return {**content, "images": images, "annotations": [a for a in content["annotations"] if a["image_id"] in keep]}


def _write(content: dict, target: Path) -> Path:
    target.write_text(json.dumps(content))
    return target


def _coco_subset(ann_file: Path, size: Optional[int], work_dir: Path) -> Path:
    """The first ``size`` images of a COCO file (so the metric scores exactly the evaluated images)."""
    if size is None:
        return ann_file
    content = json.loads(ann_file.read_text())
    return _write(_with_images(content, content["images"][:size]), work_dir / f"subset{size}_{ann_file.name}")


def _coco_validation_split(ann_file: Path, val_size: int, work_dir: Path) -> tuple[Path, Optional[Path]]:
    """(training, validation) annotation files: the file's images less the ``val_size`` held out
    (:func:`held_out`), and those held out (the validation metric's file too, so it scores exactly
    them); both in the file's order. The file itself and None for ``val_size`` 0."""
    if not val_size:
        return ann_file, None
    content = json.loads(ann_file.read_text())
    held = held_out(len(content["images"]), val_size, "images")
    images = content["images"]
    train = [image for number, image in enumerate(images) if number not in held]
    validation = [image for number, image in enumerate(images) if number in held]
    return (_write(_with_images(content, train), work_dir / f"train_less_val{val_size}_{ann_file.name}"),
            _write(_with_images(content, validation), work_dir / f"val{val_size}_{ann_file.name}"))


def _evaluation(folder: Path, ann_file: Path, split: str, metainfo: dict, pipeline: list) -> tuple[dict, dict]:
    """The dataset (test mode) and CocoMetric configs that score exactly the images of ``ann_file``."""
    dataset = dict(type="CocoDataset", data_root=str(folder), ann_file=str(ann_file), data_prefix=dict(img=f"{split}/"),
                   metainfo=metainfo, pipeline=pipeline, test_mode=True)
    return dataset, dict(type="CocoMetric", ann_file=str(ann_file), metric="bbox", format_only=False)


def coco_data(folder: Path, train_split: str, val_split: str, classes: Optional[tuple[str, ...]], pipes,
          train_subset: Optional[int], eval_subset: Optional[int], work_dir: Path, val_size: int = 0) -> DetectionData:
    """``train_split`` less ``val_size`` held-out images (then its first ``train_subset``) for
    training, those images as the validation split, ``val_split`` (its first ``eval_subset``)
    as the test split."""
    train_pipeline, test_pipeline = pipes
    ann = folder / "annotations"
    val_ann = _coco_subset(ann / f"instances_{val_split}.json", eval_subset, work_dir)
    train_ann, validation_ann = _coco_validation_split(ann / f"instances_{train_split}.json", val_size, work_dir)
    if classes is None:
        categories = sorted(json.loads(val_ann.read_text())["categories"], key=lambda c: c["id"])
        classes = tuple(c["name"] for c in categories)
    metainfo = dict(classes=classes)
    train = dict(type="CocoDataset", data_root=str(folder), ann_file=str(train_ann),
                 data_prefix=dict(img=f"{train_split}/"), metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=0))
    if train_subset is not None:
        train["indices"] = train_subset
    val, evaluator = _evaluation(folder, val_ann, val_split, metainfo, test_pipeline)
    validation, validation_evaluator = (_evaluation(folder, validation_ann, train_split, metainfo, test_pipeline)
                                        if validation_ann else (None, None))
    return DetectionData(classes, train, val, evaluator, "coco", validation=validation,
                         validation_evaluator=validation_evaluator)
