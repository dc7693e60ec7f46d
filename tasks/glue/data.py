"""GLUE text data, read from the classic ``glue_data/<TASK>/{train,dev}.tsv`` files.

Each task is a :class:`GlueTaskSpec` in :data:`GLUE_TASKS`; :func:`load_glue_split` turns a
task name and a split into a list of :class:`Example` (``text_a``, ``text_b`` or None, and
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
is dropped. String labels become their index in :attr:`GlueTaskSpec.label_names`, in the
Hugging Face ``glue`` dataset's order so both sources agree. A malformed file raises
:class:`GlueFormatError` (a DataMissingError) naming the file and the 1-based line.

``vader_sst2`` is the offline stand-in for SST-2 (same layout, binary labels), built once
by :func:`prepare_vader_sst2` from the real movie-review sentences shipped in the
vaderSentiment 3.3.2 source archive on PyPI:

    C.J. Hutto and E.E. Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment
    Analysis of Social Media Text. Proceedings of the Eighth International AAAI Conference
    on Weblogs and Social Media (ICWSM-14), Ann Arbor, MI, June 2014.

vaderSentiment is distributed under the MIT licence (Copyright (c) 2016 C.J. Hutto). The
10,605 sentences are the Rotten Tomatoes snippets of Pang & Lee (2005), the source text of
SST, each with the mean of about 20 crowd ratings in -4..+4.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from bench.errors import DataMissingError, UserError
from estimators.registry import Registry
from bench.api import default_cache_dir

Column = Union[str, int]


class GlueFormatError(DataMissingError):
    """A GLUE file is there but does not have its task's layout (names the file and line)."""


@dataclass(frozen=True)
class GlueTaskSpec:
    """One GLUE task: where its files are, how to read them and how it is scored."""

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


GLUE_TASKS: Registry[GlueTaskSpec] = Registry("GLUE task")


def _how_to_get(folder: str, dev_splits: tuple[str, ...] = ("dev",)) -> str:
    files = "{" + ",".join(("train",) + dev_splits) + "}"
    return (f"put the GLUE data (glue_data/{folder}/{files}.tsv, e.g. from the GLUE benchmark's "
            f"download script) under --data-root, or pip install datasets on an online machine")


def _task(name: str, title: str, folder: str, columns: tuple[str, ...],
          text_columns: tuple[Column, ...], label_column: Column, label_names: tuple[str, ...],
          metrics: tuple[str, ...], hf_name: Optional[str], hf_text_columns: tuple[str, ...],
          dev_splits: tuple[str, ...] = ("dev",), has_header: bool = True,
          annotator_labels: bool = False, how_to_get: Optional[str] = None) -> GlueTaskSpec:
    regression = not label_names
    spec = GlueTaskSpec(
        name=name, title=title, folder=folder, text_columns=text_columns,
        label_column=label_column, num_labels=1 if regression else len(label_names),
        label_names=label_names, is_regression=regression, metrics=metrics,
        dev_splits=dev_splits, has_header=has_header, columns=columns,
        annotator_labels=annotator_labels, hf_name=hf_name, hf_text_columns=hf_text_columns,
        how_to_get=how_to_get if how_to_get is not None else _how_to_get(folder, dev_splits))
    GLUE_TASKS.register(name)(spec)
    return spec


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_PAIR = ("index", "sentence1", "sentence2", "label")
_SST2_COLUMNS = ("sentence", "label")

COLA = _task("cola", "CoLA", "CoLA", ("source", "label", "original_label", "sentence"),
             (3,), 1, _BINARY, ("mcc",), "cola", ("sentence",), has_header=False)
SST2 = _task("sst2", "SST-2", "SST-2", _SST2_COLUMNS, ("sentence",), "label", _BINARY,
             ("accuracy",), "sst2", ("sentence",))
MRPC = _task("mrpc", "MRPC", "MRPC", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
             ("#1 String", "#2 String"), "Quality", _BINARY, ("f1", "accuracy"), "mrpc",
             ("sentence1", "sentence2"))
STSB = _task("stsb", "STS-B", "STS-B",
             ("index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"),
             ("sentence1", "sentence2"), "score", (), ("pearson", "spearman"), "stsb",
             ("sentence1", "sentence2"))
QQP = _task("qqp", "QQP", "QQP", ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
            ("question1", "question2"), "is_duplicate", _BINARY, ("f1", "accuracy"), "qqp",
            ("question1", "question2"))
MNLI = _task("mnli", "MNLI", "MNLI",
             ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label"),
             ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
             ("accuracy",), "mnli", ("premise", "hypothesis"),
             dev_splits=("dev_matched", "dev_mismatched"), annotator_labels=True)
QNLI = _task("qnli", "QNLI", "QNLI", ("index", "question", "sentence", "label"),
             ("question", "sentence"), "label", _NLI2, ("accuracy",), "qnli",
             ("question", "sentence"))
RTE = _task("rte", "RTE", "RTE", _PAIR, ("sentence1", "sentence2"), "label", _NLI2,
            ("accuracy",), "rte", ("sentence1", "sentence2"))
WNLI = _task("wnli", "WNLI", "WNLI", _PAIR, ("sentence1", "sentence2"), "label", _BINARY,
             ("accuracy",), "wnli", ("sentence1", "sentence2"))
VADER_SST2 = _task("vader_sst2", "VADER-SST-2", "vader_sst2", _SST2_COLUMNS, ("sentence",),
                   "label", _BINARY, ("accuracy",), None, (),
                   how_to_get="it is built from the vaderSentiment 3.3.2 source archive on PyPI")


@dataclass
class Example:
    """One GLUE example: a sentence (or pair) and its class index or STS-B score."""

    text_a: str
    text_b: Optional[str]
    label: float | int


def get_task(task: str | GlueTaskSpec) -> GlueTaskSpec:
    """The spec of ``task``; an unknown name is a UserError listing the valid ones."""
    if isinstance(task, GlueTaskSpec):
        return task
    try:
        return GLUE_TASKS.get(task)
    except ValueError as e:
        raise UserError(str(e)) from None


# --------------------------------------------------------------------------- reading TSV


def _show(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message (repr escapes newlines; long text is cut)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _first_line(text: str, limit: int = 160) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _lines(f: io.BufferedIOBase, path: Path):
    """(1-based line number, text) for each line of the binary file ``f``: split on LF only
    (a sentence may hold characters that str.splitlines treats as line breaks), a CR before
    it dropped, decoded as UTF-8, a byte-order mark on the first line dropped."""
    for lineno, raw in enumerate(f, 1):
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GlueFormatError(f"{path} line {lineno}: not UTF-8 text (byte "
                                  f"{raw[e.start]:#04x} at column {e.start + 1})") from None
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield lineno, text


def _expected_header(spec: GlueTaskSpec, header: list[str]) -> Optional[str]:
    """None when ``header`` is a valid header for ``spec``, else the expected one (text)."""
    expected = list(spec.columns)
    if spec.annotator_labels:
        # The columns before label1 are fixed; then label1..labelN (N >= 1); gold_label last.
        prefix, gold = expected[:-2], expected[-1]
        annotators = header[len(prefix):-1]
        ok = (header[:len(prefix)] == prefix and len(header) > len(prefix) + 1
              and header[-1] == gold
              and annotators == [f"label{i}" for i in range(1, len(annotators) + 1)])
        return None if ok else ", ".join(prefix + ["label1", "...", "labelN", gold])
    return None if header == expected else ", ".join(expected)


def _parse_label(spec: GlueTaskSpec, value: str, where: str) -> float | int:
    value = value.strip()
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not (0.0 <= score <= 5.0):  # also rejects nan
            raise GlueFormatError(f"{where}: {spec.label_column} {_show(value)} is not a "
                                  f"similarity score between 0 and 5")
        return score
    try:
        return spec.label_names.index(value)
    except ValueError:
        raise GlueFormatError(f"{where}: unknown label {_show(value)} (expected one of: "
                              f"{', '.join(spec.label_names)})") from None


def read_glue_tsv(spec: str | GlueTaskSpec, path: str | os.PathLike) -> list[Example]:
    """The labelled examples of one GLUE ``train``/``dev`` file in ``spec``'s layout.

    Raises :class:`GlueFormatError` (one line naming the file and 1-based line number) for
    a wrong header, a wrong number of columns, an unknown label or an unparsable score;
    test-set files (without labels) are not supported."""
    spec = get_task(spec)
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _read_lines(spec, path, _lines(f, path))
    except OSError as e:
        raise DataMissingError(f"cannot read {spec.title} file {path}: {e.strerror or e}") from None


def _read_lines(spec: GlueTaskSpec, path: Path, lines) -> list[Example]:
    """The examples in ``lines`` ((number, text) pairs of the file ``path``)."""
    first = next(lines, None)
    if first is None:
        raise GlueFormatError(f"{path} line 1: the file is empty (expected a {spec.title} file)")
    if spec.has_header:
        header = first[1].split("\t")
        expected = _expected_header(spec, header)
        if expected is not None:
            raise GlueFormatError(f"{path} line 1: header {_show(chr(9).join(header), 120)} is "
                                  f"not the {spec.title} layout (expected: {expected})")
        names = header
        rows = lines
    else:
        names = list(spec.columns)
        rows = _chain(first, lines)

    def index(col: Column) -> int:
        return col if isinstance(col, int) else names.index(col)

    text_idx = [index(c) for c in spec.text_columns]
    label_idx = index(spec.label_column)
    width = len(names)
    examples: list[Example] = []
    for lineno, line in rows:
        if not line:
            continue  # a blank line (e.g. at the end of the file)
        where = f"{path} line {lineno}"
        cells = line.split("\t")
        if len(cells) != width:
            raise GlueFormatError(f"{where}: expected {width} tab-separated columns "
                                  f"({', '.join(names)}), got {len(cells)}")
        label = _parse_label(spec, cells[label_idx], where)
        texts = [cells[i] for i in text_idx]
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def _chain(first, rest):
    yield first
    yield from rest


# --------------------------------------------------------------------------- loading a split


def _root(data_root: str | os.PathLike | None) -> Optional[Path]:
    return Path(data_root).expanduser() if data_root not in (None, "") else None


def local_candidates(spec: GlueTaskSpec, split: str,
                     data_root: str | os.PathLike | None) -> list[Path]:
    """Where a local ``split`` file of ``spec`` is looked for, in order."""
    root = _root(data_root)
    if root is None:
        return []
    return [root / spec.folder / f"{split}.tsv", root / "glue_data" / spec.folder / f"{split}.tsv"]


def _hf_examples(spec: GlueTaskSpec, split: str) -> tuple[Optional[list[Example]], str]:
    """(examples, "") from the Hugging Face hub, or (None, why not) on any failure."""
    if spec.hf_name is None:
        return None, "not on the Hugging Face hub"
    try:
        import datasets  # noqa: F401  (optional; not a dependency of this project)
    except Exception:  # ImportError, or a broken install
        return None, "Hugging Face datasets is not installed"
    try:
        rows = datasets.load_dataset("glue", spec.hf_name, split=spec.hf_split(split))
        examples = []
        for row in rows:
            texts = [row[c] for c in spec.hf_text_columns]
            label = row["label"]
            if spec.is_regression:
                label = float(label)
            elif not 0 <= int(label) < spec.num_labels:
                raise ValueError(f"label {label!r} out of range")
            else:
                label = int(label)
            examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    except Exception as e:  # no network, no cache, a changed hub layout, ...
        return None, (f"Hugging Face datasets failed ({type(e).__name__}: "
                      f"{_first_line(e) or 'no message'})")
    return examples, ""


def load_glue_split(task: str | GlueTaskSpec, split: str,
                    data_root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> list[Example]:
    """The examples of ``split`` ("train", or one of the task's ``dev_splits``) of ``task``.

    ``vader_sst2`` is built offline into ``cache_dir`` (default :func:`default_cache_dir`);
    the GLUE tasks are read from ``data_root`` or, failing that, the Hugging Face hub."""
    spec = get_task(task)
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


# --------------------------------------------------------------------------- vader_sst2

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
_INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
_SNIPPETS = "movieReviewSnippets_GroundTruth.txt"
#: One sentence in DEV_BUCKETS lands in dev, chosen by a hash of the sentence text (so the
#: two sentences the file holds twice fall in the same split).
DEV_BUCKETS = 10


def _fix_sdist() -> str:
    return (f"give this machine network access to PyPI, or put {VADER_SDIST} (from pip download "
            f"--no-deps --no-binary :all: vadersentiment==3.3.2) in the cache dir")


def _find_sdist(cache_dir: Path) -> Optional[Path]:
    if not cache_dir.is_dir():
        return None
    for entry in sorted(cache_dir.iterdir()):
        if entry.name.lower() == VADER_SDIST.lower() and entry.is_file():
            return entry
    return None


def _pip_download_command(dest: str) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "vadersentiment==3.3.2", "-d", dest]


def _download_sdist(cache_dir: Path) -> Path:
    """pip-download the vaderSentiment 3.3.2 source archive into ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pip-download-") as tmp:
        try:
            proc = subprocess.run(_pip_download_command(tmp), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=600)
            why = "" if proc.returncode == 0 else (
                _first_line(_last_lines(proc.stderr) or proc.stdout) or f"exit status {proc.returncode}")
        except (OSError, subprocess.SubprocessError) as e:
            why = f"{type(e).__name__}: {_first_line(e)}"
        found = _find_sdist(Path(tmp)) if not why else None
        if found is None:
            why = why or f"pip saved no {VADER_SDIST}"
            raise DataMissingError(f"could not download the vaderSentiment 3.3.2 source archive "
                                   f"with pip ({why}): {_fix_sdist()} ({cache_dir})")
        target = cache_dir / VADER_SDIST
        os.replace(found, target)
    return target


def _last_lines(text: str) -> str:
    """The last ERROR line of pip's output (or its last line)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or [""])[-1]


def _member(archive: tarfile.TarFile, suffix: str, where: str) -> bytes:
    for member in archive.getmembers():
        if member.isfile() and (member.name == suffix or member.name.endswith("/" + suffix)):
            f = archive.extractfile(member)
            if f is not None:
                return f.read()
    raise DataMissingError(f"{where} holds no {suffix}: it is not the vaderSentiment 3.3.2 "
                           f"source archive; delete it and {_fix_sdist()}")


def _read_movie_snippets(sdist: Path) -> list[tuple[str, float, str]]:
    """(id, mean crowd score in -4..+4, sentence) for each line of the movie-review ground
    truth inside the sdist (read in memory: nothing is extracted to disk)."""
    try:
        with tarfile.open(sdist, "r:*") as outer:
            inner_bytes = _member(outer, _INNER_ARCHIVE, str(sdist))
        where = f"{sdist}!{_INNER_ARCHIVE}"
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:*") as inner:
            data = _member(inner, _SNIPPETS, where)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataMissingError(f"cannot read {sdist} ({type(e).__name__}: {_first_line(e)}): "
                               f"delete it and {_fix_sdist()}") from None
    name = f"{sdist}!{_SNIPPETS}"
    rows = []
    # The real file is UTF-8 with CRLF line ends; split on LF only (a sentence may hold other
    # characters that str.splitlines treats as line breaks).
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GlueFormatError(f"{name} line {lineno}: not UTF-8 text") from None
        if lineno == 1:
            line = line.lstrip("\ufeff")
        cells = line.split("\t", 2)
        if len(cells) != 3:
            raise GlueFormatError(f"{name} line {lineno}: expected 3 tab-separated columns "
                                  f"(id, score, text), got {len(cells)}")
        try:
            score = float(cells[1])
        except ValueError:
            score = math.nan
        if not -4.0 <= score <= 4.0:
            raise GlueFormatError(f"{name} line {lineno}: score {_show(cells[1])} is not a "
                                  f"number between -4 and 4")
        rows.append((cells[0].strip(), score, cells[2]))
    return rows


def _clean(text: str) -> str:
    """One TSV cell: no tabs or line breaks, runs of spaces collapsed, and the file's only
    HTML entity (``&amp;``, 22 times in the real file) decoded."""
    return " ".join(text.replace("&amp;", "&").split())


def _is_dev(sentence: str) -> bool:
    digest = hashlib.sha256(sentence.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % DEV_BUCKETS == 0


def vader_sst2_rows(rows: Sequence[tuple[str, float, str]]) -> dict[str, list[tuple[str, int]]]:
    """{"train": [...], "dev": [...]} of (sentence, label): label 1 for a positive mean
    score, 0 for a negative one; sentences scored exactly 0 are dropped. File order kept."""
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "dev": []}
    for _id, score, text in rows:
        sentence = _clean(text)
        if score == 0 or not sentence:
            continue
        splits["dev" if _is_dev(sentence) else "train"].append((sentence, 1 if score > 0 else 0))
    return splits


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename,
    so a reader never sees half a file (the file gets the umask's usual permissions)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def prepare_vader_sst2(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder ``<cache_dir>/vader_sst2`` holding ``train.tsv`` and ``dev.tsv`` in the
    SST-2 layout (header ``sentence<TAB>label``), built on the first call and reused after.

    The source is movieReviewSnippets_GroundTruth.txt from hutto_ICWSM_2014.tar.gz inside
    the vaderSentiment 3.3.2 sdist (Hutto & Gilbert, ICWSM 2014; MIT licence): an sdist
    already in ``cache_dir`` is used, otherwise pip downloads it there. A sentence whose
    mean crowd score is above 0 is positive (1), below 0 negative (0); the 37 scored exactly
    0 are dropped. About one sentence in ten goes to dev, chosen by a hash of its text."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out = cache_dir / VADER_SST2.folder
    files = {split: out / f"{split}.tsv" for split in VADER_SST2.splits}
    if all(p.is_file() for p in files.values()):
        return out
    sdist = _find_sdist(cache_dir) or _download_sdist(cache_dir)
    splits = vader_sst2_rows(_read_movie_snippets(sdist))
    out.mkdir(parents=True, exist_ok=True)
    for split in ("dev", "train"):  # each file appears whole or not at all; both must exist
        body = "".join(f"{sentence}\t{label}\n" for sentence, label in splits[split])
        _write_atomic(files[split], "sentence\tlabel\n" + body)
    return out


__all__ = [
    "GLUE_TASKS", "GlueTaskSpec", "GlueFormatError", "Example", "get_task", "read_glue_tsv",
    "load_glue_split", "local_candidates", "prepare_vader_sst2", "default_cache_dir",
    "vader_sst2_rows", "VADER_SDIST",
]
