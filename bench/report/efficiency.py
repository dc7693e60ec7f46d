"""Efficiency tables: what every finished run stored about its cost, per (task, preset,
dataset, model), with each estimator's step time and peak memory as a ratio to clipped_ste.

Columns: parameters, binary parameters, binary OPs (BOPs), float OPs (FLOPs), OPs =
BOPs / 64 + FLOPs (the convention of XNOR-Net, Bi-Real Net and ReActNet: 64 binary
operations cost one float operation on a 64-bit CPU), mean train-step time (ms) and peak
memory (MiB) over the seeds, their ratios to clipped_ste, and the device. A ratio is shown
only where the estimator's runs and clipped_ste's ran on one and the same device of one host
(timings from different machines do not divide); elsewhere it is a dash and a note says why.
Runs of a sweep are timed one after another, under whatever else the machine did meanwhile:
``benchmarks/estimator_cost.py`` measures the ratios side by side, with their noise.
"""
from __future__ import annotations

from typing import Optional

from bench.report.tables import Cell, ReportTable, order_estimators, slug, with_variants

REFERENCE = "clipped_ste"
BINARY_OPS_PER_FLOAT_OP = 64
COLUMNS = ("params", "binary params", "BOPs", "FLOPs", "OPs", "step ms", f"step x {REFERENCE}", "peak MiB",
           f"peak x {REFERENCE}", "device")


def si(value: Optional[float]) -> Optional[str]:
    """1234567 -> "1.23M" (k, M, G, T), three significant digits."""
    if value is None or value != value:
        return None
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _one(values) -> Optional[float]:
    """A count every seed shares (parameters, OPs): the median, None where no run stored it."""
    values = values.dropna()
    return float(values.median()) if len(values) else None


def _mean(values) -> Optional[float]:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def _device(runs) -> Optional[str]:
    """``cuda (host)``, where every run of the group ran on that device of that host."""
    devices = {f"{d} ({h})" for d, h in zip(runs["device"], runs["host"]) if isinstance(d, str)}
    return devices.pop() if len(devices) == 1 and len(runs["device"].dropna()) == len(runs) else None


def _ratio(mine: Optional[float], reference: Optional[float]) -> Cell:
    if mine is None or reference is None or reference <= 0:
        return Cell()
    return Cell(text=f"{mine / reference:.2f}x")


def build_efficiency_tables(db, preset: Optional[str] = None) -> list[ReportTable]:
    """One table per (task, preset, dataset, model) with finished runs; none for an empty database."""
    frame = with_variants(db.runs_frame())
    if not frame.empty and preset is not None:
        frame = frame[frame["preset"] == preset]
    tables = []
    for (task, preset_name, dataset, model), group in frame.groupby(["task", "preset", "dataset", "model"],
                                                                   sort=True):
        estimators = order_estimators(group["estimator"].unique())
        by_estimator = {e: group[group["estimator"] == e] for e in estimators}
        reference = by_estimator.get(REFERENCE)
        reference_device = _device(reference) if reference is not None else None
        rows, notes = [], []
        for estimator in estimators:
            runs = by_estimator[estimator]
            binary_ops, float_ops = _one(runs["binary_ops"]), _one(runs["float_ops"])
            ops = binary_ops / BINARY_OPS_PER_FLOAT_OP + float_ops if None not in (binary_ops, float_ops) else None
            step, peak, device = _mean(runs["train_step_ms"]), _mean(runs["peak_memory_mb"]), _device(runs)
            comparable = reference is not None and device is not None and device == reference_device
            if reference is not None and not comparable:
                notes.append(f"{estimator}: no ratio to {REFERENCE}, whose runs ran on "
                             f"{reference_device or 'several devices'}, while these ran on {device or 'several devices'}")
            rows.append([
                Cell(text=si(_one(runs["n_params"]))), Cell(text=si(_one(runs["n_binary_params"]))),
                Cell(text=si(binary_ops)), Cell(text=si(float_ops)), Cell(text=si(ops)),
                Cell(text=f"{step:.1f} (n={runs['train_step_ms'].notna().sum()})") if step is not None else Cell(),
                _ratio(step, _mean(reference["train_step_ms"])) if comparable else Cell(),
                Cell(text=f"{peak:.0f}") if peak is not None else Cell(),
                _ratio(peak, _mean(reference["peak_memory_mb"])) if comparable else Cell(),
                Cell(text=device),
            ])
        if reference is None:
            notes.append(f"no {REFERENCE} run here: no ratios")
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="efficiency",
            title=f"{task}, preset {preset_name}: cost on {dataset} / {model}",
            label=f"tab:{slug(f'{task}-{preset_name}-{dataset}-{model}')}-efficiency", rows=estimators,
            columns=list(COLUMNS), cells=rows, notes=notes,
            description=(f"parameters, binary parameters, binary and float operations of one forward pass, "
                         f"OPs = BOPs/{BINARY_OPS_PER_FLOAT_OP} + FLOPs; mean train-step time and peak memory over "
                         f"the seeds (n = runs that stored a step time), their ratios to {REFERENCE} on the same "
                         "device of one host; peak memory is the largest CUDA allocation on a GPU, the process's "
                         "peak resident memory on a CPU. Runs are timed one after another under the machine's load "
                         "of the moment: benchmarks/estimator_cost.py measures ratios side by side"),
        ))
    return tables
