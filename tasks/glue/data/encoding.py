"""The tokenised GLUE examples the loaders see, and their padding collate function.

:class:`EncodedExamples` holds, per example, the token lists exactly as the tokenizer returned them
(read from a :func:`~tasks.glue.data.tokenized.tokenize` Dataset) and the labels as one tensor;
``make_collate`` pads a batch of them with the tokenizer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import torch

from tasks.glue.data.common import Example, dataset_from_examples
from tasks.glue.data.tokenized import KEPT_COLUMNS, tokenize

if TYPE_CHECKING:
    import datasets


class EncodedExamples(torch.utils.data.Dataset):
    """Tokenised examples: per example its token lists (input ids, segment ids, attention mask) as
    the tokenizer returned them, plus the labels as one tensor."""

    def __init__(self, examples: "datasets.Dataset | Sequence[Example]", tokenizer=None,
                 max_length: Optional[int] = None, regression: bool = False) -> None:
        """``examples``: a Dataset from :func:`tokenize`; or, with ``tokenizer`` and ``max_length``,
        :class:`Example` objects or a :data:`~tasks.glue.data.common.COLUMNS` Dataset, tokenised
        here (no disk cache)."""
        if tokenizer is not None:
            if not hasattr(examples, "column_names"):
                examples = dataset_from_examples(list(examples), regression)
            examples = tokenize(examples, tokenizer, int(max_length))
        token_columns = [c for c in examples.column_names if c not in KEPT_COLUMNS]
        table = examples.select_columns([*token_columns, "label"]).to_dict()
        self.encodings = {c: table[c] for c in token_columns}
        dtype = torch.float32 if regression else torch.long
        self.labels = torch.tensor(table["label"], dtype=dtype)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item

    def by_length(self) -> list[int]:
        """The example indices from shortest to longest (ties in index order): evaluation batches
        in this order pad about half as many tokens as in file order (vader_sst2's quick dev:
        30,488 tokens instead of 57,784 at batch 128). Padding never changes a real token's
        output: attention masks it and every binarized activation is elementwise."""
        lengths = [len(ids) for ids in self.encodings["input_ids"]]
        return sorted(range(len(lengths)), key=lengths.__getitem__)


def make_collate(tokenizer):
    def collate(items: list[dict]) -> dict:
        labels = torch.stack([item.pop("labels") for item in items])
        batch = tokenizer.pad(items, return_tensors="pt")
        batch["labels"] = labels
        return dict(batch)

    return collate
