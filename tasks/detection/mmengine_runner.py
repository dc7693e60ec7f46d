"""Training and evaluation of one detector through mmengine's Runner.

The Runner owns the loop (so mmengine's distributed launcher, samplers and evaluators
work the OpenMMLab way); surge-bench supplies the model (already binarized), the
optimizer and schedule from a RunConfig (the run's, or the pre-training stage's), and
the engine's hooks through :class:`tasks.detection.hooks.EngineHooks`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch

from bench import distributed
from bench.api import MetricSpec, RunContext
from bench.engine import FitResult
from tasks.detection.data import DetectionData
from tasks.detection.hooks import EngineHooks
from tasks.detection.metrics import MMDET_KEYS
_OPTIMIZER_TYPES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def optim_wrapper(config) -> dict:
    """mmengine's optimizer wrapper for the RunConfig's optimizer, with gradient clipping."""
    optimizer = dict(type=_OPTIMIZER_TYPES[config.optimizer], lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        optimizer["momentum"] = config.momentum
    max_norm = float(config.options["max_grad_norm"])
    clip = dict(max_norm=max_norm, norm_type=2) if max_norm > 0 else None
    return dict(type="OptimWrapper", optimizer=optimizer, clip_grad=clip)


def param_schedulers(config, iters_per_epoch: int) -> list[dict]:
    """Linear warm-up, then cosine / linear decay to zero or a constant rate, per iteration."""
    total = config.epochs * iters_per_epoch
    warmup = min(math.ceil(config.warmup_epochs * iters_per_epoch), total - 1) if config.warmup_epochs else 0
    schedulers = []
    if warmup > 0:
        schedulers.append(dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    if config.schedule == "cosine":
        schedulers.append(dict(type="CosineAnnealingLR", T_max=total - warmup, eta_min=0.0, by_epoch=False,
                               begin=warmup, end=total))
    elif config.schedule == "linear":
        schedulers.append(dict(type="LinearLR", start_factor=1.0, end_factor=0.0, by_epoch=False,
                               begin=warmup, end=total))
    return schedulers or [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=total)]


def evaluation_loader(dataset: dict, data: DetectionData, loader: dict) -> dict:
    """The loader config that scores ``dataset`` in order, every image once."""
    return dict(batch_size=data.eval_batch_size, sampler=dict(type="DefaultSampler", shuffle=False), drop_last=False,
                dataset=dataset, **loader)


def evaluation_loops(data: DetectionData, loader: dict) -> dict:
    """The Runner's evaluation arguments: without a validation split, its val loop scores the test
    split; with one, the val loop scores the validation split and the test loop the test split
    (run by EngineHooks after each validation)."""
    if data.validation is None:
        return dict(val_dataloader=evaluation_loader(data.val, data, loader), val_evaluator=data.evaluator,
                    val_cfg=dict(type="ValLoop"))
    return dict(val_dataloader=evaluation_loader(data.validation, data, loader),
                val_evaluator=data.validation_evaluator, val_cfg=dict(type="ValLoop"),
                test_dataloader=evaluation_loader(data.val, data, loader), test_evaluator=data.evaluator,
                test_cfg=dict(type="TestLoop"))


def fit(detector: torch.nn.Module, data: DetectionData, config, work_dir: Path, context: RunContext,
        label: str, primary: Optional[MetricSpec] = None) -> FitResult:
    """Train ``detector`` with the RunConfig's schedule; evaluate after the last epoch (and every
    ``val_every`` epochs): the test split, and the validation split where ``data`` has one
    (``primary``'s validation score picks the best epoch).

    The context's checkpoint (the harness's file, loaded weights-only) is saved after every
    epoch and resumed from by the engine's hooks; mmengine's own CheckpointHook is off, since
    its files hold objects that only an unrestricted unpickler loads.
    """
    from mmdet.registry import DATASETS
    from mmengine.runner import Runner

    train_set = DATASETS.build(data.train)
    per_process = max(config.batch_size // distributed.world_size(), 1)  # the config's batch is global
    iters_per_epoch = max(math.ceil(len(train_set) / (per_process * distributed.world_size())), 1)
    workers, val_every = int(config.options["num_workers"]), int(config.options["val_every"])
    loader = dict(num_workers=workers, persistent_workers=workers > 0)
    hooks = EngineHooks(context, label, config.batch_size, MMDET_KEYS[data.metric_style],
                        primary.key if primary else None, primary.higher_is_better if primary else True,
                        validation=data.validation is not None)
    runner = Runner(
        model=detector,
        work_dir=str(work_dir),
        train_dataloader=dict(batch_size=per_process, sampler=dict(type="DefaultSampler", shuffle=True),
                              batch_sampler=dict(type="AspectRatioBatchSampler"), dataset=train_set, **loader),
        **evaluation_loops(data, loader),
        train_cfg=dict(by_epoch=True, max_epochs=config.epochs, val_interval=val_every or config.epochs),
        optim_wrapper=optim_wrapper(config),
        param_scheduler=param_schedulers(config, iters_per_epoch),
        default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=10**6)),
        custom_hooks=[hooks],
        randomness=dict(seed=config.seed),
        # under `bench run --gpus N` (torchrun) mmengine wraps the model and shards the data itself
        launcher="pytorch" if distributed.world_size() > 1 else "none",
        default_scope="mmdet",
        log_level="WARNING",
    )
    try:
        runner.train()
    finally:
        stop_loader_workers(runner)
    return FitResult(hooks.run_metrics, hooks.timing.timer.mean_ms, hooks.timing.peak_memory_mb)


def stop_loader_workers(runner) -> None:
    """Shut the loaders' persistent worker processes down now, in 0.1 s. Left to the garbage
    collector, the shutdown ran in the next run of a pool worker (mmengine's dataset set-up calls
    gc.collect()) and took about 15 s there, waiting on workers that had stopped answering."""
    for loop in (runner._train_loop, runner._val_loop, runner._test_loop):  # the built loops (dicts until built)
        loader = getattr(loop, "dataloader", None)
        iterator = getattr(loader, "_iterator", None)  # where a DataLoader keeps persistent workers
        if iterator is not None:
            iterator._shutdown_workers()
            loader._iterator = None


def load_state(detector: torch.nn.Module, path: Optional[Path]) -> None:
    if path is not None:
        detector.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
