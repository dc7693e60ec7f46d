"""GLUE training losses: the task loss and knowledge distillation from a full-precision teacher.

KD modes (``kd``):
    logits, logits_hidden, logits_hidden_attention
            soft cross-entropy summed over classes (MSE for regression), plus the MSE of every
            hidden state, plus that of every attention map (TinyBERT-style)
    bibert  BiBERT's (htqin/BiBERT ``quant_task_glue.py`` with ``--pred_distill
            --intermediate_distill --value_distill --key_distill --query_distill``, as in its
            ``scripts/train_*.sh``), with d(S, T) = || S / ||S|| - T / ||T|| || (Frobenius norms
            over the whole batch tensor, ``att_loss_r2b``):
                mean_{batch, classes}(-softmax(t) log_softmax(s)) + 0.5 CE(s, labels)
                    (regression: MSE(s, t))
              + sum over hidden states (embeddings' output included) of d(h_s, h_t)
              + direction-matching distillation: sum over layers of d(X_s X_s^T, X_t X_t^T) / sqrt(d)
                per head, for X = Q, K and V, the real projections before they are binarized
    bit     BiT's (facebookresearch/bit ``kd_learner_glue.py``; ``quant_task_distill_glue.py`` sets
            ``distill_logit`` and ``distill_rep``, temperature 1):
                mean_{batch, classes}(-softmax(t) log_softmax(s))     (``helper.soft_cross_entropy``)
              + sum over hidden states (embeddings' output included) of MSE(h_s, h_t)
            for a regression task the soft cross-entropy over one output is 0, as in BiT's code,
            so STS-B distils the hidden states only. (BiT keeps its teacher in train mode, dropout
            on; the teacher here is in eval mode.)
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

KD_MODES = ("none", "logits", "logits_hidden", "logits_hidden_attention", "bibert", "bit")
_PROJECTIONS = ("query", "key", "value")
#: BiBERT's weight of the label cross-entropy next to the soft one (``gt_beta``)
BIBERT_LABEL_WEIGHT = 0.5


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels)
    return F.cross_entropy(logits, labels)


def needs_hidden_states(mode: str) -> bool:
    return "hidden" in mode or mode in ("bibert", "bit")


def _soft_cross_entropy_mean(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """TinyBERT's, BiBERT's and BiT's soft cross-entropy: the mean over batch *and* classes."""
    return (-F.softmax(teacher, -1) * F.log_softmax(student, -1)).mean()


def direction_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """|| S / ||S|| - T / ||T|| ||, Frobenius norms over the whole tensors (BiBERT's ``att_loss_r2b``)."""
    return torch.norm(student / torch.norm(student) - teacher / torch.norm(teacher))


def similarity(projection: torch.Tensor, heads: int) -> torch.Tensor:
    """X X^T / sqrt(d) per head of a (batch, tokens, heads * d) projection: (batch, heads, tokens, tokens)."""
    batch, tokens, width = projection.shape
    x = projection.view(batch, tokens, heads, width // heads).transpose(1, 2)
    return torch.matmul(x, x.transpose(-1, -2)) / math.sqrt(width // heads)


@contextlib.contextmanager
def captured_projections(model: nn.Module, mode: str) -> Iterator[dict[str, list[torch.Tensor]]]:
    """The query/key/value projections' outputs of every layer during the forwards inside the
    block, for BiBERT's direction-matching distillation (empty lists for other modes)."""
    captured: dict[str, list[torch.Tensor]] = {kind: [] for kind in _PROJECTIONS}
    handles = []
    if mode == "bibert":
        for name, module in model.named_modules():
            kind = name.rpartition(".")[2]
            if kind in _PROJECTIONS and ".attention.self." in name:
                handles.append(module.register_forward_hook(
                    lambda _module, _inputs, output, kind=kind: captured[kind].append(output)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def distillation_loss(student, teacher, regression: bool, mode: str, labels: torch.Tensor | None = None,
                      student_projections: dict | None = None, teacher_projections: dict | None = None,
                      heads: int = 1) -> torch.Tensor:
    """The ``mode``'s distillation loss (module docstring); the same architecture for both models."""
    if mode == "bibert":
        return _bibert_loss(student, teacher, regression, labels, student_projections, teacher_projections, heads)
    if mode == "bit":
        loss = _soft_cross_entropy_mean(student.logits, teacher.logits)
        return loss + sum(F.mse_loss(s, t) for s, t in _same_depth(student.hidden_states, teacher.hidden_states))
    if regression:
        loss = F.mse_loss(student.logits, teacher.logits)
    else:
        loss = -(F.softmax(teacher.logits, -1) * F.log_softmax(student.logits, -1)).sum(-1).mean()
    if "hidden" in mode:
        loss = loss + sum(F.mse_loss(s, t) for s, t in _same_depth(student.hidden_states, teacher.hidden_states))
    if "attention" in mode:
        loss = loss + sum(F.mse_loss(s, t) for s, t in _same_depth(student.attentions, teacher.attentions))
    return loss


def _same_depth(student: tuple, teacher: tuple):
    if len(student) != len(teacher):
        raise ValueError(f"layer-wise distillation needs a teacher as deep as the student: {len(teacher)} against "
                         f"{len(student)} hidden states (kd=bibert maps a deeper one)")
    return zip(student, teacher)


def _layers_per_block(student_layers: int, teacher_layers: int) -> int:
    if teacher_layers % student_layers:
        raise ValueError(f"the teacher's {teacher_layers} layers are not a multiple of the student's {student_layers} "
                         "(BiBERT maps each student layer to the last of a block of teacher layers)")
    return teacher_layers // student_layers


def _bibert_loss(student, teacher, regression: bool, labels, student_projections: dict, teacher_projections: dict,
                 heads: int) -> torch.Tensor:
    """BiBERT's loss (module docstring). A deeper teacher is mapped as BiBERT maps it: with b teacher
    layers per student layer, student hidden state i to the teacher's i * b and student layer i's
    Q/K/V to teacher layer i * b + b - 1."""
    if regression:
        loss = F.mse_loss(student.logits, teacher.logits)
    else:
        loss = (_soft_cross_entropy_mean(student.logits, teacher.logits)
                + BIBERT_LABEL_WEIGHT * F.cross_entropy(student.logits, labels))
    block = _layers_per_block(len(student_projections["query"]), len(teacher_projections["query"]))
    hidden = teacher.hidden_states[::block]
    loss = loss + sum(direction_distance(s, t) for s, t in zip(student.hidden_states, hidden, strict=True))
    for kind in _PROJECTIONS:
        pairs = zip(student_projections[kind], teacher_projections[kind][block - 1::block], strict=True)
        loss = loss + sum(direction_distance(similarity(s, heads), similarity(t, heads)) for s, t in pairs)
    return loss
