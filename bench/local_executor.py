"""The local executor of ``bench sweep``: ``jobs`` runs at once on this machine.

Two isolations, one loop (``jobs`` slots, each taking the next config until none is left):

    pool     (default) each slot keeps one long-lived ``python -m bench.worker --serve``
             process that imports torch, the estimators and the task families once and then
             executes runs one after another; after ``recycle_after`` runs, or after a run that
             failed, the worker is replaced by a fresh one.
    process  each run in its own ``python -m bench.worker JOB.json`` process.

Either way one run cannot take the others down:
* a run that raised is recorded as failed by its worker, which goes on (pool) or exits;
* a worker that died mid-run (kill -9, out of memory, a segfault) leaves its row
  interrupted, with the reason, so the next sweep resumes it from its checkpoint; the slot
  starts a new worker for its next run;
* a run past ``run_timeout`` seconds is killed with its worker and recorded as failed
  ("timed out").

Ctrl-C (or SIGTERM) stops the sweep: no new run starts, the running ones get SIGTERM (each
closes its row as interrupted), and RunInterrupted says so.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from bench.config import RunConfig
from bench.db import ResultsDB
from bench.errors import RunInterrupted

ISOLATIONS = ("pool", "process")
DEFAULT_RECYCLE_AFTER = 20


@dataclasses.dataclass
class SweepResult:
    config: RunConfig
    status: str  # finished | skipped | failed | diverged | interrupted | submitted | not started
    detail: str = ""


def close_dead_run(db: ResultsDB, config: RunConfig, pid: int, reason: str, status: str = "interrupted") -> bool:
    """Close the row a dead (or killed) worker left running: ``interrupted`` by default, so the
    next sweep resumes it from its last checkpoint; ``failed`` for a run killed for running past
    its time. Only that worker's own row is touched (matched by host and pid); False when it had
    none (it died before claiming one)."""
    orphan = db.latest_run(config.hash(), "running")
    info = (orphan.provenance or {}) if orphan is not None else {}
    if orphan is None or info.get("pid") != pid or info.get("host") != socket.gethostname():
        return False
    return db.close_orphan(orphan.id, reason, orphan.heartbeat_at, status=status)


def _death_reason(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"worker process died (signal {signal.Signals(-code).name})"
        except ValueError:  # a real-time signal has no name
            return f"worker process died (signal {-code})"
    return f"worker process died (exit status {code})"


def worker_threads(jobs: int) -> int:
    """Intra-op threads of each worker: the machine's cores shared by the ``jobs`` at once (torch
    would give every worker all of them: ``jobs`` x cores threads fighting over the cores)."""
    return max((os.cpu_count() or 1) // max(jobs, 1), 1)


def _environment(threads: int) -> dict[str, str]:
    """A worker's environment: unbuffered output, and ``threads`` intra-op threads unless the
    user set OMP_NUM_THREADS (which torch reads when it starts)."""
    return {"OMP_NUM_THREADS": str(threads), **os.environ, "PYTHONUNBUFFERED": "1"}


class _Slot:
    """One place a run can execute; subclasses say how."""

    def __init__(self, index: int, db: ResultsDB, db_url: str, checkpoint_dir: Optional[str], log_dir: Path,
                 run_timeout: Optional[float], stopping: threading.Event, threads: int = 1) -> None:
        self.index, self.db, self.db_url, self.checkpoint_dir = index, db, db_url, checkpoint_dir
        self.threads = threads
        self.log_dir, self.run_timeout, self.stopping = log_dir, run_timeout, stopping
        self.process: Optional[subprocess.Popen] = None
        self.lock = threading.Lock()  # the process, between this slot's thread and a stop

    def job(self, config: RunConfig, log: Path) -> dict:
        return {"config": config.to_dict(), "db": self.db_url, "checkpoint_dir": self.checkpoint_dir,
                "log": str(log), "dispatched_at": time.time()}

    def terminate(self) -> None:
        """SIGTERM to the worker (a worker may have inherited an ignored SIGINT)."""
        with self.lock:
            process = self.process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def started(self, process: subprocess.Popen) -> None:
        with self.lock:
            self.process = process
            if self.stopping.is_set():  # the stop came while it was starting
                process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the worker's process group (it and its data-loader children), then reap it."""
        process = self.process
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # the group is gone already
            pass
        process.wait()

    def dead_run(self, config: RunConfig, log: Path, timed_out: bool) -> SweepResult:
        """The outcome of a run whose worker died or was killed, its row closed."""
        if timed_out:
            reason, status = f"timed out after {self.run_timeout:g} s (--run-timeout); killed with its worker", "failed"
            closed = f"{reason}; log: {log}"
        else:
            reason, status = _death_reason(self.process.returncode), "interrupted"
            closed = f"{reason}; rerun the sweep to resume; log: {log}"
        if close_dead_run(self.db, config, self.process.pid, closed, status):
            return SweepResult(config, status, closed)
        return SweepResult(config, "failed", f"{reason}, holding no running row (it had not claimed one, or its row "
                                             f"was closed meanwhile; see bench runs); log: {log}")

    def reset(self) -> None:
        """After an error of the executor itself: no worker of this slot survives it."""
        self.kill()

    def close(self) -> None:
        pass


class ProcessSlot(_Slot):
    """Each run in a fresh ``python -m bench.worker JOB.json`` process."""

    def run(self, config: RunConfig, log: Path) -> SweepResult:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(self.job(config, log), handle)
        try:
            with open(log, "w") as out:
                # a session of its own: a terminal's Ctrl-C reaches the sweep, which passes it on once
                self.started(subprocess.Popen([sys.executable, "-m", "bench.worker", handle.name], stdout=out,
                                              stderr=subprocess.STDOUT, env=_environment(self.threads),
                                              start_new_session=True))
                try:
                    self.process.wait(timeout=self.run_timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
                    return self.dead_run(config, log, timed_out=True)
        finally:
            os.unlink(handle.name)
        lines = log.read_text().strip().splitlines()
        try:
            status, detail = json.loads(lines[-1])
        except (IndexError, TypeError, ValueError):  # it died before reporting its [status, detail] line
            return self.dead_run(config, log, timed_out=False)
        return SweepResult(config, status, detail)


class PoolSlot(_Slot):
    """A long-lived ``python -m bench.worker --serve`` process that runs job after job."""

    def __init__(self, *args, recycle_after: int = DEFAULT_RECYCLE_AFTER, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recycle_after = recycle_after
        self.runs_done = 0
        self.results = None

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        log = open(self.log_dir / f"worker-{self.index}.log", "a")
        try:
            self.started(subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "--serve", str(write_fd)], stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=_environment(self.threads),
                start_new_session=True, text=True))
        finally:
            os.close(write_fd)
            log.close()
        self.results = os.fdopen(read_fd, "r")
        self.runs_done = 0

    def _retire(self, graceful: bool) -> None:
        process = self.process
        if process is not None:
            if graceful and process.poll() is None:
                try:
                    process.stdin.close()  # end of jobs: the worker exits
                    process.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self.kill()
            try:
                process.stdin.close()
            except OSError:  # what a dead worker left unread in the pipe
                pass
        if self.results is not None:
            self.results.close()
        with self.lock:
            self.process, self.results = None, None

    def _send(self, job: dict) -> bool:
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            return True
        except OSError:  # it died while idle
            return False

    def run(self, config: RunConfig, log: Path) -> SweepResult:
        job = self.job(config, log)
        for _ in range(2):  # a worker found dead while idle is replaced once
            if self.process is None or self.process.poll() is not None:
                self._retire(graceful=False)
                self._start()
            if self._send(job):
                break
            self._retire(graceful=False)
        else:
            return SweepResult(config, "failed", f"two new pool workers died before taking the run; see "
                                                 f"{self.log_dir / f'worker-{self.index}.log'}")
        deadline = None if self.run_timeout is None else time.monotonic() + self.run_timeout
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([self.results], [], [], wait)
        if not ready:  # past its time: the worker is stuck in it
            self.kill()
            if not select.select([self.results], [], [], 0)[0] or not (line := self.results.readline()):
                result = self.dead_run(config, log, timed_out=True)
                self._retire(graceful=False)
                return result
        else:
            line = self.results.readline()
        if not line:  # end of file: the worker died mid-run
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            result = self.dead_run(config, log, timed_out=False)
            self._retire(graceful=False)
            return result
        status, detail = json.loads(line)
        self.runs_done += 1
        if status in ("failed", "interrupted") or self.runs_done >= self.recycle_after or self.process.poll() is not None:
            self._retire(graceful=True)  # a failed run may leave the process in a bad state
        return SweepResult(config, status, detail)

    def reset(self) -> None:
        self._retire(graceful=False)

    def close(self) -> None:
        self._retire(graceful=True)


def run_local(configs: list[RunConfig], db_url: str, jobs: int, checkpoint_dir: Optional[str], log_dir: Path,
              on_done: Callable[[SweepResult], None], isolation: str = "pool",
              recycle_after: int = DEFAULT_RECYCLE_AFTER, run_timeout: Optional[float] = None) -> list[SweepResult]:
    """Execute ``configs``, ``jobs`` at a time; the results in config order."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"unknown isolation {isolation!r}; valid: {', '.join(ISOLATIONS)}")
    log_dir.mkdir(parents=True, exist_ok=True)
    db = ResultsDB(db_url)
    lock = threading.Lock()
    stopping = threading.Event()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index, config in enumerate(configs):
        todo.put((index, config))
    results: list[Optional[SweepResult]] = [None] * len(configs)
    count = max(min(jobs, len(configs)), 1)
    shared = (db, db_url, checkpoint_dir, log_dir, run_timeout, stopping, worker_threads(count))
    slots = [PoolSlot(i, *shared, recycle_after=recycle_after) if isolation == "pool" else ProcessSlot(i, *shared)
             for i in range(count)]

    def work(slot: _Slot) -> None:
        try:
            while not stopping.is_set():
                try:
                    index, config = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    result = slot.run(config, log_dir / f"{config.hash()[:16]}.log")
                except Exception as exc:  # noqa: BLE001 - the executor's own error costs this run only
                    slot.reset()
                    result = SweepResult(config, "failed", f"the local executor failed to run it: "
                                                           f"{type(exc).__name__}: {exc}")
                with lock:
                    results[index] = result
                    on_done(result)
        finally:
            slot.close()

    threads = [threading.Thread(target=work, args=(slot,), name=f"sweep-slot-{slot.index}", daemon=True)
               for slot in slots]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # wakes for Ctrl-C
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        stopping.set()
        for slot in slots:
            slot.terminate()
        for thread in threads:
            thread.join()
        raise RunInterrupted(f"the sweep was stopped by {signal.Signals(signum).name}: its running runs are "
                             "marked interrupted; rerun the sweep to resume them", signum) from None
    return [result if result is not None else SweepResult(config, "not started", "the sweep was stopped")
            for result, config in zip(results, configs)]
