"""Training building blocks used by the engine (bench/engine.py) and by detection's mmengine
hooks: seeding, the device, optimizers and LR schedules from a RunConfig, the NaN guard,
step timing, peak memory and the progress bar.
"""
from __future__ import annotations

import math
import random
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

import estimators
from bench.errors import Diverged
from bench.precision import configure_cudnn
from bench.validation import parse_milestones


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: Optional[str] = None) -> torch.device:
    """The run's device (``requested``, else CUDA when present); on CUDA the cuDNN flags are set
    here, in one place for every run (:func:`configure_cudnn`)."""
    device = torch.device(requested) if requested else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        configure_cudnn()
    return device


def parameter_groups(config, model: torch.nn.Module) -> list[dict]:
    """The optimizer's parameter groups: one with the config's weight decay on every trainable
    parameter (``weight_decay_on="all"``), or decay on conv kernels only, none on the rest: BN,
    biases, the classifier, learnable thresholds and weight scales (``"conv"``: Bi-Real Net's and
    ReActNet's ``train.py`` decay their 4-D conv weights). A conv kernel is the ``weight`` of a conv
    layer, binarized or not, or SURGE's ``aux_weight`` on one. The parameters keep their order."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.weight_decay_on == "all":
        return [{"params": params, "weight_decay": config.weight_decay}]
    kernels = conv_kernels(model)
    decayed = [p for p in params if id(p) in kernels]
    rest = [p for p in params if id(p) not in kernels]
    return [group for group in ({"params": decayed, "weight_decay": config.weight_decay},
                                {"params": rest, "weight_decay": 0.0}) if group["params"]]


def conv_kernels(model: torch.nn.Module) -> set[int]:
    """The ids of a model's conv kernels: each conv layer's ``weight`` and SURGE's ``aux_weight`` on one
    (not a learnable weight scale, though it is 4-D too)."""
    return {id(getattr(m, name)) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
            for name in ("weight", "aux_weight") if getattr(m, name, None) is not None}


def build_optimizer(config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over ``model``'s parameter groups; with ``weight_clip="update"`` each
    step is followed by clamping the binarized layers' latent weights to [-1, 1] (BinaryNet)."""
    groups = parameter_groups(config, model)
    if config.optimizer in ("sgd", "sgd_nesterov"):
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                                                           nesterov=config.optimizer == "sgd_nesterov")
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=config.lr)
    elif config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    if config.weight_clip == "update":
        optimizer.register_step_post_hook(lambda *_: estimators.clip_latent_weights(model))
    return optimizer


def lr_factor(config, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The LR multiplier at ``step``: a linear warm-up from ``warmup_start`` to 1, then cosine or
    linear decay to 0, x0.1 after each of the ``milestones`` (schedule ``step``), or constant."""
    total_steps = max(total_steps, 1)
    if warmup_steps and step < warmup_steps:
        start = config.warmup_start
        return start + (1 - start) * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    done = min(max(step - warmup_steps, 0) / span, 1.0)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * done))
    if config.schedule == "linear":
        return 1.0 - done
    if config.schedule == "step":
        return 0.1 ** sum(step >= round(m * total_steps) for m in parse_milestones(config.milestones))
    return 1.0


def build_scheduler(config, optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor (:func:`lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step, total_steps,
                                                                              warmup_steps))


def check_finite(value: float, what: str, step: int) -> None:
    if not math.isfinite(value):
        raise Diverged(f"{what} is {value} at step {step}")


class StepTimer:
    """Mean wall time of a training step, skipping the first ``skip`` (warm-up) steps."""

    def __init__(self, device: torch.device, skip: int = 2) -> None:
        self.device, self.skip = device, skip
        self.count, self.total, self._start = 0, 0.0, 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._start = time.perf_counter()

    def stop(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.count += 1
        if self.count > self.skip:
            self.total += time.perf_counter() - self._start

    @property
    def mean_ms(self) -> Optional[float]:
        timed = self.count - self.skip
        return 1000 * self.total / timed if timed > 0 else None


_PROC_STATUS, _PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics; on Linux the process's peak RSS (VmHWM),
    so a run in a long-lived sweep worker measures its own peak, not an earlier run's."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _PROC_CLEAR_REFS.write_text("5")
    except OSError:  # not Linux: ru_maxrss below, the peak since the process started
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by tensors on CUDA; on CPU the process's peak RSS since the last
    reset_peak_memory (Linux), or since it started (elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def progress_bar(total: int, description: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=quiet, dynamic_ncols=True, leave=False, file=sys.stderr)
