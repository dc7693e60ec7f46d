"""Fashion-MNIST: the original big-endian IDX files, gzipped or not."""
from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.errors import DataMissingError

from tasks.classification.data.common import (
    DATASETS, DataFormatError, DatasetSpec, InMemoryImages, _file_key, _first_existing,
)


#: where Debian's dataset-fashion-mnist package puts the files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataFormatError(f"cannot read {path} ({type(e).__name__}: {e})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (images: N x rows x cols, labels: N)."""
    raw = _read_bytes(path)
    ndim = 3 if magic == IDX_IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataFormatError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataFormatError(f"{path} has IDX magic number {found}, expected {magic} "
                              f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'})")
    dims = [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, ndim + 1)]
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataFormatError(f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes of data, "
                              f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _read_fmnist(images_key: tuple[str, int, int], labels_key: tuple[str, int, int]) -> tuple[Tensor, Tensor]:
    images_path, labels_path = Path(images_key[0]), Path(labels_key[0])
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataFormatError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{labels_path} holds {labels.shape[0]} labels but {images_path} "
                              f"holds {images.shape[0]} images")
    if labels.size and labels.max() >= 10:
        raise DataFormatError(f"{labels_path}: labels outside 0..9")
    return (torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)))


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    # Prefer the extracted file (no decompression), as torchvision leaves both.
    return _first_existing(folder, (stem, stem + ".gz"))


def _fmnist_find(data_root: Optional[Path]) -> tuple[Optional[Path], list[str]]:
    candidates = []
    if data_root is not None:
        candidates += [data_root / "FashionMNIST" / "raw", data_root / "fashion-mnist", data_root]
    candidates.append(Path(DEBIAN_FASHION_MNIST))
    marker = _FMNIST_FILES["train"][0]
    for folder in candidates:
        if _idx_file(folder, marker) is not None:
            return folder, []
    return None, [str(folder / f"{marker}[.gz]") for folder in candidates]


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


def _fmnist_load(folder: Optional[Path], split: str, augment: bool) -> Dataset:
    assert folder is not None
    paths = []
    for stem in _FMNIST_FILES[split]:
        path = _idx_file(folder, stem)
        if path is None:
            raise DataMissingError(f"Fashion-MNIST {split} file {folder / stem}[.gz] is missing: "
                                   f"put the four IDX .gz files under --data-root/FashionMNIST/raw")
        paths.append(path)
    images, labels = _read_fmnist(_file_key(paths[0]), _file_key(paths[1]))
    aug = augment and split == "train"
    return InMemoryImages(images, labels, FMNIST_MEAN, FMNIST_STD, crop_padding=2 if aug else 0,
                          flip=False, classes=FASHION_CLASSES)


DATASETS.register("fashion_mnist")(DatasetSpec(
    name="fashion_mnist", title="Fashion-MNIST", num_classes=10, in_channels=1, image_size=28,
    default_model="resnet20_cifar", mean=FMNIST_MEAN, std=FMNIST_STD,
    how_to_get="apt-get install dataset-fashion-mnist, or put the four IDX .gz files under "
               "--data-root/FashionMNIST/raw",
    loader=_fmnist_load, finder=_fmnist_find, train_size=60_000, test_size=10_000,
))
