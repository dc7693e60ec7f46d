"""What an elementwise estimator's surrogate does to the gradient of raw latent weights.

    python benchmarks/weight_surrogate_gain.py [--out reports/weight_surrogate_gain.md]

For each estimator that applies its activation surrogate F to the weights too ("surrogate"
weight gradients, as in the papers' code), F'(w) over every binarized layer's latent weights of
the quick model (ResNet-20, bireal block) and of ResNet-18 (CIFAR), at PyTorch's default conv
initialisation, at training progress p = 0, 0.5 and 1: the mean multiplier and its coefficient
of variation (std / mean) across the weights. A coefficient near 0 means F' is a near-constant
factor on those weights: not a shaped gradient but a hidden change of the learning rate (under
SGD; Adam normalises a constant factor away). This is the evidence for the comparison track's
``weight_grad=identity`` (README, "Blocks and weight gradients").
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import estimators  # noqa: E402
from benchmarks.output import publish  # noqa: E402
from tasks.classification.models import MODELS  # noqa: E402

ESTIMATORS = ("ede", "swish_sign", "reste", "fda", "dsq")
MODELS_MEASURED = ("resnet20_cifar", "resnet18_cifar")
PROGRESS = (0.0, 0.5, 1.0)


def latent_weights(model_name: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = MODELS.get(model_name)(num_classes=10, in_channels=3, block="bireal")
    estimators.binarize_model(model, estimators.build("ste"))
    return torch.cat([layer.weight.detach().flatten() for _, layer in estimators.binary_layers(model)])


def table() -> str:
    lines = ["| model | max \\|w\\| | estimator | p | mean F'(w) | CV of F'(w) |", "|---|---|---|---|---|---|"]
    for model_name in MODELS_MEASURED:
        weights = latent_weights(model_name)
        for name in ESTIMATORS:
            estimator = estimators.build(name)
            for p in PROGRESS:
                estimator.set_progress(p)
                gain = estimator.activation_grad(weights)
                mean = float(gain.mean())
                lines.append(f"| {model_name} | {float(weights.abs().max()):.3f} | {name} | {p:g} | {mean:.3f} | "
                             f"{float(gain.std()) / mean:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    publish(table(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
