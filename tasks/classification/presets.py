"""Presets of the classification family: ``quick`` (offline, CPU minutes) and ``paper``.

quick: small subsets and few epochs on 2 CPU cores; its numbers rank estimators on a small
budget and are not comparable with papers. It trains with Adam (lr 5e-3, no weight decay; Adam
is the usual BNN optimizer since Bi-Real Net and ReActNet): on a ~100-step budget SGD at lr 0.1
barely moves a BNN (clipped_ste, Fashion-MNIST 4000 images, 2 epochs: SGD 0.1 20.6 %,
Adam 1e-3 47.4 %, Adam 5e-3 62.9 % top-1, measured on this project's CPU machine).
Models use the ``bireal`` block and every estimator the identity weight gradient (README,
"Blocks" and "Weight gradients"); ``val_size`` train images are held out as the validation
split on which choices are made (README, "Validation").

Fashion-MNIST, the offline default and ``run_all.sh``'s powered table (5 seeds): 6000 training
images a run (of the 55,000 left after the 5,000 validation images) for 4 epochs of batch 128
(188 optimizer steps, twice the 96 of the earlier preset), scored on the whole 10,000-image test
split. Images are downsampled once to 14 x 14 (``image_size``): a ResNet-20 step costs 4x less
than at 28 x 28 (clipped_ste 81 against 260-527 ms a step on 2 cores), which is what lets 10
estimators x 5 seeds fit in ``run_all.sh``'s 45 minutes. The pilot (5 seeds, 8000 images x 4
epochs = 252 steps, 14 x 14; ``bench sweep ... --seeds 0 1 2 3 4 --set epochs=4 --set
image_size=14 --set train_subset=8000 --set eval_subset=none``): clipped_ste 76.04 ± 0.56 %,
SURGE 75.98 ± 0.99 %, ste 58.31 ± 2.69 % top-1; the paired differences to clipped_ste have a
standard deviation of 1.08 points (SURGE) and 2.28 (ste). With 5 seeds a paired t-test at
alpha 0.05 detects 1.68 sd with 80 % power: 1.8 points for SURGE against clipped_ste, 3.3 at
the strictest Holm step over 9 estimators. A 1-point difference at 80 % power needs about 12
seeds at alpha 0.05 (d = 0.89 sd), 20 under Holm: 2.5-4x this budget, beyond the 45 minutes on
2 cores. The report gives every column's MDD, measured on its own seeds.

paper: the recipe of the estimators' papers on GPU machines. Sources:
  CIFAR-10/100  SGD, momentum 0.9, lr 0.1, cosine to 0, weight decay 5e-4, batch 256
                (the IR-Net / ReCU family of CIFAR recipes; RBNN's README, lmbxmu/RBNN,
                uses lr 0.1, batch 256, cosine with warm-up). Epochs: 400 — a "long
                schedule" between IR-Net's and RBNN's (1000); check the paper you
                compare against and override with --epochs.
  ImageNet      SGD, momentum 0.9, lr 0.1, cosine, weight decay 1e-4, batch 256,
                120 epochs (IR-Net's one-stage ResNet-18 recipe, arXiv:1909.10788).
  Fashion-MNIST / digits have no BNN paper recipe; paper = the CIFAR recipe with 100
                epochs on the full data set.
  Block ``irnet`` (IR-Net's Hardtanh block, option-A ResNet-20) and each estimator's own
  weight surrogate, as in the papers' code; the whole train split trains, as in the papers
  (no validation split: ``--set val_size=5000`` holds one out).
"""
from __future__ import annotations

from typing import Any

_COMMON = dict(scope="standard", weight_scale="channel", optimizer="sgd", momentum=0.9, schedule="cosine",
               warmup_epochs=0.0)

_QUICK_OPTIMIZER = dict(optimizer="adam", lr=5e-3, weight_decay=0.0, block="bireal", weight_grad="identity")
QUICK: dict[str, dict[str, Any]] = {
    "fashion_mnist": dict(epochs=4, batch_size=128, train_subset=6000, eval_subset=None, **_QUICK_OPTIMIZER,
                          options=dict(val_size=5000, image_size=14)),
    "digits": dict(epochs=10, batch_size=64, train_subset=None, eval_subset=None, **_QUICK_OPTIMIZER,
                   options=dict(val_size=300)),
    "cifar10": dict(epochs=2, batch_size=128, train_subset=5000, eval_subset=1000, **_QUICK_OPTIMIZER,
                    options=dict(val_size=5000)),
    "cifar100": dict(epochs=2, batch_size=128, train_subset=5000, eval_subset=1000, **_QUICK_OPTIMIZER,
                     options=dict(val_size=5000)),
    "imagenet": dict(epochs=1, batch_size=32, train_subset=2000, eval_subset=500, **_QUICK_OPTIMIZER,
                     options=dict(val_size=1000)),
}

PAPER: dict[str, dict[str, Any]] = {
    "cifar10": dict(epochs=400, batch_size=256, lr=0.1, weight_decay=5e-4, train_subset=None, eval_subset=None),
    "cifar100": dict(epochs=400, batch_size=256, lr=0.1, weight_decay=5e-4, train_subset=None, eval_subset=None),
    "imagenet": dict(epochs=120, batch_size=256, lr=0.1, weight_decay=1e-4, train_subset=None, eval_subset=None),
    "fashion_mnist": dict(epochs=100, batch_size=256, lr=0.1, weight_decay=5e-4, train_subset=None, eval_subset=None),
    "digits": dict(epochs=100, batch_size=64, lr=0.1, weight_decay=5e-4, train_subset=None, eval_subset=None),
}

PRESETS = {"quick": QUICK, "paper": {name: dict(values, block="irnet", weight_grad="surrogate")
                                     for name, values in PAPER.items()}}


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    return {**_COMMON, **PRESETS[preset][dataset]}
