"""The validation split every family holds out of its training data: one seed and one rule.

The split is part of the data set, not of a run: it is drawn from :data:`VALIDATION_SEED`
(never the run's seed or a subset seed), so every run, estimator and machine holds out the
same items, and training draws only from the rest. A family with labels to balance may order
its items by class with the same seed (classification); the others take the first ``val_size``
positions of a seeded shuffle (:func:`held_out`).
"""
from __future__ import annotations

import random

from bench.errors import UserError

VALIDATION_SEED = 20261127


def check_val_size(n_train: int, val_size: int, unit: str = "items") -> None:
    """A one-line UserError unless ``val_size`` holds out at least one item and leaves one."""
    if not 0 < val_size < n_train:
        raise UserError(f"val_size must be between 1 and {n_train - 1} (the train split has {n_train} {unit}), "
                        f"got {val_size}")


def held_out(n_train: int, val_size: int, unit: str = "items") -> set[int]:
    """The positions of the ``val_size`` held-out items among ``n_train``: the first of a shuffle
    seeded by :data:`VALIDATION_SEED`."""
    check_val_size(n_train, val_size, unit)
    order = list(range(n_train))
    random.Random(VALIDATION_SEED).shuffle(order)
    return set(order[:val_size])
