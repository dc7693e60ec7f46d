"""One generic, typed registry used for estimators, tasks, data sets, models and scopes.

A registry maps a short name to a factory (a class or a function). It is filled by
decorating the factory where it is defined, as timm registers models::

    ESTIMATORS = Registry("estimator")

    @ESTIMATORS.register("clipped_ste")
    @dataclass
    class ClippedSTE(...): ...

It lives in the estimator library, the lowest layer, and imports nothing from the project,
so the library never depends on the harness and every layer may use it.
"""
from __future__ import annotations

from fnmatch import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory, with errors that list the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


#: the estimators, filled by ``@ESTIMATORS.register(name)`` in each ``estimators/<name>.py``
ESTIMATORS: Registry = Registry("estimator")
