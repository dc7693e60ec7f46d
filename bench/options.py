"""One typed parser for every ``key=value``: RunConfig fields, estimator hyperparameters and
each family's options, driven by the dataclass field types.

A family declares its options as a frozen dataclass; each field says its type, its default,
its allowed values and whether it belongs to the run's identity::

    @dataclasses.dataclass(frozen=True)
    class Options:
        augment: bool = True
        cache_dir: str = option("", local=True)

``local=True`` marks a machine-local value (a cache folder, say): it changes where or how
fast a run goes, never its result, so it is left out of the config hash
(:meth:`bench.config.RunConfig.hash`) and the same experiment run with another value is
found as finished. Declare a value local only when it cannot change a single number (a
DataLoader's worker count can: its processes draw augmentation from their own generators).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional

from bench.errors import UserError

_TRUE, _FALSE, _NONE = ("true", "1", "yes"), ("false", "0", "no"), ("none", "null")


_NO_LEGACY = object()


def option(default: Any, rule: Any = None, *, local: bool = False, help: str = "", legacy: Any = _NO_LEGACY) -> Any:
    """A dataclass field with its allowed values (a bench.validation rule) and identity.

    ``legacy``: for an option added after runs were stored, the value those runs had; at that
    value the option stays out of the config hash, so they keep their hashes.
    """
    metadata = {"rule": rule, "local": local, "help": help}
    if legacy is not _NO_LEGACY:
        metadata["legacy"] = legacy
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A family without options."""


def is_local(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("local"))


def local_names(cls: type) -> set[str]:
    """The machine-local fields of a dataclass (out of the run's identity)."""
    return {f.name for f in dataclasses.fields(cls) if is_local(f)}


def legacy_values(cls: type) -> dict[str, Any]:
    """The added options of a dataclass and the value stored runs had (see :func:`option`)."""
    return {f.name: f.metadata["legacy"] for f in dataclasses.fields(cls) if "legacy" in f.metadata}


def rules(cls: type) -> dict[str, Any]:
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if f.metadata.get("rule") is not None}


def defaults(cls: type) -> dict[str, Any]:
    return dataclasses.asdict(cls())


def types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(hint: Any) -> str:
    names = [getattr(t, "__name__", str(t)) for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    return " or ".join({"int": "an integer", "float": "a float", "bool": "true or false",
                        "str": "a string"}.get(n, n) for n in names)


def parse_value(key: str, raw: Any, hint: Any, flag: str = "") -> Any:
    """``raw`` (a command-line string, or a value from a grid file) as the type ``hint``:
    bool (true/false/1/0/yes/no), int, float, str, and Optional of them (none/null)."""
    allowed = typing.get_args(hint) or (hint,)
    if not isinstance(raw, str):
        if isinstance(raw, bool) and bool in allowed or raw is None and type(None) in allowed:
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = repr(raw)
        else:
            raw = str(raw)
    text = raw.strip()
    if text.lower() in _NONE and type(None) in allowed:
        return None
    for kind in (bool, int, float, str):
        if kind not in allowed:
            continue
        if kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            continue
        try:
            return kind(text)
        except ValueError:
            continue
    raise UserError(f"{flag}{key}={raw!r}: expected {_describe(hint)}")


def parse_into(cls: type, key: str, raw: Any, flag: str = "") -> Any:
    """A value for field ``key`` of dataclass ``cls`` (``flag`` prefixes the error: ``--set ``)."""
    return parse_value(key, raw, types(cls)[key], flag)


def split_pair(pair: str, flag: str = "--set", form: str = "key=value") -> tuple[str, str]:
    """``key=value`` -> (key, value); a one-line UserError for anything else."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{flag} expects {form}, got {pair!r}")
    return key.strip(), value


def check_rules(cls: type, values: dict[str, Any], prefix: str = "") -> None:
    """Every field's rule against ``values`` (defaults where a value is absent)."""
    base = defaults(cls)
    for name, rule in rules(cls).items():
        rule.check(prefix + name, values.get(name, base[name]))


def unknown_keys(cls: type, values: dict[str, Any]) -> list[str]:
    return sorted(set(values) - {f.name for f in dataclasses.fields(cls)})


def field_help(cls: type) -> dict[str, Optional[str]]:
    return {f.name: f.metadata.get("help") or None for f in dataclasses.fields(cls)}
