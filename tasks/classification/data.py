"""Image classification data sets, read from their real on-disk formats.

Each data set is a :class:`DatasetSpec` in :data:`DATASETS`; :func:`load_split` turns a
name and a split into a ``torch.utils.data.Dataset`` of ``(float32 CxHxW normalized
image, int label)`` pairs. The readers are small and our own:

* CIFAR-10 / CIFAR-100: the python-pickle archives as extracted from
  ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``. Pickles are read with a
  restricted unpickler that only resolves the numpy globals an array needs, so a
  hostile file cannot run code. (torchvision's readers check md5 sums and would refuse
  generated test fixtures.)
* Fashion-MNIST: the original big-endian IDX files, gzipped or not.
* ImageNet: ``torchvision.datasets.ImageFolder`` over ``train/<wnid>/`` and ``val/<wnid>/``.
* digits: scikit-learn's 1,797 real 8x8 digits, always available (the offline default).

The small sets are decoded once into uint8 tensors held in memory (and cached per file,
so loading the same split again in one process costs nothing); augmentation (random
crop with zero padding, horizontal flip) is done per item on the tensor. Padding is
applied to the raw pixels before normalization, as torchvision's ``RandomCrop(padding)``
followed by ``Normalize`` does.

``subset`` is stratified: the items are shuffled with a fixed permutation drawn from
``subset_seed`` alone (never the run's seed), then the classes take turns in that order,
so the first ``subset`` items hold every class within one item of the same count (as far
as each class has items). A ``subset`` at least the split's size keeps the whole split.

A missing data set raises :class:`bench.errors.DataMissingError` with one line naming
the data set, the places looked at and how to get it; a malformed file raises
:class:`DataFormatError` (a DataMissingError) naming the file.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from bench.errors import DataMissingError, UserError
from estimators.registry import Registry

SPLITS = ("train", "test")

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX .gz files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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


# --------------------------------------------------------------------------- in memory


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

    def select(self, indices: Sequence[int] | Tensor) -> "InMemoryImages":
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return InMemoryImages(self.images[idx], self.labels[idx], self.mean, self.std,
                              max_value=self.max_value, crop_padding=self.crop_padding,
                              flip=self.flip, classes=self.classes)


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- CIFAR


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


# --------------------------------------------------------------------------- Fashion-MNIST

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


# --------------------------------------------------------------------------- ImageNet

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


# --------------------------------------------------------------------------- digits

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


# --------------------------------------------------------------------------- public API


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS.get(name)
    except ValueError as e:
        raise UserError(str(e)) from None


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


def take_subset(dataset: Dataset, subset: Optional[int], subset_seed: int = 0) -> Dataset:
    if subset is None:
        return dataset
    if isinstance(subset, bool) or not isinstance(subset, int) or subset <= 0:
        raise UserError(f"subset must be a positive number of items, got {subset!r}")
    n = len(dataset)  # type: ignore[arg-type]
    if subset >= n:
        return dataset
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = [0] * n
    idx = stratified_order(labels, subset_seed)[:subset]
    if isinstance(dataset, InMemoryImages):
        return dataset.select(idx)
    return Subset(dataset, idx.tolist())


def load_split(name: str, split: str, data_root: str | os.PathLike | None = None,
               subset: Optional[int] = None, augment: bool = False, subset_seed: int = 0) -> Dataset:
    """The ``split`` ("train" or "test") of data set ``name`` as (float32 CxHxW, int label) items.

    ``augment`` applies to the train split only. ``subset`` keeps a deterministic
    stratified subset of that many items chosen by ``subset_seed`` (see the module doc).
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    folder = check_available(name, data_root)
    dataset = spec.loader(folder, split, bool(augment))
    return take_subset(dataset, subset, subset_seed)
