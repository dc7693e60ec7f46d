"""What every classification reader shares: the dataset spec and registry, the in-memory
image dataset (normalization and augmentation per item) and small file helpers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from bench.errors import DataMissingError
from estimators.registry import Registry

SPLITS = ("train", "test")

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX .gz files.


class DataFormatError(DataMissingError):
    """A data file is there but is not in the expected format (the message names it)."""


# A finder maps the user's --data-root (or None) to (the folder holding the data or
# None, the paths that were looked for, for the error message).
Finder = Callable[[Optional[Path]], tuple[Optional[Path], list[str]]]
# A loader maps (the folder found by the finder or None, split, augment) to a Dataset.
Loader = Callable[[Optional[Path], str, bool], Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    """What the classification task needs to know about one data set."""

    name: str
    title: str  # the name people write, for messages ("CIFAR-10")
    num_classes: int
    in_channels: int
    image_size: int  # side of the square input the model sees
    default_model: str  # a name in tasks.classification.models.MODELS
    mean: tuple[float, ...]
    std: tuple[float, ...]
    how_to_get: str  # one line
    loader: Loader
    finder: Optional[Finder] = None  # None: needs no files (digits)
    train_size: Optional[int] = None  # items in the full real splits, for information
    test_size: Optional[int] = None

    @property
    def needs_files(self) -> bool:
        return self.finder is not None


DATASETS: Registry[DatasetSpec] = Registry("dataset")




class InMemoryImages(Dataset):
    """uint8 images (N x C x H x W) and int64 labels, normalized and augmented per item."""

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float],
                 *, max_value: float = 255.0, crop_padding: int = 0, flip: bool = False,
                 classes: Optional[Sequence[str]] = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_value = float(max_value)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.classes = list(classes) if classes is not None else None
        c = images.shape[1]
        self._scale = (1.0 / (self.max_value * torch.tensor(self.std, dtype=torch.float32))).view(c, 1, 1)
        self._shift = (torch.tensor(self.mean, dtype=torch.float32)
                       / torch.tensor(self.std, dtype=torch.float32)).view(c, 1, 1)

    @property
    def augment(self) -> bool:
        return self.crop_padding > 0 or self.flip

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return self.images.shape[0]

    def raw(self, index: int) -> Tensor:
        """The stored uint8 image, before augmentation and normalization."""
        return self.images[index]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img = self.images[index]
        p = self.crop_padding
        if p > 0:
            h, w = img.shape[-2:]
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            img = F.pad(img, (p, p, p, p))[:, dy:dy + h, dx:dx + w]
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        x = img.to(torch.float32) * self._scale - self._shift
        return x, int(self.labels[index])

    def resized(self, size: int) -> "InMemoryImages":
        """The same images resized to ``size`` x ``size`` once, by area averaging (antialiased
        downsampling; bilinear when enlarging), rounded back to the stored integer range."""
        pixels = self.images.to(torch.float32)
        mode = "area" if size < self.images.shape[-1] else "bilinear"
        resized = F.interpolate(pixels, size=(size, size), mode=mode, **({} if mode == "area" else
                                                                         {"align_corners": False}))
        images = resized.round().clamp(0, 255).to(torch.uint8)
        return InMemoryImages(images, self.labels, self.mean, self.std, max_value=self.max_value,
                              crop_padding=self.crop_padding, flip=self.flip, classes=self.classes)

    def select(self, indices: Sequence[int] | Tensor) -> "InMemoryImages":
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return InMemoryImages(self.images[idx], self.labels[idx], self.mean, self.std,
                              max_value=self.max_value, crop_padding=self.crop_padding,
                              flip=self.flip, classes=self.classes)




def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _first_existing(folder: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _where(data_root: Optional[Path], looked: list[str]) -> str:
    if data_root is None and not looked:
        return "(no --data-root given)"
    where = f"under {data_root}" if data_root is not None else "with no --data-root given"
    return f"{where} (looked for {', '.join(looked)})" if looked else where
