"""Parameter and operation counts of a (binarized) model.

Conventions of the BNN literature (Bi-Real Net, ReActNet): a binary layer's
multiply-accumulates are binary operations (BOPs); full-precision conv/linear MACs
are FLOPs; the combined figure is OPs = BOPs / 64 + FLOPs. Counted by running one
example input through forward hooks on every conv/linear layer (BN, activations
and pooling are not counted, as in those papers). SURGE's auxiliary weights are
training-only and excluded from the parameter counts.

Each binarization option is counted for what it costs a deployed XNOR/popcount layer
(:class:`estimators.layers.BinarizationOptions`), as Bi-Real Net and ReActNet count their OPs
(Bi-Real Net's ResNet-18: 1.63e8 OPs, reproduced by ``tests/test_binarization_options.py``):

    weight scale     channel, layer, learnable, pow2: nothing; a per-channel factor followed by
                     BN folds into BN's affine transform (BN is not counted)
    weight balance   nothing: it is folded into the stored bits after training
    pad_value        nothing: with zero padding the border taps read 0, so a deployed layer
                     masks them out of its popcount (or adds a per-position constant); with -1 or
                     +1 every tap is a +-1 product. The MACs of a binary conv are BOPs either way
    binary weights   off (ReActNet's step 1): real weights times binary inputs are FLOPs
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from estimators.layers import BinaryLayer


@dataclasses.dataclass
class ModelCost:
    n_params: int          # all parameters of the deployed model
    n_binary_params: int   # weights stored as 1 bit
    binary_ops: float      # BOPs of one forward pass on the example input
    float_ops: float       # FLOPs (MACs) of the full-precision conv/linear layers

    @property
    def ops(self) -> float:
        return self.binary_ops / 64 + self.float_ops


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> float:
    weight = module.weight
    if isinstance(module, nn.Conv2d):
        return float(output.numel() * weight[0].numel())  # per output element: (C_in/groups) k k
    return float(output.numel() * weight.shape[1])


def _binary_layer_ops(layer: BinaryLayer, inputs: tuple, output: torch.Tensor) -> tuple[float, float]:
    """(BOPs, FLOPs) of one binarized layer's forward."""
    macs = _macs(layer, inputs, output)
    return (macs, 0.0) if layer.options.binary_weights else (0.0, macs)


def count_cost(model: nn.Module, *example_inputs, **example_kwargs) -> ModelCost:
    """Count parameters and ops on one example forward pass (in eval mode, no grad)."""
    totals = {"binary": 0.0, "float": 0.0}

    def hook(module, inputs, output):
        if isinstance(module, BinaryLayer):
            binary, flops = _binary_layer_ops(module, inputs, output)
            totals["binary"] += binary
            totals["float"] += flops
        else:
            totals["float"] += _macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs, **example_kwargs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    aux = {id(m.aux_weight) for m in model.modules() if getattr(m, "aux_weight", None) is not None}
    n_params = sum(p.numel() for p in model.parameters() if id(p) not in aux)
    n_binary = sum(m.weight.numel() for m in model.modules() if isinstance(m, BinaryLayer) and m.options.binary_weights)
    return ModelCost(n_params, n_binary, totals["binary"], totals["float"])
