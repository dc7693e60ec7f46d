"""Reading GLUE's tab-separated files (the real layouts: split on tabs alone, no quoting)."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from bench.errors import DataMissingError

from tasks.glue.data.common import Column, GlueFormatError, GlueDatasetSpec, get_dataset, glue_dataset

if TYPE_CHECKING:
    import datasets




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


def _expected_header(spec: GlueDatasetSpec, header: list[str]) -> Optional[str]:
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


def _parse_label(spec: GlueDatasetSpec, value: str, where: str) -> float | int:
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


def read_glue_tsv(spec: str | GlueDatasetSpec, path: str | os.PathLike) -> "datasets.Dataset":
    """The labelled examples of one GLUE ``train``/``dev`` file in ``spec``'s layout, in file order,
    as a :class:`datasets.Dataset` with the columns of :data:`tasks.glue.data.common.COLUMNS`.

    Raises :class:`GlueFormatError` (one line naming the file and 1-based line number) for
    a wrong header, a wrong number of columns, an unknown label or an unparsable score;
    test-set files (without labels) are not supported."""
    spec = get_dataset(spec)
    path = Path(path)
    try:
        with open(path, "rb") as f:
            sentence1, sentence2, labels = _read_lines(spec, path, _lines(f, path))
    except OSError as e:
        raise DataMissingError(f"cannot read {spec.title} file {path}: {e.strerror or e}") from None
    return glue_dataset(spec, sentence1, sentence2, labels)


def _read_lines(spec: GlueDatasetSpec, path: Path, lines) -> tuple[list, Optional[list], list]:
    """(sentence1, sentence2 or None for a single-sentence task, labels) of the examples in ``lines``
    ((number, text) pairs of the file ``path``)."""
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
    sentence1: list[str] = []
    sentence2: Optional[list[str]] = [] if len(text_idx) > 1 else None
    labels: list[float | int] = []
    for lineno, line in rows:
        if not line:
            continue  # a blank line (e.g. at the end of the file)
        where = f"{path} line {lineno}"
        cells = line.split("\t")
        if len(cells) != width:
            raise GlueFormatError(f"{where}: expected {width} tab-separated columns "
                                  f"({', '.join(names)}), got {len(cells)}")
        labels.append(_parse_label(spec, cells[label_idx], where))
        sentence1.append(cells[text_idx[0]])
        if sentence2 is not None:
            sentence2.append(cells[text_idx[1]])
    return sentence1, sentence2, labels


def _chain(first, rest):
    yield first
    yield from rest
