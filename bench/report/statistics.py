"""What a report cell says, computed from the stored rows: the primary metric of a column
(as the runs stored it), per-estimator mean and sample standard deviation over seeds, the
average column (differences to a reference: :mod:`bench.report.paired`)."""
from __future__ import annotations

import math

from bench.report.tables import Cell, ColumnMetric


def primary_metrics(frame) -> tuple[dict[tuple[str, str, str], tuple[str, bool]], list[str]]:
    """(task, dataset, model) -> (primary metric, higher_is_better), as the latest finished run
    of that combination stored them; and a note for every combination whose runs disagree (rows
    written by different versions of a family)."""
    out, notes = {}, []
    for key, group in frame.groupby(["task", "dataset", "model"], sort=True):
        flagged = group[group["primary"].astype(bool)]
        if flagged.empty:
            continue
        latest = flagged[flagged["run_id"] == flagged["run_id"].max()].iloc[0]
        out[tuple(key)] = (str(latest["metric"]), bool(latest["higher_is_better"]))
        others = sorted(set(flagged["metric"]) - {latest["metric"]})
        if others:
            notes.append(f"{key[1]} / {key[2]}: older runs stored {', '.join(others)} as their primary metric; "
                         f"the column shows {latest['metric']}, the primary metric of the latest run")
    return out, notes


def cell(values) -> Cell:
    """Mean and sample standard deviation (ddof=1; none for a single value) over the runs."""
    values = values.astype(float)
    n = len(values)
    return Cell(mean=float(values.mean()), std=float(values.std(ddof=1)) if n > 1 else None, n=n)


def average_cells(keys, columns, metrics, stats, estimators, label) -> None:
    """Per model, an "average" column (the GLUE score): the mean over that model's dataset
    columns of an estimator's means, shown only where the estimator has every dataset."""
    for model in sorted({m for _, m in keys}):
        indices = [j for j, (_, m) in enumerate(keys) if m == model]
        if len(indices) < 2:
            continue
        columns.append(label("average", model))
        metrics.append(ColumnMetric(columns[-1], "mean of the primary metrics",
                                    all(metrics[j].higher_is_better for j in indices)))
        for estimator in estimators:
            cells = [stats.get((estimator, j)) for j in indices]
            if all(c is not None for c in cells):
                stats[(estimator, len(columns) - 1)] = Cell(mean=sum(c.mean for c in cells) / len(cells),
                                                            n=min(c.n for c in cells))


def decimals(values: list[float], default: int = 2) -> int:
    """2 decimals, or 4 for a column whose values all lie within (-1, 1)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return default + 2 if finite and max(finite) < 1.0 else default


def mark_best(column: list[Cell], higher_is_better: bool) -> None:
    """Bold the best mean at the displayed precision (ties: all of them)."""
    present = [c for c in column if not c.missing]
    if present:
        pick = max if higher_is_better else min
        best = pick(round(c.mean, c.decimals) for c in present)
        for c in present:
            c.bold = round(c.mean, c.decimals) == best
