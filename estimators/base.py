"""The estimator API: what every gradient estimator is, and the sign it surrogates.

Two kinds of estimator share one interface, :meth:`Estimator.layer_forward`, which
a binarized layer calls with itself and its real-valued input:

* :class:`ElementwiseEstimator` replaces d sign(x)/dx by the derivative of a
  surrogate function; it binarizes weights and activations separately and then
  runs the layer's ordinary op on the binary tensors.
* layer-level estimators (SURGE) see the whole layer: its input, its weights and
  any per-layer state they attach (``aux_weight``).

Estimators are dataclasses; their init fields are their hyperparameters.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar, Optional

import torch
from torch import Tensor

from estimators.fused import Derivative, SurrogateBackward, compute_dtype, constant_tensors, surrogate_backward

if TYPE_CHECKING:  # pragma: no cover
    from estimators.layers import BinaryLayer

#: ``(x, grad) -> grad * F'(x)``, or None for the identity (grad passes unchanged).
GradFn = Optional[SurrogateBackward]


def binary_sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, so the result is exactly +-1 (torch.sign(0) is 0)."""
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)  # 3x faster than torch.where on CPU


class _SignWithSurrogateGrad(torch.autograd.Function):
    """Forward: binary_sign(x). Backward: grad_fn(x, g), or g itself for grad_fn None.

    Under autocast: no op here is autocast (the forward keeps x's dtype, so the +-1 output is bf16
    where x is, e.g. a conv's output, and fp32 for a latent weight), and the backward, which runs
    outside autocast, returns the gradient in x's dtype (the surrogate of a half-precision x is
    computed in float32 and rounded once, estimators.fused)."""

    @staticmethod
    def forward(ctx, x: Tensor, grad_fn: GradFn) -> Tensor:
        ctx.grad_fn, ctx.x_dtype = grad_fn, x.dtype
        if grad_fn is not None:
            ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.grad_fn is None:
            return grad.to(ctx.x_dtype), None
        (x,) = ctx.saved_tensors
        return ctx.grad_fn(x, grad), None


def sign_with_surrogate_grad(x: Tensor, grad_fn: GradFn) -> Tensor:
    """binary_sign(x) whose backward turns the upstream gradient g into grad_fn(x, g)
    (g * F'(x) for a surrogate F; see :func:`estimators.fused.surrogate_backward`)."""
    return _SignWithSurrogateGrad.apply(x, grad_fn)


@dataclasses.dataclass
class Estimator:
    """Base of all estimators. Subclasses are dataclasses whose fields are hyperparameters."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: False only for the full-precision reference: binarize_model then patches nothing.
    binarizes: ClassVar[bool] = True
    #: True when the backward depends on the training progress p (EDE, ReSTE, FDA).
    scheduled: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.progress = 0.0
        for name, value in self.hparams().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{self.name}: {name} must be a finite number, got {value!r}")

    def hparams(self) -> dict:
        """The hyperparameters as a plain dict (what a run config records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def set_progress(self, p: float) -> None:
        """Training progress p in [0, 1]; schedules are functions of p, never of epochs."""
        self.progress = float(p)

    def attach(self, layers: "list[BinaryLayer]") -> None:
        """Add per-layer state once the model is patched (layers in module order)."""

    def layer_forward(self, layer: "BinaryLayer", x: Tensor) -> Tensor:
        raise NotImplementedError

    def binarize_weight(self, w: Tensor, identity: bool = False) -> Tensor:
        """sign(w) with this estimator's weight gradient, or a straight-through one (``identity``:
        a layer built with ``weight_grad="identity"``)."""
        raise NotImplementedError

    def binarize_activation(self, x: Tensor) -> Tensor:
        """sign(x) with this estimator's activation gradient, for a binarized activation outside a
        layer's op (BiBERT's and BiT's query, key and value before the attention matmuls)."""
        raise NotImplementedError


@dataclasses.dataclass
class ElementwiseEstimator(Estimator):
    """An estimator that replaces d sign(x)/dx by a closed-form surrogate derivative.

    Subclasses define :meth:`surrogate` (the soft function F whose derivative is used, for
    plots), ``derivative`` (F' as a pure function ``derivative(x, *constants)`` returning a new
    tensor, the constants arriving as 0-dim tensors) and :meth:`constants` (their values at the
    current progress, as numbers). The backward runs
    ``g * derivative(x, *constants)`` as one fused kernel (:mod:`estimators.fused`); a
    ``derivative`` of None is the identity. Weights use the same derivative unless
    ``weights_use_identity`` is set, in which case the weight gradient passes straight through.
    """

    weights_use_identity: ClassVar[bool] = False
    derivative: ClassVar[Optional[Derivative]] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "activation_grad" in vars(cls) and "derivative" not in vars(cls):
            raise TypeError(f"{cls.__name__}: write the surrogate's derivative as a static method "
                            f"derivative(x, *constants) with constants() returning their values (see "
                            f"estimators/clipped_ste.py); overriding activation_grad alone would leave the "
                            f"backward an identity")

    def surrogate(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def constants(self) -> tuple:
        """The arguments of ``derivative`` after x, at the current progress."""
        return ()

    def activation_grad(self, x: Tensor) -> Tensor:
        """F'(x), op by op (the closed form the fused backward compiles)."""
        derivative = type(self).derivative
        if derivative is None:
            return x.new_ones(x.shape)
        values = constant_tensors(self.constants(), x.device)
        return derivative(x.to(compute_dtype(x.dtype)), *values).to(x.dtype)  # half precision: in float32

    def activation_grad_fn(self) -> GradFn:
        derivative = type(self).derivative
        return None if derivative is None else surrogate_backward(derivative, self.constants())

    def weight_grad_fn(self) -> GradFn:
        return None if self.weights_use_identity else self.activation_grad_fn()

    def binarize_activation(self, x: Tensor) -> Tensor:
        return sign_with_surrogate_grad(x, self.activation_grad_fn())

    def binarize_weight(self, w: Tensor, identity: bool = False) -> Tensor:
        return sign_with_surrogate_grad(w, None if identity else self.weight_grad_fn())

    def layer_forward(self, layer: "BinaryLayer", x: Tensor) -> Tensor:
        return layer.functional(layer.binary_input(x, self.binarize_activation), layer.effective_weight(), layer.bias)


def check_positive(estimator: Estimator, *names: str) -> None:
    for field in names:
        value = getattr(estimator, field)
        if not value > 0:
            raise ValueError(f"{estimator.name}: {field} must be > 0, got {value!r}")
