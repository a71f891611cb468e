"""Turning failures into one ``error: ...`` line on stderr and a non-zero exit."""
from __future__ import annotations

import os
import sys
import traceback

from grud.errors import DataError


def debug_enabled() -> bool:
    return os.environ.get("GRUD_DEBUG", "") not in ("", "0", "false", "no")


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` for the ``error:`` line."""
    if isinstance(exc, DataError):
        text = str(exc)
    elif isinstance(exc, FileNotFoundError):
        text = f"file not found: {exc.filename or exc}"
    elif isinstance(exc, MemoryError):
        text = "out of memory (lower data.batch_size or model.hidden_size)"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def report(exc: BaseException, code: int = 1) -> int:
    """Print ``error: ...`` (and the traceback when GRUD_DEBUG=1); return the exit code."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.flush()
    print(f"error: {describe(exc)}", file=sys.stderr, flush=True)
    return code
