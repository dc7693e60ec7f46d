"""GLUE metrics, registered in the harness's metric registry and computed by the suite (the
`evaluate` library fetches its scripts from the hub). Each is ``compute(predictions, golds)``.

All return percentages (x 100), as GLUE tables print them.

    accuracy   share of exact label matches
    f1         binary F1 of the positive class (label 1), as GLUE scores MRPC and QQP
    mcc        Matthews correlation coefficient (CoLA); 0 when a row or column of the
               confusion matrix is empty (the convention of scikit-learn)
    pearson    Pearson correlation (STS-B)
    spearman   Spearman rank correlation, ties given their average rank (STS-B)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from bench.metrics import register_metric


def accuracy(pred: Sequence, gold: Sequence) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    return 100.0 * float((pred == gold).mean())


def f1(pred: Sequence, gold: Sequence) -> float:
    pred, gold = np.asarray(pred) == 1, np.asarray(gold) == 1
    tp = float((pred & gold).sum())
    denominator = float(pred.sum() + gold.sum())
    return 100.0 * (2 * tp / denominator if denominator else 0.0)


def mcc(pred: Sequence, gold: Sequence) -> float:
    pred, gold = np.asarray(pred) == 1, np.asarray(gold) == 1
    tp = float((pred & gold).sum())
    tn = float((~pred & ~gold).sum())
    fp = float((pred & ~gold).sum())
    fn = float((~pred & gold).sum())
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 100.0 * ((tp * tn - fp * fn) / denominator if denominator else 0.0)


def pearson(pred: Sequence, gold: Sequence) -> float:
    pred, gold = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
    pc, gc = pred - pred.mean(), gold - gold.mean()
    denominator = math.sqrt(float((pc * pc).sum() * (gc * gc).sum()))
    return 100.0 * (float((pc * gc).sum()) / denominator if denominator else 0.0)


def spearman(pred: Sequence, gold: Sequence) -> float:
    return pearson(rankdata(pred), rankdata(gold))


register_metric("accuracy", True, "accuracy (%)", accuracy)
register_metric("f1", True, "F1 of the positive class (%)", f1)
register_metric("mcc", True, "Matthews correlation (x 100)", mcc)
register_metric("pearson", True, "Pearson correlation (x 100)", pearson)
register_metric("spearman", True, "Spearman rank correlation (x 100)", spearman)
