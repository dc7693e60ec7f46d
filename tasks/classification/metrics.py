"""Classification metrics, registered in the harness's metric registry and computed by the suite.

Evaluation streams over batches: each ``compute(logits, labels)`` gives one batch's sum (a
count of correct examples, a summed loss); evaluation adds the batches' sums and divides by
the number of examples (x 100 for the accuracies).

    top1, top5  share (%) of examples whose label is among the 1 / 5 highest logits
    loss        mean cross-entropy
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.metrics import register_metric


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many labels are among the k highest logits of their row."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels.unsqueeze(1)).any(dim=1).sum())


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    return topk_correct(logits, labels, 1)


def top5_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    return topk_correct(logits, labels, 5)


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits, labels, reduction="sum").item()


register_metric("top1", True, "top-1 accuracy (%) on the test/validation split", top1_correct)
register_metric("top5", True, "top-5 accuracy (%) on the test/validation split", top5_correct)
register_metric("loss", False, "mean cross-entropy on the test/validation split", cross_entropy_sum)
