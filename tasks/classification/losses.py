"""The losses a classification train step minimises (per example with ``reduction="none"``,
whose mean is the step's loss).

    label_loss         cross-entropy against the labels, optionally smoothed: the target is
                       (1 - eps) onehot(y) + eps / K over the K classes, so
                           loss = (1 - eps) (-log p_y) + eps mean_c(-log p_c)
                       (Szegedy et al. 2016, "Rethinking the Inception Architecture"; Bi-Real Net's
                       PyTorch ``train.py`` trains with eps = 0.1, its ``CrossEntropyLabelSmooth``;
                       PAPERS_READ section 2.2). eps = 0 is ``F.cross_entropy`` itself, which every
                       earlier run used.
    distribution_loss  ReActNet's ``DistributionLoss`` (Liu et al. ECCV 2020, ``utils/KD_loss.py``;
                       PAPERS_READ section 2.2): the cross-entropy of the student's distribution
                       against the teacher's,
                           loss = -sum_c softmax(t)_c log_softmax(s)_c,
                       averaged over the batch, used instead of the label loss. It is KL(p_t || p_s)
                       plus the teacher's entropy, which does not depend on the student: its
                       gradient in the student's logits is (softmax(s) - softmax(t)) / batch, 0 where
                       they agree. The teacher's logits are a target (detached).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_MODES = ("none", "distribution")


def label_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0,
               reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` against ``labels`` smoothed by ``smoothing`` (module doc)."""
    if not smoothing:
        return F.cross_entropy(logits, labels, reduction=reduction)
    log_probs = F.log_softmax(logits, dim=1)
    nll = -log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    losses = (1.0 - smoothing) * nll + smoothing * -log_probs.mean(dim=1)
    return _reduce(losses, reduction)


def distribution_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      reduction: str = "mean") -> torch.Tensor:
    """ReActNet's distribution loss of the student against the teacher (module doc)."""
    target = F.softmax(teacher_logits.detach(), dim=1)
    losses = -(target * F.log_softmax(student_logits, dim=1)).sum(dim=1)
    return _reduce(losses, reduction)


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"unknown reduction {reduction!r}; valid choices: mean, sum, none")
