"""Image classification data sets, read from their real on-disk formats.

Each data set is a :class:`DatasetSpec` in :data:`DATASETS`; :func:`load_split` turns a
name and a split into a ``torch.utils.data.Dataset`` of ``(float32 CxHxW normalized
image, int label)`` pairs. The readers are small and our own, one module per format:

* ``cifar.py``, CIFAR-10 / CIFAR-100: the python-pickle archives as extracted from
  ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``. Pickles are read with a
  restricted unpickler that only resolves the numpy globals an array needs, so a
  hostile file cannot run code. (torchvision's readers check md5 sums and would refuse
  generated test fixtures.)
* ``idx.py``, Fashion-MNIST: the original big-endian IDX files, gzipped or not.
* ``image_folder.py``, ImageNet: ``torchvision.datasets.ImageFolder`` over ``train/<wnid>/`` and ``val/<wnid>/``.
* ``digits.py``: scikit-learn's 1,797 real 8x8 digits, always available (the offline default).

The small sets are decoded once into uint8 tensors held in memory (and cached per file,
so loading the same split again in one process costs nothing); augmentation (random
crop with zero padding, horizontal flip) is done per item on the tensor. Padding is
applied to the raw pixels before normalization, as torchvision's ``RandomCrop(padding)``
followed by ``Normalize`` does.

The validation split (:func:`train_and_validation`) is held out of the train split: the first
``val_size`` items of a stratified order drawn from :data:`bench.splits.VALIDATION_SEED` (a constant, never
the run's seed or ``subset_seed``), so every class gives the same share, the split is the same
on every machine and for every run, and it never overlaps the items training draws from. The
test split stays the reported one.

``subset`` is stratified: the items are shuffled with a fixed permutation drawn from
``subset_seed`` alone (never the run's seed), then the classes take turns in that order,
so the first ``subset`` items hold every class within one item of the same count (as far
as each class has items). A ``subset`` at least the split's size keeps the whole split.

A missing data set raises :class:`bench.errors.DataMissingError` with one line naming
the data set, the places looked at and how to get it; a malformed file raises
:class:`DataFormatError` (a DataMissingError) naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from bench.errors import DataMissingError, UserError, lookup
from bench.splits import VALIDATION_SEED, check_val_size
from tasks.classification.data import cifar, digits, idx, image_folder  # noqa: F401 - each registers its datasets
from tasks.classification.data.common import (  # noqa: F401 - the package's public names
    DATASETS, SPLITS, DataFormatError, DatasetSpec, InMemoryImages, _where,
)
from tasks.classification.data.idx import DEBIAN_FASHION_MNIST, read_idx  # noqa: F401



def get_spec(name: str) -> DatasetSpec:
    return lookup(DATASETS, name)


def _root(data_root: str | os.PathLike | None) -> Optional[Path]:
    return Path(data_root).expanduser() if data_root not in (None, "") else None


def locate(spec: DatasetSpec, data_root: str | os.PathLike | None) -> Optional[Path]:
    """The folder holding ``spec``'s files, or None (also None for sets that need no files)."""
    if spec.finder is None:
        return None
    return spec.finder(_root(data_root))[0]


def missing_message(spec: DatasetSpec, data_root: str | os.PathLike | None) -> str:
    """The one-line message of the DataMissingError raised when ``spec`` is not found."""
    root = _root(data_root)
    looked = spec.finder(root)[1] if spec.finder is not None else []
    return f"{spec.title} not found {_where(root, looked)}: {spec.how_to_get}"


def check_available(name: str, data_root: str | os.PathLike | None) -> Optional[Path]:
    """Raise DataMissingError unless ``name`` can be loaded; returns :func:`locate`'s folder."""
    spec = get_spec(name)
    folder = locate(spec, data_root)
    if spec.needs_files and folder is None:
        raise DataMissingError(missing_message(spec, data_root))
    return folder


def stratified_order(labels: Sequence[int] | Tensor, seed: int) -> Tensor:
    """Indices in a fixed shuffled order where the classes take turns (see the module doc)."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = labels.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    shuffled = labels[perm]
    # rank of each item among the items of its class, in permutation order
    order = torch.argsort(shuffled, stable=True)
    sorted_labels = shuffled[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts
    return perm[torch.argsort(rank, stable=True)]


class LabelledSubset(Subset):
    """A Subset that keeps its items' labels as ``targets`` (so it can be stratified again)."""

    @property
    def targets(self) -> list[int]:
        labels = self.dataset.targets
        return [int(labels[i]) for i in self.indices]


def select(dataset: Dataset, indices: Tensor) -> Dataset:
    """The items at ``indices`` (in that order), keeping their labels."""
    if isinstance(dataset, InMemoryImages):
        return dataset.select(indices)
    return LabelledSubset(dataset, [int(i) for i in indices])


def _labels(dataset: Dataset) -> Sequence[int]:
    labels = getattr(dataset, "targets", None)
    return labels if labels is not None else [0] * len(dataset)  # type: ignore[arg-type]


def take_subset(dataset: Dataset, subset: Optional[int], subset_seed: int = 0) -> Dataset:
    if subset is None:
        return dataset
    if isinstance(subset, bool) or not isinstance(subset, int) or subset <= 0:
        raise UserError(f"subset must be a positive number of items, got {subset!r}")
    n = len(dataset)  # type: ignore[arg-type]
    if subset >= n:
        return dataset
    return select(dataset, stratified_order(_labels(dataset), subset_seed)[:subset])


def validation_indices(labels: Sequence[int] | Tensor, val_size: int) -> tuple[Tensor, Tensor]:
    """(train, validation) indices of a train split of these labels, each in ascending order."""
    check_val_size(len(labels), val_size)
    order = stratified_order(labels, VALIDATION_SEED)
    return order[val_size:].sort().values, order[:val_size].sort().values


def train_and_validation(name: str, data_root: str | os.PathLike | None, val_size: int, subset: Optional[int] = None,
                         augment: bool = False, subset_seed: int = 0,
                         image_size: int = 0) -> tuple[Dataset, Optional[Dataset]]:
    """The train split less its validation items (then ``subset`` of it, augmented if asked) and
    the ``val_size`` validation items (never augmented); no validation set for ``val_size`` 0."""
    if not val_size:
        return load_split(name, "train", data_root, subset, augment, subset_seed, image_size), None
    train = _load(name, "train", data_root, augment, image_size)
    plain = _load(name, "train", data_root, False, image_size) if augment else train
    train_indices, val_indices = validation_indices(_labels(plain), val_size)
    return take_subset(select(train, train_indices), subset, subset_seed), select(plain, val_indices)


def _load(name: str, split: str, data_root, augment: bool, image_size: int) -> Dataset:
    spec = get_spec(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    dataset = spec.loader(check_available(name, data_root), split, bool(augment))
    if not image_size or image_size == spec.image_size:
        return dataset
    if not isinstance(dataset, InMemoryImages):
        raise UserError(f"image_size applies to the in-memory data sets (CIFAR, Fashion-MNIST, digits), not {name}")
    return dataset.resized(image_size)


def load_split(name: str, split: str, data_root: str | os.PathLike | None = None,
               subset: Optional[int] = None, augment: bool = False, subset_seed: int = 0,
               image_size: int = 0) -> Dataset:
    """The ``split`` ("train" or "test") of data set ``name`` as (float32 CxHxW, int label) items.

    ``augment`` applies to the train split only. ``subset`` keeps a deterministic
    stratified subset of that many items chosen by ``subset_seed`` (see the module doc).
    ``image_size`` (0: the set's own) resizes every image once, as it is loaded
    (:meth:`InMemoryImages.resized`).
    """
    return take_subset(_load(name, split, data_root, augment, image_size), subset, subset_seed)
