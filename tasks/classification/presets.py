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

The paper track (GPU machines): one preset per source recipe, each number cited below with the
file it comes from (read in the authors' repositories; /work/shared/docs/PAPERS_READ.md, sections
1-3). Each fixes the optimizer and schedule, the block and the binarization options of its source;
the whole train split trains (``val_size`` 0, as in the papers). ``paper`` is an alias of
``recu``: SURGE compares against ReCU on CIFAR-10 and ImageNet (SURGE, ICML 2026, Tables 1-2). A
source that reports the best test epoch says so (``reports="best"``); the report shows that with
``--select best``, labelled as a test-set selection. A CIFAR-10 recipe serves CIFAR-100 too (the
sources report CIFAR-10 only). The numbers were checked against the stored copies of the authors'
repositories; where a file disagrees with itself or is not public, the comment says so. Fashion-MNIST and digits have no paper recipe.
"""
from __future__ import annotations

from typing import Any, Optional

from bench.api import PresetSource
from bench.errors import UserError

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

#: where each source preset's numbers come from (bench list presets; README, "Presets")
SOURCES: dict[str, PresetSource] = {
    "quick": PresetSource(
        "surge-bench's own (offline, CPU minutes; not comparable with papers)", "tasks/classification/presets.py",
        "Adam 5e-3, bireal block, identity weight gradient, a validation split"),
    "irnet": PresetSource(
        "IR-Net, Qin et al., CVPR 2020, arXiv:1909.10788",
        "htqin/IR-Net CIFAR-10/ResNet20/1w1a/trainer.py, CIFAR-10/VGG-Small/main.py, "
        "ImageNet/ResNet18/1w1a/config.yaml, modules/ir_1w1a.py",
        "irnet block; standardized weights, power-of-two scale, EDE on them; SGD"),
    "recu": PresetSource(
        "ReCU, Xu et al., ICCV 2021, arXiv:2103.12369",
        "z-hXu/ReCU cifar/run.sh, cifar/main.py, imagenet/run.sh, cifar/modules/binarized_modules.py",
        "recu block; centred, rescaled and clamped weights, learnable scale; SGD with warm-up",
        reports="best"),
    "reste": PresetSource(
        "ReSTE, Wu et al., ICCV 2023, arXiv:2308.06689",
        "DravenALG/ReSTE utils/arguments.py, README.md",
        "layer-wise scale; SGD with warm-up, 1000-2000 CIFAR epochs"),
    "reactnet": PresetSource(
        "ReActNet, Liu et al., ECCV 2020, arXiv:2003.03488",
        "liuzechun/ReActNet resnet/1_step1/run.sh, resnet/2_step2/run.sh, train.py, utils/KD_loss.py",
        "two steps (real weights, then binary), distribution loss from a ResNet-34, Adam, wd on conv only",
        reports="best"),
    "bireal": PresetSource(
        "Bi-Real Net, Liu et al., ECCV 2018, arXiv:1808.00278",
        "liuzechun/Bi-Real-net pytorch_implementation/BiReal18_34/train.py, README.md",
        "bireal block, clipped weight STE, Adam, label smoothing 0.1", reports="best"),
    "paper": PresetSource("the recipe SURGE compares against (ReCU)", alias_of="recu"),
}

_PAPER_TRACK = dict(scope="standard", momentum=0.9, train_subset=None, eval_subset=None, weight_clip="none",
                    pad_value=0.0, weight_decay_on="all", init="scratch", warmup_start=0.0, milestones="")
_CIFAR = ("cifar10", "cifar100")
_CIFAR_RESNETS = ("resnet20_cifar", "resnet18_cifar")

# IR-Net: Libra-PB standardizes each filter (unbiased std, no epsilon) and scales by the detached
# 2^round(log2 mean|w|) (modules/ir_1w1a.py); EDE's backward on the standardized weights (weight_grad
# surrogate). CIFAR ResNet-20: trainer.py, 400 epochs, batch 128, SGD 0.1 momentum 0.9, wd 1e-4 on all
# parameters, cosine, EDE t 1e-3 -> 10 (there per epoch); it prints each epoch's top-1 (best_prec1 is kept,
# not printed). VGG-Small: main.py, SGD lr 0.007, 300 epochs, EDE t 0.1 -> 10 (the estimator's default).
# IR-Net has no CIFAR ResNet-18 trainer: no recipe. ImageNet: config.yaml, Nesterov SGD, base_lr 0.2
# warmed to 0.8 over 2,500 of 62,500 iterations at batch 64 x 32 GPUs = 2048 (README: 32 1080 Ti), so 4 of
# 100 epochs of 1.28 M images; x0.1 at 18,750 / 37,500 / 56,250 (0.3 / 0.6 / 0.9 of training). The file
# holds two weight decays (1e-4 top-level, 1e-5 in the optimizer's kwargs) and its training script is not
# public: 1e-4 here, unverified.
_IRNET = dict(_PAPER_TRACK, block="irnet", weight_grad="surrogate", weight_balance="standardize",
              weight_scale="pow2", optimizer="sgd", weight_decay=1e-4, schedule="cosine", warmup_epochs=0.0,
              options=dict(val_size=0))
# ReCU: centre, rescale by 2 sqrt 2 / std, clamp at Q_tau (tau 0.85 -> 0.99, cpt_tau in main.py),
# learnable alpha, identity weight STE, per-sample normalised sign input in training
# (imagenet/modules/binarized_modules.py); CIFAR (cifar/run.sh, cifar/main.py): 600 epochs, batch 256,
# SGD 0.1 momentum 0.9, wd 5e-4 on all parameters, cosine, 5 linear warm-up epochs; ImageNet one-stage
# (imagenet/run.sh, imagenet/main.py): 200 epochs, batch 512, lr 0.1, wd 1e-4 on the parameters named conv
# or fc (kernels, alpha, classifier; none on BN and downsample): weight_decay_on conv (4-D kernels) is the
# nearest. It logs Best_Prec1. ReCU's CIFAR ResNet-18 has a binarized 1x1 shortcut; the suite keeps
# downsample convs full precision (scope standard).
_RECU = dict(_PAPER_TRACK, block="recu", weight_grad="identity", weight_balance="recu", weight_scale="learnable",
             optimizer="sgd", lr=0.1, schedule="cosine", warmup_epochs=5.0, options=dict(val_size=0))
# ReSTE (utils/arguments.py, main.py, binarized_modules.py, README.md): layer-wise, undetached mean |W|
# scale; SGD 0.1 momentum 0.9, wd 1e-4 on all parameters, cosine; CIFAR with 5 warm-up epochs: ResNet-20 /
# VGG-Small 1000 epochs at batch 256, ResNet-18 2000 at batch 96 (the README's later version; an earlier
# one says 1500); ImageNet 250 epochs at batch 750, no warm-up. ReSTE's conv -> ReLU -> BN block is not one
# of the suite's; bireal (sign sees the unbounded residual stream, as in ReSTE's resnet20_bireal.py) is
# the nearest.
_RESTE = dict(_PAPER_TRACK, block="bireal", weight_grad="surrogate", weight_balance="none", weight_scale="layer",
              optimizer="sgd", lr=0.1, weight_decay=1e-4, schedule="cosine", warmup_epochs=5.0,
              options=dict(val_size=0))
# Bi-Real Net / ReActNet's HardBinaryConv: detached channel mean |W| times sign(W), the weight gradient
# through clamp(W, -1, 1) (weight_clip gradient, identity sign); Adam, linear decay to 0, weight decay on
# the 4-D conv weights only (train.py).
_BIREAL_CONV = dict(_PAPER_TRACK, weight_grad="identity", weight_balance="none", weight_scale="channel",
                    weight_clip="gradient", weight_decay_on="conv", optimizer="adam", schedule="linear",
                    warmup_epochs=0.0)

#: per source preset, its recipes: (datasets, models, values)
RECIPES: dict[str, list[tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]]] = {
    "irnet": [
        (_CIFAR, ("resnet20_cifar",), dict(_IRNET, epochs=400, batch_size=128, lr=0.1,
                                           estimator_hparams={"ede": dict(t_min=1e-3, t_max=10.0)})),
        (_CIFAR, ("vgg_small",), dict(_IRNET, epochs=300, batch_size=128, lr=0.007)),
        (("imagenet",), ("resnet18_imagenet",),
         dict(_IRNET, optimizer="sgd_nesterov", epochs=100, batch_size=2048, lr=0.8, warmup_start=0.25,
              warmup_epochs=4.0, schedule="step", milestones="0.3,0.6,0.9")),
    ],
    "recu": [
        (_CIFAR, _CIFAR_RESNETS + ("vgg_small",), dict(_RECU, epochs=600, batch_size=256, weight_decay=5e-4)),
        (("imagenet",), ("resnet18_imagenet",), dict(_RECU, epochs=200, batch_size=512, weight_decay=1e-4,
                                                     weight_decay_on="conv")),
    ],
    "reste": [
        (_CIFAR, ("resnet20_cifar", "vgg_small"), dict(_RESTE, epochs=1000, batch_size=256)),
        (_CIFAR, ("resnet18_cifar",), dict(_RESTE, epochs=2000, batch_size=96)),
        (("imagenet",), ("resnet18_imagenet",), dict(_RESTE, epochs=250, batch_size=750, warmup_epochs=0.0)),
    ],
    # ReActNet (resnet/*/run.sh, train.py): each step Adam 2.5e-3 at batch 512 for 128 epochs (the active
    # run.sh lines), linear decay; wd 1e-5 in step 1 and 0 in step 2, on 4-D (or conv-named) weights only;
    # the distribution loss from torchvision's ResNet-34 (utils/KD_loss.py) replaces the label loss in both
    # steps (no label smoothing). It keeps best_top1_acc.
    "reactnet": [
        (("imagenet",), ("resnet18_imagenet",),
         dict(_BIREAL_CONV, block="reactnet", init="two_step", epochs=128, batch_size=512, lr=2.5e-3,
              weight_decay=0.0,
              options=dict(val_size=0, kd="distribution", teacher_model="resnet34_torchvision",
                           step1_weight_decay=1e-5))),
    ],
    # Bi-Real Net PyTorch (train.py, README): Adam 1e-3, batch 512, 256 epochs, linear decay, wd 0,
    # label smoothing 0.1 (CrossEntropyLabelSmooth, used in training). It keeps best_top1_acc.
    "bireal": [
        (("imagenet",), ("resnet18_imagenet",),
         dict(_BIREAL_CONV, block="bireal", epochs=256, batch_size=512, lr=1e-3, weight_decay=0.0,
              options=dict(val_size=0, label_smoothing=0.1))),
    ],
}

PRESETS = ("quick", *RECIPES, "paper")


def preset_model(preset: str, dataset: str) -> Optional[str]:
    """The first model a source preset has a recipe for on this dataset (None: quick, or none)."""
    for datasets, models, _ in RECIPES.get(preset, []):
        if dataset in datasets:
            return models[0]
    return None


def source_recipe(preset: str, dataset: str, model: str) -> dict[str, Any]:
    """The values of a source preset for this dataset and model; a one-line error names the ones it has."""
    for datasets, models, values in RECIPES[preset]:
        if dataset in datasets and model in models:
            return {**values, "options": dict(values.get("options", {}))}
    have = "; ".join(f"{'/'.join(d)} with {', '.join(m)}" for d, m, _ in RECIPES[preset])
    raise UserError(f"preset {preset} has no recipe for {dataset} with {model}; it has: {have}")


def preset_values(preset: str, dataset: str, model: str) -> dict[str, Any]:
    if preset == "quick":
        return {**_COMMON, **QUICK[dataset], "options": dict(QUICK[dataset]["options"])}
    return {**_COMMON, **source_recipe(preset, dataset, model)}
