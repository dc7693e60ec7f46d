"""Errors the command line shows as one line (no traceback)."""


class UserError(ValueError):
    """Bad input from the user: the message names the valid choices or the fix."""


class DataMissingError(UserError):
    """A data set is not where it was looked for; the message says how to get it."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss or metric; the run is marked diverged."""
