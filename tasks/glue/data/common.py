"""The GLUE datasets: where their files are, how to read them and how they are scored, and the
one Hugging Face :class:`datasets.Dataset` layout every source is turned into."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence, Union

from bench.errors import DataMissingError, lookup
from estimators.registry import Registry

if TYPE_CHECKING:  # datasets is imported where a split is built (every task module is imported at start-up)
    import datasets

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
            f"download script) under --data-root, or run without --data-root where the Hugging Face hub "
            "is reachable")


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


#: The columns of every GLUE split, whatever its source (the glue_data files, the hub or the offline
#: vader_sst2): ``idx`` (the example's 0-based position in its source), ``sentence1``, ``sentence2``
#: (None throughout for a single-sentence task) and ``label`` (a class index, or the STS-B score).
COLUMNS = ("idx", "sentence1", "sentence2", "label")


def features(spec: Optional[GlueDatasetSpec] = None, regression: bool = False) -> "datasets.Features":
    """The :data:`COLUMNS` types: ``label`` is a ClassLabel with ``spec``'s names (so a split keeps its
    label names), float64 for a regression (an STS-B score read as a Python float keeps its value), and
    int64 for a classification without a spec."""
    import datasets

    if spec is not None:
        regression = spec.is_regression
    if regression:
        label = datasets.Value("float64")
    elif spec is not None:
        label = datasets.ClassLabel(names=list(spec.label_names))
    else:
        label = datasets.Value("int64")
    return datasets.Features({"idx": datasets.Value("int64"), "sentence1": datasets.Value("string"),
                              "sentence2": datasets.Value("string"), "label": label})


def glue_dataset(spec: Optional[GlueDatasetSpec], sentence1: Sequence[str], sentence2: Optional[Sequence[str]],
                 labels: Sequence[float | int], regression: bool = False) -> "datasets.Dataset":
    """A split as an in-memory :class:`datasets.Dataset` with the :data:`COLUMNS` (``sentence2`` None
    throughout when not given). The columns are handed over as Arrow arrays of the :func:`features`'
    types: ``Dataset.from_dict`` then takes them as they are, where Python lists would be encoded one
    value at a time (0.9 s against 0.2 s for 100,000 pairs)."""
    import datasets
    import pyarrow as pa

    n = len(sentence1)
    types = features(spec, regression)
    columns = {"idx": range(n), "sentence1": sentence1, "sentence2": sentence2 if sentence2 is not None else [None] * n,
               "label": labels}
    schema = types.arrow_schema
    return datasets.Dataset.from_dict({name: pa.array(values, type=schema.field(name).type)
                                       for name, values in columns.items()}, features=types)


def dataset_from_examples(examples: Sequence[Example], regression: bool = False) -> "datasets.Dataset":
    """:class:`Example` objects (text_b None for single sentences) as a :data:`COLUMNS` Dataset."""
    pair = bool(examples) and examples[0].text_b is not None
    return glue_dataset(None, [e.text_a for e in examples], [e.text_b for e in examples] if pair else None,
                        [e.label for e in examples], regression=regression)


def get_dataset(dataset: str | GlueDatasetSpec) -> GlueDatasetSpec:
    """The spec of ``dataset``; an unknown name is a UserError listing the valid ones."""
    return dataset if isinstance(dataset, GlueDatasetSpec) else lookup(GLUE_DATASETS, dataset)
