"""Presets of the detection family: ``quick`` (offline, CPU) and one preset per source recipe.

quick (offline, CPU): a smoke test of the whole pipeline on the offline Fashion-MNIST-on-photos
set at 160x160 (1000 train / 250 test images), RetinaNet R18-FPN (2.5x faster a step than Faster
R-CNN on a CPU), batch 4, gradients clipped at norm 10, one seed in ``run_all.sh``. 100 training
images are held out as the validation split (``val_size``); the full-precision pre-training
trains on the other 900 for 3 epochs, AdamW lr 1e-3, cosine (675 steps, about 6 minutes once on
2 cores, then cached); each binary fine-tuning on 160 of them for 1 epoch, AdamW lr 5e-4 (40
steps), scored on the 100 validation and the first 100 test images: about a minute a run, so
that every estimator fits the 45-minute ``run_all.sh`` next to the powered classification table.
The scores are near zero mAP (12 epochs of pre-training reached only 5.4 mAP on this set) and
one seed tests nothing: the report labels the table "not ranked". With ``faster_rcnn_r18_c4``
the quick preset also samples 64 RoIs per training image and keeps 100 RPN proposals per test
image (``roi_samples``, ``test_proposals``): layer4 runs on every RoI. Measured with ``bench run``
on 2 shared cores (160 px, batch 4, clipped_ste, scope backbone): a C4 training step took 70 s at
mmdet's 512 / 1000 and 14 s at 64 / 100 (the FPN model: 15 s and 1.3 s), so the quick preset on
C4 takes about an hour with its 3-epoch full-precision stage: use it to check the C4 pipeline,
not for tables.

The paper track (GPU machines): both detection sources train Faster R-CNN R18-**C4** on VOC
07+12 trainval and report VOC 2007 test (mAP@0.5), at 1000x600 (shorter side 600, longer at most
1000), on the whole of trainval (``val_size`` 0). Each number below is cited with the file it was
read in (the authors' repositories; /work/shared/docs/PAPERS_READ.md, sections 1.1, 2.4 and 3).
``paper`` is an alias of ``bidet``, the detection recipe SURGE compares against.

bibench_c4  BiBench (Qin et al., ICML 2023, arXiv:2301.11233), htqin/BiBench
            ``configs/acc_voc/resnet18_bnn_faster-rcnn.py``: Adam lr 1e-4, weight decay 0,
            ``lr_config=dict(policy='CosineAnnealing', min_lr=0)`` (no warm-up), no gradient
            clipping (``grad_clip=None``), ``max_epochs=5``; ``_base_/datasets/voc0712.py``:
            ``RepeatDataset times=5`` (so 5 x 5 = 25 passes over trainval), ``samples_per_gpu=2``,
            ``img_scale=(1000, 600)``. Global batch 16: BiBench gives images per GPU only; 8 GPUs
            x 2 is the mmdet convention its configs inherit (mmdet 3.3's own VOC config,
            ``configs/pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py``: ``base_batch_size = (8
            GPUs) x (2 samples per GPU)``). The binary run starts from a full-precision detector
            (``init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/res18_faster-rcnn.pth')``):
            here the suite's full-precision stage, trained as BiBench's
            ``acc_voc/resnet18_fp32_faster-rcnn.py`` (``_base_/schedules/sgd_1e-2_steplr_5e.py``:
            SGD lr 0.01, 5 epochs of the 5x repeated set = 25 passes) from an ImageNet ResNet-18
            where ``backbone_checkpoint`` names one (BiBench: ``torchvision://resnet18``). Its
            ``bnn`` operator (``bibench/models/layers/bnn.py``, ``BNNConv2d``): sign(x) with a
            clipped STE, sign(W) with no scale and the gradient through ``clamp(W, -1, 1)``
            (``weight_scale`` none, ``weight_grad`` identity, ``weight_clip`` gradient), zero
            padding; Hardtanh activations (``act_cfg``, ``first_act_cfg``): block ``irnet``;
            only the backbone (stem..layer3) is binarized: ``conv_cfg=dict(type='BNNConv')`` is
            set on the backbone alone, the RoI shared head is mmdet's ``ResLayer`` of plain convs
            (``_base_/models/resnet18_faster-rcnn.py``): scope ``backbone``.
bidet       BiDet (Wang et al., CVPR 2020, arXiv:2003.03961), ZiweiWangTHU/BiDet
            ``faster_rcnn/trainval_net.py``: Adam, ``--lr`` default 0.01, weight decay 0
            (``--weight_decay`` default 0, which overrides the yml's 1e-4 through
            ``cfg.TRAIN.WEIGHT_DECAY = args.weight_decay``), batch 16 (``--bs``), 50 epochs
            (``--epochs``), x0.1 at the start of every 6th epoch while the new rate stays >= 1e-6
            (``--lr_decay_step 6``, ``--lr_decay_gamma 0.1``): 0.01 -> 1e-3 after epoch 6, 1e-4
            after 12, 1e-5 after 18, 1e-6 after 24, then constant, so ``milestones``
            0.12,0.24,0.36,0.48 of the 50 epochs; no gradient clipping. The learning rate is
            0.01, not the 0.001 of ``cfg.TRAIN.LEARNING_RATE`` in ``cfgs/bidet18.yml``: the
            script sets ``lr = args.lr`` and builds ``torch.optim.Adam(params, lr=args.lr)``,
            never reading the yml's rate, and the README's training command passes no ``--lr``.
            From an ImageNet ResNet-18 (``--basenet pretrain/resnet18.pth``; here
            ``backbone_checkpoint``), no full-precision detector stage (``pretrain_epochs`` 0).
            ``cfgs/bidet18.yml`` ``TRAIN.BATCH_SIZE: 256``: 256 RoIs sampled per image
            (``proposal_target_layer_cascade.py``); ``lib/model/utils/config.py``: shorter side
            600, longer at most 1000, 300 RPN proposals per test image
            (``TEST.RPN_POST_NMS_TOP_N``). BiDet (SC) blocks (``bidet_resnet.py``,
            ``binary_utils.py``): a shortcut around every binary conv and no activation: block
            ``bireal``; ``BinarizeConv2d`` pads its binary input with -1 (``pad_value`` -1),
            scales sign(W) by the per-channel mean |W| (``weight_scale`` channel; BiDet's scale
            is not detached, the suite's is) and passes the weight gradient straight through
            (``SignSTEWeight``: ``weight_grad`` identity, no clip). Backbone and heads
            binarized (README FAQ: "both the backbone and detection heads of BiDet detectors
            are binarized"; ``rpn.py``: ``RPN_Conv`` is a ``BinarizeConv2d``): scope ``all``.
            Not reproduced: BiDet's information-bottleneck and learnable-prior losses (switched
            on by ``trainval_net.py`` at the first decay), its frozen stem (``fix_real_conv``).
"""
from __future__ import annotations

from typing import Any

from bench.api import PresetSource
from bench.errors import UserError

#: the model of the paper track's detection recipes (both sources train Faster R-CNN R18-C4)
C4 = "faster_rcnn_r18_c4"

_COMMON = dict(scope="backbone", weight_scale="channel", momentum=0.9, block="bireal")

QUICK = dict(
    weight_grad="identity", epochs=1, batch_size=4, optimizer="adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine",
    warmup_epochs=0.1, train_subset=160, eval_subset=100,
    options=dict(image_scale="160", pretrain_epochs=3, pretrain_subset=900, pretrain_optimizer="adamw",
                 pretrain_lr=1e-3, max_grad_norm=10.0, num_workers=2, val_size=100),
)
#: what the quick preset adds for the C4 model (CPU sizing, see the module doc)
QUICK_C4_OPTIONS = dict(roi_samples=64, test_proposals=100)

#: the paper track's common values: the whole data set, no validation split, no warm-up
_PAPER_TRACK = dict(
    momentum=0.9, train_subset=None, eval_subset=None, warmup_epochs=0.0, warmup_start=0.0, weight_balance="none",
    binary_weights=True, weight_decay_on="all", init="scratch", precision="fp32", channels_last=False,
)

BIBENCH_C4 = dict(
    _PAPER_TRACK,
    block="irnet", scope="backbone", weight_scale="none", weight_grad="identity", weight_clip="gradient",
    pad_value=0.0, epochs=25, batch_size=16, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="cosine",
    milestones="",
    options=dict(image_scale="1000x600", pretrain_epochs=25, pretrain_optimizer="sgd", pretrain_lr=0.01,
                 max_grad_norm=0.0, num_workers=4, val_size=0, roi_samples=512, test_proposals=1000),
)

BIDET = dict(
    _PAPER_TRACK,
    block="bireal", scope="all", weight_scale="channel", weight_grad="identity", weight_clip="none",
    pad_value=-1.0, epochs=50, batch_size=16, optimizer="adam", lr=0.01, weight_decay=0.0, schedule="step",
    milestones="0.12,0.24,0.36,0.48",
    options=dict(image_scale="1000x600", pretrain_epochs=0, max_grad_norm=0.0, num_workers=4, val_size=0,
                 roi_samples=256, test_proposals=300),
)

#: preset name -> its RunConfig values (``options``: the family's options); ``paper`` is an alias
PRESETS: dict[str, dict[str, Any]] = {"quick": QUICK, "bibench_c4": BIBENCH_C4, "bidet": BIDET}
#: alias -> the preset it stands for
ALIASES = {"paper": "bidet"}
#: the source presets' models (the quick preset runs every model)
MODELS = {"bibench_c4": (C4,), "bidet": (C4,)}

#: where each preset's numbers come from (bench list presets; README, "Presets")
SOURCES: dict[str, PresetSource] = {
    "quick": PresetSource(
        "surge-bench's CPU smoke test (not a paper recipe)", "tasks/detection/presets.py",
        "offline fmnist_det at 160 px, 160 training images, 1 epoch from a 3-epoch full-precision stage"),
    "bibench_c4": PresetSource(
        "BiBench, Qin et al., ICML 2023, arXiv:2301.11233",
        "htqin/BiBench configs/acc_voc/resnet18_bnn_faster-rcnn.py, configs/acc_voc/resnet18_fp32_faster-rcnn.py, "
        "_base_/models/resnet18_faster-rcnn.py, _base_/datasets/voc0712.py, _base_/schedules/sgd_1e-2_steplr_5e.py, "
        "bibench/models/layers/bnn.py",
        "Faster R-CNN R18-C4, backbone (stem..layer3) binarized with Hardtanh (irnet) and BNN's unscaled, "
        "clipped weights; Adam 1e-4 cosine, 25 passes, batch 16, from a full-precision detector"),
    "bidet": PresetSource(
        "BiDet, Wang et al., CVPR 2020, arXiv:2003.03961",
        "ZiweiWangTHU/BiDet faster_rcnn/trainval_net.py, faster_rcnn/cfgs/bidet18.yml, "
        "faster_rcnn/lib/model/faster_rcnn/bidet_resnet.py, binary_utils.py, lib/model/rpn/rpn.py, README.md",
        "Faster R-CNN R18-C4, backbone and heads binarized (scope all), bireal block, -1 padding; Adam 0.01 x0.1 "
        "every 6 epochs, 50 epochs, batch 16, from an ImageNet ResNet-18"),
    "paper": PresetSource("the detection recipe SURGE compares against (BiDet)", alias_of="bidet"),
}


def resolve(preset: str) -> str:
    """The preset an alias stands for (``paper`` -> ``bidet``)."""
    return ALIASES.get(preset, preset)


def preset_values(preset: str, dataset: str, model: str | None = None) -> dict[str, Any]:
    """The RunConfig values of ``preset`` (or an alias) for ``dataset`` and ``model``; a source
    preset names its model, and another is a one-line error."""
    name = resolve(preset)
    if name not in PRESETS:
        raise UserError(f"unknown detection preset {preset!r}; valid: {', '.join([*PRESETS, *ALIASES])}")
    if model is not None and name in MODELS and model not in MODELS[name]:
        raise UserError(f"preset {preset} is {SOURCES[name].source.split(',')[0]}'s recipe for "
                        f"{' or '.join(MODELS[name])}; add --model {MODELS[name][0]} (got {model})")
    values = PRESETS[name]
    options = dict(values["options"])
    if name == "quick" and model == C4:
        options.update(QUICK_C4_OPTIONS)
    return {**_COMMON, **values, "options": options}
