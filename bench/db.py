"""The results database: SQLAlchemy 2 models and the ResultsDB facade.

SQLite file by default (``sqlite:///results/bench.sqlite``, WAL mode, busy timeout),
any SQLAlchemy URL (PostgreSQL: ``postgresql+psycopg://user@host/db``) through
``--db`` or the ``BENCH_DB`` environment variable.

Tables:
    runs      one row per execution of a run config: config + hash, status, times,
              cost figures (params, OPs, step time, peak memory), provenance
    metrics   final metrics of a run, each with its direction (higher_is_better)
    curves    per-epoch (or per-evaluation) values of a run, for learning curves
"""
from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, delete, event, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

DEFAULT_DB_URL = "sqlite:///results/bench.sqlite"
STATUSES = ("running", "finished", "failed", "diverged", "interrupted")
#: a running run whose heartbeat is older than this is taken as dead (killed, node lost)
STALE_AFTER_S = 180.0
WRITE_ATTEMPTS = 8
T = TypeVar("T")


class DatabaseError(RuntimeError):
    """A database URL that cannot be opened; the message says which and why."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    config: Mapped[dict] = mapped_column(JSON)
    task: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    estimator: Mapped[str] = mapped_column(String(64), index=True)
    preset: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    scope: Mapped[Optional[dict]] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    n_params: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    n_binary_params: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    binary_ops: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    float_ops: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    train_step_ms: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    peak_memory_mb: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    provenance: Mapped[Optional[dict]] = mapped_column(JSON, nullable=True)

    metrics: Mapped[list["Metric"]] = relationship(back_populates="run", cascade="all, delete-orphan")
    curves: Mapped[list["CurvePoint"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)

    run: Mapped[Run] = relationship(back_populates="metrics")


class CurvePoint(Base):
    __tablename__ = "curves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="curves")


def resolve_db_url(url: Optional[str] = None) -> str:
    return url or os.environ.get("BENCH_DB") or DEFAULT_DB_URL


def _enable_sqlite_wal(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every sqlite test
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def open_engine(url: Optional[str] = None) -> Engine:
    """Open (and create the schema of) a results database; DatabaseError if it cannot."""
    url = resolve_db_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"malformed database URL {url!r}; use e.g. sqlite:///results/bench.sqlite or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {folder}: {exc.strerror}") from None
    try:
        engine = create_engine(url, future=True, pool_pre_ping=parsed.get_backend_name() != "sqlite")
        if parsed.get_backend_name() == "sqlite":
            _enable_sqlite_wal(engine)
        _create_schema(engine)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"database driver {exc.name!r} missing for {parsed.drivername!r}: pip install -e '.[postgres]'"
        ) from None
    except (OperationalError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {reason}") from None
    return engine


def _create_schema(engine: Engine) -> None:
    # Several processes opening a new PostgreSQL database at once race on CREATE TABLE;
    # the loser sees a duplicate type/table error, and the schema exists a moment later.
    for attempt in range(WRITE_ATTEMPTS):
        try:
            Base.metadata.create_all(engine)
            return
        except (IntegrityError, ProgrammingError):
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _dead_here(provenance: Optional[dict]) -> bool:
    """True when the run's process was on this host and is gone."""
    info = provenance or {}
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _transient(exc: DBAPIError) -> bool:
    """Errors another writer causes, worth retrying: SQLite's lock, PostgreSQL's serialization/deadlock."""
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return exc.connection_invalidated or any(
        word in text for word in ("database is locked", "database table is locked", "busy", "deadlock",
                                  "could not serialize", "server closed the connection"))


class ResultsDB:
    """All reads and writes of results go through here."""

    def __init__(self, url: Optional[str] = None) -> None:
        self.url = resolve_db_url(url)
        self.engine = open_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            with session.begin():
                yield session

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; retry it when another writer holds a lock.

        A transaction is all or nothing, so a retried write never leaves half a row.
        """
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.session() as s:
                    return work(s)
            except DBAPIError as exc:
                if attempt == WRITE_ATTEMPTS - 1 or not _transient(exc):
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 2.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # -- writes -------------------------------------------------------------------------
    def start_run(self, **fields: Any) -> int:
        now = utcnow()

        def work(s: Session) -> int:
            run = Run(status="running", started_at=now, heartbeat_at=now, **fields)
            s.add(run)
            s.flush()
            return run.id

        return self._write(work)

    def update_run(self, run_id: int, **fields: Any) -> None:
        def work(s: Session) -> None:
            run = s.get(Run, run_id)
            for key, value in fields.items():
                setattr(run, key, value)
            run.heartbeat_at = utcnow()

        self._write(work)

    def heartbeat(self, run_id: int) -> None:
        self.update_run(run_id)

    def add_curve_points(self, run_id: int, epoch: int, step: int, values: dict[str, float]) -> None:
        def work(s: Session) -> None:
            for name, value in values.items():
                s.add(CurvePoint(run_id=run_id, epoch=epoch, step=step, name=name, value=float(value)))
            s.get(Run, run_id).heartbeat_at = utcnow()

        self._write(work)

    def finish_run(self, run_id: int, status: str, metrics: list[dict] | None = None,
                   error: str | None = None, **fields: Any) -> None:
        """Close a run: its final status, metrics (name, value, higher_is_better, primary)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")

        def work(s: Session) -> None:
            run = s.get(Run, run_id)
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            run.wall_time_s = (run.finished_at - run.started_at).total_seconds()
            for key, value in fields.items():
                setattr(run, key, value)
            for metric in metrics or []:
                s.add(Metric(run_id=run_id, **metric))

        self._write(work)

    def delete_curve_points_after(self, run_id: int, epoch: int) -> None:
        """Drop the curve points a killed run wrote after its last checkpoint (it redoes those epochs)."""
        self._write(lambda s: s.execute(delete(CurvePoint).where(CurvePoint.run_id == run_id,
                                                                 CurvePoint.epoch > epoch)))

    def mark_stale_interrupted(self, stale_after_s: Optional[float] = None) -> list[int]:
        """Mark ``running`` rows interrupted whose heartbeat stopped (a killed process, a lost
        node: older than ``stale_after_s``, default $BENCH_STALE_AFTER_S or 180 s) or whose
        process, on this host, no longer exists."""
        if stale_after_s is None:
            stale_after_s = float(os.environ.get("BENCH_STALE_AFTER_S", STALE_AFTER_S))
        limit = utcnow() - dt.timedelta(seconds=stale_after_s)

        def work(s: Session) -> list[int]:
            running = list(s.scalars(select(Run).where(Run.status == "running")))
            stale = [run for run in running if run.heartbeat_at < limit or _dead_here(run.provenance)]
            for run in stale:
                run.status = "interrupted"
                run.error = f"no heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC (process killed?)"
                run.finished_at = run.heartbeat_at
            return [run.id for run in stale]

        return self._write(work)

    # -- reads --------------------------------------------------------------------------
    def latest_run(self, config_hash: str, status: str) -> Optional[Run]:
        with self.session() as s:
            return s.scalars(
                select(Run).where(Run.config_hash == config_hash, Run.status == status)
                .order_by(Run.id.desc()).limit(1)
            ).first()

    def finished_run(self, config_hash: str) -> Optional[Run]:
        with self.session() as s:
            return s.scalars(
                select(Run).where(Run.config_hash == config_hash, Run.status == "finished")
                .order_by(Run.id.desc()).limit(1)
            ).first()

    def get_run(self, run_id: int) -> Optional[Run]:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is not None:  # load the children before the session closes
                run.metrics, run.curves  # noqa: B018
            return run

    def list_runs(self, status: Optional[str] = None, task: Optional[str] = None) -> list[Run]:
        with self.session() as s:
            query = select(Run).order_by(Run.id)
            if status:
                query = query.where(Run.status == status)
            if task:
                query = query.where(Run.task == task)
            runs = list(s.scalars(query))
            for run in runs:
                run.metrics  # noqa: B018
            return runs

    def metrics_frame(self):
        """Final metrics of finished runs, one row per (run, metric), as a pandas DataFrame.

        Only the latest finished execution of each config hash counts, so a forced
        rerun replaces its predecessor instead of adding a seed.
        """
        return self._finished_frame(
            Metric, [Metric.name, Metric.value, Metric.higher_is_better, Metric.primary],
            ["metric", "value", "higher_is_better", "primary"],
        )

    def curves_frame(self):
        """Curves of finished runs (latest execution per config hash) as a DataFrame."""
        return self._finished_frame(
            CurvePoint, [CurvePoint.epoch, CurvePoint.step, CurvePoint.name, CurvePoint.value],
            ["epoch", "step", "curve", "value"],
        )

    def _finished_frame(self, child, child_columns: list, names: list[str]):
        """Finished runs joined with a child table; run keys + ``names`` + estimator_hparams."""
        import pandas as pd

        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.config_hash, Run.task, Run.dataset, Run.model, Run.estimator, Run.preset,
                       Run.seed, *child_columns, Run.config)
                .join(child, child.run_id == Run.id)
                .where(Run.status == "finished")
            ).all()
        rows = [(*row[:-1], (row[-1] or {}).get("estimator_hparams", {})) for row in rows]
        columns = ["run_id", "config_hash", "task", "dataset", "model", "estimator", "preset", "seed",
                   *names, "estimator_hparams"]
        frame = pd.DataFrame(rows, columns=columns)
        if frame.empty:
            return frame
        latest = frame.groupby("config_hash")["run_id"].transform("max")
        return frame[frame["run_id"] == latest].reset_index(drop=True)
