"""The report's gradient-diagnostics section (``bench diagnose`` rows): tables and figures.

One group per (task, dataset, model, mode, state run config, reference settings):

    cosine table    per estimator and training point: the mean over layers of the cosine to the
                    reference, averaged over the probe batches, with a 95 % t interval over them
    delta table     the same cosine minus clipped_ste's on the same layers and batches (paired by
                    probe batch): mean [95 % CI], a paired t-test Holm-adjusted over the
                    estimators of the point, marked * below 0.05
    measures table  at the last point, every measure's mean over layers and batches
    figures         cosine per layer (one panel per point), and mean cosine over training
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Optional

import numpy as np

from bench.report.paired import ALPHA, confidence_interval, holm
from bench.report.tables import Cell, ReportTable, order_estimators, slug

REFERENCE = "clipped_ste"
GROUP = ["task", "dataset", "model", "mode", "state_config_hash", "state_run_id", "sigma", "units", "samples",
         "batch_size", "seed"]
MEASURE_LABELS = {"cosine": "cosine", "rel_error": "rel. error", "sign_agreement": "sign agreement",
                  "norm_ratio": "norm ratio"}


def _latest_state_runs(frame):
    """Rows of the latest state run of each state config (a forced rerun supersedes the older one)."""
    latest = frame.groupby("state_config_hash")["state_run_id"].transform("max")
    return frame[frame["state_run_id"] == latest]


def _stem(key: tuple) -> str:
    """A file and label stem unique to a group: its readable part and a hash of the whole key."""
    task, dataset, model, mode = key[:4]
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:8]
    return slug(f"{task}-{dataset}-{model}-{mode}-sigma{key[6]:g}-{digest}")


def _groups(db):
    """(key, stem, rows, epochs, variants) of every diagnostics group, the latest state runs' only."""
    frame = db.diagnostics_frame()
    if frame.empty:
        return
    for key, group in _latest_state_runs(frame).groupby(GROUP, sort=True):
        yield key, _stem(key), group, sorted(group["epoch"].unique()), order_estimators(group["variant"].unique())


def _point_label(epoch: int, epochs: list[int]) -> str:
    where = "start" if epoch == 0 else "end" if epoch == max(epochs) else "middle"
    return f"epoch {epoch} ({where})"


def _per_batch(group, measure: str = "cosine"):
    """variant x epoch x probe batch -> the measure's mean over layers."""
    return group.groupby(["variant", "epoch", "probe_batch"])[measure].mean()


def _values(per_batch, variant: str, epoch: int) -> np.ndarray:
    """The per-batch values of one estimator at one point, NaNs (undefined measures) dropped."""
    try:
        values = per_batch.loc[(variant, epoch)].to_numpy(dtype=float)
    except KeyError:
        return np.array([])
    return values[~np.isnan(values)]


def _interval(values: np.ndarray) -> Optional[tuple[float, float]]:
    if len(values) < 2 or np.ptp(values) == 0:
        return None
    return confidence_interval(values, np.zeros_like(values))


def _mean_cell(values: np.ndarray) -> Cell:
    if not len(values):
        return Cell()
    interval = _interval(values)
    text = f"{values.mean():.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
    return Cell(text=f"{text} (n={len(values)})")


def _describe(group, runs: dict[int, str]) -> str:
    first = group.iloc[0]
    run_ids = sorted(set(group["state_run_id"]))
    states = ", ".join(f"run {r}" + (f" ({runs[r]})" if r in runs else "") for r in run_ids)
    median_se = float(group["reference_rel_se"].median())
    median_cos_se = float(group["cosine_se"].median()) if group["cosine_se"].notna().any() else math.nan
    return (f"reference: the gradient of the loss smoothed by N(0, sigma^2) noise on every binarized activation "
            f"from the layer on, sigma = {first['sigma']:g} x the layer's input std; {first['units']} units per "
            f"layer and probe batch, {first['samples']} noise draws each, {group['probe_batch'].nunique()} probe "
            f"batches of {first['batch_size']} training examples (seed {first['seed']}); model states: "
            f"{first['mode']} ({states}). Median relative standard error of the reference per layer "
            f"{median_se:.2f}; median standard error of a layer's cosine {median_cos_se:.2f} (the mean over "
            "layers is far tighter); intervals are over the probe batches")


def build_diagnostic_tables(db) -> list[ReportTable]:
    tables = []
    for key, stem, group, epochs, variants in _groups(db):
        task, dataset, model = key[:3]
        runs = _state_runs(db, set(group["state_run_id"]))
        per_batch = _per_batch(group)
        points = [_point_label(e, epochs) for e in epochs]
        description = _describe(group, runs)
        cosine_cells = [[_mean_cell(_values(per_batch, v, e)) for e in epochs] for v in variants]
        tables.append(ReportTable(
            task=task, preset="", kind="diagnostics", title=f"Gradient diagnostics, {task} {dataset} / {model}: "
            "cosine to the reference gradient (mean over layers)", label=f"tab:diag-{stem}-cosine",
            rows=variants, columns=points, cells=cosine_cells, description=description))
        tables.append(_delta_table(task, dataset, model, stem, per_batch, variants, epochs, points))
        last = group[group["epoch"] == epochs[-1]]
        measure_cells = [[_mean_cell(_values(_per_batch(last, m), v, epochs[-1])) for m in MEASURE_LABELS]
                         for v in variants]
        tables.append(ReportTable(
            task=task, preset="", kind="diagnostics", title=f"Gradient diagnostics, {task} {dataset} / {model}: "
            f"every measure at {points[-1]}", label=f"tab:diag-{stem}-measures", rows=variants,
            columns=list(MEASURE_LABELS.values()), cells=measure_cells,
            description="means over layers, then over probe batches [95 % CI]; rel. error = ||g - g*|| / ||g*|| "
                        "less the reference's noise; sign agreement on units where g* differs from 0 by > 2 se; "
                        "norm ratio = ||g|| / ||g*|| (bench/diagnostics/measures.py)"))
    return tables


def _state_runs(db, run_ids: set[int]) -> dict[int, str]:
    """run id -> "estimator, seed S" of the runs whose states were measured."""
    runs = {int(run_id): db.get_run(int(run_id)) for run_id in run_ids}
    return {run_id: f"{run.estimator}, seed {run.seed}" for run_id, run in runs.items() if run is not None}


def _delta_table(task, dataset, model, stem, per_batch, variants, epochs, points) -> ReportTable:
    """Each estimator's per-batch mean cosine minus the reference's, paired by probe batch."""
    from scipy import stats

    others = [v for v in variants if v != REFERENCE]
    cells: dict[str, list[Cell]] = {v: [] for v in others}
    for epoch in epochs:
        deltas, pvalues = {}, {}
        for variant in others:
            try:
                pairs = per_batch.loc[(variant, epoch)].to_frame("mine").join(
                    per_batch.loc[(REFERENCE, epoch)].to_frame("reference"), how="inner").dropna()
            except KeyError:
                continue
            if len(pairs) < 2:
                continue
            diffs = (pairs["mine"] - pairs["reference"]).to_numpy(dtype=float)
            deltas[variant] = diffs
            if np.ptp(diffs) > 0:
                pvalues[variant] = float(stats.ttest_rel(pairs["mine"], pairs["reference"]).pvalue)
        adjusted = dict(zip(pvalues, holm(list(pvalues.values()))))
        for variant in others:
            diffs = deltas.get(variant)
            cells[variant].append(Cell() if diffs is None else Cell(
                mean=float(diffs.mean()), delta=True, decimals=3, interval=_interval(diffs), n=len(diffs),
                significant=adjusted.get(variant, 1.0) < ALPHA))
    has_reference = REFERENCE in per_batch.index.get_level_values("variant")
    return ReportTable(
        task=task, preset="", kind="diagnostics", title=f"Gradient diagnostics, {task} {dataset} / {model}: "
        f"cosine minus {REFERENCE}'s", label=f"tab:diag-{stem}-delta", rows=others, columns=points,
        cells=[cells[v] for v in others], notes=[] if has_reference else [f"no {REFERENCE} rows: no differences"],
        description=(f"paired by probe batch (same units, same reference): mean [95 % t CI] (n = probe batches); "
                     f"* = paired t-test Holm-adjusted over the estimators of the point below {ALPHA:g}"))


def plot_diagnostics(db, out_dir: Path) -> list[Path]:
    """Per group: cosine per layer (a panel per training point) and mean cosine over training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    for key, stem, group, epochs, variants in _groups(db):
        task, dataset, model = key[:3]
        out_dir.mkdir(parents=True, exist_ok=True)

        fig = Figure(figsize=(4.2 * len(epochs), 3.8))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(epochs), sharey=True, squeeze=False)[0]
        for ax, epoch in zip(axes, epochs):
            at = group[group["epoch"] == epoch]
            for variant in variants:
                layers = at[at["variant"] == variant].groupby("layer_index")["cosine"].mean()
                ax.plot(layers.index, layers.to_numpy(), marker=".", label=variant,
                        linewidth=2.2 if variant == "surge" else 1.2)
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_title(_point_label(epoch, epochs))
            ax.set_xlabel("binarized layer (forward order)")
        axes[0].set_ylabel("cosine to the reference")
        axes[-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{task} {dataset} / {model}: cosine per layer (mean over probe batches)")
        fig.tight_layout()
        path = out_dir / f"diagnostics_layers_{stem}.png"
        fig.savefig(path, dpi=120)
        paths.append(path)

        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        per_batch = _per_batch(group)
        for variant in variants:
            means, errors = [], []
            for epoch in epochs:
                values = _values(per_batch, variant, epoch)
                interval = _interval(values) if len(values) else None
                means.append(values.mean() if len(values) else np.nan)
                errors.append((interval[1] - interval[0]) / 2 if interval else 0.0)
            ax.errorbar(epochs, means, yerr=errors, marker="o", capsize=3, label=variant,
                        linewidth=2.2 if variant == "surge" else 1.2)
        ax.set_xlabel("epoch of the state run (0: before training)")
        ax.set_ylabel("mean cosine over layers (95 % CI)")
        ax.set_title(f"{task} {dataset} / {model}: cosine to the reference over training")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"diagnostics_training_{stem}.png"
        fig.savefig(path, dpi=120)
        paths.append(path)
    return paths
