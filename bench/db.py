"""The results database: SQLAlchemy 2 models and the ResultsDB facade.

SQLite file by default (``sqlite:///results/bench.sqlite``, WAL mode, busy timeout),
any SQLAlchemy URL (PostgreSQL: ``postgresql+psycopg://user@host/db``) through
``--db`` or the ``BENCH_DB`` environment variable.

Tables:
    runs      one row per execution of a run config: config + hash, status, times,
              cost figures (params, OPs, step time, peak memory), provenance
    metrics   final metrics of a run, each with its direction (higher_is_better)
    curves    per-epoch (or per-evaluation) values of a run, for learning curves
    gradient_diagnostics
              ``bench diagnose``: per estimator, model state (a run's kept epoch), binarized
              layer and probe batch, how close the estimator's gradient is to the smoothed
              reference (:mod:`bench.diagnostics`)

Guarantees, on SQLite and PostgreSQL alike:
- any number of processes may open a database that does not exist yet: schema creation
  runs under a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory lock);
- at most one ``running`` row per config hash (a partial unique index), so two processes
  starting one config at once get one row and one refusal (:class:`RunClaimed`); the row
  carries its holder's claim token, and every later write checks it in the same transaction,
  so a process whose row was taken over stops writing (:class:`ClaimLost`);
- a SQLite file deleted or replaced while a process uses it is noticed at its next write
  (:class:`DatabaseGone`) instead of writing into the unlinked file;
- a database this user cannot write is opened read-only (listing and reports work) and
  :meth:`ResultsDB.require_writable` says so in one line before a run starts.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, create_engine, delete, event, func, select,
    text, update,
)
from sqlalchemy import inspect as sqlalchemy_inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

DEFAULT_DB_URL = "sqlite:///results/bench.sqlite"
STATUSES = ("running", "finished", "failed", "diverged", "interrupted")
#: a running run whose heartbeat is older than this is taken as dead (killed, node lost)
STALE_AFTER_S = 180.0
WRITE_ATTEMPTS = 8
T = TypeVar("T")


class DatabaseError(RuntimeError):
    """A database URL that cannot be opened or written; the message says which and why."""


class DatabaseGone(DatabaseError):
    """The SQLite file this process opened was deleted or replaced while it was in use."""


class ClaimLost(DatabaseError):
    """This process's run row was taken over (marked interrupted after a missed heartbeat, then
    resumed elsewhere): it must stop without writing."""


class RunClaimed(Exception):
    """Another process holds the ``running`` row of this config (or took the interrupted one first)."""

    def __init__(self, live: "Optional[Run]") -> None:
        super().__init__(f"run {live.id if live else '?'} with this config is running")
        self.live = live


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
    #: harness overhead: from the executor handing the run over to its first training step, and
    #: from the task's return to the closing write (finished runs)
    startup_s: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    teardown_s: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    provenance: Mapped[Optional[dict]] = mapped_column(JSON, nullable=True)
    #: the report's row label: the estimator plus the hyperparameters that differ from its defaults
    variant: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    #: the report adds an average column over this family's datasets (the GLUE score)
    report_average: Mapped[Optional[bool]] = mapped_column(Boolean, nullable=True)

    metrics: Mapped[list["Metric"]] = relationship(back_populates="run", cascade="all, delete-orphan")
    curves: Mapped[list["CurvePoint"]] = relationship(back_populates="run", cascade="all, delete-orphan")

    __table_args__ = (
        # One running execution per config at a time: the database, not a read-then-insert, decides.
        Index("uq_runs_running_config", "config_hash", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
    )


class Meta(Base):
    """Facts about the database itself (which row upgrades it has had)."""

    __tablename__ = "bench_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


#: row upgrades, applied once to every existing row of a database (name -> (version, upgrade)),
#: registered by the harness (bench.identity)
_ROW_UPGRADES: dict[str, tuple[int, Callable[["Run"], None]]] = {}


def register_row_upgrade(name: str, version: int, upgrade: Callable[["Run"], None]) -> None:
    """``upgrade(run)`` changes one row in place; it runs once per database for ``version``."""
    _ROW_UPGRADES[name] = (version, upgrade)


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


class GradientDiagnostic(Base):
    """One estimator's gradient against the reference on one layer, probe batch and model state."""

    __tablename__ = "gradient_diagnostics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the run whose kept state was measured, and its config hash (the key a rerun keeps)
    state_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    state_config_hash: Mapped[str] = mapped_column(String(64), index=True)
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    #: shared: every estimator on one reference run's states; own: each on its own run's
    mode: Mapped[str] = mapped_column(String(16))
    estimator: Mapped[str] = mapped_column(String(64))
    estimator_hparams: Mapped[dict] = mapped_column(JSON)
    variant: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float)
    layer: Mapped[str] = mapped_column(String(200))
    layer_index: Mapped[int] = mapped_column(Integer)
    probe_batch: Mapped[int] = mapped_column(Integer)
    #: the reference: sigma as a fraction of the layer's input std, its value, the units, draws
    sigma: Mapped[float] = mapped_column(Float)
    layer_sigma: Mapped[float] = mapped_column(Float)
    units: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    reference_rel_se: Mapped[float] = mapped_column(Float)
    cosine: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    cosine_se: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    rel_error: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    sign_agreement: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    norm_ratio: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


#: the fields that name one diagnosis: a rerun with the same values replaces its rows
DIAGNOSIS_KEY = ("state_config_hash", "mode", "variant", "epoch", "sigma", "units", "samples", "batch_size", "seed")


def resolve_db_url(url: Optional[str] = None) -> str:
    return url or os.environ.get("BENCH_DB") or DEFAULT_DB_URL


def _sqlite_file(url: str) -> Optional[Path]:
    """The database file of a SQLite URL (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    name = parsed.database.removeprefix("file:") if parsed.query.get("uri") == "true" else parsed.database
    return Path(name).expanduser().resolve()


def _sqlite_read_only_uri(file: Path) -> str:
    """``immutable`` where SQLite cannot create the WAL's shared-memory file next to the file
    (a read-only folder: nobody can be writing it there)."""
    from urllib.parse import quote

    query = "mode=ro" + ("&immutable=1" if not os.access(file.parent, os.W_OK)
                         and not Path(f"{file}-shm").exists() else "")
    return f"file:{quote(str(file))}?{query}"


def _sqlite_read_only_engine(file: Path) -> Engine:
    """The database opened read-only."""
    import sqlite3

    uri = _sqlite_read_only_uri(file)
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))


def _upgraded_copy(file: Path) -> Engine:
    """A read-only database written by an older surge-bench, copied into memory and brought to
    the current schema and rows there (the file is not touched): listing and reports work."""
    import sqlite3

    from sqlalchemy.pool import StaticPool

    source = sqlite3.connect(_sqlite_read_only_uri(file), uri=True)
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        source.backup(memory)
    finally:
        source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    _create_schema(engine)
    _upgrade_rows(engine)
    return engine


def _current(engine: Engine) -> bool:
    """The schema and every registered row upgrade are there already."""
    if not _schema_complete(engine):
        return False
    with engine.connect() as connection:
        return not _upgrades_due(connection)


def _configure_sqlite(engine: Engine, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every sqlite test
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait for another opener
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def open_engine(url: Optional[str] = None) -> tuple[Engine, bool]:
    """Open (and create the schema of) a results database; DatabaseError if it cannot.

    Returns the engine and whether it is read-only (a SQLite file this user cannot write).
    """
    url = resolve_db_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"malformed database URL {url!r}; use e.g. sqlite:///results/bench.sqlite or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    file = _sqlite_file(url)
    read_only = file is not None and file.exists() and not (
        os.access(file, os.W_OK) and os.access(file.parent, os.W_OK))
    if file is not None and not file.exists():
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {file.parent}: {exc.strerror}") from None
    try:
        engine = _sqlite_read_only_engine(file) if read_only else create_engine(
            url, pool_pre_ping=parsed.get_backend_name() != "sqlite")
        if file is not None:
            _configure_sqlite(engine, read_only)
        if read_only:
            with engine.connect() as connection:  # a file that is not a results database fails here
                connection.execute(select(Run.id).limit(1))
            if not _current(engine):
                engine.dispose()
                engine = _upgraded_copy(file)
        else:
            _create_schema(engine)
            _upgrade_rows(engine)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"database driver {exc.name!r} missing for {parsed.drivername!r}: pip install -e '.[postgres]'"
        ) from None
    except (OperationalError, SQLAlchemyError) as exc:
        raise DatabaseError(f"cannot open database {parsed.render_as_string(hide_password=True)}: "
                            f"{_reason(exc)}") from None
    return engine, read_only


def _reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _schema_complete(engine: Engine) -> bool:
    """Every table, column and index there already (a read: the usual case takes no lock)."""
    inspector = sqlalchemy_inspect(engine)
    if not set(Base.metadata.tables) <= set(inspector.get_table_names()):
        return False
    if not set(Run.__table__.columns.keys()) <= {c["name"] for c in inspector.get_columns("runs")}:
        return False
    return {ix.name for ix in Run.__table__.indexes} <= {ix["name"] for ix in inspector.get_indexes("runs")}


def _add_missing_columns(connection) -> None:
    """Columns added to ``runs`` after a database was created (nullable: old rows read None)."""
    existing = {c["name"] for c in sqlalchemy_inspect(connection).get_columns("runs")}
    for column in Run.__table__.columns:
        if column.name not in existing:
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f'ALTER TABLE runs ADD COLUMN "{column.name}" {kind}')


def _lock_schema(connection) -> None:
    """Take the database's schema lock for this transaction (one holder at a time)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy_timeout) for the writer lock
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})


def _under_schema_lock(engine: Engine, done: Callable[[], bool], work: Callable[[Any], None]) -> None:
    """Unless ``done()``, run ``work(connection)`` in one transaction holding the schema lock,
    retried on another writer's transient errors: any number of processes may try at once, one
    does the work and the others find it done."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            if done():
                return
            with engine.connect() as connection:
                _lock_schema(connection)
                work(connection)
                connection.commit()
            return
        except DBAPIError as exc:
            if attempt == WRITE_ATTEMPTS - 1 or not _transient(exc):
                raise
            time.sleep(min(0.05 * 2 ** attempt, 2.0) * (0.5 + random.random()))


def _create_schema(engine: Engine) -> None:
    """Create missing tables, columns and indexes under the schema lock."""

    def create(connection) -> None:
        Base.metadata.create_all(connection)
        _add_missing_columns(connection)
        _create_missing_indexes(connection)

    _under_schema_lock(engine, lambda: _schema_complete(engine), create)


def _upgrades_due(connection) -> dict[str, tuple[int, Callable[[Run], None]]]:
    done = dict(connection.execute(select(Meta.key, Meta.value)).all())
    return {name: entry for name, entry in _ROW_UPGRADES.items() if int(done.get(name, 0)) < entry[0]}


def _upgrade_rows(engine: Engine) -> None:
    """Apply the registered row upgrades this database has not had, under the schema lock.
    A running row whose upgraded config hash another running row already holds keeps its old
    hash (the one-running-row rule stands)."""

    import bench.identity  # noqa: F401 - registers the identity-rule upgrade, whoever opens the database

    def upgrade_all(connection) -> None:
        due = _upgrades_due(connection)
        with Session(bind=connection, autoflush=False) as s:
            query = select(Run).order_by(Run.id)
            if connection.dialect.name == "postgresql":  # the advisory lock does not stop row writers
                query = query.with_for_update()
            runs = list(s.scalars(query))
            for _, upgrade in due.values():
                for run in runs:
                    before = run.config_hash
                    upgrade(run)
                    if run.status == "running" and run.config_hash != before and any(
                            other is not run and other.status == "running"
                            and other.config_hash == run.config_hash for other in runs):
                        run.config_hash = before
            for name, (version, _) in due.items():
                s.merge(Meta(key=name, value=str(version)))
            s.flush()

    def done() -> bool:
        with engine.connect() as connection:
            return not _upgrades_due(connection)

    _under_schema_lock(engine, done, upgrade_all)


#: an arbitrary constant naming surge-bench's schema lock among PostgreSQL advisory locks
_SCHEMA_LOCK_KEY = 0x5E6E_BE4C


def _create_missing_indexes(connection) -> None:
    """Indexes added after a database was created (create_all adds them only with new tables)."""
    existing = {ix["name"] for ix in sqlalchemy_inspect(connection).get_indexes("runs")}
    if "uq_runs_running_config" in existing:
        return
    doubled = connection.execute(
        select(Run.config_hash).where(Run.status == "running").group_by(Run.config_hash)
        .having(func.count() > 1).limit(1)).first()
    if doubled is None:  # rows of an older version may break the rule until they end: added later
        next(ix for ix in Run.__table__.indexes if ix.name == "uq_runs_running_config").create(connection)


def stale_limit_s() -> float:
    """Seconds without a heartbeat after which a running row is taken as dead ($BENCH_STALE_AFTER_S)."""
    return float(os.environ.get("BENCH_STALE_AFTER_S", STALE_AFTER_S))


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
        self.engine, self.read_only = open_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._file = _sqlite_file(self.url)
        self._identity = self._file_identity()
        self._claims: dict[int, str] = {}

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _file_identity(self) -> Optional[tuple[int, int]]:
        if self._file is None:
            return None
        try:
            info = self._file.stat()
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def check_same_file(self) -> None:
        """DatabaseGone when the SQLite file was deleted or replaced since it was opened (the
        open connections would keep writing into the unlinked file, and nobody would see it)."""
        if self._file is not None and self._file_identity() != self._identity:
            what = "deleted" if not self._file.exists() else "replaced by another file"
            raise DatabaseGone(f"the database file {self._file} was {what} while this process used it; "
                               "nothing more can be recorded there")

    def require_writable(self) -> None:
        """One-line DatabaseError when this user cannot write the database (before a run starts)."""
        if self.read_only:
            raise DatabaseError(f"the database {self._file} is read-only for this user; make it writable "
                                "or choose another with --db")
        try:
            with self.engine.connect() as connection:  # a write that changes nothing, rolled back
                connection.execute(update(Run).where(text("1 = 0")).values(status=Run.status))
                connection.rollback()
        except DBAPIError as exc:
            raise DatabaseError(f"cannot write to the database {self.display_url}: {_reason(exc)}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; a database error (a lost server, a damaged file) is a DatabaseError."""
        try:
            with self._sessions() as session:
                with session.begin():
                    yield session
        except DBAPIError as exc:
            raise DatabaseError(f"database {self.display_url}: {_reason(exc)}") from exc

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; retry it when another writer holds a lock.

        A transaction is all or nothing, so a retried write never leaves half a row.
        """
        for attempt in range(WRITE_ATTEMPTS):
            self.check_same_file()
            try:
                with self.session() as s:
                    return work(s)
            except DatabaseError as exc:
                cause = exc.__cause__
                if attempt == WRITE_ATTEMPTS - 1 or not isinstance(cause, DBAPIError) or not _transient(cause):
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 2.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # -- writes -------------------------------------------------------------------------
    # A row this object claimed (start_run, resume_run) carries a claim token in its
    # provenance; every later write to it checks the token and the running status, so a
    # process whose row was taken over stops at its next write (ClaimLost) instead of
    # writing into another process's run.
    def start_run(self, **fields: Any) -> int:
        """Insert a ``running`` row; RunClaimed when this config already has one."""
        now, token = utcnow(), uuid.uuid4().hex
        fields["provenance"] = {**(fields.get("provenance") or {}), "claim": token}

        def work(s: Session) -> int:
            run = Run(status="running", started_at=now, heartbeat_at=now, **fields)
            s.add(run)
            s.flush()
            return run.id

        run_id = self._claiming(fields.get("config_hash"), work)
        self._claims[run_id] = token
        return run_id

    def resume_run(self, run_id: int, config_hash: str, **fields: Any) -> None:
        """Turn an ``interrupted`` row back into ``running``; RunClaimed when another process
        resumed or started the same config first."""
        token = uuid.uuid4().hex
        fields["provenance"] = {**(fields.get("provenance") or {}), "claim": token}

        def work(s: Session) -> None:
            changed = s.execute(
                update(Run).where(Run.id == run_id, Run.status == "interrupted")
                .values(status="running", error=None, finished_at=None, heartbeat_at=utcnow(), **fields)
            ).rowcount
            if changed != 1:
                raise RunClaimed(s.scalars(select(Run).where(Run.id == run_id)).first())

        self._claiming(config_hash, work)
        self._claims[run_id] = token

    def _claiming(self, config_hash: str, work: Callable[[Session], T]) -> T:
        try:
            return self._write(work)
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            raise RunClaimed(self.latest_run(config_hash, "running")) from None

    def _owned(self, s: Session, run_id: int, token: Optional[str]) -> Run:
        """The row, locked and checked to be still ours when this object claimed it (``token``).

        The check is a conditional UPDATE and the first statement of the transaction, so it
        takes the write lock (SQLite) or the row lock (PostgreSQL) before anything is written:
        the check and the writes after it cannot be separated by another process's takeover.
        """
        if token is not None:
            changed = s.execute(update(Run).where(
                Run.id == run_id, Run.status == "running", Run.provenance["claim"].as_string() == token,
            ).values(heartbeat_at=utcnow())).rowcount
            if changed != 1:
                run = s.get(Run, run_id)
                state = "gone" if run is None else \
                    f"{run.status}, claimed by pid {(run.provenance or {}).get('pid')}"
                raise ClaimLost(f"run {run_id} was taken over while this process ran it (it missed heartbeats "
                                f"for {stale_limit_s():g} s and is now {state}); this process stops without writing")
        return s.get(Run, run_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        token = self._claims.get(run_id)

        def work(s: Session) -> None:
            run = self._owned(s, run_id, token)
            for key, value in fields.items():
                setattr(run, key, value)
            run.heartbeat_at = utcnow()

        self._write(work)

    def heartbeat(self, run_id: int) -> None:
        """Refresh the heartbeat of a row this object holds (nothing once it is closed)."""
        token = self._claims.get(run_id)
        if token is not None:
            self._write(lambda s: self._owned(s, run_id, token))  # its check sets heartbeat_at

    def add_curve_points(self, run_id: int, epoch: int, step: int, values: dict[str, float]) -> None:
        token = self._claims.get(run_id)

        def work(s: Session) -> None:
            run = self._owned(s, run_id, token)
            for name, value in values.items():
                s.add(CurvePoint(run_id=run_id, epoch=epoch, step=step, name=name, value=float(value)))
            run.heartbeat_at = utcnow()

        self._write(work)

    def finish_run(self, run_id: int, status: str, metrics: list[dict] | None = None,
                   error: str | None = None, **fields: Any) -> None:
        """Close a run: its final status, metrics (name, value, higher_is_better, primary)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        token = self._claims.get(run_id)

        def work(s: Session) -> None:
            run = self._owned(s, run_id, token)
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            run.wall_time_s = (run.finished_at - run.started_at).total_seconds()
            for key, value in fields.items():
                setattr(run, key, value)
            for metric in metrics or []:
                s.add(Metric(run_id=run_id, **metric))

        self._write(work)
        self._claims.pop(run_id, None)

    def close_orphan(self, run_id: int, reason: str, heartbeat_at: dt.datetime, status: str = "interrupted") -> bool:
        """Close a row whose process died without closing it (``interrupted``, or ``failed`` for
        one killed for running past its time); False if it changed since it was read (closed, or
        marked and resumed by another process meanwhile)."""
        if status not in ("interrupted", "failed"):
            raise ValueError(f"an orphaned run closes as interrupted or failed, not {status!r}")

        def work(s: Session) -> bool:
            return s.execute(update(Run).where(
                Run.id == run_id, Run.status == "running", Run.heartbeat_at == heartbeat_at,
            ).values(status=status, error=reason, finished_at=Run.heartbeat_at)).rowcount == 1

        return self._write(work)

    def adopt_rows(self, old_hash: str, new_hash: str, task_version: str) -> int:
        """Rows of this config stored under its rule-1 hash (written by an older surge-bench, say
        on a shared database after it was upgraded) take the current hash, so they are found as
        finished or resumed; running rows are left to their process, and rows of another family
        version stay apart. Returns how many rows moved."""
        def pending(s: Session):
            return select(Run).where(Run.config_hash == old_hash, Run.status != "running",
                                     Run.task_version == task_version)

        with self.session() as s:
            if s.scalars(pending(s).limit(1)).first() is None:
                return 0

        def work(s: Session) -> int:
            rows = list(s.scalars(pending(s)))
            for run in rows:
                run.provenance = {**(run.provenance or {}), "config_hash_rule1": old_hash}
                run.config_hash = new_hash
            return len(rows)

        return self._write(work)

    def discard_run(self, run_id: int) -> None:
        """Delete a row this object just claimed and never used (nothing else refers to it)."""
        token = self._claims.get(run_id)
        self._write(lambda s: s.delete(self._owned(s, run_id, token)))
        self._claims.pop(run_id, None)

    def delete_curve_points_after(self, run_id: int, epoch: int) -> None:
        """Drop the curve points a killed run wrote after its last checkpoint (it redoes those epochs)."""
        token = self._claims.get(run_id)

        def work(s: Session) -> None:
            self._owned(s, run_id, token)
            s.execute(delete(CurvePoint).where(CurvePoint.run_id == run_id, CurvePoint.epoch > epoch))

        self._write(work)

    def replace_diagnostics(self, rows: list[dict[str, Any]]) -> None:
        """Write one diagnosis (rows sharing the :data:`DIAGNOSIS_KEY` values) in one transaction,
        replacing an earlier diagnosis with the same key."""
        if not rows:
            return
        key = {name: rows[0][name] for name in DIAGNOSIS_KEY}
        if any(row[name] != value for row in rows for name, value in key.items()):
            raise ValueError("replace_diagnostics: the rows of one call must share the diagnosis key")
        now = utcnow()

        def work(s: Session) -> None:
            s.execute(delete(GradientDiagnostic).where(
                *(getattr(GradientDiagnostic, name) == value for name, value in key.items())))
            s.add_all([GradientDiagnostic(created_at=now, **row) for row in rows])

        self.require_writable()
        self._write(work)

    def diagnostics_frame(self):
        """Every gradient diagnostic row as a pandas DataFrame (empty: none)."""
        import pandas as pd

        columns = [c.name for c in GradientDiagnostic.__table__.columns]
        with self.session() as s:
            rows = s.execute(select(*(getattr(GradientDiagnostic, c) for c in columns))).all()
        return pd.DataFrame([tuple(row) for row in rows], columns=columns)

    def mark_stale_interrupted(self, stale_after_s: Optional[float] = None) -> list[int]:
        """Mark ``running`` rows interrupted whose heartbeat stopped (a killed process, a lost
        node: older than ``stale_after_s``, default $BENCH_STALE_AFTER_S or 180 s) or whose
        process, on this host, no longer exists. Each row is changed only if its heartbeat
        is still the one read, so a run that beat in between is left alone."""
        if stale_after_s is None:
            stale_after_s = stale_limit_s()
        limit = utcnow() - dt.timedelta(seconds=stale_after_s)

        def work(s: Session) -> list[int]:
            running = list(s.execute(select(Run.id, Run.heartbeat_at, Run.provenance).where(Run.status == "running")))
            marked = []
            for run_id, heartbeat, info in running:
                if not (heartbeat < limit or _dead_here(info)):
                    continue
                changed = s.execute(update(Run).where(
                    Run.id == run_id, Run.status == "running", Run.heartbeat_at == heartbeat).values(
                    status="interrupted", finished_at=heartbeat,
                    error=f"no heartbeat since {heartbeat:%Y-%m-%d %H:%M:%S} UTC (process killed?)")).rowcount
                if changed:
                    marked.append(run_id)
            return marked

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

    def runs_frame(self):
        """Finished runs (the latest execution per config hash), one row each, with their cost
        figures and the device and host they ran on, as a pandas DataFrame."""
        import pandas as pd

        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.config_hash, Run.task, Run.dataset, Run.model, Run.estimator, Run.variant,
                       Run.preset, Run.seed, Run.n_params, Run.n_binary_params, Run.binary_ops, Run.float_ops,
                       Run.train_step_ms, Run.peak_memory_mb, Run.wall_time_s, Run.startup_s, Run.teardown_s,
                       Run.provenance)
                .where(Run.status == "finished")
            ).all()
        columns = ["run_id", "config_hash", "task", "dataset", "model", "estimator", "variant", "preset", "seed",
                   "n_params", "n_binary_params", "binary_ops", "float_ops", "train_step_ms", "peak_memory_mb",
                   "wall_time_s", "startup_s", "teardown_s", "device", "host"]
        frame = pd.DataFrame([(*row[:-1], (row[-1] or {}).get("device"), (row[-1] or {}).get("host")) for row in rows],
                             columns=columns)
        if frame.empty:
            return frame
        latest = frame.groupby("config_hash")["run_id"].transform("max")
        return frame[frame["run_id"] == latest].reset_index(drop=True)

    def _finished_frame(self, child, child_columns: list, names: list[str]):
        """Finished runs joined with a child table; run keys, report labels, ``names``, estimator_hparams
        and the BNN block (None for a family without blocks, or a run from before the field)."""
        import pandas as pd

        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.config_hash, Run.task, Run.dataset, Run.model, Run.estimator, Run.preset,
                       Run.seed, Run.variant, Run.report_average, *child_columns, Run.config)
                .join(child, child.run_id == Run.id)
                .where(Run.status == "finished")
            ).all()
        rows = [(*row[:-1], (row[-1] or {}).get("estimator_hparams", {}), (row[-1] or {}).get("block"))
                for row in rows]
        columns = ["run_id", "config_hash", "task", "dataset", "model", "estimator", "preset", "seed", "variant",
                   "report_average", *names, "estimator_hparams", "block"]
        frame = pd.DataFrame(rows, columns=columns)
        if frame.empty:
            return frame
        latest = frame.groupby("config_hash")["run_id"].transform("max")
        return frame[frame["run_id"] == latest].reset_index(drop=True)
