"""GLUE text data, read from the classic ``glue_data/<TASK>/{train,dev}.tsv`` files.

Each dataset is a :class:`GlueDatasetSpec` in :data:`GLUE_DATASETS`; :func:`load_glue_split` turns a
dataset name and a split into a list of :class:`Example` (``text_a``, ``text_b`` or None, and
an int class index or, for STS-B, a float score). A split is looked for in this order:

1. a local folder: ``<data-root>/<Folder>/<split>.tsv``, then
   ``<data-root>/glue_data/<Folder>/<split>.tsv`` (``Folder`` as the GLUE download script
   names it: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI);
2. the Hugging Face ``datasets`` library, if it is installed (``load_dataset("glue", name)``:
   it needs the network or a filled cache);
3. otherwise a one-line :class:`bench.errors.DataMissingError` says what was looked for
   and how to get the data.

The reader knows the real layouts, which are tab-separated but not CSV: sentences hold
unbalanced quotes, so every line is split on tabs alone (no quoting at all). CoLA has no
header and four columns (source, label, original label or empty, sentence); the other
files have a header whose names are checked, and the text and label columns are found by
name. MNLI's train file has one annotator label (``label1``), its dev files five
(``label1`` .. ``label5``); the gold label is the last column. MRPC's files, copied by the
download script from Microsoft's originals, may start with a UTF-8 byte-order mark, which
is dropped. String labels become their index in :attr:`GlueDatasetSpec.label_names`, in the
Hugging Face ``glue`` dataset's order so both sources agree. A malformed file raises
:class:`GlueFormatError` (a DataMissingError) naming the file and the 1-based line.

One module per source: ``tsv.py`` (the files), ``hub.py`` (Hugging Face ``datasets``),
``vader_sst2.py`` (the offline set's builder); the dataset specs are in ``common.py``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from bench.api import default_cache_dir
from bench.errors import DataMissingError, UserError
from tasks.glue.data.hub import _hf_examples
from tasks.glue.data.common import (  # noqa: F401 - the package's public names
    GLUE_DATASETS, VADER_SST2, Example, GlueDatasetSpec, GlueFormatError, get_dataset,
)
from tasks.glue.data.tsv import read_glue_tsv
from tasks.glue.data.vader_sst2 import prepare_vader_sst2



def _root(data_root: str | os.PathLike | None) -> Optional[Path]:
    return Path(data_root).expanduser() if data_root not in (None, "") else None


def local_candidates(spec: GlueDatasetSpec, split: str,
                     data_root: str | os.PathLike | None) -> list[Path]:
    """Where a local ``split`` file of ``spec`` is looked for, in order."""
    root = _root(data_root)
    if root is None:
        return []
    return [root / spec.folder / f"{split}.tsv", root / "glue_data" / spec.folder / f"{split}.tsv"]


def load_glue_split(dataset: str | GlueDatasetSpec, split: str,
                    data_root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> list[Example]:
    """The examples of ``split`` ("train", or one of the dataset's ``dev_splits``) of ``dataset``.

    ``vader_sst2`` is built offline into ``cache_dir`` (default :func:`default_cache_dir`);
    the GLUE datasets are read from ``data_root`` or, failing that, the Hugging Face hub."""
    spec = get_dataset(dataset)
    if split not in spec.splits:
        raise UserError(f"{spec.title} has no split {split!r}; valid choices: {', '.join(spec.splits)}")
    if spec is VADER_SST2 or spec.name == VADER_SST2.name:
        folder = prepare_vader_sst2(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        return read_glue_tsv(spec, folder / f"{split}.tsv")
    looked = local_candidates(spec, split, data_root)
    for path in looked:
        if path.is_file():
            return read_glue_tsv(spec, path)
    examples, why = _hf_examples(spec, split)
    if examples is not None:
        return examples
    where = (f"under {_root(data_root)} (looked for {', '.join(map(str, looked))})"
             if looked else "with no --data-root given")
    raise DataMissingError(f"GLUE {spec.title} {split} not found {where}; {why}: {spec.how_to_get}")



__all__ = [
    "GLUE_DATASETS", "GlueDatasetSpec", "GlueFormatError", "Example", "get_dataset", "read_glue_tsv",
    "load_glue_split", "local_candidates", "prepare_vader_sst2", "default_cache_dir",
]
