"""Learning-curve figures: one PNG per (task, dataset, model, preset), the mean validation
curve of the primary metric per estimator over seeds, shaded ± std."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from bench.db import ResultsDB
from bench.report.statistics import primary_metrics
from bench.report.tables import order_estimators, slug, with_variants


def _curve_name(names: Iterable[str], primary: Optional[str]) -> Optional[str]:
    names = set(names)
    if primary and f"val_{primary}" in names:
        return f"val_{primary}"
    validation = sorted(n for n in names if n.startswith("val_"))
    return validation[0] if validation else None


def plot_learning_curves(db: ResultsDB, out_dir: str | Path) -> list[Path]:
    """One PNG per (task, dataset, model, preset): mean validation curve per estimator."""
    curves = with_variants(db.curves_frame())
    if curves.empty:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = db.metrics_frame()
    primaries = primary_metrics(metrics)[0] if not metrics.empty else {}
    out_dir = Path(out_dir)
    written: list[Path] = []
    for (task, dataset, model, preset), group in curves.groupby(["task", "dataset", "model", "preset"], sort=True):
        primary = primaries.get((task, dataset, model), (None, True))[0]
        name = _curve_name(group["curve"].unique(), primary)
        if name is None:
            continue
        points = group[group["curve"] == name]
        # one value per (run, epoch): the last evaluation of that epoch
        points = points.sort_values("step").groupby(["estimator", "run_id", "epoch"], as_index=False).last()
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for estimator in order_estimators(points["estimator"].unique()):
            runs = points[points["estimator"] == estimator]
            agg = runs.groupby("epoch")["value"].agg(["mean", "std", "count"]).sort_index()
            n_seeds = runs["run_id"].nunique()
            (line,) = ax.plot(agg.index, agg["mean"], marker="o" if len(agg) < 15 else None, markersize=3,
                              label=f"{estimator} (n={n_seeds})")
            spread = agg[agg["count"] > 1]
            if not spread.empty:
                ax.fill_between(spread.index, spread["mean"] - spread["std"], spread["mean"] + spread["std"],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{task}: {dataset} / {model} ({preset})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"curves_{slug(task)}_{slug(dataset)}_{slug(model)}_{slug(preset)}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written
