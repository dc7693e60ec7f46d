"""GLUE text data, read from the classic ``glue_data/<TASK>/{train,dev}.tsv`` files.

Each dataset is a :class:`GlueDatasetSpec` in :data:`GLUE_DATASETS`; :func:`load_glue_split` turns a
dataset name and a split into a Hugging Face :class:`datasets.Dataset` with the same columns whatever
the source (:data:`COLUMNS`: ``idx``, ``sentence1``, ``sentence2`` or None, and ``label``: a class
index, or for STS-B a float score). A split comes from one place:

1. with a data root, a local folder only: ``<data-root>/<Folder>/<split>.tsv``, then
   ``<data-root>/glue_data/<Folder>/<split>.tsv`` (``Folder`` as the GLUE download script
   names it: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI); a run's splits never mix
   sources, and a missing file is reported at once;
2. without one, the Hugging Face hub (``datasets.load_dataset("glue", name)``), asked only when it
   can answer at once (see ``hub.py``: never while HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set,
   except to read the libraries' own cache in their offline mode, and not when the hub does not
   answer one quick request);
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

One module per source: ``tsv.py`` (the files), ``hub.py`` (the Hugging Face hub),
``vader_sst2.py`` (the offline set's builder, read back through ``tsv.py``); the dataset specs and
the common Dataset layout are in ``common.py``; tokenisation (``Dataset.map``, cached on disk by
the rows' content, the tokenizer and the length) is in ``tokenized.py``, the tensors the loaders
see in ``encoding.py``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from bench.api import default_cache_dir
from bench.errors import DataMissingError, UserError
from tasks.glue.data.hub import _hf_examples
from tasks.glue.data.common import (  # noqa: F401 - the package's public names
    COLUMNS, GLUE_DATASETS, VADER_SST2, Example, GlueDatasetSpec, GlueFormatError, dataset_from_examples,
    get_dataset, glue_dataset,
)
from tasks.glue.data.tsv import read_glue_tsv
from tasks.glue.data.vader_sst2 import prepare_vader_sst2

if TYPE_CHECKING:
    import datasets


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
                    cache_dir: str | os.PathLike | None = None) -> "datasets.Dataset":
    """The examples of ``split`` ("train", or one of the dataset's ``dev_splits``) of ``dataset``,
    in the source's order, as a :data:`COLUMNS` Dataset.

    ``vader_sst2`` is built offline into ``cache_dir`` (default :func:`default_cache_dir`);
    the GLUE datasets are read from ``data_root`` when one is given, else from the Hugging Face hub."""
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
    if looked:
        why = "the Hugging Face hub is asked only without --data-root"
    else:
        rows, why = _hf_examples(spec, split)
        if rows is not None:
            return rows
    where = (f"under {_root(data_root)} (looked for {', '.join(map(str, looked))})"
             if looked else "with no --data-root given")
    raise DataMissingError(f"GLUE {spec.title} {split} not found {where}; {why}: {spec.how_to_get}")



__all__ = [
    "COLUMNS", "GLUE_DATASETS", "GlueDatasetSpec", "GlueFormatError", "Example", "get_dataset", "read_glue_tsv",
    "glue_dataset", "dataset_from_examples", "load_glue_split", "local_candidates", "prepare_vader_sst2",
    "default_cache_dir",
]
