"""The offline detection set: Fashion-MNIST items pasted onto real photos and textures.

Every image is a crop of one of scikit-image's bundled pictures (photos such as
``astronaut`` and ``coffee``, textures such as ``grass`` and ``brick``), with 1 to
``max_objects`` Fashion-MNIST items pasted at random positions, scales and colours.
An item is pasted through its own binary mask (pixels above a threshold), so each box
is exactly the tight box of the pasted mask and the category is the item's class.
Train images use Fashion-MNIST's train items, val images its test items.

The set is written in the COCO layout mmdet's CocoDataset reads::

    <folder>/annotations/instances_train.json  instances_val.json
    <folder>/train/000000.png ...                val/000000.png ...

Images are PNG (lossless), so the pixels carry the boxes exactly. The same scenes can
be written in the VOC layout with :func:`write_voc` (for testing VOC readers).
Generation is deterministic for a given :class:`SceneSpec`.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from bench.errors import DataMissingError

GENERATOR_VERSION = "1"
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle-boot")
#: scikit-image's bundled pictures (no download): photos in colour, textures in grey
BACKGROUNDS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
               "grass", "gravel", "brick", "camera", "moon")
MASK_THRESHOLD = 40  # of 255: an item pixel belongs to the object above it


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    image_size: int = 160
    n_train: int = 1000
    n_val: int = 250
    max_objects: int = 4
    min_scale: float = 1.0  # item side 28 px times the scale
    max_scale: float = 2.5
    max_iou: float = 0.25  # pasted boxes overlap at most this much
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclasses.dataclass
class Scene:
    image: np.ndarray  # H x W x 3 uint8
    boxes: list[tuple[int, int, int, int]]  # x0, y0, x1, y1 inclusive pixel indices
    labels: list[int]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    n_dims = data[3]
    shape = struct.unpack(f">{n_dims}I", data[4:4 + 4 * n_dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def find_fashion_mnist(extra: Optional[Path] = None) -> Path:
    candidates = ([extra] if extra else []) + list(FASHION_MNIST_DIRS)
    for folder in candidates:
        if folder and (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    raise DataMissingError(
        "the offline detection set needs Fashion-MNIST: install Debian's dataset-fashion-mnist "
        "(sudo apt-get install dataset-fashion-mnist) or put its four .gz files under "
        f"{candidates[0] if candidates else FASHION_MNIST_DIRS[0]}"
    )


def load_items(fashion_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(fashion_dir / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(fashion_dir / f"{prefix}-labels-idx1-ubyte.gz")
    return images, labels


def load_backgrounds() -> list[np.ndarray]:
    try:
        import skimage.data
    except ImportError as error:
        raise DataMissingError(
            "the offline detection set needs scikit-image: scripts/setup_env.sh detection") from error
    pictures = []
    for name in BACKGROUNDS:
        picture = np.asarray(getattr(skimage.data, name)())
        if picture.ndim == 2:
            picture = np.repeat(picture[:, :, None], 3, axis=2)
        pictures.append(np.ascontiguousarray(picture[:, :, :3]))
    return pictures


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area = lambda box: (box[2] - box[0] + 1) * (box[3] - box[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _background(rng: np.random.Generator, pictures: list[np.ndarray], size: int) -> np.ndarray:
    picture = pictures[rng.integers(len(pictures))]
    side = int(rng.integers(size // 2, min(picture.shape[:2]) + 1))
    y = int(rng.integers(picture.shape[0] - side + 1))
    x = int(rng.integers(picture.shape[1] - side + 1))
    crop = Image.fromarray(picture[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    image = np.asarray(crop, dtype=np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    # Darken the background a little so items (bright on black in Fashion-MNIST) stay visible.
    return image * rng.uniform(0.4, 0.8)


def generate_scenes(spec: SceneSpec, split: str, items: np.ndarray, labels: np.ndarray,
                    pictures: list[np.ndarray]) -> Iterator[Scene]:
    """Yield the split's scenes; the same spec and split always give the same scenes."""
    count = spec.n_train if split == "train" else spec.n_val
    rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])
    size = spec.image_size
    for _ in range(count):
        image = _background(rng, pictures, size)
        boxes: list[tuple[int, int, int, int]] = []
        classes: list[int] = []
        wanted = int(rng.integers(1, spec.max_objects + 1))
        for _attempt in range(10 * wanted):
            if len(boxes) == wanted:
                break
            index = int(rng.integers(len(items)))
            side = int(round(28 * rng.uniform(spec.min_scale, spec.max_scale)))
            side = min(side, size)
            item = np.asarray(Image.fromarray(items[index]).resize((side, side), Image.BILINEAR))
            mask = item > MASK_THRESHOLD
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                continue
            y = int(rng.integers(size - side + 1))
            x = int(rng.integers(size - side + 1))
            box = (x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]), y + int(rows[-1]))
            if any(_iou(box, other) > spec.max_iou for other in boxes):
                continue
            colour = rng.uniform(0.35, 1.0, size=3) * 255.0
            region = image[y:y + side, x:x + side]
            shade = (0.45 + 0.55 * item[..., None] / 255.0) * colour
            region[mask] = shade[mask]
            boxes.append(box)
            classes.append(int(labels[index]))
        yield Scene(np.clip(image, 0, 255).astype(np.uint8), boxes, classes)


def _coco_json(split_dir: str, scenes_meta: list[dict], size: int) -> dict:
    images, annotations = [], []
    for image_id, meta in enumerate(scenes_meta, start=1):
        images.append({"id": image_id, "file_name": meta["file_name"], "width": size, "height": size})
        for box, label in zip(meta["boxes"], meta["labels"]):
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                "area": float(w * h), "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "fashion"} for i, name in enumerate(FASHION_CLASSES)]
    return {"info": {"description": f"surge-bench offline detection set ({split_dir})",
                     "version": GENERATOR_VERSION},
            "images": images, "annotations": annotations, "categories": categories}


def build_offline_set(root: Path, spec: SceneSpec = SceneSpec(), fashion_dir: Optional[Path] = None,
                      progress: bool = False) -> Path:
    """Write the offline set under ``root`` once (atomically) and return its folder."""
    folder = Path(root) / f"fmnist_det-{spec.key()}"
    if (folder / "annotations" / "instances_val.json").is_file():
        return folder
    fashion = find_fashion_mnist(fashion_dir)
    pictures = load_backgrounds()
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        items, labels = load_items(fashion, split)
        (staging / split).mkdir()
        metas = []
        scenes = generate_scenes(spec, split, items, labels, pictures)
        if progress:
            from tqdm import tqdm
            scenes = tqdm(scenes, total=spec.n_train if split == "train" else spec.n_val,
                          desc=f"offline detection set ({split})", leave=False)
        for number, scene in enumerate(scenes):
            name = f"{number:06d}.png"
            Image.fromarray(scene.image).save(staging / split / name)
            metas.append({"file_name": name, "boxes": scene.boxes, "labels": scene.labels})
        with open(staging / "annotations" / f"instances_{split}.json", "w") as handle:
            json.dump(_coco_json(split, metas, spec.image_size), handle)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_voc(folder: Path, year: str, split: str, scenes: list[Scene], class_names: tuple[str, ...],
              difficult: Optional[list[list[bool]]] = None) -> Path:
    """Write scenes in the VOCdevkit layout: VOC<year>/{Annotations,ImageSets/Main,JPEGImages}.

    VOC boxes are 1-based inclusive pixel coordinates; ``difficult[i][j]`` flags object j of scene i.
    """
    base = Path(folder) / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for number, scene in enumerate(scenes):
        image_id = f"{year}_{number:06d}"
        ids.append(image_id)
        Image.fromarray(scene.image).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        height, width = scene.image.shape[:2]
        objects = []
        for j, (box, label) in enumerate(zip(scene.boxes, scene.labels)):
            flag = int(bool(difficult and difficult[number][j]))
            objects.append(
                f"  <object><name>{class_names[label]}</name><pose>Unspecified</pose><truncated>0</truncated>"
                f"<difficult>{flag}</difficult><bndbox><xmin>{box[0] + 1}</xmin><ymin>{box[1] + 1}</ymin>"
                f"<xmax>{box[2] + 1}</xmax><ymax>{box[3] + 1}</ymax></bndbox></object>"
            )
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><folder>VOC{year}</folder><filename>{image_id}.jpg</filename>\n"
            f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
            + "\n".join(objects) + "\n</annotation>\n"
        )
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return base
