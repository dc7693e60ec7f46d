"""The reference gradient of ``bench diagnose``: the gradient of the Gaussian-smoothed loss.

sign has a zero derivative almost everywhere, so the reference is the derivative of the
smoothed objective in which every binarized activation from the measured layer on is
sign(x + sigma_l * eps), eps ~ N(0, 1) (the layers before it run their ordinary forward, so x
is the network's own input to the layer; weights are binarized as always):

    L_sigma = E_eps[ L ]

For one binary unit i of layer l, with the others' noise integrated out, the derivative
through the layer's sign is the local expectation gradient (Titsias & Lazaro-Gredilla, "Local
Expectation Gradients for Black Box Variational Inference", NeurIPS 2015):

    dL_sigma / dx_i = phi(x_i / sigma_l) / sigma_l * E[ L(b_i = +1) - L(b_i = -1) ]

where phi is the standard normal density and the expectation is over the noise of every other
unit (of layer l and of the later layers). It is estimated by Monte Carlo: ``samples`` noise
draws, each forwarded twice (b_i forced to +1 and to -1) with the same draw (common random
numbers), so the per-unit standard error is the sample sd of the paired difference / sqrt(S).
Other uses of x_i (a residual shortcut) are held fixed: the measured quantity is the
gradient the binarized layer hands back to its input, the one every estimator replaces.

The loss must be a mean of per-example losses (``example_losses``) of a model whose
normalisation layers use their running statistics (:func:`diagnostic_mode`): then unit i of
example n changes only example n's loss, and each Monte Carlo row is one copy of example n.
sigma_l = ``sigma`` x the standard deviation of the layer's input over the probe batch.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from estimators import BinaryLayer, binary_layers, binary_sign

ExampleLosses = Callable[[nn.Module, tuple], Tensor]  # (model, batch) -> per-example losses [B]


def diagnostic_mode(model: nn.Module) -> None:
    """Normalisation layers on running statistics and dropout off (``model.eval()``), binarized
    layers in training mode, so SURGE's auxiliary path is active as it is in training."""
    model.eval()
    for _, layer in measured_layers(model):
        layer.train()


def measured_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The binarized layers whose input activations are measured (embeddings take token ids)."""
    return [(name, layer) for name, layer in binary_layers(model) if not isinstance(layer, nn.Embedding)]


def index_batch(batch: tuple, rows: Tensor) -> tuple:
    """The batch's examples ``rows`` (every tensor of the batch indexed on its first dim)."""
    return tuple(part[rows] if isinstance(part, Tensor) else part for part in batch)


def layer_inputs(model: nn.Module, batch: tuple, example_losses: ExampleLosses) -> dict[str, Tensor]:
    """Every measured layer's input on ``batch`` (ordinary forward, no grad), in the order the
    forward calls the layers (a shortcut's conv runs before the block's second conv although
    it is registered after it)."""
    captured: dict[str, Tensor] = {}
    handles = [layer.register_forward_pre_hook(_capture(captured, name)) for name, layer in measured_layers(model)]
    try:
        with torch.no_grad():
            example_losses(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _capture(store: dict, name: str):
    def hook(module, inputs):
        store[name] = inputs[0].detach()
    return hook


@dataclasses.dataclass
class Reference:
    """The reference on one probe batch: per measured layer, the units (flat indices into the
    layer's input), g* at them, its standard error, and the layer's sigma_l."""

    units: dict[str, Tensor]
    values: dict[str, Tensor]
    stderr: dict[str, Tensor]
    sigmas: dict[str, float]
    samples: int

    def relative_stderr(self, name: str) -> float:
        """||se|| / ||g*|| of a layer: the Monte Carlo noise relative to the reference's size."""
        norm = float(self.values[name].norm())
        return float(self.stderr[name].norm()) / norm if norm > 0 else math.inf


class _SmoothedSign:
    """Stands in for a layer's estimator while the reference is measured (forward only)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.role = "clean"          # clean: sign(x); noisy: sign(x + sigma eps); measured: and b_i forced
        self.sigma = 0.0
        self.offsets: Optional[Tensor] = None   # per row pair: the unit's offset within its example

    def binarize_weight(self, w: Tensor, identity: bool = False) -> Tensor:
        return binary_sign(w)

    def layer_forward(self, layer: BinaryLayer, x: Tensor) -> Tensor:
        w_binary = layer.effective_weight()  # the layer's balance, clip and scale, with binary_sign
        if self.role == "clean":
            return layer.functional(binary_sign(x), w_binary, layer.bias)
        pairs = x.shape[0] // 2
        noise = torch.randn((pairs, *x.shape[1:]), generator=self.generator, device=x.device, dtype=x.dtype)
        b = binary_sign(x + self.sigma * noise.repeat_interleave(2, dim=0))
        if self.role == "measured":
            rows = torch.arange(x.shape[0], device=x.device)
            forced = 1.0 - 2.0 * (rows % 2).to(x.dtype)   # +1 on even rows, -1 on odd ones
            b.view(x.shape[0], -1)[rows, self.offsets.repeat_interleave(2)] = forced
        return layer.functional(b, w_binary, layer.bias)


def smoothed_reference(model: nn.Module, batch: tuple, example_losses: ExampleLosses, *, units: int = 256,
                       samples: int = 32, sigma: float = 0.5, seed: int = 0, rows_per_forward: int = 1024,
                       progress: Optional[Callable[[int], None]] = None) -> Reference:
    """The Monte Carlo reference on ``batch`` for ``units`` units per measured layer (drawn with
    ``seed``; all of a layer's units if it has fewer), ``samples`` noise draws each.

    ``example_losses`` returns the per-example losses; the reference is the gradient of their mean.
    ``progress`` is called with the number of forwarded rows after each forward.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a standard error needs two draws), got {samples}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (a fraction of each layer's input std), got {sigma}")
    inputs = layer_inputs(model, batch, example_losses)
    modules = dict(measured_layers(model))
    layers = [(name, modules[name]) for name in inputs]   # in the order the forward calls them
    device = next(iter(inputs.values())).device
    draw = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    batch_size = len(next(part for part in batch if isinstance(part, Tensor)))
    swapped = {name: _SmoothedSign(noise) for name, _ in layers}
    own = {name: layer.estimator for name, layer in layers}
    result = Reference({}, {}, {}, {}, samples)
    try:
        for name, layer in layers:
            layer.estimator = swapped[name]
        for position, (name, _) in enumerate(layers):
            x = inputs[name]
            per_example = x[0].numel()
            chosen = torch.randperm(x.numel(), generator=draw)[:units].sort().values
            sigma_l = sigma * float(x.std())
            for later, (other, _) in enumerate(layers):
                swapped[other].role = "clean" if later < position else "noisy"
                swapped[other].sigma = sigma_l if other == name else sigma * float(inputs[other].std())
            swapped[name].role = "measured"
            total = torch.zeros(len(chosen), dtype=torch.float64)
            squares = torch.zeros(len(chosen), dtype=torch.float64)
            unit_of_pair = torch.arange(len(chosen)).repeat(samples)   # every unit, then again, S times
            step = max(rows_per_forward // 2, 1)
            for start in range(0, len(unit_of_pair), step):
                pair_units = unit_of_pair[start:start + step]
                flat = chosen[pair_units]
                swapped[name].offsets = (flat % per_example).to(device)
                rows = (flat // per_example).repeat_interleave(2).to(device)
                with torch.no_grad():
                    losses = example_losses(model, index_batch(batch, rows)).double().cpu()
                difference = losses[0::2] - losses[1::2]
                total.index_add_(0, pair_units, difference)
                squares.index_add_(0, pair_units, difference * difference)
                if progress is not None:
                    progress(len(rows))
            mean = total / samples
            variance = (squares - samples * mean * mean).clamp_min(0) / (samples - 1)
            x_units = x.reshape(-1)[chosen.to(device)].double().cpu()
            density = torch.exp(-0.5 * (x_units / sigma_l) ** 2) / (math.sqrt(2 * math.pi) * sigma_l)
            result.units[name] = chosen
            result.values[name] = (density * mean / batch_size).float()
            result.stderr[name] = (density * variance.sqrt() / math.sqrt(samples) / batch_size).float()
            result.sigmas[name] = sigma_l
    finally:
        for name, layer in layers:
            layer.estimator = own[name]
    return result


def estimator_gradients(model: nn.Module, batch: tuple, example_losses: ExampleLosses) -> dict[str, Tensor]:
    """Per measured layer, the gradient the layer's estimator hands back to its input (flattened),
    for the mean of ``example_losses`` on ``batch``: the full backward of the model's estimators,
    read at each layer's own input (an alias of it, so a shortcut's gradient is not added in)."""
    aliases: dict[str, Tensor] = {}

    def alias(name: str):
        def hook(module, inputs):
            x = inputs[0]  # the image, for a binarized first conv: a leaf of its own then
            aliases[name] = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
            return (aliases[name], *inputs[1:])
        return hook

    layers = measured_layers(model)
    handles = [layer.register_forward_pre_hook(alias(name)) for name, layer in layers]
    try:
        loss = example_losses(model, batch).mean()
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name, _ in layers if name in aliases]
    grads = torch.autograd.grad(loss, [aliases[name] for name in names], allow_unused=True)
    return {name: (g.reshape(-1) if g is not None else torch.zeros(aliases[name].numel(), device=loss.device))
            for name, g in zip(names, grads)}
