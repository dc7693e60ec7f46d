"""GLUE training losses: the task loss and knowledge distillation from a full-precision teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_MODES = ("none", "logits", "logits_hidden", "logits_hidden_attention")


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
