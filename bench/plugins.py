"""Finding task families: the ``tasks`` package's sub-packages, and any installed package that
declares a ``surge_bench.tasks`` entry point (a family kept outside this repository).

Each family registers itself in :data:`TASKS` when imported; the CLI, the runner and the
sweep look families up here. The contract a family fills in is :mod:`bench.api`.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

from bench.api import Task
from bench.errors import lookup
from estimators.registry import Registry

TASKS: Registry[Task] = Registry("task")
ENTRY_POINT_GROUP = "surge_bench.tasks"
_loaded = False


def load_task_plugins() -> None:
    """Import every family once: ``tasks/<name>/`` and the ``surge_bench.tasks`` entry points."""
    global _loaded
    if _loaded:
        return
    import tasks

    for module in pkgutil.iter_modules(tasks.__path__):
        if module.ispkg:
            importlib.import_module(f"tasks.{module.name}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
    _loaded = True


def get_task(name: str) -> Task:
    """The registered family ``name``; a UserError listing the families otherwise."""
    load_task_plugins()
    return lookup(TASKS, name)
