"""The aggregate over the columns of one (task, preset), with rliable (Agarwal et al. 2021,
"Deep reinforcement learning at the edge of the statistical precipice").

Each run's primary metric is normalised by the fp32 mean of its column (fp32 mean / value for a
lower-is-better metric), so 1 is fp32's level and above 1 is better in every column. Per
estimator: the interquartile mean (IQM) over the columns and runs, and the probability that a run
of it beats a run of the reference on a column (Mann-Whitney, averaged over the columns), each with
a stratified-bootstrap 95 % interval under a fixed seed. rliable needs the same number of runs in
every column: an estimator counts the seeds it ran on every column; one missing a column, or
pooling several configurations on one seed, is left out with a note.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import numpy as np

from bench.report.paired import MIN_SEEDS
from bench.report.tables import Cell, ReportTable, order_estimators, slug

NORMALISER = "fp32"
IQM_REPS = 2000
POI_REPS = 1000   # each resample runs one Mann-Whitney test per column: the slow one
SEED = 0


@dataclasses.dataclass
class AggregateRow:
    """One estimator's IQM of normalised scores and probability of improvement over the reference."""

    estimator: str
    seeds: int
    iqm: float
    iqm_low: float
    iqm_high: float
    poi: Optional[float] = None
    poi_low: Optional[float] = None
    poi_high: Optional[float] = None


@dataclasses.dataclass
class Aggregate:
    columns: list[str]
    rows: list[AggregateRow]
    notes: list[str]
    message: str = ""              # why nothing was aggregated


def _interval(scores, func, reps: int) -> tuple[float, float, float]:
    """Point estimate and stratified-bootstrap 95 % interval of ``func`` (rliable), seeded afresh so
    that a row does not depend on which other rows the table has."""
    from rliable import library as rly

    with warnings.catch_warnings():
        # arch deprecates the RandomState that rliable hands it; the draws are unchanged
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = rly.get_interval_estimates({"x": scores}, func, reps=reps,
                                                       random_state=np.random.RandomState(SEED))
    low, high = np.asarray(intervals["x"], dtype=float).reshape(2, -1)[:, 0]
    return float(np.squeeze(points["x"])), float(low), float(high)


def _iqm(scores) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores)])


def normalised_runs(column) -> tuple[Optional[object], str]:
    """The column's runs with a ``score`` (value relative to the fp32 mean), or None and why not."""
    runs = column.runs.assign(value=column.runs["value"].astype(float))
    fp32 = runs.loc[runs["estimator"] == NORMALISER, "value"]
    if fp32.empty:
        return None, f"{column.label}: no {NORMALISER} run"
    mean = float(fp32.mean())
    if column.higher_is_better:
        if mean <= 0:
            return None, f"{column.label}: the {NORMALISER} mean is not positive, no ratio"
        return runs.assign(score=runs["value"] / mean), ""
    if (runs["value"] <= 0).any():
        return None, f"{column.label}: a value is not positive, no ratio {NORMALISER} mean / value"
    return runs.assign(score=mean / runs["value"]), ""


def aggregate(columns: list, reference: str) -> Aggregate:
    """IQM and probability of improvement over ``reference`` across the :class:`ReportColumn` s
    that have fp32 runs; at least two such columns are needed."""
    from rliable import metrics

    usable, notes = [], []
    for column in columns:
        runs, why = normalised_runs(column)
        if runs is None:
            notes.append(f"{why}: not aggregated")
        else:
            usable.append((column.label, runs))
    labels = [label for label, _ in usable]
    if not usable:  # one column is enough: the IQM is then over its runs
        return Aggregate(labels, [], notes, f"not computed: no column has {NORMALISER} runs")

    matrices = {}
    for estimator in order_estimators(e for _, runs in usable for e in runs["estimator"].unique()):
        mine = [runs[runs["estimator"] == estimator] for _, runs in usable]
        missing = [label for label, runs in zip(labels, mine) if runs.empty]
        if missing:
            notes.append(f"{estimator}: no run on {', '.join(missing)}: not aggregated")
        elif any(runs["seed"].duplicated().any() for runs in mine):
            notes.append(f"{estimator}: several runs for one seed (pooled configurations): not aggregated")
        else:
            seeds = sorted(set.intersection(*(set(runs["seed"]) for runs in mine)))
            if len(seeds) < MIN_SEEDS:  # a bootstrap of one or two runs gives an interval of nothing
                notes.append(f"{estimator}: {len(seeds)} seed(s) on every column, fewer than {MIN_SEEDS}: "
                             "not aggregated")
                continue
            matrices[estimator] = np.column_stack([runs.set_index("seed").loc[seeds, "score"].to_numpy(float)
                                                   for runs in mine])
    if reference not in matrices:
        notes.append(f"{reference} is not aggregated: no probability of improvement")
    rows = []
    for estimator, scores in matrices.items():
        row = AggregateRow(estimator, scores.shape[0], *_interval(scores, _iqm, IQM_REPS))
        if estimator != reference and reference in matrices:
            row.poi, row.poi_low, row.poi_high = _interval([scores, matrices[reference]],
                                                           metrics.probability_of_improvement, POI_REPS)
        rows.append(row)
    message = "" if rows else (f"not computed: no estimator has {MIN_SEEDS} seeds on every column with "
                               f"{NORMALISER} runs")
    return Aggregate(labels, rows, notes, message)


def aggregate_table(group, reference: str) -> ReportTable:
    """The aggregate of one (task, preset) as a table; a message where it cannot be computed."""
    result = aggregate(group.columns, reference)
    poi_header = f"P(> {reference}) [95 % CI]"
    cells = [[Cell(text=f"{r.iqm:.3f} [{r.iqm_low:.3f}, {r.iqm_high:.3f}]"),
              Cell(text=f"{r.poi:.2f} [{r.poi_low:.2f}, {r.poi_high:.2f}]") if r.poi is not None else Cell(),
              Cell(text=str(r.seeds))] for r in result.rows]
    return ReportTable(
        task=group.task, preset=group.preset, kind="aggregate",
        title=f"{group.task}, preset {group.preset}: aggregate over columns",
        label=f"tab:{slug(f'{group.task}-{group.preset}')}-aggregate", rows=[r.estimator for r in result.rows],
        columns=[f"IQM of score / {NORMALISER} [95 % CI]", poi_header, "seeds"], cells=cells,
        message=result.message, notes=result.notes,
        description=(
            f"over the {len(result.columns)} columns with {NORMALISER} runs ({', '.join(result.columns)}): score = "
            f"primary metric / {NORMALISER} mean of the column ({NORMALISER} mean / value where lower is better), "
            f"so 1 = {NORMALISER} and above 1 = better; IQM = interquartile mean over the columns and the seeds the "
            f"estimator ran on every column (seeds = how many); P(> {reference}) = probability that a run of the "
            f"estimator beats a run of {reference} on a column, averaged over the columns; 95 % stratified-bootstrap "
            f"intervals (rliable; {IQM_REPS} and {POI_REPS} resamples, seed {SEED})"
        ),
    )
