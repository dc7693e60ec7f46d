"""The image classification task family."""
from __future__ import annotations

import math
from typing import Optional

import torch

import estimators
from bench import distributed
from bench.task_api import MetricSpec, Reporter, Task, TaskResult
from bench.validation import Range
from bench.training import (
    StepTimer, build_optimizer, build_scheduler, check_finite, peak_memory_mb, pick_device,
    reset_peak_memory, seed_everything,
)
from estimators.accounting import count_cost
from tasks.classification import data, presets
from tasks.classification.loop import evaluate, train_epoch
from tasks.classification.models import MODELS

_TOP5_DATASETS = ("cifar100", "imagenet")


class ClassificationTask(Task):
    name = "classification"
    version = "1"
    description = "image classification: CIFAR-10/100, ImageNet, Fashion-MNIST, digits"
    datasets = ("fashion_mnist", "digits", "cifar10", "cifar100", "imagenet")
    default_dataset = "fashion_mnist"
    models = tuple(MODELS.names())
    options = {"augment": True, "num_workers": 0}
    option_rules = {"num_workers": Range(0, integer=True)}

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        specs = [MetricSpec("top1", True, "top-1 accuracy (%) on the test/validation split")]
        if dataset in _TOP5_DATASETS:
            specs.append(MetricSpec("top5", True, "top-5 accuracy (%)"))
        specs.append(MetricSpec("loss", False, "cross-entropy on the test/validation split"))
        return specs

    def default_model(self, dataset: str) -> str:
        return data.DATASETS.get(dataset).default_model

    def preset_values(self, preset: str, dataset: str, model: str) -> dict:
        return presets.preset_values(preset, dataset)

    def check(self, config) -> None:
        data.check_available(config.dataset, config.data_root)

    def _loaders(self, config, seed: int):
        train_set = data.load_split(config.dataset, "train", config.data_root, config.train_subset,
                                    augment=bool(config.options["augment"]))
        test_set = data.load_split(config.dataset, "test", config.data_root, config.eval_subset, augment=False)
        generator = torch.Generator().manual_seed(seed)  # saved in checkpoints: resumed epochs shuffle alike
        workers = int(config.options["num_workers"])
        sampler = distributed.sampler(train_set, shuffle=True, seed=seed)  # None in a single process
        train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=max(config.batch_size // distributed.world_size(), 1), shuffle=sampler is None,
            sampler=sampler, generator=generator, num_workers=workers, drop_last=False)
        test_loader = torch.utils.data.DataLoader(test_set, batch_size=max(config.batch_size, 256),
                                                  num_workers=workers)
        return train_loader, test_loader

    def run(self, config, reporter: Reporter, device: Optional[str] = None) -> TaskResult:
        device_ = pick_device(device)
        seed_everything(config.seed)
        spec = data.DATASETS.get(config.dataset)
        train_loader, test_loader = self._loaders(config, config.seed)

        model = MODELS.get(config.model)(num_classes=spec.num_classes, in_channels=spec.in_channels)
        estimator = estimators.build(config.estimator, **config.estimator_hparams)
        record = estimators.binarize_model(model, estimator, scope=config.scope, weight_scale=config.weight_scale)
        model.to(device_)
        example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size, device=device_)
        cost = count_cost(model, example)
        plain_model, model = model, distributed.wrap(model, device_)
        reporter.info(scope=record.to_dict(), n_params=cost.n_params, n_binary_params=cost.n_binary_params,
                      binary_ops=cost.binary_ops, float_ops=cost.float_ops)

        optimizer = build_optimizer(config, model.parameters())
        total_steps = config.epochs * len(train_loader)
        scheduler = build_scheduler(config, optimizer, total_steps,
                                    warmup_steps=math.ceil(config.warmup_epochs * len(train_loader)))
        topk = (1, 5) if config.dataset in _TOP5_DATASETS else (1,)
        timer = StepTimer(device_)
        reset_peak_memory(device_)
        first_epoch, step, scores = reporter.restore(model, optimizer, scheduler, train_loader.generator)
        for epoch in range(first_epoch, config.epochs + 1):
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            step, train_stats = train_epoch(
                model, train_loader, optimizer, scheduler, device_, step, total_steps, timer,
                f"{config.estimator} {config.dataset} epoch {epoch}/{config.epochs}", reporter.quiet,
            )
            scores = evaluate(plain_model, test_loader, device_, topk)  # every rank: the same full test set
            check_finite(scores["loss"], "evaluation loss", step)
            curve = {**train_stats, **{f"val_{k}": v for k, v in scores.items()}, "lr": lr}
            lambda_mean = estimators.mean_auxiliary_lambda(model)
            if lambda_mean is not None:
                curve["surge_lambda_mean"] = lambda_mean
            reporter.epoch_end(epoch, step, curve)
            reporter.save(epoch, step, model, optimizer, scheduler, train_loader.generator, scores)
        return TaskResult(
            metrics=scores, primary_metric="top1", scope=record.to_dict(), n_params=cost.n_params,
            n_binary_params=cost.n_binary_params, binary_ops=cost.binary_ops, float_ops=cost.float_ops,
            train_step_ms=timer.mean_ms, peak_memory_mb=peak_memory_mb(device_),
        )
