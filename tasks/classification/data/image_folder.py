"""ImageNet: ``torchvision.datasets.ImageFolder`` over ``train/<wnid>/`` and ``val/<wnid>/``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from torch.utils.data import Dataset

from bench.errors import DataMissingError

from tasks.classification.data.common import DATASETS, DataFormatError, DatasetSpec


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_IMAGENET_DIRS = {"train": "train", "test": "val"}


def _imagenet_find(data_root: Optional[Path]) -> tuple[Optional[Path], list[str]]:
    if data_root is None:
        return None, []
    candidates = [data_root, data_root / "imagenet"]
    for folder in candidates:
        if (folder / "train").is_dir() or (folder / "val").is_dir():
            return folder, []
    return None, [f"{folder / 'train'}/ or {folder / 'val'}/" for folder in candidates]


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def _imagenet_load(folder: Optional[Path], split: str, augment: bool) -> Dataset:
    from torchvision import datasets, transforms

    assert folder is not None
    split_dir = folder / _IMAGENET_DIRS[split]
    if not split_dir.is_dir():
        raise DataMissingError(f"ImageNet {split} folder {split_dir}/ is missing: it must hold one "
                               f"folder of .JPEG images per class (wnid)")
    other = folder / _IMAGENET_DIRS["train" if split == "test" else "test"]
    if other.is_dir() and _class_dirs(other) != _class_dirs(split_dir):
        raise DataFormatError(f"ImageNet class folders differ between {split_dir}/ and {other}/ "
                              f"(the labels would not match): val/ must be sorted into wnid folders")
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if split == "train" and augment:
        tf = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    else:
        tf = [transforms.Resize(256), transforms.CenterCrop(224)]
    try:
        return datasets.ImageFolder(str(split_dir), transform=transforms.Compose(
            tf + [transforms.ToTensor(), normalize]))
    except OSError as e:  # FileNotFoundError: no class folder or no image in one
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataFormatError(f"ImageNet {split_dir}/ is not a class-folder tree: {msg}") from None


DATASETS.register("imagenet")(DatasetSpec(
    name="imagenet", title="ImageNet", num_classes=1000, in_channels=3, image_size=224,
    default_model="resnet18_imagenet", mean=IMAGENET_MEAN, std=IMAGENET_STD,
    how_to_get="get ILSVRC2012 from https://image-net.org and lay it out as --data-root/train/<wnid>/*.JPEG "
               "and --data-root/val/<wnid>/*.JPEG",
    loader=_imagenet_load, finder=_imagenet_find, train_size=1_281_167, test_size=50_000,
))
