"""Turning failures into one ``error: ...`` line on stderr and a non-zero exit."""
from __future__ import annotations

import logging
import os
import re
import sys
import traceback

from grud.errors import DataError


#: ``log.error(..., extra=FILE_ONLY)``: a line for train.log that the console skips (the error
#: line on stderr already says it; see :class:`NotFileOnly` in conf/hydra/job_logging/grud.yaml)
FILE_ONLY = {"file_only": True}


class NotFileOnly(logging.Filter):
    """Logging filter of the console handler: drops records logged with :data:`FILE_ONLY`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def debug_enabled() -> bool:
    return os.environ.get("GRUD_DEBUG", "") not in ("", "0", "false", "no")


# torch's allocators report exhaustion as a RuntimeError (CPU: "DefaultCPUAllocator: can't allocate
# memory" / "not enough memory"; CUDA: torch.OutOfMemoryError, "CUDA out of memory")
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|not enough memory|out of memory", re.IGNORECASE)
_ALLOCATION = re.compile(r"tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGTP]iB)", re.IGNORECASE)
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for Python's MemoryError and torch's allocator failures (CPU or CUDA)."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and bool(_OUT_OF_MEMORY.search(str(exc))))


def _allocation_size(text: str) -> str | None:
    m = _ALLOCATION.search(text)
    if not m:
        return None
    size, unit = float(m.group(1)), m.group(2)
    if unit.lower() != "bytes":
        return f"{size:g} {unit}"
    k = 0
    while size >= 1024 and k < len(_UNITS) - 1:
        size, k = size / 1024, k + 1
    return f"{size:.1f} {_UNITS[k]}" if k else f"{int(size)} bytes"


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` for the ``error:`` line."""
    if isinstance(exc, DataError):
        text = str(exc)
    elif isinstance(exc, FileNotFoundError):
        text = f"file not found: {exc.filename or exc}"
    elif is_out_of_memory(exc):
        size = _allocation_size(str(exc))
        text = (f"out of memory{f' (tried to allocate {size})' if size else ''}: "
                "lower data.batch_size or model.hidden_size")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def report(exc: BaseException, code: int = 1, message: str | None = None) -> int:
    """Print ``error: <message>`` (default: :func:`describe` of ``exc``; the traceback first when
    GRUD_DEBUG=1); return the exit code."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    _end_progress_line()
    sys.stderr.flush()
    print(f"error: {describe(exc) if message is None else message}", file=sys.stderr, flush=True)
    return code


def _end_progress_line() -> None:
    """End the line an open tqdm progress bar is drawing on (it redraws after ``\r``), so the
    ``error:`` line starts a line of its own (``grep '^error:'`` finds it in a captured log)."""
    module = sys.modules.get("tqdm")  # never imported: no bar is open
    if module is not None and getattr(module.tqdm, "_instances", None):
        sys.stderr.write("\n")
