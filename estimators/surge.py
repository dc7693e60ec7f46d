"""SURGE: Dual-Path Gradient Compensator (DPGC) with an Adaptive Gradient Scaler (AGS).

Paper: Huang, Liu, Yang, Li, Yang, Liu, Chen, Fu, Zhang 2026, "SURGE: Surrogate
Gradient Adaptation in Binary Neural Networks", ICML 2026, arXiv:2605.10989.

A layer-level estimator. For a binarized layer y = op(x, W) (conv2d or linear):

    f_b = op(sign(x), alpha * sign(W))       binary main path, trained with ``base``
    f_a = op(x, W_a)                         full-precision auxiliary path on the real input
    y   = f_b + lambda f_a - stopgrad(lambda f_a)

    forward    y = f_b exactly (f_a is never computed: its value cancels)
    backward   with delta = dL/dy,
               g_b     = op_x^T(delta, alpha sign(W)) * base'(x)     (clipped STE by default)
               g_a     = op_x^T(delta, W_a)                          (not clipped)
               lambda  = eta ||g_b||_2 / (||g_a||_2 + 1e-8)          per layer, per step (AGS)
               dL/dx   = g_b + lambda g_a
               dL/dW   = alpha op_W^T(sign(x), delta)                 (the base estimator's)
               dL/dW_a = lambda op_W^T(x, delta)

    (alpha sign(W) is the layer's effective weight, with its balance, scale and clip:
    estimators.layers; the Function returns op_W^T(sign(x), delta) for it and autograd carries
    that on through alpha, the weight surrogate and the balance, as for the base estimator.)

A linear layer whose input goes through BiT's elastic binarizer (``scale * sign(u) + offset``,
estimators.elastic) runs the same Function on u: f_b = op(sign(u), scale * alpha sign(W)) plus the
offset's response offset * op(1, alpha sign(W)), f_a = op(u, W_a); the forward equals the
elementwise estimators' (tested).

All four backward products and lambda are computed inside one autograd Function, so
lambda is the exact one of the same step; the cost is 1 forward + 4 backward products
against STE's 1 + 2. In ``model.eval()`` (or without grad) the layer is the base
estimator's binary layer and ``aux_weight`` is not touched.

Choices the paper leaves open, exposed as hyperparameters (defaults first):
  eta = 0.1          the AGS ratio ||lambda g_a|| / ||g_b||, which the paper leaves open: the
                     best mean validation top-1 of {0.05, 0.1, 0.2, 0.5, 1} in
                     benchmarks/hparam_sweep.py (quick classification, bireal block, 3 seeds,
                     the same budget as clipped_ste's c, ReSTE's o_end and EDE's t_max): 74.59 %
                     against 73.65 % for the former 0.2 (paired on seeds: +0.94 [-0.15, +2.03],
                     every seed higher), chosen on the validation split only (README, Benchmarks)
  base = "clipped_ste"   the main path's elementwise estimator; with the auxiliary
                     path off SURGE equals it exactly
  shared_aux = False     True: W_a is the latent weight W itself (no extra
                     parameters; then dL/dW = base grad + lambda op_W^T(x, delta))
  fixed_lambda = None    a number switches AGS off (the fixed-lambda ablation)
  last_k = None          DPGC only in the last k binarized layers (ablation)
  ags = "exact"          "previous": use last step's lambda of the layer (detached),
                     the paper's cheap reading; the first step uses its own. Here it
                     saves no compute (both norms are still taken for the next step);
                     it exists to ablate the timing, not for speed
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from estimators.base import ElementwiseEstimator, Estimator, binary_sign
from estimators.layers import BinaryLayer
from estimators.registry import ESTIMATORS

AGS_TIMINGS = ("exact", "previous")
_NORM_EPS = 1e-8


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast would run a conv/matmul in on this device now (None: autocast off)."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _cast(tensor: Optional[Tensor], dtype: Optional[torch.dtype]) -> Optional[Tensor]:
    return tensor if tensor is None or dtype is None else tensor.to(dtype)


class _DualPath(torch.autograd.Function):
    """The layer's op on (sign(x), w) whose input gradient is SURGE's mix of two paths.

    Inputs: x (the real input), w (the layer's effective binary weight alpha * sign(balance(W)),
    built by autograd outside, so the gradient returned for it flows on through the scale, the
    weight surrogate and the balance), w_a (the auxiliary weight, or the latent W itself when
    shared), bias. Under autocast the op runs in autocast's dtype with autocast off inside
    (the effect of ``torch.amp.custom_fwd(cast_inputs=...)`` on any device); the backward
    products run in the upstream gradient's dtype, lambda's norms in float32, and every gradient
    is returned in its input's dtype.
    """

    @staticmethod
    def forward(ctx, x, w, w_a, bias, layer, surge):
        ctx.layer, ctx.surge = layer, surge
        # the base's surrogate derivative as of this forward (its schedule may move before backward)
        ctx.x_grad_fn = surge.base_estimator.activation_grad_fn()
        ctx.dtypes = (x.dtype, w.dtype, w_a.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(x, w, w_a)
        dtype = _autocast_dtype(x.device.type)
        with torch.autocast(x.device.type, enabled=False):
            return layer.functional(_cast(binary_sign(x), dtype), _cast(w, dtype), _cast(bias, dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, w, w_a = ctx.saved_tensors
        layer, surge = ctx.layer, ctx.surge
        need_x, need_w, need_a, need_bias = ctx.needs_input_grad[:4]
        dtype = grad_out.dtype
        grad_out = grad_out.contiguous()
        with torch.autocast(x.device.type, enabled=False):
            grad_x_b, grad_w = layer.backward_products(grad_out, _cast(binary_sign(x), dtype), _cast(w, dtype),
                                                       True, need_w)
            if ctx.x_grad_fn is not None:
                grad_x_b = ctx.x_grad_fn(x, grad_x_b)
            grad_x_a, grad_w_a = layer.backward_products(grad_out, _cast(x, dtype), _cast(w_a, dtype), True, need_a)
            lam = surge.ags_lambda(layer, grad_x_b, grad_x_a)
            grad_x = grad_x_a.mul_(lam).add_(grad_x_b) if need_x else None
            grad_a = grad_w_a.mul_(lam) if need_a else None
            grad_bias = layer.bias_grad(grad_out) if need_bias else None
        grads = tuple(_cast(g, d) for g, d in zip((grad_x, grad_w, grad_a, grad_bias), ctx.dtypes))
        return (*grads, None, None)


@ESTIMATORS.register("surge")
@dataclass
class SURGE(Estimator):
    eta: float = 0.1
    base: str = "clipped_ste"
    shared_aux: bool = False
    fixed_lambda: Optional[float] = None
    last_k: Optional[int] = None
    ags: str = "exact"

    name = "surge"
    paper = "Huang et al. 2026 (SURGE), ICML 2026, arXiv:2605.10989"

    def __post_init__(self) -> None:
        super().__post_init__()
        from estimators import build  # the base is built through the same registry

        if self.eta < 0:
            raise ValueError(f"surge: eta must be >= 0, got {self.eta}")
        if self.fixed_lambda is not None and self.fixed_lambda < 0:
            raise ValueError(f"surge: fixed_lambda must be >= 0, got {self.fixed_lambda}")
        if self.last_k is not None and self.last_k < 1:
            raise ValueError(f"surge: last_k must be >= 1, got {self.last_k}")
        if self.ags not in AGS_TIMINGS:
            raise ValueError(f"surge: unknown ags {self.ags!r}; valid choices: {', '.join(AGS_TIMINGS)}")
        base = build(self.base)
        if not isinstance(base, ElementwiseEstimator):
            raise ValueError(f"surge: base must be an elementwise estimator, got {self.base!r}")
        self.base_estimator = base

    def set_progress(self, p: float) -> None:
        super().set_progress(p)
        self.base_estimator.set_progress(p)

    @property
    def scheduled(self) -> bool:  # type: ignore[override]
        return self.base_estimator.scheduled

    def binarize_weight(self, w: Tensor, identity: bool = False) -> Tensor:
        return self.base_estimator.binarize_weight(w, identity)

    def binarize_activation(self, x: Tensor) -> Tensor:
        """An activation binarized outside a layer (BiBERT's Q/K/V): the base estimator's sign; no
        auxiliary path, as there is no layer op to compensate."""
        return self.base_estimator.binarize_activation(x)

    def attach(self, layers: list[BinaryLayer]) -> None:
        """Give the last k (default: all) binarized conv/linear layers their auxiliary path."""
        layers = [layer for layer in layers if not isinstance(layer, nn.Embedding)]
        chosen = layers if self.last_k is None else layers[-self.last_k:]
        for layer in chosen:
            if not layer.supports_backward_products:
                raise ValueError(
                    f"surge: layer {layer} is not supported (needs padding_mode='zeros' and numeric padding)"
                )
        for layer in layers:
            layer.dpgc = False
            layer.aux_weight = None
            layer.last_lambda = None
        for layer in chosen:
            layer.dpgc = True
            if not self.shared_aux:
                layer.aux_weight = nn.Parameter(layer.weight.detach().clone())

    def ags_lambda(self, layer: BinaryLayer, grad_x_b: Tensor, grad_x_a: Tensor) -> Tensor:
        """lambda of this step for this layer (and remember it for logging / 'previous')."""
        if self.fixed_lambda is not None:
            lam = grad_x_b.new_tensor(self.fixed_lambda)
        else:
            lam = self.eta * grad_x_b.float().norm() / (grad_x_a.float().norm() + _NORM_EPS)
        previous = layer.last_lambda
        layer.last_lambda = lam.detach()
        if self.ags == "previous" and previous is not None:
            return previous
        return lam

    def layer_forward(self, layer: BinaryLayer, x: Tensor) -> Tensor:
        if not (getattr(layer, "dpgc", False) and layer.training and torch.is_grad_enabled()):
            return self.base_estimator.layer_forward(layer, x)
        w_a = layer.weight if layer.aux_weight is None else layer.aux_weight
        weight = layer.effective_weight()
        if layer.input_binarizer is None:
            return _DualPath.apply(x, weight, w_a, layer.bias, layer, self)
        # BiT's elastic input scale * sign(u) + offset of a linear layer: the op runs on sign(u) with
        # the scale in the weight, the offset's response added (u is the real input both paths see)
        u, scale, offset = layer.input_binarizer.affine(x)
        out = _DualPath.apply(u, scale * weight, w_a, layer.bias, layer, self)
        if isinstance(offset, float) and offset == 0:
            return out
        return out + (offset * weight.sum(dim=1)).to(out.dtype)  # autocast: out's dtype, as elementwise
