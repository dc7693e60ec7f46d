"""Binarized drop-in replacements for nn.Conv2d and nn.Linear.

The latent real weight stays the module's ``.weight`` (so a pretrained model keeps
its weights when patched); the estimator attached to the layer decides how the
forward binarizes and how the backward flows. In the forward every estimator sees
exactly +-1 weights and activations; the weights are then multiplied by a detached
per-output-channel mean(|W|) unless the layer was built with ``weight_scale="none"``.

Layer-level estimators (SURGE) need the layer's op and its two backward products
without going through autograd; :meth:`BinaryLayer.backward_products` gives them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.base import Estimator

WEIGHT_SCALES = ("channel", "none")
#: how a layer's weight gradient passes sign: the estimator's own surrogate, or straight through
WEIGHT_GRADS = ("surrogate", "identity")


class BinaryLayer:
    """What the binarized layers share (a mixin in front of the torch module)."""

    estimator: Estimator
    weight: nn.Parameter
    bias: Optional[nn.Parameter]
    #: the layer's op has an input gradient and backward products (not so for embeddings)
    supports_backward_products: bool = True

    def _init_binary(self, estimator: Estimator, weight_scale: str, weight_grad: str) -> None:
        if weight_scale not in WEIGHT_SCALES:
            raise ValueError(
                f"unknown weight_scale {weight_scale!r}; valid choices: {', '.join(WEIGHT_SCALES)}"
            )
        if weight_grad not in WEIGHT_GRADS:
            raise ValueError(f"unknown weight_grad {weight_grad!r}; valid choices: {', '.join(WEIGHT_GRADS)}")
        self.estimator = estimator
        self.weight_scale_mode = weight_scale
        self.weight_grad = weight_grad

    def binary_weight(self) -> Tensor:
        """sign(W) whose backward is the estimator's weight surrogate, or the identity when the
        layer's ``weight_grad`` is ``"identity"`` (unscaled: the caller multiplies the scale)."""
        return self.estimator.binarize_weight(self.weight, identity=self.weight_grad == "identity")

    def weight_scale(self) -> Tensor | float:
        """Detached per-output-channel mean(|W|), shaped to broadcast over the weight."""
        if self.weight_scale_mode == "none":
            return 1.0
        reduce_dims = tuple(range(1, self.weight.dim()))
        return self.weight.detach().abs().mean(dim=reduce_dims, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.estimator.layer_forward(self, x)

    def functional(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def backward_products(
        self, grad_out: Tensor, x: Tensor, weight: Tensor, need_input: bool, need_weight: bool
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """(dL/dx, dL/dweight) of ``functional(x, weight)`` for the upstream grad_out."""
        raise NotImplementedError

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:  # shown by print(model)
        return (f"{super().extra_repr()}, estimator={self.estimator.name}, weight_scale={self.weight_scale_mode}, "
                f"weight_grad={self.weight_grad}")


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """nn.Conv2d with binary weights and binary input activations."""

    def __init__(self, *args, estimator: Estimator, weight_scale: str = "channel", weight_grad: str = "surrogate",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, weight_scale, weight_grad)

    @classmethod
    def from_module(cls, conv: nn.Conv2d, estimator: Estimator, weight_scale: str = "channel",
                    weight_grad: str = "surrogate") -> "BinaryConv2d":
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta",
            estimator=estimator, weight_scale=weight_scale, weight_grad=weight_grad,
        )
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer.train(conv.training)
        return layer

    def functional(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return self._conv_forward(x, weight, bias)

    @property
    def supports_backward_products(self) -> bool:  # type: ignore[override]
        return self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def backward_products(self, grad_out, x, weight, need_input, need_weight):
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, self.stride, self.padding, self.dilation,
            False, [0, 0], self.groups, [need_input, need_weight, False],
        )
        return grad_x, grad_w

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        return grad_out.sum(dim=(0, 2, 3))


class BinaryLinear(BinaryLayer, nn.Linear):
    """nn.Linear with binary weights and binary input activations."""

    def __init__(self, *args, estimator: Estimator, weight_scale: str = "channel", weight_grad: str = "surrogate",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, weight_scale, weight_grad)

    @classmethod
    def from_module(cls, linear: nn.Linear, estimator: Estimator, weight_scale: str = "channel",
                    weight_grad: str = "surrogate") -> "BinaryLinear":
        layer = cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None,
            device="meta", estimator=estimator, weight_scale=weight_scale, weight_grad=weight_grad,
        )
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer.train(linear.training)
        return layer

    def functional(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(x, weight, bias)

    def backward_products(self, grad_out, x, weight, need_input, need_weight):
        grad_x = grad_out @ weight if need_input else None
        grad_w = None
        if need_weight:
            grad_w = grad_out.reshape(-1, grad_out.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_w

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        return grad_out.reshape(-1, grad_out.shape[-1]).sum(dim=0)


class BinaryEmbedding(BinaryLayer, nn.Embedding):
    """nn.Embedding with a binary table (BiT-style binarized embeddings).

    The inputs are token ids, so only the weights are binarized, by the estimator's
    weight path (for SURGE: its base estimator's; an auxiliary path has nothing to
    compensate without an input gradient). Scale: mean |row| per embedding vector.
    """

    supports_backward_products = False

    def __init__(self, *args, estimator: Estimator, weight_scale: str = "channel", weight_grad: str = "surrogate",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, weight_scale, weight_grad)

    @classmethod
    def from_module(cls, embedding: nn.Embedding, estimator: Estimator,
                    weight_scale: str = "channel", weight_grad: str = "surrogate") -> "BinaryEmbedding":
        layer = cls(
            embedding.num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx,
            max_norm=embedding.max_norm, norm_type=embedding.norm_type,
            scale_grad_by_freq=embedding.scale_grad_by_freq, sparse=embedding.sparse, device="meta",
            estimator=estimator, weight_scale=weight_scale, weight_grad=weight_grad,
        )
        layer.weight = embedding.weight
        layer.train(embedding.training)
        return layer

    def forward(self, ids: Tensor) -> Tensor:
        table = self.binary_weight() * self.weight_scale()
        return F.embedding(ids, table, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The binarized layers of a model, with their qualified names, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BinaryLayer)]
