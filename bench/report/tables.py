"""The report's table model: renderer-neutral cells, columns and tables (markdown and LaTeX
are both written from one :class:`ReportTable`)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable, Optional

REFERENCES = ("fp32", "clipped_ste")


@dataclasses.dataclass
class Cell:
    """One cell: a mean ± std over ``n`` seeds, or a signed difference (``delta``)."""

    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    bold: bool = False
    delta: bool = False
    decimals: int = 2
    text: Optional[str] = None     # shown as it is (a count such as 11.2M, a device name)

    @property
    def missing(self) -> bool:
        if self.text is not None:
            return False
        return self.mean is None or (isinstance(self.mean, float) and math.isnan(self.mean))


@dataclasses.dataclass
class ColumnMetric:
    """The metric shown in a "dataset / model" column."""

    column: str
    metric: str
    higher_is_better: bool


@dataclasses.dataclass
class ReportTable:
    """A renderer-neutral table: both markdown and LaTeX are written from it.

    ``columns`` are the leaf headers; ``column_groups`` (label, span), when set, is a
    spanning header above them (the deltas table: one group per dataset / model).
    ``cells[i][j]`` belongs to ``rows[i]`` and ``columns[j]``. A table with a
    ``message`` and no rows stands for "nothing to show" (an empty database).
    """

    task: str
    preset: str
    kind: str                      # "results" | "deltas" | "efficiency" | "empty"
    title: str
    label: str
    rows: list[str] = dataclasses.field(default_factory=list)
    columns: list[str] = dataclasses.field(default_factory=list)
    cells: list[list[Cell]] = dataclasses.field(default_factory=list)
    column_groups: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    metrics: list[ColumnMetric] = dataclasses.field(default_factory=list)
    description: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    message: str = ""
    row_header: str = "estimator"

    @property
    def empty(self) -> bool:
        return not self.rows

    def cell(self, row: str, column: str) -> Cell:
        """The cell of an estimator row and a leaf column header (KeyError if absent)."""
        try:
            i, j = self.rows.index(row), self.columns.index(column)
        except ValueError:
            raise KeyError((row, column)) from None
        return self.cells[i][j]



def order_estimators(names: Iterable[str]) -> list[str]:
    """fp32, clipped_ste (the references) first, then the others alphabetically."""
    names = set(names)
    return [r for r in REFERENCES if r in names] + sorted(names - set(REFERENCES))


def slug(text: str) -> str:
    """A file-name/label-safe form: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def with_variants(frame):
    """Rows named by their stored variant (``surge (eta=0.2)``): ablations get rows of their own."""
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["estimator"] = [v if isinstance(v, str) and v else e for e, v in zip(frame["estimator"], frame["variant"])]
    return frame


def column_label(dataset: str, model: str) -> str:
    return f"{dataset} / {model}"


def _empty_table(message: str, preset: Optional[str]) -> ReportTable:
    return ReportTable(task="", preset=preset or "", kind="empty", title="No finished runs",
                       label="tab:no-results", message=message)


def build_tables(db, preset: Optional[str] = None) -> list[ReportTable]:
    """Results and deltas tables, two per (task, preset), from the finished runs.

    ``preset`` keeps only that preset. With nothing to show, one ``kind="empty"`` table whose
    ``message`` says so (never an exception). Everything comes from the database: the primary
    metric and its direction as the runs stored them, row names from the stored variants, the
    average column where the runs' family asked for one.
    """
    from bench.report import statistics

    frame = with_variants(db.metrics_frame())
    if not frame.empty and preset is not None:
        frame = frame[frame["preset"] == preset]
    if frame.empty:
        where = f" for preset {preset!r}" if preset is not None else ""
        return [_empty_table(f"no finished runs{where} in {db.display_url}", preset)]

    primaries, disagreements = statistics.primary_metrics(frame)
    tables: list[ReportTable] = []
    for (task, preset_name), group in frame.groupby(["task", "preset"], sort=True):
        keys = sorted({(d, m) for d, m in zip(group["dataset"], group["model"]) if (task, d, m) in primaries})
        columns, metrics, rows_per_column = [], [], []
        for dataset, model in keys:
            name, hib = primaries[(task, dataset, model)]
            sel = group[(group["dataset"] == dataset) & (group["model"] == model) & (group["metric"] == name)]
            columns.append(column_label(dataset, model))
            metrics.append(ColumnMetric(columns[-1], name, hib))
            rows_per_column.append(sel)
        estimators = order_estimators(e for sel in rows_per_column for e in sel["estimator"].unique())

        stats: dict[tuple[str, int], Cell] = {}
        notes = [n for n in disagreements if any(n.startswith(f"{c}:") for c in columns)]
        for j, sel in enumerate(rows_per_column):
            for estimator, runs in sel.groupby("estimator"):
                stats[(estimator, j)] = statistics.cell(runs["value"])
                if runs["seed"].duplicated().any():
                    notes.append(
                        f"{estimator} on {columns[j]} pools {len(runs)} runs over {runs['seed'].nunique()} seeds: "
                        "runs with different configurations (other than estimator hyperparameters, "
                        "e.g. lr or epochs) share this cell."
                    )
        if group["report_average"].fillna(False).astype(bool).any():
            statistics.average_cells(keys, columns, metrics, stats, estimators, column_label)

        results_cells = [[dataclasses.replace(stats.get((e, j), Cell())) for j in range(len(columns))]
                         for e in estimators]
        for j, metric in enumerate(metrics):
            column = [row[j] for row in results_cells]
            places = statistics.decimals([c.mean for c in column if not c.missing])
            for c in column:
                c.decimals = places
            statistics.mark_best(column, metric.higher_is_better)

        name = slug(f"{task}-{preset_name}")
        metric_text = "; ".join(
            f"{m.column}: {m.metric} ({'higher' if m.higher_is_better else 'lower'} is better)" for m in metrics
        )
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="results", title=f"{task}, preset {preset_name}",
            label=f"tab:{name}", rows=estimators, columns=columns, cells=results_cells, metrics=metrics,
            description=("primary metric, mean ± sample std (ddof=1) over seeds, n = number of seeds "
                         "(std omitted for n=1); best per column in bold. " + metric_text),
            notes=notes,
        ))
        delta_cells = [[statistics.delta(stats.get((e, j)), stats.get((reference, j)), results_cells[0][j].decimals)
                        for j in range(len(columns)) for reference in ("clipped_ste", "fp32")]
                       for e in estimators]
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="deltas",
            title=f"{task}, preset {preset_name}: differences to the references",
            label=f"tab:{name}-deltas", rows=estimators,
            columns=[f"{c}: Δ {r}" for c in columns for r in ("clipped_ste", "fp32")],
            cells=delta_cells, column_groups=[(c, 2) for c in columns], metrics=metrics,
            description=("mean of the estimator minus mean of the reference (clipped_ste, fp32), "
                         "signed; positive = higher value. " + metric_text),
        ))
    return tables
