"""The offline GLUE-format set ``vader_sst2`` is the offline stand-in for SST-2 (same layout, binary labels), built once
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
from pathlib import Path
from typing import Optional, Sequence

from bench.api import default_cache_dir
from bench.errors import DataMissingError

from tasks.glue.data.common import VADER_SST2, GlueFormatError
from tasks.glue.data.tsv import _first_line, _show



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
