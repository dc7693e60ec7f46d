"""The deltas table: per column, each estimator's paired difference to the reference with its
95 % interval and Holm-adjusted p (:mod:`bench.report.paired`), and the column's minimal
detectable difference in a last row."""
from __future__ import annotations

from bench.report.paired import ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, MIN_SEEDS, POWER, PairedColumn
from bench.report.tables import Cell, ColumnMetric, ReportTable, order_estimators, slug

MARKER_LEGEND = "* = differs from {reference}, paired by seed, Holm-adjusted p < " + f"{ALPHA:g}"
POWER_TEXT = f"{POWER * 100:.0f} %"
MDD_ROW = f"MDD ({POWER_TEXT} power)"
CI_TEXT = {
    "t": "Student t interval",
    "bootstrap": f"percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})",
}


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _cells(delta, places: int) -> list[Cell]:
    if delta is None or delta.mean is None:
        return [Cell(delta=True, decimals=places), Cell()]
    if not delta.tested:
        untested = f"n < {MIN_SEEDS}: not tested" if delta.n < MIN_SEEDS else "not tested"
        return [Cell(mean=delta.mean, n=delta.n, delta=True, decimals=places), Cell(text=untested)]
    return [Cell(mean=delta.mean, n=delta.n, delta=True, decimals=places, interval=(delta.low, delta.high),
                 significant=delta.significant),
            Cell(text=p_text(delta.p_holm))]


def _mdd_cells(paired: PairedColumn, places: int) -> list[Cell]:
    mdd = paired.mdd
    if mdd is None:
        return [Cell(), Cell()]
    return [Cell(text=f"{mdd.value:.{places}f} (n={mdd.n}, m={mdd.m})"), Cell(text=f"alpha = {ALPHA:g}/{mdd.m}")]


def deltas_table(group, paired: list[PairedColumn], decimals: list[int], reference: str, ci: str,
                 has_average: bool = False) -> ReportTable:
    """The paired differences of one (task, preset): per column a "Δ [95 % CI]" and a "p (Holm)"
    leaf under a "dataset / model" header; rows are the estimators other than the reference,
    then the MDD."""
    estimators = order_estimators(e for column in group.columns for e in column.runs["estimator"].unique())
    rows = [e for e in estimators if e != reference]
    cells = [[c for pc, places in zip(paired, decimals) for c in _cells(pc.deltas.get(e), places)] for e in rows]
    summary = 0
    if rows and any(pc.mdd is not None for pc in paired):
        rows.append(MDD_ROW)
        cells.append([c for pc, places in zip(paired, decimals) for c in _mdd_cells(pc, places)])
        summary = 1
    labels = [pc.label for pc in paired]
    notes = [note for pc in paired for note in pc.notes]
    if has_average:
        notes.append("the average columns are not tested: paired differences are per dataset "
                     "(the aggregate table summarises across columns)")
    directions = "; ".join(f"{pc.label}: {pc.metric}, {'higher' if pc.higher_is_better else 'lower'} is better"
                           for pc in paired)
    return ReportTable(
        task=group.task, preset=group.preset, kind="deltas",
        title=f"{group.task}, preset {group.preset}: paired differences to {reference}",
        label=f"tab:{slug(f'{group.task}-{group.preset}')}-deltas", rows=rows,
        columns=[f"{label}: {leaf}" for label in labels for leaf in ("Δ [95 % CI]", "p (Holm)")],
        cells=cells, column_groups=[(label, 2) for label in labels],
        metrics=[ColumnMetric(pc.label, pc.metric, pc.higher_is_better) for pc in paired],
        summary_rows=summary, message=f"no estimator besides {reference}",
        description=(
            f"Δ = estimator − {reference} on the same seed, mean over the n paired seeds (positive = a higher "
            f"value); [95 % CI]: {CI_TEXT[ci]}; p (Holm): two-sided paired t-test, Holm-adjusted over the "
            f"estimators tested in the column; {MARKER_LEGEND.format(reference=reference)}; "
            f"n < {MIN_SEEDS} paired seeds: mean only, not tested. {MDD_ROW}: the smallest |Δ| a paired t-test "
            f"at alpha = {ALPHA:g}/m (m = estimators tested in the column) detects with {POWER_TEXT} power on n "
            "seeds (the column's smallest), for the median of the estimators' sd of Δ. "
            + directions
        ),
        notes=notes,
    )
