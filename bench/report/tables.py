"""The report's table model: renderer-neutral cells, columns and tables (markdown and LaTeX
are both written from one :class:`ReportTable`)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable, Optional

from bench.report.columns import SELECTION_TEXT, column_label, report_groups, resolve_reference

REFERENCES = ("fp32", "clipped_ste")


@dataclasses.dataclass
class Cell:
    """One cell: a mean ± std over ``n`` seeds, or a signed difference (``delta``) with its
    confidence ``interval`` over ``n`` paired seeds; ``significant`` adds the marker (a Holm-adjusted
    paired difference to the reference below 0.05)."""

    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    bold: bool = False
    delta: bool = False
    decimals: int = 2
    text: Optional[str] = None     # shown as it is (a count such as 11.2M, a device name)
    interval: Optional[tuple[float, float]] = None
    significant: bool = False
    parts: Optional[tuple[float, ...]] = None   # the means ``mean`` averages, shown before it (GLUE's F1/acc)

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
    ``cells[i][j]`` belongs to ``rows[i]`` and ``columns[j]``; the last ``summary_rows`` rows
    summarise the others (the MDD), set apart by a rule in LaTeX. A table with a ``message`` and
    no rows stands for "nothing to show" (an empty database, an aggregate that cannot be computed).
    """

    task: str
    preset: str
    kind: str                      # "results" | "deltas" | "aggregate" | "efficiency" | "empty"
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
    summary_rows: int = 0

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


def full_precision_notes(columns) -> list[str]:
    """What the fp32 row is in a column whose binary networks have sign as their only nonlinearity."""
    return [f"{c.label}: fp32 applies ReLU where the binary networks apply sign (without it a {c.block} "
            "network would be linear; estimators.blocks)"
            for c in columns if c.block in ("bireal", "reactnet") and (c.runs["estimator"] == "fp32").any()]


def rank_columns(cells: list[list[Cell]], metrics: list[ColumnMetric], paired: list, estimators: list[str],
                 columns: list[str], select: str) -> list[str]:
    """Per column of ``cells`` (rows = ``estimators``): the displayed decimals, then unless the
    scores are test-selected (``select="best"``) the best mean in bold and the significance marker
    where the column's :class:`~bench.report.paired.PairedColumn` (``paired[j]``; none past the
    end) ranks; the notes of the columns that do not rank."""
    from bench.report import statistics
    from bench.report.paired import NOT_RANKED, ranked, significant

    notes = []
    for j, metric in enumerate(metrics):
        column = [row[j] for row in cells]
        places = statistics.decimals([v for c in column if not c.missing for v in (c.mean, *(c.parts or ()))])
        for c in column:
            c.decimals = places
        if select == "best":
            continue
        if j < len(paired) and not ranked(paired[j]):
            notes.append(f"{columns[j]}: {NOT_RANKED}")
            continue
        statistics.mark_best(column, metric.higher_is_better)
        for estimator, c in zip(estimators, column):
            c.significant = j < len(paired) and significant(paired[j], estimator)
    return notes


def _empty_table(message: str, preset: Optional[str]) -> ReportTable:
    return ReportTable(task="", preset=preset or "", kind="empty", title="No finished runs",
                       label="tab:no-results", message=message)


def build_tables(db, preset: Optional[str] = None, reference: Optional[str] = None, ci: str = "t",
                 select: str = "last") -> list[ReportTable]:
    """Results, deltas and aggregate tables, three per (task, preset), from the finished runs.

    ``preset`` keeps only that preset. ``reference`` is the estimator the paired differences are
    taken to (``clipped_ste`` when None; a name no finished run has raises
    :class:`~bench.report.columns.UnknownReference`), ``ci`` their interval (``t`` or
    ``bootstrap``), ``select`` the epoch whose scores are shown (``last``; ``best_val``: the
    epoch best on the validation split; ``best``: the epoch best on the test split, not ranked). With nothing to show, one ``kind="empty"`` table whose ``message`` says so
    (never an exception). Everything comes from the database: the primary metric and its
    direction as the runs stored them, row names from the stored variants, the average column
    where the runs' family asked for one.
    """
    from bench.report import statistics
    from bench.report.aggregate import aggregate_table
    from bench.report.deltas import MARKER_LEGEND, deltas_table
    from bench.report.glue import glue_tables
    from bench.report.paired import CI_METHODS, paired_column

    if ci not in CI_METHODS:
        raise ValueError(f"unknown confidence interval {ci!r}; valid: {', '.join(CI_METHODS)}")
    frame = with_variants(db.metrics_frame())
    if not frame.empty and preset is not None:
        frame = frame[frame["preset"] == preset]
    if frame.empty:
        where = f" for preset {preset!r}" if preset is not None else ""
        return [_empty_table(f"no finished runs{where} in {db.display_url}", preset)]
    reference = resolve_reference(frame["estimator"], reference)

    groups, disagreements = report_groups(frame, select)
    tables: list[ReportTable] = []
    for group in groups:
        task, preset_name = group.task, group.preset
        columns = [c.label for c in group.columns]
        metrics = [ColumnMetric(c.label, c.metric, c.higher_is_better) for c in group.columns]
        estimators = order_estimators(e for c in group.columns for e in c.runs["estimator"].unique())

        stats: dict[tuple[str, int], Cell] = {}
        notes = [n for n in disagreements
                 if any(n.startswith(f"{column_label(c.dataset, c.model)}") for c in group.columns)]
        notes += full_precision_notes(group.columns)
        if task == "glue":
            notes.append("GLUE's test labels are hidden: the reported split is dev; a validation split, where a "
                         "run has one, is held out of train")
        for j, column in enumerate(group.columns):
            for estimator, runs in column.runs.groupby("estimator"):
                stats[(estimator, j)] = statistics.cell(runs["value"])
                if runs["seed"].duplicated().any():
                    notes.append(
                        f"{estimator} on {columns[j]} pools {len(runs)} runs over {runs['seed'].nunique()} seeds: "
                        "runs with different configurations (other than estimator hyperparameters, "
                        "e.g. lr or epochs) share this cell."
                    )
        paired = [paired_column(column, reference, ci) for column in group.columns]
        glue = glue_tables(group, reference, ci, select)   # GLUE's score there, not a mean of primary metrics
        if group.frame["report_average"].astype("boolean").fillna(False).any() and not glue:
            keys = [(c.dataset, c.model) for c in group.columns]
            statistics.average_cells(keys, columns, metrics, stats, estimators, column_label)

        results_cells = [[dataclasses.replace(stats.get((e, j), Cell())) for j in range(len(columns))]
                         for e in estimators]
        notes += rank_columns(results_cells, metrics, paired, estimators, columns, select)

        name = slug(f"{task}-{preset_name}")
        metric_text = "; ".join(
            f"{m.column}: {m.metric} ({'higher' if m.higher_is_better else 'lower'} is better)" for m in metrics
        )
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="results", title=f"{task}, preset {preset_name}",
            label=f"tab:{name}", rows=estimators, columns=columns, cells=results_cells, metrics=metrics,
            description=(f"primary metric {SELECTION_TEXT[select]}, mean ± sample std (ddof=1) over seeds, "
                         "n = number of seeds (std omitted for n=1); "
                         + ("no bold, markers or paired differences on test-selected scores. " if select == "best" else
                            f"best per ranked column in bold; {MARKER_LEGEND.format(reference=reference)}"
                            " (see the deltas table). ") + metric_text),
            notes=notes,
        ))
        tables += glue
        if select == "best":  # maxima over test epochs: no paired intervals or aggregate rank on them
            notes.append("scores at each run's best test epoch, a test-set selection: not ranked, no paired "
                         "differences; compare with papers that report it, rank on --select last or best_val")
            continue
        tables.append(deltas_table(group, paired, [results_cells[0][j].decimals for j in range(len(paired))],
                                   reference, ci, has_average=len(columns) > len(paired)))
        tables.append(aggregate_table(group, reference))
    return tables
