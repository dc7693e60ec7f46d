"""Tokenising a GLUE split through ``Dataset.map``, cached on disk by what decides the tokens.

:func:`tokenize` adds the tokenizer's outputs to a :data:`~tasks.glue.data.common.COLUMNS` Dataset
with ``Dataset.map(batched=True)``: the tokenizer's own call, truncation to ``max_length``, no
padding; it keeps ``idx`` and ``label`` and drops the text. Given a cache folder, ``map`` writes the
result to the Arrow file ``<cache>/<name>-L<max_length>-<key>.arrow`` and a later call with the
same key loads that file (memory-mapped) instead of tokenising: ``map``'s own ``cache_file_name``
and ``load_from_cache_file``. ``map`` writes a temporary file beside it and renames it into place,
so a reader never sees half a file and two processes building the same file both end with a whole
one. A file that cannot be read back is built again over itself.

The key is :func:`cache_key`: a hash of the rows' content, of the tokenizer's full state, of
``max_length`` and of :data:`FORMAT_VERSION`. Every part is computed with public APIs and is the
same in every process and on every machine, so a second run finds its file whichever file, copy,
hub download or subset its rows came from; any change to them, to the tokenizer or to the
length gets a file of its own. (``Dataset._fingerprint``, the library's own content key, is a
private attribute.)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

#: Bumped when what a cache file holds changes (its columns or their types, the tokenizer call), so
#: files of older versions are no longer found; they can be deleted.
FORMAT_VERSION = "1"
#: The Arrow types of the tokenizer's outputs in the cache (read back as the same Python ints);
#: an output not named here is stored as int64.
TOKEN_TYPES = {"input_ids": "int32", "token_type_ids": "int8", "attention_mask": "int8",
               "special_tokens_mask": "int8"}
#: The columns of a tokenised split besides the tokenizer's outputs.
KEPT_COLUMNS = ("idx", "label")
MAP_BATCH_SIZE = 1000
#: Rows per piece when the rows are hashed (:func:`rows_sha256`).
HASH_BATCH_SIZE = 10_000


@contextlib.contextmanager
def _quiet():
    """No ``datasets`` progress bars (Map) while the block runs; the setting is restored."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def rows_sha256(source: "datasets.Dataset") -> str:
    """A hash of ``source``'s rows in order: every column's values as JSON, a piece of
    :data:`HASH_BATCH_SIZE` rows at a time (a selected subset hashes the rows it selects). About
    0.15 s for 100,000 pairs: a tenth of reading them from their file."""
    digest = hashlib.sha256(json.dumps(source.column_names).encode("utf-8"))
    for batch in source.iter(batch_size=HASH_BATCH_SIZE):
        digest.update(json.dumps(batch, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what decides ``tokenizer``'s output: a fast tokenizer's whole state (vocabulary,
    normaliser, pre-tokeniser, model, post-processor, added tokens) less the truncation and padding
    settings that its calls leave behind; a slow one's vocabulary and init arguments. Its class,
    truncation side and the transformers/tokenizers versions are part of it too; its name or path is
    not (the same files in another folder tokenise the same)."""
    import tokenizers
    import transformers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = {"vocab": sorted(tokenizer.get_vocab().items()), "init": tokenizer.init_kwargs}
    # The state in its serialised order (the vocabulary by id): sorting 30,000 keys costs 0.3 s a call.
    state_sha256 = hashlib.sha256(json.dumps(state, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()
    return _sha256({"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
                    "state_sha256": state_sha256, "truncation_side": getattr(tokenizer, "truncation_side", None),
                    "transformers": transformers.__version__, "tokenizers": tokenizers.__version__})


def cache_key(source: "datasets.Dataset", tokenizer, max_length: int) -> dict:
    """What names a cache file: :func:`rows_sha256` and the column types of ``source``,
    :func:`tokenizer_fingerprint`, ``max_length`` and :data:`FORMAT_VERSION`."""
    return {"rows_sha256": rows_sha256(source), "features": source.features.to_dict(),
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer), "max_length": int(max_length),
            "format": FORMAT_VERSION}


def _is_pair(source: "datasets.Dataset") -> bool:
    """Sentence pairs (sentence2 set), decided on the first example as the readers write a whole
    split one way."""
    return len(source) > 0 and source[0]["sentence2"] is not None


def _encode_batch(batch: dict, tokenizer, max_length: int, pair: bool) -> dict:
    return dict(tokenizer(batch["sentence1"], batch["sentence2"] if pair else None,
                          truncation=True, max_length=max_length))


def _features(source: "datasets.Dataset", tokenizer, max_length: int, pair: bool) -> "datasets.Features":
    """The tokenised split's column types: :data:`KEPT_COLUMNS` as in ``source``, then the
    tokenizer's outputs as :data:`TOKEN_TYPES` lists."""
    import datasets

    probe = tokenizer(["a"], ["b"] if pair else None, truncation=True, max_length=max_length)  # the output names
    features = datasets.Features({name: source.features[name] for name in KEPT_COLUMNS})
    for name in probe:
        features[name] = datasets.List(datasets.Value(TOKEN_TYPES.get(name, "int64")))
    return features


def tokenize(source: "datasets.Dataset", tokenizer, max_length: int, cache_dir: str | os.PathLike | None = None,
             name: str = "split") -> "datasets.Dataset":
    """``source`` (a :data:`COLUMNS` Dataset) tokenised by ``Dataset.map(batched=True)``: its ``idx``
    and ``label``, then the tokenizer's outputs (``input_ids``, ``token_type_ids``,
    ``attention_mask``), every example truncated to ``max_length`` tokens, none padded.

    With ``cache_dir`` the result is read from, or else written to,
    ``<cache_dir>/<name>-L<max_length>-<key>.arrow`` (``key``: a hash of :func:`cache_key`)."""
    import datasets

    pair = _is_pair(source)
    features = _features(source, tokenizer, max_length, pair)
    if len(source) == 0:  # the tokenizer cannot take an empty batch
        return datasets.Dataset.from_dict({column: [] for column in features}, features=features)
    digest = _sha256(cache_key(source, tokenizer, max_length))

    def run(**cache) -> "datasets.Dataset":
        with _quiet():
            return source.map(_encode_batch, batched=True, batch_size=MAP_BATCH_SIZE, features=features,
                              remove_columns=[c for c in source.column_names if c not in KEPT_COLUMNS],
                              fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "pair": pair},
                              new_fingerprint=digest[:32], **cache)

    if cache_dir is None:
        return run(keep_in_memory=True)
    path = Path(cache_dir) / f"{name}-L{int(max_length)}-{digest[:24]}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.is_file()
    try:
        encoded = run(cache_file_name=str(path), load_from_cache_file=True)
        if len(encoded) == len(source):
            return encoded
    except Exception:
        if not existed:
            raise  # the tokenizer's or the writer's error, not the cache file's
    return run(cache_file_name=str(path), load_from_cache_file=False)  # a damaged file: built again over it
