"""PASCAL VOC (VOCdevkit layout): checked and pointed at mmdet's VOCDataset and VOCMetric
(11-point mAP@0.5, the VOC07 protocol)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from bench.errors import DataMissingError, UserError

from bench.splits import held_out
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


def voc_ids(devkit: Path, year: str, split: str) -> list[str]:
    listing = devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DataMissingError(f"image list not found: {listing}")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def check_voc(devkit: Path, years: tuple[str, ...], classes: tuple[str, ...] = VOC_CLASSES) -> None:
    for year, split in [(y, "trainval") for y in years] + [("2007", "test")]:
        for image_id in voc_ids(devkit, year, split):
            check_voc_xml(devkit / f"VOC{year}" / "Annotations" / f"{image_id}.xml", classes)


def _voc_validation_split(devkit: Path, years: tuple[str, ...], val_size: int,
                          work_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Per year, the image lists of training and of the validation split: each year's
    ``trainval.txt`` and none for ``val_size`` 0; otherwise lists written under ``work_dir``,
    the ``val_size`` images held out (:func:`held_out` over the years' lists one after another)
    and the rest, each in its list's order (a year left without images has no list)."""
    if not val_size:
        return {year: f"VOC{year}/ImageSets/Main/trainval.txt" for year in years}, {}
    images = [(year, image_id) for year in years for image_id in voc_ids(devkit, year, "trainval")]
    held = held_out(len(images), val_size, "images")
    train: dict[str, str] = {}
    validation: dict[str, str] = {}
    for year in years:
        for lists, name, validating in ((train, "trainval_less_val", False), (validation, "val", True)):
            ids = [image_id for number, (of, image_id) in enumerate(images)
                   if of == year and (number in held) == validating]
            if ids:
                listing = work_dir / f"VOC{year}_{name}{val_size}.txt"
                listing.write_text("\n".join(ids) + "\n")
                lists[year] = str(listing)
    return train, validation


def _combined(parts: list[dict]) -> dict:
    """One dataset config of the years' parts (VOC2007's and VOC2012's metainfo differ in their type)."""
    return parts[0] if len(parts) == 1 else dict(type="ConcatDataset", datasets=parts, ignore_keys=["dataset_type"])


def voc_data(devkit: Path, years: tuple[str, ...], pipes, train_subset: Optional[int],
         eval_subset: Optional[int], work_dir: Path, val_size: int = 0) -> DetectionData:
    """The years' trainval images less ``val_size`` held out for training, those held out as the
    validation split, VOC 2007 test (its first ``eval_subset``) as the test split."""
    train_pipeline, test_pipeline = pipes
    train_lists, validation_lists = _voc_validation_split(devkit, years, val_size, work_dir)
    parts = [dict(type="VOCDataset", data_root=str(devkit), ann_file=listing,
                  data_prefix=dict(sub_data_root=f"VOC{year}/"), pipeline=train_pipeline,
                  filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32))
             for year, listing in train_lists.items()]
    if train_subset is not None:  # the first images of the first year's list
        train = dict(**parts[0], indices=train_subset)
    else:
        train = _combined(parts)
    val = dict(type="VOCDataset", data_root=str(devkit), ann_file="VOC2007/ImageSets/Main/test.txt",
               data_prefix=dict(sub_data_root="VOC2007/"), pipeline=test_pipeline, test_mode=True)
    if eval_subset is not None:
        val["indices"] = eval_subset
    evaluator = dict(type="VOCMetric", metric="mAP", eval_mode="11points")
    validation = _combined([dict(type="VOCDataset", data_root=str(devkit), ann_file=listing,
                                 data_prefix=dict(sub_data_root=f"VOC{year}/"), pipeline=test_pipeline, test_mode=True)
                            for year, listing in validation_lists.items()]) if validation_lists else None
    # VOCMetric scores the ground truth the evaluated images carry: the same metric fits both splits
    return DetectionData(VOC_CLASSES, train, val, evaluator, "voc", validation=validation,
                         validation_evaluator=dict(evaluator) if validation else None)
