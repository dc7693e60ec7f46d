"""PASCAL VOC (VOCdevkit layout): checked and pointed at mmdet's VOCDataset and VOCMetric
(11-point mAP@0.5, the VOC07 protocol)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from bench.errors import DataMissingError, UserError

from tasks.detection.data.common import DetectionData

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOC_YEARS = {"voc": ("2007", "2012"), "voc2007": ("2007",)}

def check_voc_xml(path: Path, classes: tuple[str, ...]) -> None:
    if not path.is_file():
        raise DataMissingError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise UserError(f"malformed annotation file {path}: {error}") from None
    for obj in root.findall("object"):
        name = obj.findtext("name")
        if name not in classes:
            raise UserError(f"malformed annotation file {path}: unknown class {name!r}")
        box = obj.find("bndbox")
        try:
            values = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            raise UserError(f"malformed annotation file {path}: an object has no numeric bndbox") from None
        if values[2] < values[0] or values[3] < values[1]:
            raise UserError(f"malformed annotation file {path}: bndbox with xmax < xmin or ymax < ymin")


def _voc_ids(devkit: Path, year: str, split: str) -> list[str]:
    listing = devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DataMissingError(f"image list not found: {listing}")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def check_voc(devkit: Path, years: tuple[str, ...], classes: tuple[str, ...] = VOC_CLASSES) -> None:
    for year, split in [(y, "trainval") for y in years] + [("2007", "test")]:
        for image_id in _voc_ids(devkit, year, split):
            check_voc_xml(devkit / f"VOC{year}" / "Annotations" / f"{image_id}.xml", classes)


def voc_data(devkit: Path, years: tuple[str, ...], pipes, train_subset: Optional[int],
         eval_subset: Optional[int]) -> DetectionData:
    train_pipeline, test_pipeline = pipes
    parts = [dict(type="VOCDataset", data_root=str(devkit), ann_file=f"VOC{year}/ImageSets/Main/trainval.txt",
                  data_prefix=dict(sub_data_root=f"VOC{year}/"), pipeline=train_pipeline,
                  filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32))
             for year in years]
    if train_subset is not None:  # the first images of the first year's list
        train = dict(**parts[0], indices=train_subset)
    elif len(parts) == 1:
        train = parts[0]
    else:
        train = dict(type="ConcatDataset", datasets=parts, ignore_keys=["dataset_type"])
    val = dict(type="VOCDataset", data_root=str(devkit), ann_file="VOC2007/ImageSets/Main/test.txt",
               data_prefix=dict(sub_data_root="VOC2007/"), pipeline=test_pipeline, test_mode=True)
    if eval_subset is not None:
        val["indices"] = eval_subset
    evaluator = dict(type="VOCMetric", metric="mAP", eval_mode="11points")
    return DetectionData(VOC_CLASSES, train, val, evaluator, "voc")
