"""GLUE from the Hugging Face hub through ``datasets.load_dataset`` (needs the network or a filled
cache), turned into the same :data:`~tasks.glue.data.common.COLUMNS` Dataset as the local files.

The hub is asked only when it can answer at once (:func:`hub_unavailable`): ``load_dataset`` on a
machine without network retries with back-off for about 25 s before it gives up, so each of a
run's splits would wait that long for the one-line error. The libraries' offline mode
(``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1`` set before they were imported) is honoured as
they mean it: ``load_dataset`` reads its local cache only, which answers or fails at once.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Optional

from tasks.glue.data.common import GlueDatasetSpec, glue_dataset
from tasks.glue.data.tsv import _first_line

if TYPE_CHECKING:
    import datasets

#: Either variable set (to anything but 0/false/no/off) turns the hub off, as the two libraries do.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
#: Seconds the one probe of the hub may take (:func:`_probe`).
PROBE_TIMEOUT_S = 5.0


def _offline_variable() -> Optional[str]:
    """The variable that turns the hub off, read now (the libraries read theirs when imported)."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return name
    return None


@functools.cache
def _probe() -> Optional[str]:
    """None when the hub's endpoint answers one HEAD request within :data:`PROBE_TIMEOUT_S`, else why
    not. The request goes through huggingface_hub's own HTTP session (its endpoint, proxies and
    certificates) with no retry, once per process."""
    from huggingface_hub import constants, get_session

    try:
        status = get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S).status_code
    except Exception as e:  # no DNS, no route, a timeout, a proxy refusing, ...
        return f"the Hugging Face hub ({constants.ENDPOINT}) is unreachable ({type(e).__name__}: {_first_line(e)})"
    return None if status < 500 else f"the Hugging Face hub ({constants.ENDPOINT}) answers HTTP {status}"


def hub_unavailable() -> Optional[str]:
    """None when ``load_dataset`` may be called now without waiting on the network; else why not
    (the middle of the one-line error). In the libraries' offline mode it may (it reads the local
    cache only); an offline variable set after they were imported, which they no longer read,
    keeps it from being called; otherwise the hub must answer :func:`_probe`."""
    import datasets

    if datasets.config.HF_HUB_OFFLINE:
        return None
    variable = _offline_variable()
    if variable is not None:
        return f"the Hugging Face hub is off ({variable}={os.environ[variable]})"
    return _probe()


def _load_hub(spec: GlueDatasetSpec, split: str) -> "datasets.Dataset":
    """The hub's ``glue`` split of ``spec`` as the hub lays it out (its own column names)."""
    import datasets

    return datasets.load_dataset("glue", spec.hf_name, split=spec.hf_split(split))


def from_hub(spec: GlueDatasetSpec, rows: "datasets.Dataset") -> "datasets.Dataset":
    """The hub's layout of a split (e.g. MNLI's premise, hypothesis, label, idx) in the local files'
    columns; a label outside the task's classes (the hub's test splits hold -1) is a ValueError."""
    table = rows.select_columns([*spec.hf_text_columns, "label"]).to_dict()
    labels = table["label"]
    if spec.is_regression:
        labels = [float(label) for label in labels]
    else:
        labels = [int(label) for label in labels]
        bad = next((label for label in labels if not 0 <= label < spec.num_labels), None)
        if bad is not None:
            raise ValueError(f"label {bad!r} out of range")
    texts = [table[c] for c in spec.hf_text_columns]
    return glue_dataset(spec, texts[0], texts[1] if len(texts) > 1 else None, labels)


def _hf_examples(spec: GlueDatasetSpec, split: str) -> tuple[Optional["datasets.Dataset"], str]:
    """(the split, "") from the Hugging Face hub, or (None, why not) at once when the hub cannot answer
    now (:func:`hub_unavailable`) and on any failure."""
    if spec.hf_name is None:
        return None, "not on the Hugging Face hub"
    why = hub_unavailable()
    if why is not None:
        return None, why
    try:
        return from_hub(spec, _load_hub(spec, split)), ""
    except Exception as e:  # no cache in offline mode, a changed hub layout, ...
        return None, (f"Hugging Face datasets failed ({type(e).__name__}: "
                      f"{_first_line(e) or 'no message'})")
