"""Keep freed memory in the process between training steps: glibc's malloc thresholds, set once.

A training step frees and reallocates the same large buffers every step (GRU-D at B=64, T=200:
dozens of 3-13 MB tensors). With glibc's default, adaptive thresholds, freed memory at the top of
the heap goes back to the operating system and comes back page by page on the next step: thousands
of page faults per step, 10-30 % of a GRU-D training step on this project's 2-core machine
(``python scripts/benchmark.py --only step`` prints the faults per step). PyTorch's performance
tuning guide recommends a caching allocator (jemalloc or tcmalloc) for the same reason; the
command-line entry points get most of that effect from glibc itself by raising two thresholds with
``mallopt`` at start-up:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum): smaller blocks come from the heap, not from a
  fresh ``mmap`` per allocation;
* ``M_TRIM_THRESHOLD`` = 256 MiB: up to that much free memory stays mapped for the next step.

The cost is that a process keeps up to 256 MiB of freed memory instead of returning it at once.
Only the entry points call :func:`keep_freed_memory` (a library must not change its host process's
allocator): ``grud-train``, ``grud-predict``, ``grud-evaluate`` and ``scripts/benchmark.py``. Nothing
is changed when ``GRUD_MALLOC=default``, when the user set ``MALLOC_TRIM_THRESHOLD_`` or
``MALLOC_MMAP_THRESHOLD_`` (glibc reads those itself), or when the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: glibc's ``mallopt`` parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect.

    See the module docstring for what, why, and when nothing is changed.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("GRUD_MALLOC", "").lower() == "default":
        return False
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
