"""The GLUE datasets: where their files are, how to read them and how they are scored."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from bench.errors import DataMissingError, lookup
from estimators.registry import Registry

Column = Union[str, int]


class GlueFormatError(DataMissingError):
    """A GLUE file is there but does not have its dataset's layout (names the file and line)."""


@dataclass(frozen=True)
class GlueDatasetSpec:
    """One GLUE dataset: where its files are, how to read them and how it is scored."""

    name: str                          # registry name, e.g. "cola"
    title: str                         # e.g. "CoLA"
    folder: str                        # folder in glue_data/, e.g. "CoLA"
    text_columns: tuple[Column, ...]   # header names (index for the headerless CoLA)
    label_column: Column
    num_labels: int                    # 1 for the STS-B regression
    label_names: tuple[str, ...]       # in the Hugging Face glue dataset's integer order
    is_regression: bool
    metrics: tuple[str, ...]           # the first is the primary metric
    dev_splits: tuple[str, ...] = ("dev",)
    has_header: bool = True
    #: The header of the train file (the column names of CoLA's headerless files).
    columns: tuple[str, ...] = ()
    #: True for MNLI: the annotator columns label1..labelN before the last (gold) column vary.
    annotator_labels: bool = False
    #: ``datasets.load_dataset("glue", hf_name)``; None where the Hub has no such set.
    hf_name: Optional[str] = None
    #: The Hugging Face columns holding text_a and text_b.
    hf_text_columns: tuple[str, ...] = ()
    #: What to do when the files are missing (the end of the one-line error).
    how_to_get: str = field(default="", compare=False)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train",) + self.dev_splits

    def hf_split(self, split: str) -> str:
        """The Hugging Face split name of ``split`` (dev -> validation)."""
        return "train" if split == "train" else "validation" + split[len("dev"):]


GLUE_DATASETS: Registry[GlueDatasetSpec] = Registry("GLUE dataset")


def _how_to_get(folder: str, dev_splits: tuple[str, ...] = ("dev",)) -> str:
    files = "{" + ",".join(("train",) + dev_splits) + "}"
    return (f"put the GLUE data (glue_data/{folder}/{files}.tsv, e.g. from the GLUE benchmark's "
            f"download script) under --data-root, or pip install datasets on an online machine")


def _dataset(name: str, title: str, folder: str, columns: tuple[str, ...],
          text_columns: tuple[Column, ...], label_column: Column, label_names: tuple[str, ...],
          metrics: tuple[str, ...], hf_name: Optional[str], hf_text_columns: tuple[str, ...],
          dev_splits: tuple[str, ...] = ("dev",), has_header: bool = True,
          annotator_labels: bool = False, how_to_get: Optional[str] = None) -> GlueDatasetSpec:
    regression = not label_names
    spec = GlueDatasetSpec(
        name=name, title=title, folder=folder, text_columns=text_columns,
        label_column=label_column, num_labels=1 if regression else len(label_names),
        label_names=label_names, is_regression=regression, metrics=metrics,
        dev_splits=dev_splits, has_header=has_header, columns=columns,
        annotator_labels=annotator_labels, hf_name=hf_name, hf_text_columns=hf_text_columns,
        how_to_get=how_to_get if how_to_get is not None else _how_to_get(folder, dev_splits))
    GLUE_DATASETS.register(name)(spec)
    return spec


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_PAIR = ("index", "sentence1", "sentence2", "label")
_SST2_COLUMNS = ("sentence", "label")

COLA = _dataset("cola", "CoLA", "CoLA", ("source", "label", "original_label", "sentence"),
             (3,), 1, _BINARY, ("mcc",), "cola", ("sentence",), has_header=False)
SST2 = _dataset("sst2", "SST-2", "SST-2", _SST2_COLUMNS, ("sentence",), "label", _BINARY,
             ("accuracy",), "sst2", ("sentence",))
MRPC = _dataset("mrpc", "MRPC", "MRPC", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
             ("#1 String", "#2 String"), "Quality", _BINARY, ("f1", "accuracy"), "mrpc",
             ("sentence1", "sentence2"))
STSB = _dataset("stsb", "STS-B", "STS-B",
             ("index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"),
             ("sentence1", "sentence2"), "score", (), ("pearson", "spearman"), "stsb",
             ("sentence1", "sentence2"))
QQP = _dataset("qqp", "QQP", "QQP", ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
            ("question1", "question2"), "is_duplicate", _BINARY, ("f1", "accuracy"), "qqp",
            ("question1", "question2"))
MNLI = _dataset("mnli", "MNLI", "MNLI",
             ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label"),
             ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
             ("accuracy",), "mnli", ("premise", "hypothesis"),
             dev_splits=("dev_matched", "dev_mismatched"), annotator_labels=True)
QNLI = _dataset("qnli", "QNLI", "QNLI", ("index", "question", "sentence", "label"),
             ("question", "sentence"), "label", _NLI2, ("accuracy",), "qnli",
             ("question", "sentence"))
RTE = _dataset("rte", "RTE", "RTE", _PAIR, ("sentence1", "sentence2"), "label", _NLI2,
            ("accuracy",), "rte", ("sentence1", "sentence2"))
WNLI = _dataset("wnli", "WNLI", "WNLI", _PAIR, ("sentence1", "sentence2"), "label", _BINARY,
             ("accuracy",), "wnli", ("sentence1", "sentence2"))
VADER_SST2 = _dataset("vader_sst2", "VADER-SST-2", "vader_sst2", _SST2_COLUMNS, ("sentence",),
                   "label", _BINARY, ("accuracy",), None, (),
                   how_to_get="it is built from the vaderSentiment 3.3.2 source archive on PyPI")


@dataclass
class Example:
    """One GLUE example: a sentence (or pair) and its class index or STS-B score."""

    text_a: str
    text_b: Optional[str]
    label: float | int


def get_dataset(dataset: str | GlueDatasetSpec) -> GlueDatasetSpec:
    """The spec of ``dataset``; an unknown name is a UserError listing the valid ones."""
    return dataset if isinstance(dataset, GlueDatasetSpec) else lookup(GLUE_DATASETS, dataset)
