"""How close an estimator's gradient g is to the reference g* on a layer's measured units.

The reference is a Monte Carlo estimate g*_hat = g* + e with per-unit standard errors se_i,
so ||g*_hat||^2 overstates ||g*||^2 by about sum se_i^2; the measures use the noise-corrected
norm N* = sqrt(||g*_hat||^2 - sum se_i^2) (none when the noise is as large as the signal):

    cosine          g . g*_hat / (||g|| N*), clipped to [-1, 1]   1: same direction, -1: opposite
                    (the numerator is unbiased; with ||g*_hat|| in the denominator the noise
                    would pull every cosine towards 0 by 1 / sqrt(1 + rel_se^2))
    cosine_se       sqrt(sum g_i^2 se_i^2) / (||g|| N*): the cosine's standard error from the
                    reference's noise
    rel_error       sqrt(max(||g - g*_hat||^2 - sum se_i^2, 0)) / N*   (E||g - g*_hat||^2 =
                    ||g - g*||^2 + sum se_i^2)
    sign_agreement  the share of units where g*_hat_i differs from 0 by more than 2 se_i on
                    which sign(g_i) = sign(g*_hat_i); a zero g_i (a clipped estimator beyond its
                    clip) does not agree: there the estimator passes nothing the loss responds to
    norm_ratio      ||g|| / N*                                     1: the right step size

A measure that is not defined (a reference lost in its noise, no unit that passes the sign
test) is None; an estimator that passes no gradient at the measured units scores cosine 0.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

MEASURES = ("cosine", "cosine_se", "rel_error", "sign_agreement", "norm_ratio")


def corrected_norm(reference: Tensor, stderr: Tensor) -> Optional[float]:
    """N* = sqrt(||g*_hat||^2 - sum se_i^2), or None when that is not positive."""
    excess = float((reference.double() ** 2).sum() - (stderr.double() ** 2).sum())
    return math.sqrt(excess) if excess > 0 else None


def gradient_measures(g: Tensor, reference: Tensor, stderr: Tensor) -> dict[str, Optional[float]]:
    g, reference, stderr = (t.detach().double().cpu() for t in (g, reference, stderr))
    norm = corrected_norm(reference, stderr)
    g_norm = float(g.norm())
    significant = reference.abs() > 2 * stderr
    agreement = (float((torch.sign(g[significant]) == torch.sign(reference[significant])).double().mean())
                 if bool(significant.any()) else None)
    if norm is None:
        return dict(cosine=None, cosine_se=None, rel_error=None, sign_agreement=agreement, norm_ratio=None)
    excess = float(((g - reference) ** 2).sum() - (stderr ** 2).sum())
    passes = g_norm > 0   # an estimator that passes no gradient here aligns with nothing: cosine 0
    return {
        "cosine": max(-1.0, min(1.0, float(g @ reference) / (g_norm * norm))) if passes else 0.0,
        "cosine_se": float(((g * stderr) ** 2).sum().sqrt()) / (g_norm * norm) if passes else 0.0,
        "rel_error": math.sqrt(max(excess, 0.0)) / norm,
        "sign_agreement": agreement,
        "norm_ratio": g_norm / norm,
    }
