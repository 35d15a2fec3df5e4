"""Turning exceptions into one-line messages and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lowlabel.errors import CheckpointError, NonFiniteLossError, UserError

USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, argparse.ArgumentError)
RUN_ERRORS = (NonFiniteLossError, CheckpointError)


def one_line(message: str) -> str:
    """Collapse a multi-line message into one line."""
    return " ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


def format_error(err: BaseException) -> str:
    """``error: <message>`` for ``err`` (file-system errors name the file)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"error: {err.strerror}: {err.filename}"
    text = one_line(str(err)) or type(err).__name__
    if isinstance(err, argparse.ArgumentError) and "unrecognized arguments" in text:
        text = text.replace("unrecognized arguments", "unknown option(s)")
    return f"error: {text}"


def run_guarded(fn: Callable[[], int], *, debug: bool) -> int:
    """Run ``fn``; user errors become one line on stderr and exit status 2, run failures status 1.

    Args:
        fn: the command; returns its exit status.
        debug: re-raise instead, so the traceback is shown.
    """
    try:
        return fn()
    except USER_ERRORS as err:
        if debug:
            raise
        print(format_error(err), file=sys.stderr)
        return 2
    except RUN_ERRORS as err:
        if debug:
            raise
        print(format_error(err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
