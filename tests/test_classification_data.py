"""The classification data readers, on files generated in the real on-disk layouts."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.errors import DataMissingError, UserError
from tasks.classification import data
from tasks.classification.data import DATASETS, DataFormatError, load_split, locate
from tasks.classification.models import MODELS


# --------------------------------------------------------------------------- fixtures


def _dump_like_original(obj: dict, path: Path) -> None:
    """Pickle as the real archives are: protocol 2, arrays named by numpy.core (numpy 1.x)."""
    raw = pickle.dumps(obj, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    if any(isinstance(v, np.ndarray) for v in obj.values()):
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    path.write_bytes(raw)


def _cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = _cifar_images(per_batch, b)
        y = [(b * 3 + i) % 10 for i in range(per_batch)]
        if b == 1:
            x[0, :1024] = 201  # red plane of image 0
            x[0, 1024:2048] = 7  # green plane
            x[0, 2048:] = 99  # blue plane
            x[1, 1024 + 5 * 32 + 7] = 123  # green, row 5, column 7 of image 1
        _dump_like_original({"batch_label": f"training batch {b} of 5", "labels": y, "data": x,
                             "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]},
                            folder / f"data_batch_{b}")
        train_x.append(x)
        train_y += y
    test_x = _cifar_images(n_test, 99)
    test_y = [i % 10 for i in range(n_test)]
    _dump_like_original({"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x,
                         "filenames": [f"t_{i}.png" for i in range(n_test)]}, folder / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump_like_original({"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072},
                        folder / "batches.meta")
    return {"folder": folder, "train_x": np.concatenate(train_x), "train_y": train_y,
            "test_x": test_x, "test_y": test_y, "names": names}


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 5) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {"folder": folder}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x = _cifar_images(n, seed)
        fine = [(7 * i + seed) % 100 for i in range(n)]
        x[0, :1024] = 250
        x[0, 1024:] = 3
        _dump_like_original({"filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": split,
                             "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": x},
                            folder / split)
        out[split] = (x, fine)
    _dump_like_original({"fine_label_names": [f"fine{i}" for i in range(100)],
                         "coarse_label_names": [f"coarse{i}" for i in range(20)]}, folder / "meta")
    return out


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) * 3 + 1) % 10
        x[0, 3, 4] = 222
        for stem, payload in ((f"{prefix}-images-idx3-ubyte", idx_bytes(x, 2051)),
                              (f"{prefix}-labels-idx1-ubyte", idx_bytes(y, 2049))):
            if gz:
                with gzip.open(folder / f"{stem}.gz", "wb") as f:
                    f.write(payload)
            else:
                (folder / stem).write_bytes(payload)
        out[split] = (x, y)
    return out


def unnormalize(x: torch.Tensor, spec) -> torch.Tensor:
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return x * std + mean


def assert_one_line(err: Exception, *needles: str) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# --------------------------------------------------------------------------- registry


def test_registry_holds_the_five_datasets_with_usable_default_models():
    assert DATASETS.names() == ["cifar10", "cifar100", "digits", "fashion_mnist", "imagenet"]
    checked = set()
    for name in DATASETS:
        spec = DATASETS.get(name)
        assert spec.name == name
        assert len(spec.mean) == len(spec.std) == spec.in_channels
        assert "\n" not in spec.how_to_get
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.num_classes = 3  # type: ignore[misc]
        # the default model runs on the data set's input (cifar10 and cifar100 share one check)
        key = (spec.default_model, spec.in_channels, spec.image_size)
        if key in checked:
            continue
        checked.add(key)
        model = MODELS.get(spec.default_model)(num_classes=spec.num_classes,
                                               in_channels=spec.in_channels).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size))
        assert out.shape == (1, spec.num_classes)
    assert DATASETS.get("cifar10").default_model == "resnet18_cifar"
    assert DATASETS.get("imagenet").default_model == "resnet18_imagenet"


def test_unknown_dataset_split_or_subset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="valid choices"):
        load_split("mnist9", "train", str(tmp_path))
    with pytest.raises(UserError, match="valid choices: train, test"):
        load_split("digits", "val", None)
    with pytest.raises(UserError, match="positive"):
        load_split("digits", "train", None, subset=0)


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_real_layout_round_trips_pixels_labels_and_channel_order(tmp_path):
    gen = write_cifar10(tmp_path)
    spec = DATASETS.get("cifar10")
    assert locate(spec, str(tmp_path)) == gen["folder"]
    train = load_split("cifar10", "train", str(tmp_path), None, augment=False)
    test = load_split("cifar10", "test", str(tmp_path), None, augment=False)
    assert len(train) == 20 and len(test) == 6
    assert train.targets == gen["train_y"] and test.targets == gen["test_y"]
    assert train.classes == gen["names"]
    # channel-major rows become C x H x W: the planes of image 0 land in channels 0, 1, 2
    raw0 = train.raw(0)
    assert raw0.shape == (3, 32, 32) and raw0.dtype == torch.uint8
    assert (raw0[0] == 201).all() and (raw0[1] == 7).all() and (raw0[2] == 99).all()
    assert train.raw(1)[1, 5, 7] == 123
    assert torch.equal(train.raw(13), torch.from_numpy(gen["train_x"][13].reshape(3, 32, 32)))
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and isinstance(y, int)
    torch.testing.assert_close(unnormalize(x, spec)[:, 0, 0], torch.tensor([201, 7, 99]) / 255.0)
    assert y == gen["train_y"][0]
    # a DataLoader collates the items
    xb, yb = next(iter(DataLoader(test, batch_size=4)))
    assert xb.shape == (4, 3, 32, 32) and yb.tolist() == gen["test_y"][:4]


def test_cifar10_root_may_be_the_batches_folder_itself(tmp_path):
    gen = write_cifar10(tmp_path)
    test = load_split("cifar10", "test", str(gen["folder"]), None, False)
    assert len(test) == 6 and test.targets == gen["test_y"]


def test_cifar10_augment_is_a_padded_crop_or_flip_of_the_train_image_only(tmp_path):
    write_cifar10(tmp_path)
    spec = DATASETS.get("cifar10")
    train = load_split("cifar10", "train", str(tmp_path), None, augment=True)
    raw = train.raw(2)
    padded = torch.nn.functional.pad(raw, (4, 4, 4, 4))
    windows = {(dy, dx, f): (padded[:, dy:dy + 32, dx:dx + 32].flip(-1) if f else padded[:, dy:dy + 32, dx:dx + 32])
               for dy in range(9) for dx in range(9) for f in (False, True)}
    seen = set()
    for _ in range(40):
        x, _ = train[2]
        pixels = torch.round(unnormalize(x, spec) * 255).to(torch.uint8)
        match = [k for k, w in windows.items() if torch.equal(w, pixels)]
        assert match, "augmented image is not a padded crop (or its mirror) of the raw image"
        seen.add(match[0])
    assert len(seen) > 5  # it does vary
    test = load_split("cifar10", "test", str(tmp_path), None, augment=True)
    torch.testing.assert_close(test[1][0], test[1][0])  # no augmentation at test time


def test_cifar100_reads_fine_labels(tmp_path):
    gen = write_cifar100(tmp_path)
    spec = DATASETS.get("cifar100")
    train = load_split("cifar100", "train", str(tmp_path), None, False)
    test = load_split("cifar100", "test", str(tmp_path), None, False)
    assert len(train) == 12 and len(test) == 5 and spec.num_classes == 100
    assert train.targets == gen["train"][1] and test.targets == gen["test"][1]
    assert max(train.targets) > 19  # fine, not coarse, labels
    assert train.classes[:2] == ["fine0", "fine1"]
    assert (test.raw(0)[0] == 250).all() and (test.raw(0)[1:] == 3).all()
    torch.testing.assert_close(unnormalize(test[0][0], spec)[:, 9, 9], torch.tensor([250, 3, 3]) / 255.0)


def test_cifar_malformed_files_give_one_line_errors_naming_the_file(tmp_path):
    gen = write_cifar10(tmp_path)
    bad = gen["folder"] / "test_batch"
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(DataFormatError) as err:
        load_split("cifar10", "test", str(tmp_path), None, False)
    assert_one_line(err.value, str(bad))

    _dump_like_original({"labels": [0, 1], "data": np.zeros((2, 3000), np.uint8)}, bad)
    with pytest.raises(DataMissingError) as err:
        load_split("cifar10", "test", str(tmp_path), None, False)
    assert_one_line(err.value, str(bad), "3072")

    (gen["folder"] / "data_batch_3").unlink()
    with pytest.raises(DataMissingError) as err:
        load_split("cifar10", "train", str(tmp_path), None, False)
    assert_one_line(err.value, "data_batch_3")


class _Hostile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_cifar_pickle_reader_runs_no_code_from_the_file(tmp_path):
    gen = write_cifar10(tmp_path)
    target = tmp_path / "created_by_pickle"
    (gen["folder"] / "test_batch").write_bytes(
        pickle.dumps({"data": _Hostile(str(target)), "labels": []}, protocol=2))
    with pytest.raises(DataFormatError, match="refusing"):
        load_split("cifar10", "test", str(tmp_path), None, False)
    assert not target.exists()


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_idx_gz_files_load(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    gen = write_fmnist(tmp_path / "FashionMNIST" / "raw")
    spec = DATASETS.get("fashion_mnist")
    assert locate(spec, str(tmp_path)) == tmp_path / "FashionMNIST" / "raw"
    train = load_split("fashion_mnist", "train", str(tmp_path), None, augment=True)
    test = load_split("fashion_mnist", "test", str(tmp_path), None, augment=False)
    assert len(train) == 5 and len(test) == 3
    assert train.targets == gen["train"][1].tolist() and test.targets == gen["test"][1].tolist()
    assert train.raw(0).shape == (1, 28, 28) and train.raw(0)[0, 3, 4] == 222
    x, y = test[0]
    assert x.shape == (1, 28, 28) and y == int(gen["test"][1][0])
    assert round(float(unnormalize(x, spec)[0, 3, 4]) * 255) == 222
    assert train[1][0].shape == (1, 28, 28)


def test_fashion_mnist_accepts_extracted_files_in_the_root(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    gen = write_fmnist(tmp_path / "plain", gz=False)
    test = load_split("fashion_mnist", "test", str(tmp_path / "plain"), None, False)
    assert test.targets == gen["test"][1].tolist() and test.raw(0)[0, 3, 4] == 222


def test_fashion_mnist_wrong_magic_or_size_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    folder = tmp_path / "FashionMNIST" / "raw"
    write_fmnist(folder)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:
        f.write(idx_bytes(np.zeros(3), 2051))  # an images magic in a labels file
    with pytest.raises(DataFormatError) as err:
        load_split("fashion_mnist", "test", str(tmp_path), None, False)
    assert_one_line(err.value, str(labels), "2051", "2049")

    images = folder / "train-images-idx3-ubyte.gz"
    with gzip.open(images, "wb") as f:
        f.write(idx_bytes(np.zeros((5, 28, 28)), 2051)[:-10])  # truncated
    with pytest.raises(DataFormatError) as err:
        load_split("fashion_mnist", "train", str(tmp_path), None, False)
    assert_one_line(err.value, str(images))


@pytest.mark.skipif(not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_the_complete_data_set(tmp_path):
    train = load_split("fashion_mnist", "train", str(tmp_path), None, False)
    test = load_split("fashion_mnist", "test", None, None, False)
    assert len(train) == 60_000 and len(test) == 10_000
    assert sorted(set(train.targets)) == list(range(10)) == sorted(set(test.targets))
    assert np.bincount(test.targets).tolist() == [1000] * 10
    # the standard statistics hold on the real pixels
    pixels = train.images[:10_000].float() / 255
    assert abs(pixels.mean().item() - 0.2860) < 0.01 and abs(pixels.std().item() - 0.3530) < 0.01


# --------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet", "fashion_mnist"])
def test_missing_data_is_one_line_naming_the_folder_and_the_fix(name, tmp_path, monkeypatch):
    missing_debian = tmp_path / "no-debian"
    monkeypatch.setattr(data.idx, "DEBIAN_FASHION_MNIST", missing_debian)
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = DATASETS.get(name)
    assert locate(spec, str(empty)) is None
    with pytest.raises(DataMissingError) as err:
        load_split(name, "train", str(empty), None, False)
    msg = assert_one_line(err.value, spec.title, str(empty), spec.how_to_get)
    if name == "fashion_mnist":
        assert str(missing_debian) in msg and "apt-get install dataset-fashion-mnist" in msg
    if name == "cifar10":
        assert "cifar-10-batches-py/data_batch_1" in msg and "cifar-10-python.tar.gz" in msg
    with pytest.raises(DataMissingError) as err:
        load_split(name, "test", None, None, False)
    assert_one_line(err.value, spec.how_to_get)


# --------------------------------------------------------------------------- ImageNet


def _write_image_tree(root: Path, fmt: str) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for wnid in ("n01440764", "n01443537"):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.{fmt}")


@pytest.mark.parametrize("fmt,nested", [("JPEG", False), ("png", True)])
def test_imagenet_image_folder_tree_loads(tmp_path, fmt, nested):
    _write_image_tree(tmp_path / "imagenet" if nested else tmp_path, fmt)
    train = load_split("imagenet", "train", str(tmp_path), None, augment=True)
    val = load_split("imagenet", "test", str(tmp_path), None, augment=False)
    assert len(train) == 6 and len(val) == 4
    assert train.classes == ["n01440764", "n01443537"] and sorted(set(val.targets)) == [0, 1]
    x, y = train[4]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 1
    xv, yv = val[0]
    assert xv.shape == (3, 224, 224) and yv == 0
    torch.testing.assert_close(val[1][0], val[1][0])  # deterministic at test time
    sub = load_split("imagenet", "train", str(tmp_path), subset=2, augment=False)
    assert len(sub) == 2 and sorted(sub[i][1] for i in range(2)) == [0, 1]  # stratified


def test_imagenet_mismatched_class_folders_are_refused(tmp_path):
    _write_image_tree(tmp_path, "png")
    (tmp_path / "val" / "n01443537").rename(tmp_path / "val" / "n99999999")
    with pytest.raises(DataFormatError) as err:
        load_split("imagenet", "test", str(tmp_path), None, False)
    assert_one_line(err.value, str(tmp_path / "val"))


# --------------------------------------------------------------------------- digits and subsets


def test_digits_split_is_stratified_deterministic_and_normalized():
    spec = DATASETS.get("digits")
    train = load_split("digits", "train", None, None, augment=True)
    test = load_split("digits", "test", "/nonexistent", None, augment=False)
    assert len(train) == 1437 and len(test) == 360
    assert np.bincount(test.targets).min() >= 35  # stratified: 10 classes of about 36
    again = load_split("digits", "test", None, None, False)
    assert torch.equal(again.images, test.images) and again.targets == test.targets
    x, y = train[0]
    assert x.shape == (1, 8, 8) and 0 <= y <= 9
    torch.testing.assert_close(train[0][0], train[0][0])  # never augmented
    pixels = unnormalize(torch.stack([train[i][0] for i in range(200)]), spec)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.max() > 0.99
    all_x = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(all_x.mean().item()) < 0.02 and abs(all_x.std().item() - 1) < 0.02


def test_subset_is_deterministic_stratified_and_depends_only_on_subset_seed():
    full = load_split("digits", "train", None, None, False)
    torch.manual_seed(123)
    a = load_split("digits", "train", None, subset=100, augment=False)
    torch.manual_seed(456)
    b = load_split("digits", "train", None, subset=100, augment=False)
    c = load_split("digits", "train", None, subset=100, augment=False, subset_seed=1)
    assert len(a) == 100
    assert torch.equal(a.images, b.images) and a.targets == b.targets
    assert not torch.equal(a.images, c.images)
    assert np.bincount(a.targets).tolist() == [10] * 10
    assert np.bincount(load_split("digits", "train", None, 25, False).targets).max() == 3
    # every subset item is an item of the full split
    rows = {tuple(full.images[i].flatten().tolist()) for i in range(len(full))}
    assert all(tuple(a.images[i].flatten().tolist()) in rows for i in range(len(a)))
    assert len(load_split("digits", "test", None, subset=10_000, augment=False)) == 360


def test_cifar_subset_keeps_the_in_memory_dataset(tmp_path):
    write_cifar10(tmp_path)
    sub = load_split("cifar10", "train", str(tmp_path), subset=10, augment=True, subset_seed=3)
    assert isinstance(sub, data.InMemoryImages) and len(sub) == 10 and sub.augment
    assert sorted(sub.targets) == list(range(10))  # one item a class


def test_the_validation_split_is_disjoint_stratified_deterministic_and_not_augmented(tmp_path):
    written = write_cifar10(tmp_path, per_batch=20)  # 100 training images, 10 classes
    train, val = data.train_and_validation("cifar10", str(tmp_path), 30, augment=True)
    assert len(train) == 70 and len(val) == 30
    assert not val.augment and train.augment
    pixels = lambda ds: {bytes(ds.raw(i).numpy()) for i in range(len(ds))}  # noqa: E731
    assert not pixels(train) & pixels(val)                                 # disjoint
    assert sorted(torch.bincount(val.labels, minlength=10).tolist()) == [3] * 10  # every class its share
    again_train, again_val = data.train_and_validation("cifar10", str(tmp_path), 30, augment=True)
    assert torch.equal(again_val.images, val.images) and torch.equal(again_train.images, train.images)
    # the training subset is drawn from what is left, so it never holds a validation image
    subset, _ = data.train_and_validation("cifar10", str(tmp_path), 30, subset=20)
    assert len(subset) == 20 and not pixels(subset) & pixels(val)
    # no validation split: the train split exactly as before
    whole, none = data.train_and_validation("cifar10", str(tmp_path), 0)
    assert none is None and torch.equal(whole.images, load_split("cifar10", "train", str(tmp_path)).images)
    with pytest.raises(UserError, match="val_size must be between 1 and 99"):
        data.train_and_validation("cifar10", str(tmp_path), 100)
    assert written  # the fixture's images were written


def test_a_val_size_beyond_the_train_split_is_refused_before_a_row_exists(tmp_path):
    from bench.cli import main
    from bench.db import ResultsDB

    db_url = f"sqlite:///{tmp_path}/r.sqlite"
    code = main(["run", "--task", "classification", "--dataset", "digits", "--estimator", "ste", "--quiet",
                 "--set", "val_size=1437", "--db", db_url])
    assert code == 2 and ResultsDB(db_url).list_runs() == []


def test_image_size_resizes_each_image_once_by_area_averaging(tmp_path):
    write_fmnist(tmp_path / "FashionMNIST" / "raw", n_train=6, n_test=3)
    native = load_split("fashion_mnist", "train", str(tmp_path))
    half = load_split("fashion_mnist", "train", str(tmp_path), image_size=14)
    assert half.images.shape[-2:] == (14, 14) and torch.equal(half.labels, native.labels)
    expected = torch.nn.functional.avg_pool2d(native.images.float(), 2).round().to(torch.uint8)
    assert torch.equal(half.images, expected)
    assert torch.equal(load_split("fashion_mnist", "train", str(tmp_path), image_size=28).images, native.images)
    _, val = data.train_and_validation("fashion_mnist", str(tmp_path), 2, image_size=14)
    assert val.images.shape[-2:] == (14, 14)
