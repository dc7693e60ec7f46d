"""The report's columns: per (task, preset), one per (dataset, model, block), holding every
finished run's value of the primary metric of that (task, dataset, model) as the runs stored it:
at the last epoch (``select="last"``), or at the epoch best on the validation split
(``select="best_val"``: the metric's ``@best_val`` value; runs without a validation split
have none), or at the epoch best on the test split (``select="best"``: ``@best_test``, kept by
runs without a validation split, which score the test split every epoch; a test-set selection
that some papers report, shown labelled and never ranked).

The results table, the paired statistics, the aggregate and the forest plot all read these,
so they agree on which runs a column holds.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

DEFAULT_REFERENCE = "clipped_ste"
SELECTIONS = ("last", "best_val", "best")
#: the stored metric's suffix of each selection
SELECTION_SUFFIX = {"last": "", "best_val": "@best_val", "best": "@best_test"}
#: what each selection shows, for the tables' descriptions
SELECTION_TEXT = {"last": "at the last epoch", "best_val": "at the epoch best on the validation split",
                  "best": "at the epoch best on the test split (a test-set selection, as ReCU, ReActNet and "
                          "Bi-Real Net report; shown to compare with papers, not ranked)"}


class UnknownReference(ValueError):
    """``--reference`` names no estimator of the database; the message lists the valid ones."""


@dataclasses.dataclass
class ReportColumn:
    """One "dataset / model" column: the primary metric's rows (one per run: estimator, seed, value)."""

    label: str
    dataset: str
    model: str
    metric: str
    higher_is_better: bool
    runs: object                   # pandas DataFrame, rows of ResultsDB.metrics_frame()
    block: Optional[str] = None

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


@dataclasses.dataclass
class ReportGroup:
    """The columns of one (task, preset); ``frame`` is every metric row of it."""

    task: str
    preset: str
    frame: object
    columns: list[ReportColumn]


def column_label(dataset: str, model: str, block: Optional[str] = None) -> str:
    return f"{dataset} / {model}" + (f" ({block})" if block else "")


def _blocks(frame) -> list:
    return [b if isinstance(b, str) and b else None for b in frame.get("block", [None] * len(frame))]


def report_groups(frame, select: str = "last") -> tuple[list[ReportGroup], list[str]]:
    """The (task, preset) groups of a (variant-labelled) metrics frame with their columns, and
    the notes of :func:`bench.report.statistics.primary_metrics` (disagreeing primary metrics)
    and of runs that have no value for ``select``."""
    from bench.report.statistics import primary_metrics

    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; valid: {', '.join(SELECTIONS)}")
    primaries, notes = primary_metrics(frame)
    frame = frame.assign(block=_blocks(frame))
    groups = []
    for (task, preset), group in frame.groupby(["task", "preset"], sort=True):
        keys = sorted({(d, m, b) for d, m, b in zip(group["dataset"], group["model"], group["block"])
                       if (task, d, m) in primaries}, key=lambda k: (k[0], k[1], k[2] or ""))
        columns = []
        for dataset, model, block in keys:
            metric, higher_is_better = primaries[(task, dataset, model)]
            name = metric + SELECTION_SUFFIX[select]
            same_column = (group["dataset"] == dataset) & (group["model"] == model) & (
                group["block"].isna() if block is None else group["block"] == block)
            runs = group[same_column & (group["metric"] == name)]
            label = column_label(dataset, model, block)
            without = sorted(set(group.loc[same_column, "run_id"]) - set(runs["run_id"]))
            if without and select != "last":
                why = "without a validation split" if select == "best_val" else "scored on the test split only once"
                notes.append(f"{label}: {len(without)} run(s) {why} have no {name}: not shown")
            if not runs.empty:
                columns.append(ReportColumn(label, dataset, model, metric, higher_is_better, runs, block))
        groups.append(ReportGroup(task, preset, group, columns))
    return groups, notes


def resolve_reference(estimators: Iterable[str], reference: Optional[str]) -> str:
    """The reference row's name: ``clipped_ste`` when none is given (absent from the database is
    fine then: the tables say so); a given name must be one of ``estimators`` (row names)."""
    if reference is None:
        return DEFAULT_REFERENCE
    names = sorted(set(estimators))
    if names and reference not in names:
        raise UnknownReference(f"unknown reference {reference!r}: no finished run of that estimator; "
                               f"valid choices: {', '.join(names)}")
    return reference
