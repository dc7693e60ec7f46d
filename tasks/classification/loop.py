"""The classification training loop: one epoch of training, one evaluation."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

import estimators
from bench.training import StepTimer, optimizer_step, progress_bar
from tasks.classification.metrics import topk_correct


def train_epoch(model: nn.Module, loader, optimizer, scheduler, device: torch.device, step: int,
                total_steps: int, timer: StepTimer, description: str, quiet: bool) -> tuple[int, dict[str, float]]:
    """Train one epoch from global step ``step``; returns the new step and the epoch's means."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = progress_bar(len(loader), description, quiet)
    started = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        estimators.set_progress(model, min(step / max(total_steps - 1, 1), 1.0))
        timer.start()
        logits = model(images)
        loss_value = optimizer_step(F.cross_entropy(logits, labels), optimizer, scheduler, step)
        timer.stop()
        step += 1
        loss_sum += loss_value * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
    bar.close()
    return step, {"train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, topk: tuple[int, ...] = (1,)) -> dict[str, float]:
    model.eval()
    loss_sum, seen = 0.0, 0
    correct = {k: 0 for k in topk}
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        for k in topk:
            correct[k] += topk_correct(logits, labels, k)
        seen += len(labels)
    result = {f"top{k}": 100.0 * correct[k] / seen for k in topk}
    result["loss"] = loss_sum / seen
    return result
