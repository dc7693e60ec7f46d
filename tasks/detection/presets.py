"""Presets of the detection family.

Both presets are two-step, as in BiDet and BiBench: a full-precision detector is trained
first (by the suite, once, cached by its config under <cache>/detection/detectors/), then
its backbone is binarized with the run's estimator and the detector is fine-tuned. The
fp32 estimator fine-tunes the same full-precision detector for the same schedule.

quick (offline, CPU): the offline Fashion-MNIST-on-photos set at 160x160 (1000 train /
250 val images), RetinaNet R18-FPN (2.5x faster a step than Faster R-CNN on a CPU), batch 4,
gradients clipped at norm 10; 200 of the 1000 training images are held out as the validation
split (``val_size``, scored with the 250 test images after every evaluated epoch), so both
stages train on the other 800: full-precision pre-training 12 epochs AdamW lr 1e-3 with a
cosine decay (2400 steps, about 20 minutes once on 2 cores, then cached; lr 2e-3 was
unstable), binary fine-tuning 1 epoch AdamW lr 5e-4 (200 steps, about 2 minutes a run).
A smoke-level ranking on a small budget, not paper numbers.

paper (GPU): VOC 07+12 trainval -> VOC 2007 test at 1000x600 (the standard Faster R-CNN
VOC setting of mmdet 3.3's configs/pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py: batch 16
(8 GPUs x 2), SGD lr 0.01 momentum 0.9 weight decay 1e-4, 12 effective epochs - mmdet
repeats the set 3 times for 4 epochs, dropping the rate 10x for the last - here a cosine
decay over 12 epochs, our schedules being cosine/linear/constant; VOC07 11-point mAP),
then the binary fine-tuning: 12 epochs Adam
lr 1e-4, cosine, as a conservative stand-in for BiDet's schedule (Wang et al., "BiDet:
An Efficient Binarized Object Detector", CVPR 2020, arXiv:2003.03961: verify their
epochs and rate before quoting). mmdet starts from an ImageNet ResNet-18; set
backbone_checkpoint to a local torchvision resnet18 file to do the same (there is none
offline), otherwise the full-precision stage trains from scratch. No validation split
(``val_size=0``): the papers train on all of trainval and report VOC 2007 test.
"""
from __future__ import annotations

from typing import Any

_COMMON = dict(scope="backbone", weight_scale="channel", momentum=0.9, block="bireal")

QUICK = dict(
    weight_grad="identity", epochs=1, batch_size=4, optimizer="adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.1,
    train_subset=None, eval_subset=None,
    options=dict(image_scale="160", pretrain_epochs=12, pretrain_optimizer="adamw", pretrain_lr=1e-3,
                 max_grad_norm=10.0, num_workers=2, val_size=200),
)

PAPER = dict(
    weight_grad="surrogate", epochs=12, batch_size=16, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="cosine", warmup_epochs=0.0,
    train_subset=None, eval_subset=None,
    options=dict(image_scale="1000x600", pretrain_epochs=12, pretrain_optimizer="sgd", pretrain_lr=0.01,
                 max_grad_norm=35.0, num_workers=4, val_size=0),
)


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    values = QUICK if preset == "quick" else PAPER
    return {**_COMMON, **values, "options": dict(values["options"])}
