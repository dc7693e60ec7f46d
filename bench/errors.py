"""Errors the command line shows as one line (no traceback)."""


class UserError(ValueError):
    """Bad input from the user: the message names the valid choices or the fix."""


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
