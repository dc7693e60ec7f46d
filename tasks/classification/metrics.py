"""Classification metrics, registered in the harness's metric registry and computed by the suite.

    top1, top5  share (%) of examples whose label is among the 1 / 5 highest logits
    loss        mean cross-entropy; ``compute`` gives one batch's sum, evaluation adds the
                batches' sums and divides by the number of examples
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


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * topk_correct(logits, labels, 1) / len(labels)


def top5(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * topk_correct(logits, labels, 5) / len(labels)


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits, labels, reduction="sum").item()


register_metric("top1", True, "top-1 accuracy (%) on the test/validation split", top1)
register_metric("top5", True, "top-5 accuracy (%) on the test/validation split", top5)
register_metric("loss", False, "mean cross-entropy on the test/validation split", cross_entropy_sum)
