"""The image classification family: its declarations and the four functions the engine calls,
plus knowledge distillation from a full-precision teacher and the step 1 of a two-step run.

Distillation (``kd=distribution``; ReActNet, ``utils/KD_loss.py``, :mod:`tasks.classification.losses`):
the student minimises the cross-entropy of its distribution against a full-precision teacher's
instead of the label loss. The teacher (``teacher_model``) is the run's own architecture built full
precision, another registered model, or torchvision's ResNet-34 (ReActNet's teacher); it comes
from a local file (``teacher_checkpoint``: torchvision's format for ``resnet34_torchvision``, our
model's state dict otherwise; there is no download) or is trained by the suite: the fp32
estimator, the run's data and recipe, seed 0, ``teacher_epochs``, once per teacher config
(:meth:`ClassificationTask.teacher_config`, its hash keys ``<cache>/classification/teachers``).
It runs in eval mode under no_grad; the run's record names it (``teacher``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from bench import distributed
from bench.api import MetricSpec, RunContext, Task, default_cache_dir
from bench.checkpoint import load_weights_only
from bench.engine import StepOutput, evaluation_loader, fit, train_loader
from bench.initialization import load_state_file
from bench.metrics import METRICS
from bench.options import option
from bench.errors import UserError
from bench.training import seed_everything
from bench.validation import INITS, OneOf, Range
from estimators.blocks import BLOCKS
from tasks.classification import data
from tasks.classification import presets as recipes
from tasks.classification import metrics as _metrics  # noqa: F401 - registers top1, top5, loss
from tasks.classification.losses import KD_MODES, distribution_loss, label_loss
from tasks.classification.models import MODELS

_TOP5_DATASETS = ("cifar100", "imagenet")
#: torchvision's ResNet-34 (weights=None; its ImageNet weights only from a local teacher_checkpoint):
#: ReActNet's teacher (``resnet/2_step2/train.py`` loads ``models.__dict__['resnet34'](pretrained=True)``)
TORCHVISION_RESNET34 = "resnet34_torchvision"
TEACHER_MODELS = ("",) + tuple(MODELS.names()) + (TORCHVISION_RESNET34,)
TEACHER_FILE, TEACHER_METRICS = "teacher.pt", "metrics.json"


@dataclasses.dataclass(frozen=True)
class ClassificationOptions:
    augment: bool = option(True, help="random crop and flip of training images")
    # in the hash: worker processes draw the augmentation's random numbers from their own generators
    num_workers: int = option(0, Range(0, integer=True), help="DataLoader worker processes")
    val_size: int = option(0, Range(0, integer=True), legacy=0,
                           help="train images held out as the validation split (0: none)")
    image_size: int = option(0, Range(0, integer=True), legacy=0,
                             help="resize images to this side once, as they are loaded (0: the set's own)")
    label_smoothing: float = option(0.0, Range(0, 1, high_open=True), legacy=0.0,
                                    help="label smoothing of the label loss (Bi-Real Net: 0.1)")
    kd: str = option("none", OneOf(KD_MODES), legacy="none",
                     help="distillation: none, or distribution (ReActNet's loss against a full-precision "
                          "teacher, instead of the label loss)")
    teacher_model: str = option("", OneOf(TEACHER_MODELS), legacy="",
                                help="the teacher: empty for the run's model built full precision, a model "
                                     f"name, or {TORCHVISION_RESNET34} (ReActNet's)")
    teacher_checkpoint: str = option("", legacy="",
                                     help="a local state-dict file of the teacher (empty: the suite trains it)")
    teacher_epochs: int = option(0, Range(0, integer=True), legacy=0,
                                 help="epochs of a teacher the suite trains (0: the run's)")
    teacher_weight_decay: Optional[float] = option(None, Range(0, optional=True), legacy=None,
                                                   help="weight decay of a teacher the suite trains "
                                                        "(none: the run's)")
    step1_weight_decay: Optional[float] = option(None, Range(0, optional=True), legacy=None,
                                                 help="init=two_step: step 1's weight decay (none: the run's; "
                                                      "ReActNet: 1e-5 in step 1, 0 in step 2)")


@dataclasses.dataclass
class ClassificationData:
    spec: data.DatasetSpec
    train: torch.utils.data.DataLoader
    test: torch.utils.data.DataLoader
    metrics: tuple[str, ...]
    val: Optional[torch.utils.data.DataLoader] = None
    label_smoothing: float = 0.0
    #: the distillation teacher (kd != none), in eval mode with frozen weights, set by prepare
    teacher: Optional[torch.nn.Module] = None
    #: what the run's record keeps of prepare's work (the engine adds it to the record)
    record: dict = dataclasses.field(default_factory=dict)


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
    presets = recipes.PRESETS
    preset_sources = recipes.SOURCES
    Options = ClassificationOptions
    throughput_unit = "img"

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        names = ("top1", "top5", "loss") if dataset in _TOP5_DATASETS else ("top1", "loss")
        return [MetricSpec(name) for name in names]

    def default_model(self, dataset: str) -> str:
        return data.DATASETS.get(dataset).default_model

    def preset_values(self, preset: str, dataset: str, model: str) -> dict:
        return recipes.preset_values(preset, dataset, model)

    def preset_model(self, preset: str, dataset: str) -> Optional[str]:
        return recipes.preset_model(preset, dataset)

    def check(self, config) -> None:
        data.check_available(config.dataset, config.data_root)
        size, val_size = data.DATASETS.get(config.dataset).train_size, int(config.options["val_size"])
        if size is not None and val_size >= size:  # sizes of the real splits; a smaller copy fails at load
            raise UserError(f"val_size must be below {size} (the {config.dataset} train split's size), got {val_size}")
        options = config.options
        if options["teacher_model"] == TORCHVISION_RESNET34 and data.DATASETS.get(config.dataset).in_channels != 3:
            raise UserError(f"teacher_model {TORCHVISION_RESNET34} takes RGB images; {config.dataset} has "
                            f"{data.DATASETS.get(config.dataset).in_channels} channel(s): use teacher_model= (the "
                            f"run's model) or another model name")
        checkpoint = options["teacher_checkpoint"]
        if checkpoint and not Path(checkpoint).expanduser().is_file():
            raise UserError(f"teacher_checkpoint {checkpoint!r} is not a file; give a local state-dict file of the "
                            f"teacher, or leave it empty to let the suite train the teacher")
        self._check_files(config)

    def _check_files(self, config) -> None:
        """A state-dict file the run will load (``init``, ``teacher_checkpoint``) fits its model: a
        mismatch is a one-line UserError before anything is written."""
        spec = data.DATASETS.get(config.dataset)
        if config.init not in INITS and Path(config.init).expanduser().is_file():
            model = MODELS.get(config.model)(num_classes=spec.num_classes, in_channels=spec.in_channels,
                                             block=config.block)
            load_state_file(model, Path(config.init).expanduser())
        checkpoint = config.options["teacher_checkpoint"]
        if config.options["kd"] != "none" and checkpoint:
            stub = ClassificationData(spec, None, None, ())
            load_state_file(self._build_teacher(self.teacher_config(config), stub), Path(checkpoint).expanduser(),
                            what="teacher_checkpoint")

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
        return ClassificationData(data.DATASETS.get(config.dataset), train, test, metrics, val,
                                  label_smoothing=float(config.options["label_smoothing"]))

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
        loss = self._losses(logits, images, labels, data_, "mean")
        return StepOutput(loss, len(labels), {"train_top1": 100.0 * correct})

    @staticmethod
    def _losses(logits, images, labels, data_: ClassificationData, reduction: str) -> torch.Tensor:
        """The distribution loss against the teacher when there is one, else the label loss."""
        if data_.teacher is None:
            return label_loss(logits, labels, data_.label_smoothing, reduction)
        with torch.no_grad():
            target = data_.teacher(images)
        return distribution_loss(logits, target, reduction)

    diagnose_unsupported = None

    def example_losses(self, model, batch, data_: ClassificationData) -> torch.Tensor:
        """The training loss per example (``bench diagnose`` builds no teacher: the label loss there)."""
        images, labels = batch
        return self._losses(model(images), images, labels, data_, "none")

    # -- distillation and two-step ----------------------------------------------------------
    def prepare(self, config, data_: ClassificationData, model, context: RunContext) -> None:
        if config.options["kd"] != "none":
            data_.teacher, data_.record["teacher"] = self._teacher(config, data_, context)
            seed_everything(config.seed)  # the student's run does not depend on whether the teacher was cached

    def step_one(self, config):
        """Step 1 of a two-step run (:meth:`bench.api.Task.step_one`) with ``step1_weight_decay`` as its
        weight decay (ReActNet: 1e-5 in step 1, ``resnet/1_step1/run.sh``; 0 in step 2,
        ``resnet/2_step2/run.sh``). It distils from the same teacher as step 2: a teacher the suite
        trains keeps the run's (step 2's) weight decay, not step 1's."""
        step1 = super().step_one(config)
        options = dict(step1.options)
        weight_decay = options["step1_weight_decay"]
        options["step1_weight_decay"] = None  # applied: the same step 1 as an explicit weight decay
        if options["kd"] != "none" and options["teacher_weight_decay"] is None:
            options["teacher_weight_decay"] = config.weight_decay
        return dataclasses.replace(step1, weight_decay=config.weight_decay if weight_decay is None else weight_decay,
                                   options=options)

    @staticmethod
    def teacher_config(config):
        """The RunConfig a teacher the suite trains is keyed by (its cache folder's hash): the run's
        data and recipe with the fp32 estimator, seed 0, ``teacher_epochs`` and ``teacher_weight_decay``;
        the settings that do not act on a full-precision model (binarization, init, the student's
        distillation) at their defaults, so students that differ only in them share one teacher; so is
        ``eval_steps``, which never changes the weights."""
        options = config.options
        name = options["teacher_model"] or config.model
        weight_decay = options["teacher_weight_decay"]
        return dataclasses.replace(
            config, model=name, block=None if name == TORCHVISION_RESNET34 else config.block,
            estimator="fp32", estimator_hparams={}, scope="standard", weight_scale="channel",
            weight_grad="surrogate", weight_balance="none", weight_clip="none", pad_value=0.0, binary_weights=True,
            init="scratch", eval_steps=0, seed=0, epochs=int(options["teacher_epochs"]) or config.epochs,
            weight_decay=config.weight_decay if weight_decay is None else float(weight_decay),
            options={**options, "kd": "none", "teacher_model": "", "teacher_checkpoint": "", "teacher_epochs": 0,
                     "teacher_weight_decay": None, "step1_weight_decay": None})

    def _build_teacher(self, teacher_config, data_: ClassificationData) -> torch.nn.Module:
        if teacher_config.model == TORCHVISION_RESNET34:
            import torchvision

            return torchvision.models.resnet34(weights=None, num_classes=data_.spec.num_classes)
        return self.build_model(teacher_config, data_)

    def _teacher(self, config, data_: ClassificationData, context: RunContext) -> tuple[torch.nn.Module, dict]:
        """The teacher, in eval mode with frozen weights on the run's device, and its record: from
        ``teacher_checkpoint``, or trained once and cached by :meth:`teacher_config`."""
        teacher_config = self.teacher_config(config)
        checkpoint = config.options["teacher_checkpoint"]
        if checkpoint:
            teacher = self._build_teacher(teacher_config, data_)
            record = {"model": teacher_config.model,
                      **load_state_file(teacher, Path(checkpoint).expanduser(), what="teacher_checkpoint")}
        else:
            teacher, record = self._trained_teacher(teacher_config, data_, context)
        teacher.to(context.device).eval().requires_grad_(False)
        return teacher, record

    def _trained_teacher(self, teacher_config, data_: ClassificationData,
                         context: RunContext) -> tuple[torch.nn.Module, dict]:
        folder = teacher_config.cache_folder(default_cache_dir() / "classification" / "teachers")
        weights, metrics_file = folder / TEACHER_FILE, folder / TEACHER_METRICS
        # its own random state and batches: the same teacher whichever run trains it
        seed_everything(teacher_config.seed)
        teacher = self._build_teacher(teacher_config, data_)
        if distributed.broadcast(weights.is_file()):
            teacher.load_state_dict(load_weights_only(weights))
        else:
            teacher.to(context.device)
            plain = dataclasses.replace(data_, teacher=None, record={})
            batches = train_loader(data_.train.dataset, teacher_config, num_workers=data_.train.num_workers,
                                   drop_last=False)
            primary = self.metric_specs(teacher_config.dataset)[0]
            scores = fit(teacher, teacher_config, batches, lambda m, batch: self.train_step(m, batch, plain),
                         lambda m: self.evaluate(m, plain, context.device), context.private(),
                         f"teacher {teacher_config.model} {teacher_config.dataset}", primary=primary.key,
                         validate=lambda m: self.validate(m, plain, context.device)).scores
            if distributed.is_main():
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f"{TEACHER_METRICS}.tmp{os.getpid()}"
                partial.write_text(json.dumps(scores, sort_keys=True))
                partial.replace(metrics_file)
                partial = folder / f"{TEACHER_FILE}.tmp{os.getpid()}"
                torch.save({k: v.detach().cpu() for k, v in teacher.state_dict().items()}, partial)
                partial.replace(weights)
            distributed.barrier()
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        return teacher, {"model": teacher_config.model, "cache_key": folder.name, "epochs": teacher_config.epochs,
                         "metrics": metrics}

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
