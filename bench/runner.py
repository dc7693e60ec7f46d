"""Execute one RunConfig: skip if done, record the run, run the task, close the row.

Whatever happens, the row is closed: finished (with metrics), diverged (a NaN or
inf loss/metric), failed (the exception's one-line summary) or interrupted
(Ctrl-C). Validation happens before the row is created, so bad input leaves no row.
"""
from __future__ import annotations

import dataclasses
import math
import traceback
from typing import Optional

from bench import provenance
from bench.config import RunConfig, get_task
from bench.db import ResultsDB
from bench.errors import Diverged
from bench.task_api import Reporter, TaskResult
from bench.training import pick_device

_RESULT_FIELDS = ("n_params", "n_binary_params", "binary_ops", "float_ops", "train_step_ms", "peak_memory_mb")


@dataclasses.dataclass
class RunOutcome:
    run_id: Optional[int]
    status: str            # finished | diverged | failed | interrupted | skipped
    metrics: dict[str, float]
    error: Optional[str] = None


def _one_line(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename.split('/')[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{where}"


def execute(config: RunConfig, db: ResultsDB, force: bool = False, quiet: bool = False,
            device: Optional[str] = None) -> RunOutcome:
    task = get_task(config.task)
    task.check(config)
    config_hash = config.hash()
    done = db.finished_run(config_hash)
    if done is not None and not force:
        return RunOutcome(done.id, "skipped", {m.name: m.value for m in db.get_run(done.id).metrics})

    device_name = str(pick_device(device))
    run_id = db.start_run(
        config_hash=config_hash, config=config.to_dict(), task=config.task, task_version=task.version,
        dataset=config.dataset, model=config.model, estimator=config.estimator, preset=config.preset,
        seed=config.seed, provenance=provenance.collect(device_name),
    )
    reporter = Reporter(
        on_epoch=lambda epoch, step, values: db.add_curve_points(run_id, epoch, step, values),
        on_info=lambda fields: db.update_run(run_id, **fields),
        quiet=quiet,
    )
    try:
        result: TaskResult = task.run(config, reporter, device=device)
        bad = {k: v for k, v in result.metrics.items() if not math.isfinite(v)}
        if bad:
            raise Diverged(f"non-finite final metrics {bad}")
    except Diverged as exc:
        db.finish_run(run_id, "diverged", error=str(exc))
        return RunOutcome(run_id, "diverged", {}, str(exc))
    except KeyboardInterrupt:
        db.finish_run(run_id, "interrupted", error="interrupted by the user (KeyboardInterrupt)")
        raise
    except Exception as exc:  # noqa: BLE001 - every crash is recorded, then reported
        db.finish_run(run_id, "failed", error=_one_line(exc))
        return RunOutcome(run_id, "failed", {}, _one_line(exc))

    specs = {s.name: s for s in task.metric_specs(config.dataset)}
    metrics = [
        dict(name=name, value=float(value), higher_is_better=specs[name].higher_is_better,
             primary=(name == result.primary_metric))
        for name, value in result.metrics.items()
    ]
    fields = {k: getattr(result, k) for k in _RESULT_FIELDS if getattr(result, k) is not None}
    if result.scope is not None:
        fields["scope"] = result.scope
    db.finish_run(run_id, "finished", metrics=metrics, **fields)
    return RunOutcome(run_id, "finished", dict(result.metrics))
