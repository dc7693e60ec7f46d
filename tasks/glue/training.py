"""The GLUE loop: tokenised batches, one training epoch (with optional distillation), evaluation."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import estimators
from bench.training import StepTimer, optimizer_step, progress_bar
from tasks.glue.metrics import METRICS

KD_MODES = ("none", "logits", "logits_hidden", "logits_hidden_attention")


class EncodedExamples(torch.utils.data.Dataset):
    """Tokenised examples: input ids (and segment ids) per example, plus labels."""

    def __init__(self, examples, tokenizer, max_length: int, regression: bool) -> None:
        texts_a = [e.text_a for e in examples]
        texts_b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
        self.encodings = tokenizer(texts_a, texts_b, truncation=True, max_length=max_length)
        dtype = torch.float32 if regression else torch.long
        self.labels = torch.tensor([e.label for e in examples], dtype=dtype)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


def make_collate(tokenizer):
    def collate(items: list[dict]) -> dict:
        labels = torch.stack([item.pop("labels") for item in items])
        batch = tokenizer.pad(items, return_tensors="pt")
        batch["labels"] = labels
        return dict(batch)

    return collate


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels)
    return F.cross_entropy(logits, labels)


def distillation_loss(student, teacher, regression: bool, mode: str) -> torch.Tensor:
    """Logits KD (soft cross-entropy, or MSE for regression) plus, optionally, the MSE of
    every layer's hidden states and of its attention maps (TinyBERT/BiT-style; the shapes
    must match, so the teacher is the same architecture)."""
    if regression:
        loss = F.mse_loss(student.logits, teacher.logits)
    else:
        loss = -(F.softmax(teacher.logits, -1) * F.log_softmax(student.logits, -1)).sum(-1).mean()
    if "hidden" in mode:
        loss = loss + sum(F.mse_loss(s, t) for s, t in zip(student.hidden_states, teacher.hidden_states))
    if "attention" in mode:
        loss = loss + sum(F.mse_loss(s, t) for s, t in zip(student.attentions, teacher.attentions))
    return loss


def train_epoch(model: nn.Module, loader, optimizer, scheduler, device, step: int, total_steps: int,
                timer: StepTimer, regression: bool, description: str, quiet: bool,
                teacher: Optional[nn.Module] = None, kd: str = "none", max_grad_norm: float = 1.0):
    model.train()
    outputs = {"output_hidden_states": "hidden" in kd, "output_attentions": "attention" in kd}
    loss_sum, seen = 0.0, 0
    bar = progress_bar(len(loader), description, quiet)
    started = time.perf_counter()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        estimators.set_progress(model, min(step / max(total_steps - 1, 1), 1.0))
        timer.start()
        out = model(**batch, **outputs)
        if teacher is not None and kd != "none":
            with torch.no_grad():
                target = teacher(**batch, **outputs)
            loss = distillation_loss(out, target, regression, kd)
        else:
            loss = task_loss(out.logits, labels, regression)
        value = optimizer_step(loss, optimizer, scheduler, step, max_grad_norm)
        timer.stop()
        step += 1
        loss_sum += value * len(labels)
        seen += len(labels)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", ex_s=f"{seen / (time.perf_counter() - started):.0f}")
    bar.close()
    return step, {"train_loss": loss_sum / max(seen, 1)}


@torch.no_grad()
def predict(model: nn.Module, loader, device, regression: bool) -> tuple[np.ndarray, np.ndarray]:
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
    if not np.isfinite(preds.astype(float)).all():
        return {f"{name}{suffix}": float("nan") for name in metric_names}
    return {f"{name}{suffix}": METRICS[name](preds, golds) for name in metric_names}
