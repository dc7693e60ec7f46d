"""digits: scikit-learn's 1,797 real 8x8 digits, always available (the offline default)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


from tasks.classification.data.common import DATASETS, DatasetSpec, InMemoryImages


DIGITS_MEAN, DIGITS_STD = (0.3054,), (0.3761,)  # of the train split scaled to [0, 1]


@functools.lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[Tensor, Tensor]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)  # float64 in 0..16, 8x8 flattened
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)

    def pack(xs: np.ndarray, ys: np.ndarray) -> tuple[Tensor, Tensor]:
        return (torch.from_numpy(xs.astype(np.uint8).reshape(-1, 1, 8, 8)),
                torch.from_numpy(ys.astype(np.int64)))

    return {"train": pack(x_tr, y_tr), "test": pack(x_te, y_te)}


def _digits_load(folder: Optional[Path], split: str, augment: bool) -> Dataset:
    images, labels = _digits_split()[split]
    return InMemoryImages(images, labels, DIGITS_MEAN, DIGITS_STD, max_value=16.0,
                          classes=[str(d) for d in range(10)])


DATASETS.register("digits")(DatasetSpec(
    name="digits", title="digits", num_classes=10, in_channels=1, image_size=8,
    default_model="resnet20_cifar", mean=DIGITS_MEAN, std=DIGITS_STD,
    how_to_get="ships with scikit-learn (sklearn.datasets.load_digits)",
    loader=_digits_load, finder=None, train_size=1437, test_size=360,
))
