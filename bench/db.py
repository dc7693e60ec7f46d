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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

DEFAULT_DB_URL = "sqlite:///results/bench.sqlite"
STATUSES = ("running", "finished", "failed", "diverged", "interrupted")


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
        engine = create_engine(url, future=True)
        if parsed.get_backend_name() == "sqlite":
            _enable_sqlite_wal(engine)
        Base.metadata.create_all(engine)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"database driver {exc.name!r} missing for {parsed.drivername!r}: pip install -e '.[postgres]'"
        ) from None
    except (OperationalError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {reason}") from None
    return engine


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

    # -- writes -------------------------------------------------------------------------
    def start_run(self, **fields: Any) -> int:
        now = utcnow()
        with self.session() as s:
            run = Run(status="running", started_at=now, heartbeat_at=now, **fields)
            s.add(run)
            s.flush()
            return run.id

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            for key, value in fields.items():
                setattr(run, key, value)
            run.heartbeat_at = utcnow()

    def add_curve_points(self, run_id: int, epoch: int, step: int, values: dict[str, float]) -> None:
        with self.session() as s:
            for name, value in values.items():
                s.add(CurvePoint(run_id=run_id, epoch=epoch, step=step, name=name, value=float(value)))
            s.get(Run, run_id).heartbeat_at = utcnow()

    def finish_run(self, run_id: int, status: str, metrics: list[dict] | None = None,
                   error: str | None = None, **fields: Any) -> None:
        """Close a run: its final status, metrics (name, value, higher_is_better, primary)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        with self.session() as s:
            run = s.get(Run, run_id)
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            run.wall_time_s = (run.finished_at - run.started_at).total_seconds()
            for key, value in fields.items():
                setattr(run, key, value)
            for metric in metrics or []:
                s.add(Metric(run_id=run_id, **metric))

    # -- reads --------------------------------------------------------------------------
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
