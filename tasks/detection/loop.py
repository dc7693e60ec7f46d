"""Training and evaluation of one detector through mmengine's Runner.

The Runner owns the loop (so mmengine's distributed launcher, samplers and evaluators
work the OpenMMLab way); surge-bench supplies the model (already binarized), the
optimizer and schedule from a RunConfig (the run's, or the pre-training stage's), and
two hooks (progress p, reporting).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from bench import distributed
from bench.task_api import Reporter
from bench.training import StepTimer
from tasks.detection.data import DetectionData
from tasks.detection.hooks import BenchReportHook, EstimatorProgressHook

METRIC_NAMES = {
    "coco": {"bbox_mAP": "coco/bbox_mAP", "bbox_mAP_50": "coco/bbox_mAP_50", "bbox_mAP_75": "coco/bbox_mAP_75"},
    "voc": {"mAP50": "pascal_voc/mAP"},
}
_FULL_LOAD = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
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


def fit(detector: torch.nn.Module, data: DetectionData, config, work_dir: Path, reporter: Reporter,
        label: str, checkpoint_every_epoch: bool = False) -> tuple[dict[str, float], StepTimer]:
    """Train ``detector`` with the RunConfig's schedule; evaluate after the last epoch (and every
    ``val_every`` epochs).

    With ``checkpoint_every_epoch`` mmengine's CheckpointHook keeps the last epoch's state in
    ``work_dir``, and a ``work_dir`` that holds one is resumed from (model, optimizer, LR
    schedule, epoch; the data order of the remaining epochs is not bit-identical to an
    uninterrupted run's).
    """
    from mmdet.registry import DATASETS
    from mmengine.runner import Runner

    resuming = checkpoint_every_epoch and (work_dir / "last_checkpoint").is_file()
    train_set = DATASETS.build(data.train)
    per_process = max(config.batch_size // distributed.world_size(), 1)  # the config's batch is global
    iters_per_epoch = max(math.ceil(len(train_set) / (per_process * distributed.world_size())), 1)
    workers, val_every = int(config.options["workers"]), int(config.options["val_every"])
    loader = dict(num_workers=workers, persistent_workers=workers > 0)
    timer = StepTimer(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    report = BenchReportHook(reporter, timer, label, config.batch_size, METRIC_NAMES[data.metric_style])
    runner = Runner(
        model=detector,
        work_dir=str(work_dir),
        train_dataloader=dict(batch_size=per_process, sampler=dict(type="DefaultSampler", shuffle=True),
                              batch_sampler=dict(type="AspectRatioBatchSampler"), dataset=train_set, **loader),
        val_dataloader=dict(batch_size=2, sampler=dict(type="DefaultSampler", shuffle=False), drop_last=False,
                            dataset=data.val, **loader),
        val_evaluator=data.evaluator,
        train_cfg=dict(by_epoch=True, max_epochs=config.epochs, val_interval=val_every or config.epochs),
        val_cfg=dict(type="ValLoop"),
        optim_wrapper=optim_wrapper(config),
        param_scheduler=param_schedulers(config, iters_per_epoch),
        default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=True, max_keep_ckpts=1)
            if checkpoint_every_epoch else None,
            logger=dict(type="LoggerHook", interval=10**6)),
        resume=resuming,
        custom_hooks=[EstimatorProgressHook(), report],
        randomness=dict(seed=config.seed),
        # under `bench run --gpus N` (torchrun) mmengine wraps the model and shards the data itself
        launcher="pytorch" if distributed.world_size() > 1 else "none",
        default_scope="mmdet",
        log_level="WARNING",
    )
    previous = os.environ.get(_FULL_LOAD)
    if resuming:  # mmengine's checkpoints hold more than tensors; torch 2.6+ loads weights only by default
        os.environ[_FULL_LOAD] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f"Environment variable {_FULL_LOAD}")
            runner.train()
    finally:
        if resuming and previous is None:
            os.environ.pop(_FULL_LOAD, None)
    return report.last_metrics, timer


def load_state(detector: torch.nn.Module, path: Optional[Path]) -> None:
    if path is not None:
        detector.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
