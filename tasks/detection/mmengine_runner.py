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
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from bench import distributed
from bench.api import MetricSpec, RunContext
from bench.engine import FitResult
from bench.training import conv_kernels
from bench.validation import parse_milestones
from tasks.detection.data import DetectionData
from tasks.detection.hooks import EngineHooks
from tasks.detection.metrics import MMDET_KEYS

_OPTIMIZER_TYPES = {"sgd": "SGD", "sgd_nesterov": "SGD", "adam": "Adam", "adamw": "AdamW"}
#: RunConfig.precision -> the autocast dtype of mmengine's AmpOptimWrapper
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
#: the warm-up's first LR factor when ``warmup_start`` is 0 (the default): mmdet's configs' 1e-3, what
#: detection runs did before ``warmup_start`` existed (LinearLR at 0 would train iteration 0 at LR 0)
DEFAULT_WARMUP_START = 1e-3


def conv_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """``weight_decay_on="conv"``: weight decay on the conv kernels only (binarized ones, their
    SURGE auxiliary kernels, the stem, shortcuts and heads' convs) and none on the rest: BatchNorm,
    biases, the box head's fcs, learnable thresholds and scales (Bi-Real Net's and ReActNet's
    ``train.py``; the rule of :func:`bench.training.parameter_groups`)."""
    params, kernels = [p for p in model.parameters() if p.requires_grad], conv_kernels(model)
    groups = [dict(params=[p for p in params if id(p) in kernels], weight_decay=weight_decay),
              dict(params=[p for p in params if id(p) not in kernels], weight_decay=0.0)]
    return [group for group in groups if group["params"]]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="ConvDecayOptimWrapperConstructor", force=True)
class ConvDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's optimizer-wrapper constructor with :func:`conv_decay_groups` as the parameters."""

    def __call__(self, model: torch.nn.Module):
        model = model.module if hasattr(model, "module") else model
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg["params"] = conv_decay_groups(model, float(optimizer_cfg.get("weight_decay", 0.0)))
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=OPTIMIZERS.build(optimizer_cfg)))


def optim_wrapper(config) -> dict:
    """mmengine's optimizer wrapper for the RunConfig: its optimizer (``sgd_nesterov``: SGD with
    Nesterov momentum), gradient clipping, weight decay on conv kernels only
    (``weight_decay_on="conv"``: :class:`ConvDecayOptimWrapperConstructor`) and mixed precision
    (``precision`` bf16/fp16: mmengine's AmpOptimWrapper, autocast of the training forward with a
    gradient scaler; CUDA only, refused on CPU by the family's check)."""
    optimizer = dict(type=_OPTIMIZER_TYPES[config.optimizer], lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer in ("sgd", "sgd_nesterov"):
        optimizer["momentum"] = config.momentum
    if config.optimizer == "sgd_nesterov":
        optimizer["nesterov"] = True
    max_norm = float(config.options["max_grad_norm"])
    clip = dict(max_norm=max_norm, norm_type=2) if max_norm > 0 else None
    wrapper = dict(type="OptimWrapper", optimizer=optimizer, clip_grad=clip)
    if config.weight_decay_on == "conv":
        wrapper["constructor"] = "ConvDecayOptimWrapperConstructor"
    if config.precision != "fp32":
        wrapper.update(type="AmpOptimWrapper", dtype=AMP_DTYPES[config.precision])
    return wrapper


def param_schedulers(config, iters_per_epoch: int) -> list[dict]:
    """Linear warm-up from ``warmup_start``, then cosine / linear decay to zero, x0.1 after each of
    the ``milestones`` (schedule ``step``: fractions of all iterations, the warm-up's included, as
    in :func:`bench.training.lr_factor`), or a constant rate; all per iteration."""
    total = config.epochs * iters_per_epoch
    warmup = min(math.ceil(config.warmup_epochs * iters_per_epoch), total - 1) if config.warmup_epochs else 0
    schedulers = []
    if warmup > 0:
        start = config.warmup_start or DEFAULT_WARMUP_START
        schedulers.append(dict(type="LinearLR", start_factor=start, by_epoch=False, begin=0, end=warmup))
    if config.schedule == "cosine":
        schedulers.append(dict(type="CosineAnnealingLR", T_max=total - warmup, eta_min=0.0, by_epoch=False,
                               begin=warmup, end=total))
    elif config.schedule == "linear":
        schedulers.append(dict(type="LinearLR", start_factor=1.0, end_factor=0.0, by_epoch=False,
                               begin=warmup, end=total))
    elif config.schedule == "step":
        # the LR of iteration i is x0.1 per milestone m with i >= round(m * total) (mmengine counts repeats)
        milestones = [round(m * total) for m in parse_milestones(config.milestones)]
        schedulers.append(dict(type="MultiStepLR", milestones=milestones, gamma=0.1, by_epoch=False,
                               begin=0, end=total))
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
                        validation=data.validation is not None, clip_latent_weights=config.weight_clip == "update")
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
