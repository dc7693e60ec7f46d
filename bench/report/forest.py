"""Forest plots: one PNG per (task, preset), a panel per column, a row per estimator: its mean
paired difference to the reference with the 95 % interval, filled where significant (Holm)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from bench.db import ResultsDB
from bench.report.columns import report_groups, resolve_reference
from bench.report.paired import ALPHA, MIN_SEEDS, PairedColumn, paired_column
from bench.report.tables import order_estimators, slug, with_variants

PANELS_PER_ROW = 3


def forest_name(task: str, preset: str) -> str:
    return f"forest_{slug(task)}_{slug(preset)}.png"


def plot_forest(paired: list[PairedColumn], title: str, path: Path) -> Optional[Path]:
    """Draw the paired differences of one (task, preset) to ``path``; None when there is none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [pc for pc in paired if any(d.mean is not None for d in pc.deltas.values())]
    if not panels:
        return None
    estimators = order_estimators({e for pc in panels for e, d in pc.deltas.items() if d.mean is not None})
    across = min(len(panels), PANELS_PER_ROW)
    down = math.ceil(len(panels) / across)
    fig = Figure(figsize=(3.6 * across + 1.2, (0.4 * len(estimators) + 1.6) * down + 0.6))
    FigureCanvasAgg(fig)
    rows = {e: len(estimators) - 1 - i for i, e in enumerate(estimators)}   # the first estimator on top
    for k, pc in enumerate(panels):
        ax = fig.add_subplot(down, across, k + 1)
        ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle="--")
        for estimator, delta in pc.deltas.items():
            if delta.mean is None:
                continue
            y = rows[estimator]
            if delta.tested:
                xerr = [[max(delta.mean - delta.low, 0.0)], [max(delta.high - delta.mean, 0.0)]]
                ax.errorbar(delta.mean, y, xerr=xerr, fmt="o", color="C0", capsize=3,
                            markerfacecolor="C0" if delta.significant else "white")
            else:
                ax.plot(delta.mean, y, marker="x", color="0.5", linestyle="none")
        ax.set_yticks(list(rows.values()))
        ax.set_yticklabels(list(rows) if k % across == 0 else [])
        ax.set_ylim(-0.7, len(estimators) - 0.3)
        ax.set_xlabel(f"Δ {pc.metric} ({'higher' if pc.higher_is_better else 'lower'} is better)", fontsize="small")
        ax.set_title(pc.label, fontsize="small")
        ax.grid(True, axis="x", alpha=0.3)
    reference = panels[0].reference
    handles = [
        Line2D([], [], marker="o", color="C0", linestyle="none", label=f"Holm p < {ALPHA:g}"),
        Line2D([], [], marker="o", color="C0", markerfacecolor="white", linestyle="none", label="not significant"),
        Line2D([], [], marker="x", color="0.5", linestyle="none", label=f"n < {MIN_SEEDS}: not tested"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize="small", frameon=False)
    fig.suptitle(f"{title}: Δ to {reference} paired by seed, 95 % CI", fontsize="medium")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_forests(db: ResultsDB, out_dir: str | Path, reference: Optional[str] = None, ci: str = "t",
                 select: str = "last") -> list[Path]:
    """One forest plot per (task, preset) that has paired differences to the reference."""
    frame = with_variants(db.metrics_frame())
    if frame.empty:
        return []
    reference = resolve_reference(frame["estimator"], reference)
    groups, _ = report_groups(frame, select)
    written = []
    for group in groups:
        paired = [paired_column(column, reference, ci) for column in group.columns]
        path = plot_forest(paired, f"{group.task} ({group.preset})",
                           Path(out_dir) / forest_name(group.task, group.preset))
        if path is not None:
            written.append(path)
    return written
