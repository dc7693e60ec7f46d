"""The image classification family: its declarations and the four functions the engine calls."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
import torch.nn.functional as F

from bench.api import MetricSpec, Task
from bench.engine import StepOutput, evaluation_loader, train_loader
from bench.metrics import METRICS
from bench.options import option
from bench.errors import UserError
from bench.validation import Range
from estimators.blocks import BLOCKS
from tasks.classification import data, presets
from tasks.classification import metrics as _metrics  # noqa: F401 - registers top1, top5, loss
from tasks.classification.models import MODELS

_TOP5_DATASETS = ("cifar100", "imagenet")


@dataclasses.dataclass(frozen=True)
class ClassificationOptions:
    augment: bool = option(True, help="random crop and flip of training images")
    # in the hash: worker processes draw the augmentation's random numbers from their own generators
    num_workers: int = option(0, Range(0, integer=True), help="DataLoader worker processes")
    val_size: int = option(0, Range(0, integer=True), legacy=0,
                           help="train images held out as the validation split (0: none)")
    image_size: int = option(0, Range(0, integer=True), legacy=0,
                             help="resize images to this side once, as they are loaded (0: the set's own)")


@dataclasses.dataclass
class ClassificationData:
    spec: data.DatasetSpec
    train: torch.utils.data.DataLoader
    test: torch.utils.data.DataLoader
    metrics: tuple[str, ...]
    val: Optional[torch.utils.data.DataLoader] = None


class ClassificationTask(Task):
    name = "classification"
    # 2: evaluation loaders have their own generator (iterating one drew from the global generator,
    #    so evaluating moved the augmentation of the epochs after it)
    version = "2"
    description = "image classification: CIFAR-10/100, ImageNet, Fashion-MNIST, digits"
    datasets = ("fashion_mnist", "digits", "cifar10", "cifar100", "imagenet")
    default_dataset = "fashion_mnist"
    models = tuple(MODELS.names())
    blocks = BLOCKS
    Options = ClassificationOptions
    throughput_unit = "img"

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        names = ("top1", "top5", "loss") if dataset in _TOP5_DATASETS else ("top1", "loss")
        return [MetricSpec(name) for name in names]

    def default_model(self, dataset: str) -> str:
        return data.DATASETS.get(dataset).default_model

    def preset_values(self, preset: str, dataset: str, model: str) -> dict:
        return presets.preset_values(preset, dataset)

    def check(self, config) -> None:
        data.check_available(config.dataset, config.data_root)
        size, val_size = data.DATASETS.get(config.dataset).train_size, int(config.options["val_size"])
        if size is not None and val_size >= size:  # sizes of the real splits; a smaller copy fails at load
            raise UserError(f"val_size must be below {size} (the {config.dataset} train split's size), got {val_size}")

    def load_data(self, config) -> ClassificationData:
        size = int(config.options["image_size"])
        train_set, val_set = data.train_and_validation(config.dataset, config.data_root,
                                                       int(config.options["val_size"]), config.train_subset,
                                                       augment=bool(config.options["augment"]), image_size=size)
        test_set = data.load_split(config.dataset, "test", config.data_root, config.eval_subset, augment=False,
                                   image_size=size)
        workers = int(config.options["num_workers"])
        train = train_loader(train_set, config, num_workers=workers, drop_last=False)
        evaluation = dict(batch_size=max(config.batch_size, 256), num_workers=workers)
        test = evaluation_loader(test_set, **evaluation)
        val = evaluation_loader(val_set, **evaluation) if val_set is not None else None
        metrics = tuple(spec.key for spec in self.metric_specs(config.dataset))
        return ClassificationData(data.DATASETS.get(config.dataset), train, test, metrics, val)

    def build_model(self, config, data_: ClassificationData) -> torch.nn.Module:
        return MODELS.get(config.model)(num_classes=data_.spec.num_classes, in_channels=data_.spec.in_channels,
                                        block=config.block)

    def example_inputs(self, config, data_: ClassificationData) -> tuple[tuple, dict]:
        spec, size = data_.spec, int(config.options["image_size"]) or data_.spec.image_size
        return (torch.zeros(1, spec.in_channels, size, size),), {}

    def train_step(self, model, batch, data_: ClassificationData) -> StepOutput:
        images, labels = batch
        logits = model(images)
        correct = int((logits.argmax(1) == labels).sum())
        return StepOutput(F.cross_entropy(logits, labels), len(labels), {"train_top1": 100.0 * correct})

    diagnose_unsupported = None

    def example_losses(self, model, batch, data_: ClassificationData) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels, reduction="none")

    def evaluate(self, model, data_: ClassificationData, device) -> dict[str, Any]:
        """Every metric of the dataset over the whole test split (on every rank)."""
        return self._scores(model, data_.test, data_.metrics, device)

    def validate(self, model, data_: ClassificationData, device) -> Optional[dict[str, Any]]:
        """The same over the validation split, under ``val_`` names; None without one."""
        if data_.val is None:
            return None
        return {f"val_{k}": v for k, v in self._scores(model, data_.val, data_.metrics, device).items()}

    @staticmethod
    @torch.inference_mode()
    def _scores(model, loader, metrics: tuple[str, ...], device) -> dict[str, float]:
        model.eval()
        loss_sum, seen = 0.0, 0
        accuracies = [name for name in metrics if name != "loss"]
        correct = {name: 0 for name in accuracies}
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += METRICS.get("loss").compute(logits, labels)
            for name in accuracies:
                correct[name] += METRICS.get(name).compute(logits, labels)
            seen += len(labels)
        scores = {name: 100.0 * correct[name] / seen for name in accuracies}
        scores["loss"] = loss_sum / seen
        return scores
