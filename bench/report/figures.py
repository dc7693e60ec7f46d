"""Curve figures, one PNG per (task, dataset, model, block, preset), one line per estimator (the mean
over its seeds, shaded ± std):

    curves_*       the primary metric on the validation split (``val_*``; the test split's
                   ``test_*`` where a run had no validation split)
    sign_inputs_*  the fraction of the binarized layers' inputs with |x| > 1, the mean over the
                   layers (``frac_abs_gt1_mean``): where it is 0 (a Hardtanh block), clipped
                   and unclipped estimators cannot differ
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from bench.db import ResultsDB
from bench.report.statistics import primary_metrics
from bench.report.tables import order_estimators, slug, with_variants

SIGN_INPUTS = "frac_abs_gt1_mean"


def _curve_name(names: Iterable[str], primary: Optional[str]) -> Optional[str]:
    names = set(names)
    for prefix in ("val_", "test_"):
        if primary and f"{prefix}{primary}" in names:
            return f"{prefix}{primary}"
    validation = sorted(n for n in names if n.startswith("val_"))
    return validation[0] if validation else None


def _plot(points, title: str, ylabel: str, path: Path) -> Path:
    """Mean ± std over runs per estimator and epoch (one value per run and epoch: its last)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = points.sort_values("step").groupby(["estimator", "run_id", "epoch"], as_index=False).last()
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for estimator in order_estimators(points["estimator"].unique()):
        runs = points[points["estimator"] == estimator]
        agg = runs.groupby("epoch")["value"].agg(["mean", "std", "count"]).sort_index()
        (line,) = ax.plot(agg.index, agg["mean"], marker="o" if len(agg) < 15 else None, markersize=3,
                          label=f"{estimator} (n={runs['run_id'].nunique()})")
        spread = agg[agg["count"] > 1]
        if not spread.empty:
            ax.fill_between(spread.index, spread["mean"] - spread["std"], spread["mean"] + spread["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _groups(db: ResultsDB):
    """((task, dataset, model, block, preset), curve points); block "" for none."""
    curves = with_variants(db.curves_frame())
    if curves.empty:
        return
    curves["block"] = curves["block"].fillna("")
    yield from curves.groupby(["task", "dataset", "model", "block", "preset"], sort=True)


def _stem(task: str, dataset: str, model: str, block: str, preset: str) -> str:
    return "_".join(slug(part) for part in (task, dataset, model, block, preset) if part)


def _title(dataset: str, model: str, block: str, preset: str) -> str:
    return f"{dataset} / {model}" + (f" ({block})" if block else "") + f", {preset}"


def plot_learning_curves(db: ResultsDB, out_dir: str | Path) -> list[Path]:
    """One PNG per (task, dataset, model, block, preset): the mean validation curve per estimator."""
    metrics = db.metrics_frame()
    primaries = primary_metrics(metrics)[0] if not metrics.empty else {}
    written: list[Path] = []
    for (task, dataset, model, block, preset), group in _groups(db):
        name = _curve_name(group["curve"].unique(), primaries.get((task, dataset, model), (None, True))[0])
        if name is not None:
            written.append(_plot(group[group["curve"] == name], f"{task}: {_title(dataset, model, block, preset)}",
                                 name, Path(out_dir) / f"curves_{_stem(task, dataset, model, block, preset)}.png"))
    return written


def plot_sign_inputs(db: ResultsDB, out_dir: str | Path) -> list[Path]:
    """One PNG per (task, dataset, model, block, preset) with binarized runs: the mean over layers of
    the fraction of inputs with |x| > 1, per estimator and epoch."""
    written: list[Path] = []
    for (task, dataset, model, block, preset), group in _groups(db):
        points = group[group["curve"] == SIGN_INPUTS]
        if not points.empty:
            written.append(_plot(points, f"sign inputs with |x| > 1: {_title(dataset, model, block, preset)}",
                                 "fraction of binary-layer inputs with |x| > 1 (mean over layers)",
                                 Path(out_dir) / f"sign_inputs_{_stem(task, dataset, model, block, preset)}.png"))
    return written
