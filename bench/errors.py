"""Errors the command line shows as one line (no traceback), and SIGTERM as one of them."""
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from estimators import fused


class UserError(ValueError):
    """Bad input from the user: the message names the valid choices or the fix."""


def lookup(registry, name: str):
    """``registry.get(name)``, an unknown name as a one-line UserError listing the valid ones."""
    try:
        return registry.get(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


class DataMissingError(UserError):
    """A data set is not where it was looked for; the message says how to get it."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss or metric; the run is marked diverged."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after its row was closed as interrupted; args: (message, signal)."""

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def signum(self) -> int:
        return int(self.args[1])


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (Slurm's and most schedulers' stop signal) raised as KeyboardInterrupt(SIGTERM)
    while the block runs, so a stopped run closes its row as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        if fused.hold_signal(signum):  # inside a compiled kernel: raised as it returns
            return
        raise KeyboardInterrupt(signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
