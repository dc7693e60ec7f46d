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
from typing import Iterable, Optional

import numpy as np
import torch

from bench.errors import Diverged


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: Optional[str] = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_optimizer(config, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=False)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_scheduler(config, optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up, then cosine / linear decay to 0, or constant."""
    total_steps = max(total_steps, 1)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        done = min(max(step - warmup_steps, 0) / span, 1.0)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * done))
        if config.schedule == "linear":
            return 1.0 - done
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
