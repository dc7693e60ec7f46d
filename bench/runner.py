"""Execute one RunConfig: skip if done, record the run, run the task, close the row.

Whatever happens, the row is closed: finished (with metrics), diverged (a NaN or
inf loss/metric), failed (the exception's one-line summary) or interrupted
(Ctrl-C, SIGTERM). Validation happens before the row is created, so bad input leaves no row.
The row is taken atomically (at most one ``running`` row per config hash, enforced by the
database), so the same config started twice at once runs once and the other start is refused.

A run that was killed outright (kill -9, a lost node) cannot close its row: a heartbeat
thread refreshes ``heartbeat_at`` while it runs, and the next execution against the same
database marks rows with a stale heartbeat (or, on this host, a dead process) interrupted.
Executing the config of an interrupted run resumes that row from its last checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

from bench import distributed, identity, provenance
from bench.checkpoint import DEFAULT_CHECKPOINT_DIR, Checkpointer, CorruptCheckpoint
from bench.config import RunConfig
from bench.plugins import get_task
from bench.states import ModelStates
from bench.db import DatabaseError, ResultsDB, RunClaimed, stale_limit_s
from bench.errors import Diverged, RunInterrupted, UserError
from bench.api import Reporter, RunContext, TaskResult, Timeline
from bench.training import pick_device
from bench.validation import check_values

HEARTBEAT_EVERY_S = 30.0

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


class _Heartbeat:
    """Refreshes the run's heartbeat from a daemon thread, every 30 s or a quarter of the
    stale limit, whichever is shorter (a run must never look dead while it lives)."""

    def __init__(self, db: ResultsDB, run_id: int) -> None:
        every = min(HEARTBEAT_EVERY_S, stale_limit_s() / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(db, run_id, every), daemon=True)

    def _beat(self, db: ResultsDB, run_id: int, every: float) -> None:
        while not self._stop.wait(every):
            try:
                db.heartbeat(run_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                pass

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)  # a beat in flight ends on its own: it writes only while we hold the row


def _follow(config: RunConfig, task, quiet: bool, device: Optional[str], checkpoint_dir: Optional[str]) -> RunOutcome:
    """A rank other than 0 of a multi-process run: rank 0 decides and writes; this rank trains along."""
    decision = distributed.broadcast(None)
    if decision != "run":
        return RunOutcome(None, "skipped" if decision == "skip" else "failed", {})
    checkpoint = Checkpointer(Path(checkpoint_dir) / config.hash() if checkpoint_dir else None)
    result = task.run(config, RunContext(device=pick_device(device), checkpoint=checkpoint, quiet=True))
    return RunOutcome(None, "finished", dict(result.metrics))


def metric_direction(name: str, specs) -> bool:
    """Whether higher is better for a stored metric: its family metric's direction, also under
    the ``val_`` prefix and the ``@best_val`` / ``@best_test`` suffixes; ``best_val_epoch``,
    ``best_test_epoch``, ``best_val_step`` and ``best_test_step`` (counts) are "higher"."""
    from bench.engine import BEST_TEST, BEST_VAL, VALIDATION_PREFIX

    if name in ("best_val_epoch", "best_test_epoch", "best_val_step", "best_test_step"):
        return True
    base = name.removesuffix(BEST_VAL).removesuffix(BEST_TEST).removeprefix(VALIDATION_PREFIX)
    return {spec.key: spec.higher_is_better for spec in specs}[base]


def execute(config: RunConfig, db: Optional[ResultsDB], force: bool = False, quiet: bool = False,
            device: Optional[str] = None, checkpoint_dir: Optional[str] = DEFAULT_CHECKPOINT_DIR,
            checked: bool = False, started_at: Optional[float] = None,
            states_dir: Optional[str] = None) -> RunOutcome:
    """Run one config and record it (in a multi-process run, only rank 0 touches ``db``).

    ``checked``: the caller built the config and ran ``bench.validation.check_runs`` on it (the
    CLI); otherwise (a sweep worker, a Slurm job) its values and data are checked here first.
    ``started_at``: when the executor handed the run over (time.time(); default now), the start
    of the harness overhead stored as ``startup_s``. ``states_dir``: keep the model's weights
    before training and after every epoch there (:mod:`bench.states`); a skipped run keeps none.
    """
    started_at = time.time() if started_at is None else started_at
    task = get_task(config.task)
    if not checked:
        check_values(config, task)
        task.check(config)
    if not distributed.is_main():
        return _follow(config, task, quiet, device, checkpoint_dir)
    try:
        claim = _claim(config, task, db, force, device, checkpoint_dir)
    except BaseException:
        distributed.broadcast("abort")
        raise
    if isinstance(claim, RunOutcome):
        distributed.broadcast("skip")
        return claim
    return _execute(config, task, db, *claim, quiet, device, started_at, ModelStates.of(states_dir, config.hash()))


def _claim(config: RunConfig, task, db: ResultsDB, force: bool, device: Optional[str],
           checkpoint_dir: Optional[str]) -> RunOutcome | tuple[int, Checkpointer, bool]:
    """Close dead runs, then take this config's ``running`` row in one transaction (a new row,
    or the interrupted one to resume), or return the outcome of a finished config."""
    config_hash = config.hash()
    db.require_writable()
    db.mark_stale_interrupted()
    db.adopt_rows(config.hash_rule1(), config_hash, task.version)
    done = db.finished_run(config_hash)
    if done is not None and not force:
        return _skipped(db, done.id)
    checkpoint = Checkpointer(Path(checkpoint_dir) / config_hash if checkpoint_dir else None)
    interrupted = None if force else db.latest_run(config_hash, "interrupted")
    legacy = _rule1_checkpoint(checkpoint, checkpoint_dir, interrupted)
    device_name = str(pick_device(device))
    if distributed.world_size() > 1:
        device_name += f" x {distributed.world_size()} processes"
    resuming = interrupted is not None and (checkpoint.exists() or legacy is not None)
    try:
        if resuming:
            run_id, earlier = interrupted.id, interrupted.provenance or {}
            db.resume_run(run_id, config_hash, provenance={**earlier, **provenance.collect(device_name),
                                                           "resumed": earlier.get("resumed", 0) + 1})
        else:
            run_id = db.start_run(
                config_hash=config_hash, config=config.to_dict(), task=config.task, task_version=task.version,
                dataset=config.dataset, model=config.model, estimator=config.estimator, preset=config.preset,
                seed=config.seed, provenance=provenance.collect(device_name), **identity.labels(config),
            )
    except RunClaimed as exc:
        live = exc.live
        where = (f"run {live.id}, heartbeat {live.heartbeat_at:%H:%M:%S} UTC, host "
                 f"{(live.provenance or {}).get('host')}, pid {(live.provenance or {}).get('pid')}") if live else "elsewhere"
        raise UserError(f"this config is already running ({where}); wait for it to end (a run whose process "
                        f"died is marked interrupted after {stale_limit_s():g} s without a heartbeat)") from None
    try:
        done = None if force or resuming else db.finished_run(config_hash)
        if resuming and legacy is not None and not checkpoint.exists():  # ours now: under its new name
            shutil.rmtree(checkpoint.folder, ignore_errors=True)
            legacy.rename(checkpoint.folder)
        if done is not None:  # it finished between the check and the claim: give the new row back
            db.discard_run(run_id)
    except BaseException:  # the row was claimed a moment ago: give it back rather than leave it running
        if resuming:
            db.finish_run(run_id, "interrupted", error="stopped while resuming; rerun to resume")
        else:
            db.discard_run(run_id)
        raise
    return _skipped(db, done.id) if done is not None else (run_id, checkpoint, resuming)


def _rule1_checkpoint(checkpoint: Checkpointer, checkpoint_dir: Optional[str], interrupted) -> Optional[Path]:
    """The checkpoint folder of an interrupted row written before identity rule 2, named by its
    old hash (bench.identity), where the current name has none; the row's holder moves it."""
    old = ((interrupted.provenance or {}) if interrupted is not None else {}).get("config_hash_rule1")
    if checkpoint.folder is None or checkpoint.exists() or not old or not checkpoint_dir:
        return None
    folder = Path(checkpoint_dir) / old
    return folder if (folder / "last.pt").is_file() else None


def _skipped(db: ResultsDB, run_id: int) -> RunOutcome:
    return RunOutcome(run_id, "skipped", {m.name: m.value for m in db.get_run(run_id).metrics})


def _prepare_checkpoint(db: ResultsDB, run_id: int, checkpoint: Checkpointer, resuming: bool) -> None:
    """Only the holder of the row touches the checkpoint folder: it discards it for a fresh
    start, or verifies it for a resume (a file that cannot be loaded is moved aside and the
    run starts again, with a line saying so)."""
    if not resuming:
        checkpoint.discard()
        return
    try:
        checkpoint.verify()
    except CorruptCheckpoint as exc:
        moved = checkpoint.quarantine()
        note = f"{exc}; moved to {moved}; run {run_id} restarts from scratch"
        print(f"bench: warning: {note}", file=sys.stderr, flush=True)
        db.delete_curve_points_after(run_id, 0)
        db.update_run(run_id, provenance={**(db.get_run(run_id).provenance or {}), "restarted_from_scratch": note})


def _execute(config: RunConfig, task, db: ResultsDB, run_id: int, checkpoint: Checkpointer, resuming: bool,
             quiet: bool, device: Optional[str], started_at: float, states: ModelStates) -> RunOutcome:
    """From the claimed row to its close: whatever happens here, the row does not stay running."""
    if not resuming:
        states.claim(run_id)
    context = RunContext(
        device=pick_device(device), checkpoint=checkpoint, quiet=quiet, states=states,
        reporter=Reporter(on_epoch=lambda epoch, step, values: db.add_curve_points(run_id, epoch, step, values),
                          on_info=lambda fields: db.update_run(run_id, **fields),
                          on_resume=lambda epoch: db.delete_curve_points_after(run_id, epoch)),
        timeline=Timeline(started=started_at),
    )
    told_ranks = False
    try:
        with _Heartbeat(db, run_id):
            _prepare_checkpoint(db, run_id, checkpoint, resuming)
            told_ranks = True  # before the broadcast: an interrupt after it must not send a second one
            distributed.broadcast("run")  # the other ranks start once the checkpoint folder is settled
            result: TaskResult = task.run(config, context)
        returned_at = time.time()
        bad = {k: v for k, v in result.metrics.items() if not math.isfinite(v)}
        if bad:
            raise Diverged(f"non-finite final metrics {bad}")
        specs = task.metric_specs(config.dataset)
        metrics = [dict(name=name, value=float(value), higher_is_better=metric_direction(name, specs),
                        primary=(name == specs[0].key)) for name, value in result.metrics.items()]
    except DatabaseError as exc:  # the row cannot be closed: say so, keep the checkpoint
        kept = f"; its last checkpoint stays in {checkpoint.folder}" if checkpoint.exists() else ""
        raise DatabaseError(f"run {run_id} stopped: {exc}{kept}") from None
    except Diverged as exc:
        db.finish_run(run_id, "diverged", error=str(exc))
        checkpoint.discard()
        return RunOutcome(run_id, "diverged", {}, str(exc))
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        reason = f"stopped by {signal.Signals(signum).name}"
        resumable = checkpoint.exists()
        db.finish_run(run_id, "interrupted", error=reason + ("; rerun to resume" if resumable else ""))
        raise RunInterrupted(f"run {run_id} {reason} and marked interrupted; "
                             + ("rerun the same command to resume it" if resumable else
                                "no checkpoint yet, a rerun starts it again"), signum) from None
    except Exception as exc:  # noqa: BLE001 - every crash is recorded, then reported
        db.finish_run(run_id, "failed", error=_one_line(exc))
        return RunOutcome(run_id, "failed", {}, _one_line(exc))
    finally:
        if not told_ranks:
            distributed.broadcast("abort")

    fields = {k: getattr(result, k) for k in _RESULT_FIELDS if getattr(result, k) is not None}
    if result.scope is not None:
        fields["scope"] = result.scope
    if context.timeline.first_step is not None:
        fields["startup_s"] = context.timeline.first_step - started_at
    fields["teardown_s"] = time.time() - returned_at
    db.finish_run(run_id, "finished", metrics=metrics, **fields)
    checkpoint.discard()  # only once the row is written: a failed write keeps the state
    return RunOutcome(run_id, "finished", dict(result.metrics))
