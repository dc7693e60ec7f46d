"""Presets of the detection family.

Both presets are two-step, as in BiDet and BiBench: a full-precision detector is trained
first (by the suite, once, cached by its config under <cache>/detection/detectors/), then
its backbone is binarized with the run's estimator and the detector is fine-tuned. The
fp32 estimator fine-tunes the same full-precision detector for the same schedule.

quick (offline, CPU): a smoke test of the whole pipeline on the offline Fashion-MNIST-on-photos
set at 160x160 (1000 train / 250 test images), RetinaNet R18-FPN (2.5x faster a step than Faster
R-CNN on a CPU), batch 4, gradients clipped at norm 10, one seed in ``run_all.sh``. 100 training
images are held out as the validation split (``val_size``); the full-precision pre-training
trains on the other 900 for 3 epochs, AdamW lr 1e-3, cosine (675 steps, about 6 minutes once on
2 cores, then cached); each binary fine-tuning on 160 of them for 1 epoch, AdamW lr 5e-4 (40
steps), scored on the 100 validation and the first 100 test images: about a minute a run, so
that every estimator fits the 45-minute ``run_all.sh`` next to the powered classification table.
The scores are near zero mAP (12 epochs of pre-training reached only 5.4 mAP on this set) and
one seed tests nothing: the report labels the table "not ranked".

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
    weight_grad="identity", epochs=1, batch_size=4, optimizer="adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine",
    warmup_epochs=0.1, train_subset=160, eval_subset=100,
    options=dict(image_scale="160", pretrain_epochs=3, pretrain_subset=900, pretrain_optimizer="adamw",
                 pretrain_lr=1e-3, max_grad_norm=10.0, num_workers=2, val_size=100),
)

PAPER = dict(
    weight_grad="surrogate", epochs=12, batch_size=16, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="cosine",
    warmup_epochs=0.0,
    train_subset=None, eval_subset=None,
    options=dict(image_scale="1000x600", pretrain_epochs=12, pretrain_optimizer="sgd", pretrain_lr=0.01,
                 max_grad_norm=35.0, num_workers=4, val_size=0),
)


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    values = QUICK if preset == "quick" else PAPER
    return {**_COMMON, **values, "options": dict(values["options"])}
