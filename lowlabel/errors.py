"""User-facing errors: one line that says what is wrong and where, exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a missing file, a malformed line, an unknown class, a config error).

    The CLI prints ``error: <message>`` on one line and exits with status 2 (no traceback unless
    ``--debug``). Library code raises it (or ``ValueError``/``FileNotFoundError``, which the CLI
    treats the same way) with a message that names the file, and the line where there is one.
    """


class DataError(UserError):
    """A dataset file is missing, corrupt or inconsistent (names the file)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss. The message names the step and the loss term."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (disk full, ...). The previous checkpoint is left intact."""
