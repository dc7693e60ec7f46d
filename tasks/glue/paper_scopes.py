"""BERT binarized as BiBERT and as BiT binarize it: the scopes ``bibert`` and ``bit``.

Both binarize (their model files, below) the word embedding, every encoder linear and the pooler's
dense layer; the position and token-type embeddings and the classifier stay full precision. Both
binarize query, key and value *before* the attention matmuls. The weights are binarized as the
run's weight options say (the presets ``bibert`` and ``bit`` set each paper's); the activations
with the run's estimator, as follows.

bibert   BiBERT (Qin et al., ICLR 2022, arXiv:2203.06390; htqin/BiBERT
         ``transformer/modeling_quant.py`` ``BertSelfAttention``, ``utils_quant.py``):
             every binarized linear sees sign(x);
             scores = sign(Q) sign(K)^T / sqrt(d) + mask, dropout on the scores;
             Bi-Attention: P = bool(scores) = 1{scores > 0}, backward g * 1{|scores| < 1}
             (``ZMeanBinaryQuantizer``): no softmax;
             context = P sign(V).
bit      BiT (Liu et al., NeurIPS 2022, arXiv:2205.13016; facebookresearch/bit
         ``transformer/modeling_bert_quant.py``, ``utils_quant.py``, ``--ACT2FN relu``,
         ``--input_quant_method elastic``):
             GELU -> ReLU in the feed-forward block;
             every binarized linear's input goes through an elastic binarizer with a learnable
             per-feature bias and scale alpha (estimators.elastic): signed {-alpha, alpha}, except
             the FFN output layer, whose input is post-ReLU: unsigned {0, alpha}
             (``sym_quant_ffn_attn`` off);
             Q, K, V: signed elastic binarizers, each with its own alpha and no bias (BiT's
             ``move_q/k/v`` are computed and then overwritten by ``transpose_for_scores`` of the
             unshifted projections, so they never act);
             P = softmax(scores + mask), dropout, then an unsigned elastic binarizer {0, alpha};
             context = P_b V_b.

Not reproduced: BiBERT and BiT's sign(0) = 0 (here +1, a measure-zero set); BiT's per-parameter
groups (alpha at ``clip_lr`` 1e-4 without weight decay: here the run's optimizer treats alpha and
the biases as any parameter); BiT's alpha is initialised from the first batch padded to
max_seq_length (here, padded to the batch's longest example).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estimators.elastic import ElasticBinarizer
from estimators.layers import BinaryLinear, binary_layers
from tasks.glue.models import SCOPES

PAPER_SCOPES = ("bibert", "bit")
_ATTENTION_NAMES = {"bibert": "surge_bench_bibert_attention", "bit": "surge_bench_bit_attention"}
#: what each scope does to attention, as the record stores it
ATTENTION_RECORDS = {"bibert": "bibert: sign(Q) sign(K)^T, bool(scores), sign(V)",
                     "bit": "bit: elastic Q/K/V, softmax, elastic {0, alpha} probabilities"}


@SCOPES.register("bibert")
@SCOPES.register("bit")
def _paper_scope(candidates: list[tuple[str, nn.Module]]) -> dict[str, str]:
    keep = {}
    for name, _ in candidates:
        if name == "classifier":
            keep[name] = "classifier (full precision in BiBERT and BiT)"
        elif "embeddings" in name and not name.endswith("word_embeddings"):
            keep[name] = "position / token-type embeddings (full precision in BiBERT and BiT)"
    return keep


class _PositiveBool(torch.autograd.Function):
    """1{x > 0}; backward g * 1{|x| < 1} (BiBERT's ``ZMeanBinaryQuantizer``)."""

    @staticmethod
    def forward(ctx, scores: Tensor) -> Tensor:
        ctx.save_for_backward(scores)
        return (scores > 0).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (scores,) = ctx.saved_tensors
        return grad * scores.abs().lt(1).to(grad.dtype)


def _scaled(query: Tensor, scaling: Optional[float]) -> float:
    return query.size(-1) ** -0.5 if scaling is None else scaling


def bibert_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                             attention_mask: Optional[Tensor], scaling: Optional[float] = None,
                             dropout: float = 0.0, **kwargs):
    sign = module.binary_sign
    scores = torch.matmul(sign(query), sign(key).transpose(2, 3)) * _scaled(query, scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = _PositiveBool.apply(F.dropout(scores, p=dropout, training=module.training))
    return torch.matmul(probs, sign(value)).transpose(1, 2).contiguous(), probs


def bit_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                          attention_mask: Optional[Tensor], scaling: Optional[float] = None,
                          dropout: float = 0.0, **kwargs):
    sign = module.binary_sign
    query_b, key_b = module.clip_query(query, sign), module.clip_key(key, sign)
    scores = torch.matmul(query_b, key_b.transpose(2, 3)) * _scaled(query, scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.dropout(F.softmax(scores, dim=-1), p=dropout, training=module.training)
    probs = module.clip_attn(probs, sign)
    return torch.matmul(probs, module.clip_value(value, sign)).transpose(1, 2).contiguous(), probs


_FORWARDS = {"bibert": bibert_attention_forward, "bit": bit_attention_forward}


def _register(scope: str) -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    name = _ATTENTION_NAMES[scope]
    AttentionInterface.register(name, _FORWARDS[scope])
    AttentionMaskInterface.register(name, eager_mask)  # the additive mask, as for binary attention
    return name


def _self_attentions(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if all(hasattr(m, a) for a in ("query", "key", "value", "attention_head_size"))]


def _is_ffn_output(name: str) -> bool:
    return name.endswith(".output.dense") and ".attention." not in name


def binarize_as_paper(model: nn.Module, scope: str, sign: Callable[[Tensor], Tensor]) -> str:
    """Give an already patched model (scope ``bibert`` or ``bit``) its paper's attention and
    activations (module docstring); ``sign`` is the estimator's activation sign. Returns the
    record's attention entry."""
    for module in _self_attentions(model):
        module.binary_sign = sign
        if scope == "bit":
            module.clip_query, module.clip_key, module.clip_value = (ElasticBinarizer(signed=True) for _ in range(3))
            module.clip_attn = ElasticBinarizer(signed=False)
    if scope == "bit":
        for name, layer in binary_layers(model):
            if isinstance(layer, BinaryLinear):
                layer.input_binarizer = ElasticBinarizer(signed=not _is_ffn_output(name), features=layer.in_features)
        for module in model.modules():
            if hasattr(module, "intermediate_act_fn"):
                module.intermediate_act_fn = nn.ReLU()
    model.config._attn_implementation = _register(scope)
    return ATTENTION_RECORDS[scope]
