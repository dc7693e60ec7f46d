"""Binarized drop-in replacements for nn.Conv2d, nn.Linear and nn.Embedding.

The latent real weight stays the module's ``.weight`` (so a pretrained model keeps its weights
when patched); the estimator attached to the layer decides how the forward binarizes and how the
backward flows. In the forward every estimator sees exactly +-1 activations, and weights

    W_eff = alpha * sign(balance(W))            (alpha: the weight scale, below)

The binarization details the papers differ by are the layer's :class:`BinarizationOptions`
(README, "Binarization options"; PAPERS_READ section 3 has the sources):

    weight_balance   what W becomes before sign (per output channel unless stated):
                     none          W
                     center        W - mean(W); layer-wise with weight_scale="layer" (BiT's
                                   BwnQuantizer, BiBERT's QuantizeEmbedding: sign(W - mean))
                     standardize   (W - mean) / std, unbiased std, no epsilon (IR-Net's Libra-PB,
                                   ``CIFAR-10/ResNet20/1w1a/modules/ir_1w1a.py``)
                     recu          w1 = (W - mean) / (sqrt(var + 1e-5) / (2 sqrt 2)), clamped to
                                   +-Q_tau with Q_tau = -mean|w1| ln(2 - 2 tau) over the layer,
                                   detached; tau rises from 0.85 to 0.99 as
                                   0.85 + 0.14 (e^p - 1) / (e - 1) in the training progress p (ReCU,
                                   ``cifar/modules/binarized_modules.py`` and ``cpt_tau`` in its
                                   ``main.py``, there per epoch)
    weight_scale     alpha, computed on balance(W):
                     channel       detached per-output-channel mean |W| (Bi-Real Net, ReActNet
                                   ``HardBinaryConv``)
                     layer         mean |W| over the layer, not detached (ReSTE; BiT's layer-wise
                                   scale)
                     pow2          2^round(log2(per-channel mean |W|)), detached (IR-Net)
                     learnable     a per-output-channel parameter initialised U[0, 1) as ReCU's
                                   ``alpha`` (there multiplied on the output; the same for a conv
                                   without bias)
                     none          1
    weight_clip      none          -
                     gradient      sign sees clamp(W, -1, 1): the weight gradient is 0 where
                                   |W| > 1 (Bi-Real Net / ReActNet's clipped STE path)
                     update        W is clamped to [-1, 1] after every optimizer step (BinaryNet;
                                   :func:`clip_latent_weights`, called by the harness)
    pad_value        the value the +-1 input map of a conv is padded with: 0 (zero padding: the
                     border is ternary, which XNOR/popcount cannot run), -1 (BiDet's
                     ``F.pad(..., value=-1)``) or +1. It is part of the layer's op, so SURGE's
                     auxiliary path pads its real input with it too (its input gradient is
                     unaffected; its weight gradient sees the padded border)
    binary_weights   False: W_eff = W, only activations are binarized (ReActNet's step 1)
    weight_grad      how the weight gradient passes sign: the estimator's own surrogate, or the
                     identity

The weight gradient reaches W through these (autograd): with the channel scale it is multiplied by
the detached alpha, which Bi-Real Net's code does not do (under Adam a per-channel constant factor
cancels up to epsilon).

Layer-level estimators (SURGE) need the layer's op and its two backward products without going
through autograd; :meth:`BinaryLayer.backward_products` gives them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.base import Estimator

WEIGHT_SCALES = ("channel", "layer", "pow2", "learnable", "none")
#: how a layer's weight gradient passes sign: the estimator's own surrogate, or straight through
WEIGHT_GRADS = ("surrogate", "identity")
WEIGHT_BALANCES = ("none", "center", "standardize", "recu")
WEIGHT_CLIPS = ("none", "gradient", "update")
PAD_VALUES = (0.0, -1.0, 1.0)
#: ReCU's tau range (``--tau_min 0.85 --tau_max 0.99`` in ``cifar/run.sh``)
RECU_TAU = (0.85, 0.99)


@dataclasses.dataclass(frozen=True)
class BinarizationOptions:
    """How a layer binarizes its weights and pads its binary input (module docstring)."""

    weight_scale: str = "channel"
    weight_grad: str = "surrogate"
    weight_balance: str = "none"
    weight_clip: str = "none"
    pad_value: float = 0.0
    binary_weights: bool = True

    def __post_init__(self) -> None:
        for name, choices in (("weight_scale", WEIGHT_SCALES), ("weight_grad", WEIGHT_GRADS),
                              ("weight_balance", WEIGHT_BALANCES), ("weight_clip", WEIGHT_CLIPS),
                              ("pad_value", PAD_VALUES), ("binary_weights", (True, False))):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid choices: "
                                 f"{', '.join(map(str, choices))}")
        if not self.binary_weights and self.weight_scale == "learnable":
            raise ValueError("weight_scale learnable scales binary weights: with binary_weights false it would "
                             "be a parameter nothing uses; choose another weight_scale")

    @classmethod
    def of(cls, **values) -> "BinarizationOptions":
        """Options from keyword values (unknown names are a TypeError, as for any call)."""
        return cls(**values)


def recu_tau(progress: float) -> float:
    low, high = RECU_TAU
    return low + (high - low) * (math.exp(progress) - 1) / (math.e - 1)


class BinaryLayer:
    """What the binarized layers share (a mixin in front of the torch module)."""

    estimator: Estimator
    weight: nn.Parameter
    bias: Optional[nn.Parameter]
    options: BinarizationOptions
    #: the layer's op has an input gradient and backward products (not so for embeddings)
    supports_backward_products: bool = True

    def _init_binary(self, estimator: Estimator, options: BinarizationOptions) -> None:
        self.estimator = estimator
        self.options = options
        self.progress = 0.0  # training progress, for ReCU's tau
        # BiT's elastic binarizer of the input (estimators.elastic), set by a task that binarizes as
        # BiT does (a submodule once set); None: the input is sign(x)
        self.input_binarizer = None

    def _init_scale(self) -> None:
        """ReCU's learnable alpha, one per output channel (called once the weight is in place)."""
        if self.options.weight_scale == "learnable":
            shape = (self.weight.shape[0],) + (1,) * (self.weight.dim() - 1)
            self.scale = nn.Parameter(torch.rand(shape, device=self.weight.device, dtype=self.weight.dtype))

    @property
    def weight_grad(self) -> str:
        return self.options.weight_grad

    @property
    def weight_scale_mode(self) -> str:
        return self.options.weight_scale

    def _channel_dims(self) -> tuple[int, ...]:
        return tuple(range(1, self.weight.dim()))

    def balanced_weight(self) -> Tensor:
        """balance(W): the tensor sign is applied to (differentiable)."""
        w, balance = self.weight, self.options.weight_balance
        if balance == "none":
            return w
        dims = self._channel_dims()
        if balance == "center":
            return w - (w.mean() if self.options.weight_scale == "layer" else w.mean(dim=dims, keepdim=True))
        centred = w - w.mean(dim=dims, keepdim=True)
        if balance == "standardize":
            return centred / centred.std(dim=dims, keepdim=True)
        scaled = centred / (torch.sqrt(centred.var(dim=dims, keepdim=True) + 1e-5) / (2 * math.sqrt(2)))
        bound = -scaled.detach().abs().mean() * math.log(2 - 2 * recu_tau(self.progress))
        return torch.minimum(torch.maximum(scaled, -bound), bound)

    def weight_scale(self, balanced: Optional[Tensor] = None) -> Tensor | float:
        """alpha of ``balanced`` (default :meth:`balanced_weight`), shaped to broadcast over the weight."""
        mode = self.options.weight_scale
        if mode == "none":
            return 1.0
        if mode == "learnable":
            return self.scale
        w = self.balanced_weight() if balanced is None else balanced
        if mode == "layer":
            return w.abs().mean()
        channel = w.detach().abs().mean(dim=self._channel_dims(), keepdim=True)
        return torch.exp2(torch.round(torch.log2(channel))) if mode == "pow2" else channel

    def binary_weight(self) -> Tensor:
        """sign(balance(W)) whose backward is the estimator's weight surrogate, or the identity when
        the layer's ``weight_grad`` is ``"identity"`` (unscaled: :meth:`effective_weight` scales)."""
        return self._signed(self.balanced_weight())

    def _signed(self, balanced: Tensor) -> Tensor:
        if self.options.weight_clip == "gradient":
            balanced = balanced.clamp(-1.0, 1.0)  # the sign is unchanged; the gradient is 0 where |W| > 1
        return self.estimator.binarize_weight(balanced, identity=self.options.weight_grad == "identity")

    def effective_weight(self) -> Tensor:
        """The weight the layer's op uses: alpha * sign(balance(W)), or W with ``binary_weights`` off."""
        if not self.options.binary_weights:
            return self.weight
        balanced = self.balanced_weight()
        return self._signed(balanced) * self.weight_scale(balanced)

    def forward(self, x: Tensor) -> Tensor:
        return self.estimator.layer_forward(self, x)

    def binary_input(self, x: Tensor, sign) -> Tensor:
        """The layer's binarized input: ``sign(x)`` (the estimator's sign with its surrogate), or
        the elastic binarizer's ``alpha * sign(x + b)`` / {0, alpha} around it."""
        return sign(x) if self.input_binarizer is None else self.input_binarizer(x, sign)

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
        changed = {k: v for k, v in dataclasses.asdict(self.options).items()
                   if v != getattr(BinarizationOptions, k) or k in ("weight_scale", "weight_grad")}
        return (f"{super().extra_repr()}, estimator={self.estimator.name}, "
                + ", ".join(f"{k}={v}" for k, v in changed.items()))


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """nn.Conv2d with binary weights and binary input activations."""

    def __init__(self, *args, estimator: Estimator, options: BinarizationOptions = BinarizationOptions(),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, options)
        if options.pad_value != 0 and not self.supports_backward_products:
            raise ValueError(f"pad_value {options.pad_value} needs numeric padding and padding_mode='zeros' "
                             f"(got padding={self.padding!r}, padding_mode={self.padding_mode!r})")
        self._init_scale()

    @classmethod
    def from_module(cls, conv: nn.Conv2d, estimator: Estimator, weight_scale: str = "channel",
                    weight_grad: str = "surrogate", **options) -> "BinaryConv2d":
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta", estimator=estimator,
            options=BinarizationOptions(weight_scale=weight_scale, weight_grad=weight_grad, **options),
        )
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer._init_scale()
        layer.train(conv.training)
        return layer

    def _padded(self, x: Tensor) -> Tensor:
        pad_h, pad_w = self.padding
        return F.pad(x, (pad_w, pad_w, pad_h, pad_h), value=self.options.pad_value)

    def functional(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.options.pad_value == 0:
            return self._conv_forward(x, weight, bias)
        return F.conv2d(self._padded(x), weight, bias, self.stride, 0, self.dilation, self.groups)

    @property
    def supports_backward_products(self) -> bool:  # type: ignore[override]
        return self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def backward_products(self, grad_out, x, weight, need_input, need_weight):
        padding, source = self.padding, x
        if self.options.pad_value != 0:  # the padded map is the op's input; its border has no gradient
            padding, source = (0, 0), self._padded(x)
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_out, source, weight, None, self.stride, padding, self.dilation,
            False, [0, 0], self.groups, [need_input, need_weight, False],
        )
        if grad_x is not None and source is not x:
            pad_h, pad_w = self.padding
            grad_x = grad_x[..., pad_h:pad_h + x.shape[-2], pad_w:pad_w + x.shape[-1]]
        return grad_x, grad_w

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        return grad_out.sum(dim=(0, 2, 3))


class BinaryLinear(BinaryLayer, nn.Linear):
    """nn.Linear with binary weights and binary input activations."""

    def __init__(self, *args, estimator: Estimator, options: BinarizationOptions = BinarizationOptions(),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, options)
        self._init_scale()

    @classmethod
    def from_module(cls, linear: nn.Linear, estimator: Estimator, weight_scale: str = "channel",
                    weight_grad: str = "surrogate", **options) -> "BinaryLinear":
        layer = cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta",
            estimator=estimator,
            options=BinarizationOptions(weight_scale=weight_scale, weight_grad=weight_grad, **options),
        )
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer._init_scale()
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

    def __init__(self, *args, estimator: Estimator, options: BinarizationOptions = BinarizationOptions(),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(estimator, options)
        self._init_scale()

    @classmethod
    def from_module(cls, embedding: nn.Embedding, estimator: Estimator, weight_scale: str = "channel",
                    weight_grad: str = "surrogate", **options) -> "BinaryEmbedding":
        layer = cls(
            embedding.num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx,
            max_norm=embedding.max_norm, norm_type=embedding.norm_type,
            scale_grad_by_freq=embedding.scale_grad_by_freq, sparse=embedding.sparse, device="meta",
            estimator=estimator,
            options=BinarizationOptions(weight_scale=weight_scale, weight_grad=weight_grad, **options),
        )
        layer.weight = embedding.weight
        layer._init_scale()
        layer.train(embedding.training)
        return layer

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.effective_weight(), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The binarized layers of a model, with their qualified names, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BinaryLayer)]


def clip_latent_weights(model: nn.Module) -> None:
    """Clamp the latent weights of the layers built with ``weight_clip="update"`` to [-1, 1], in
    place (BinaryNet, Courbariaux et al. 2016, arXiv:1602.02830: after every update)."""
    with torch.no_grad():
        for _, layer in binary_layers(model):
            if layer.options.weight_clip == "update":
                layer.weight.clamp_(-1.0, 1.0)
