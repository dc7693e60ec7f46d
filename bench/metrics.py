"""The metric registry: each metric's name, direction, description and computation, once.

Families register their metrics where they compute them (``tasks/glue/metrics.py``,
``tasks/classification/metrics.py``, ``tasks/detection/metrics.py``) and name them in their
``metric_specs``; the runner stores each run's metrics with the direction and primacy read
from here, and the report reads both back from the database, never guessing them.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from estimators.registry import Registry


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str
    #: the computation, where the suite computes it (None: computed by a library, e.g. mmdet's
    #: CocoMetric, whose value the family reads)
    compute: Optional[Callable[..., float]] = None


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, higher_is_better: bool, description: str,
                    compute: Optional[Callable[..., float]] = None) -> Metric:
    """Register a metric; a name another family registered already is shared when its direction
    agrees (the first description and computation stay), a ValueError when it does not."""
    if name in METRICS:
        known = METRICS.get(name)
        if known.higher_is_better != higher_is_better:
            raise ValueError(f"metric {name!r} is registered as {'higher' if known.higher_is_better else 'lower'} "
                             "is better already; give the new one another name")
        return known
    metric = Metric(name, higher_is_better, description, compute)
    METRICS.register(name)(metric)
    return metric
