"""CIFAR-10 / CIFAR-100: the python-pickle batches of cifar-10-python.tar.gz /
cifar-100-python.tar.gz, read with a restricted unpickler that only resolves the numpy globals
an array needs (a hostile file cannot run code)."""
from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.errors import DataMissingError

from tasks.classification.data.common import (
    DATASETS, DataFormatError, DatasetSpec, Finder, InMemoryImages, Loader, _file_key,
)



class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only what a pickled dict of numpy arrays and lists needs."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        # Files written by numpy 1.x (the real CIFAR archives) name numpy.core, numpy 2 numpy._core.
        if module.startswith("numpy.core."):
            canonical = "numpy._core." + module[len("numpy.core."):]
        else:
            canonical = module
        if (canonical, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if canonical != module and hasattr(np, "_core"):
            module = canonical  # avoids numpy 2's deprecation shim
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise DataFormatError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... on a corrupt file
        raise DataFormatError(f"{path} is not a CIFAR python pickle ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'corrupt'})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path} is not a CIFAR python pickle (holds a {type(obj).__name__}, not a dict)")
    # Python 2 pickles read with encoding=latin1 have str keys; tolerate bytes keys too.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


@functools.lru_cache(maxsize=4)
def _read_cifar_batches(keys: tuple[tuple[str, int, int], ...], label_key: str,
                        num_classes: int) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for path_str, _, _ in keys:
        path = Path(path_str)
        batch = _load_pickle(path)
        if "data" not in batch or label_key not in batch:
            raise DataFormatError(f"{path} has no 'data'/{label_key!r} entries "
                                  f"(keys: {', '.join(map(str, batch))})")
        try:
            data = np.asarray(batch["data"])
            lab = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise DataFormatError(f"{path}: unreadable 'data' or {label_key!r} ({e})") from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataFormatError(f"{path}: 'data' must be uint8 N x 3072, got {data.dtype} {data.shape}")
        if lab.shape[0] != data.shape[0]:
            raise DataFormatError(f"{path}: {data.shape[0]} images but {lab.shape[0]} labels")
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataFormatError(f"{path}: labels outside 0..{num_classes - 1}")
        # Each row is channel-major: 1024 red, 1024 green, 1024 blue, each 32x32 row-major.
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(lab))
    return torch.cat(images), torch.cat(labels)


def _cifar_names(folder: Path, meta_file: str, key: str) -> Optional[list[str]]:
    path = folder / meta_file
    if not path.is_file():
        return None
    names = _load_pickle(path).get(key)
    return [str(n) for n in names] if names is not None else None


def _cifar_finder(subdir: str, marker: str) -> Finder:
    def find(data_root: Optional[Path]) -> tuple[Optional[Path], list[str]]:
        if data_root is None:
            return None, []
        candidates = [data_root / subdir, data_root]
        for folder in candidates:
            if (folder / marker).is_file():
                return folder, []
        return None, [str(folder / marker) for folder in candidates]

    return find


def _cifar_loader(title: str, files: dict[str, tuple[str, ...]], label_key: str, num_classes: int,
                  meta: tuple[str, str], mean, std) -> Loader:
    def load(folder: Optional[Path], split: str, augment: bool) -> Dataset:
        assert folder is not None
        paths = []
        for name in files[split]:
            path = folder / name
            if not path.is_file():
                raise DataMissingError(f"{title} {split} file {path} is missing: re-extract the archive")
            paths.append(path)
        images, labels = _read_cifar_batches(tuple(_file_key(p) for p in paths), label_key, num_classes)
        aug = augment and split == "train"
        return InMemoryImages(images, labels, mean, std, crop_padding=4 if aug else 0, flip=aug,
                              classes=_cifar_names(folder, *meta))

    return load


CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

DATASETS.register("cifar10")(DatasetSpec(
    name="cifar10", title="CIFAR-10", num_classes=10, in_channels=3, image_size=32,
    default_model="resnet18_cifar", mean=CIFAR10_MEAN, std=CIFAR10_STD,
    how_to_get="download and extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "into --data-root",
    loader=_cifar_loader("CIFAR-10", {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                                      "test": ("test_batch",)},
                         "labels", 10, ("batches.meta", "label_names"), CIFAR10_MEAN, CIFAR10_STD),
    finder=_cifar_finder("cifar-10-batches-py", "data_batch_1"),
    train_size=50_000, test_size=10_000,
))

DATASETS.register("cifar100")(DatasetSpec(
    name="cifar100", title="CIFAR-100", num_classes=100, in_channels=3, image_size=32,
    default_model="resnet18_cifar", mean=CIFAR100_MEAN, std=CIFAR100_STD,
    how_to_get="download and extract cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
               "into --data-root",
    loader=_cifar_loader("CIFAR-100", {"train": ("train",), "test": ("test",)},
                         "fine_labels", 100, ("meta", "fine_label_names"), CIFAR100_MEAN, CIFAR100_STD),
    finder=_cifar_finder("cifar-100-python", "train"),
    train_size=50_000, test_size=10_000,
))
