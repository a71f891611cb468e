"""Compile the native kernel once per machine and load it with :mod:`ctypes`.

The kernel (``gru_kernel.c``) is plain C with no PyTorch headers: it compiles in about a second
with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) and multiplies matrices
with the BLAS ``sgemm_`` / ``dgemm_`` that PyTorch's own library exports. The shared library is
cached in ``$GRUD_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/grud/kernels``, else
``~/.cache/grud/kernels`` (apart from the dataset cache of ``$GRUD_CACHE_DIR``: a build depends on
the sources and the machine only), named by a hash of the sources, the compiler, its flags and the
CPU (it is built with ``-march=native``), so a shared home folder on a cluster of different
machines never hands one CPU another's build. The build writes to a temporary name and renames, so
a crash never leaves a broken library under the final name; a folder that cannot be written means
a private temporary one.

Nothing here raises: :func:`load` returns ``(library, None)`` or ``(None, reason)``, and the
caller falls back to the pure PyTorch path.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCES = ("gru_kernel.c", "gru_kernel_body.h")
MAIN_SOURCE = "gru_kernel.c"
#: the calling convention the Python side speaks (``grud_kernel_abi()`` in the C source)
ABI = 6
FLAGS = ["-O3", "-fPIC", "-shared", "-std=c11", "-fno-math-errno"]
NATIVE_ARCH = ["-march=native"]
#: OpenMP for the kernel's threads: the library then needs libgomp.so.1, which is the copy PyTorch
#: has already loaded (same name), so the kernel and PyTorch share one team of threads
OPENMP = ["-fopenmp"]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags (Linux), else the machine."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    env = os.environ.get("GRUD_KERNEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "grud" / "kernels"


def _library_names(cc: str, flag_sets: list[list[str]]) -> list[str]:
    """The cached library's name for each flag set: a hash of the sources, the compiler, the flags
    and the machine (read once for all of them)."""
    base = hashlib.sha256()
    for name in SOURCES:
        base.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    base.update("\0".join([cc, _compiler_version(cc), platform.machine(), _cpu_signature()]).encode())
    names = []
    for flags in flag_sets:
        h = base.copy()
        h.update("\0".join(flags).encode())
        names.append(f"grud_kernel_abi{ABI}_{h.hexdigest()[:16]}.so")
    return names


def _compile(cc: str, flags: list[str], target: Path) -> str | None:
    """Build into a temporary file next to ``target``, then rename; return an error text or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        cmd = [cc, *flags, str(HERE / MAIN_SOURCE), "-o", tmp, "-lm"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            return f"{' '.join(cmd)} failed: {(out.stderr or out.stdout).strip()[-2000:]}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"compiling {MAIN_SOURCE} failed: {e}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build() -> tuple[Path | None, str | None]:
    """Path of the compiled library (building it if needed), or ``(None, reason)``."""
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found ($CC, cc, gcc, clang)"
    # -march=native and OpenMP; else without OpenMP, then without either
    flag_sets = [FLAGS + NATIVE_ARCH + OPENMP, FLAGS + NATIVE_ARCH, FLAGS]
    try:
        targets = [_cache_dir() / name for name in _library_names(cc, flag_sets)]
    except OSError as e:
        return None, f"cannot read the kernel sources: {e}"
    for target in targets:  # a build from an earlier process (a fallback too: no failed compile per start)
        if target.exists():
            return target, None
    errors = []
    for flags, target in zip(flag_sets, targets):
        try:
            err = _compile(cc, flags, target)
        except OSError:  # the cache folder cannot be written: build in a private temporary folder
            target = Path(tempfile.mkdtemp(prefix="grud-kernel-")) / target.name
            err = _compile(cc, flags, target)
        if err is None:
            log.info("compiled the native GRU kernel: %s", target)
            return target, None
        errors.append(err)
    return None, errors[-1]


def _blas() -> tuple[int, int, int | None] | None:
    """Addresses of ``sgemm_``, ``dgemm_`` and (MKL builds) ``MKL_Set_Num_Threads_Local`` exported by
    PyTorch's CPU library, or None without the first two."""
    import torch

    lib_dir = Path(torch.__file__).resolve().parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = lib_dir / name
        if not path.exists():
            continue
        try:
            lib = ctypes.CDLL(str(path))
            s, d = lib.sgemm_, lib.dgemm_
        except (OSError, AttributeError):
            return None
        try:
            # the C interface (by value); the lower-case name is the Fortran one (by pointer)
            local = ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value
        except AttributeError:
            local = None
        return ctypes.cast(s, ctypes.c_void_p).value, ctypes.cast(d, ctypes.c_void_p).value, local
    return None


_P = ctypes.c_void_p
_I = ctypes.c_int64


def _declare(lib) -> None:
    lib.grud_kernel_abi.restype = ctypes.c_int
    lib.grud_kernel_abi.argtypes = []
    lib.grud_set_blas.restype = ctypes.c_int
    lib.grud_set_blas.argtypes = [_P, _P, _P]
    for suffix in ("_f32", "_f64"):
        nan = getattr(lib, "grud_any_nonfinite" + suffix)
        nan.restype = ctypes.c_int
        nan.argtypes = [_P, _I]
        fwd = getattr(lib, "grud_gru_forward" + suffix)
        fwd.restype = ctypes.c_int
        fwd.argtypes = [_I, _I, _I, _P, _I, _I] + [_P] * 5 + [_I, _I, _I] + [_P] * 9 + [_I]
        bwd = getattr(lib, "grud_gru_backward" + suffix)
        bwd.restype = ctypes.c_int
        bwd.argtypes = [_I, _I, _I] + [_P] * 5 + [_I, _I, _I] + [_P] * 7 + [_I, _I] + [_P] * 5 + [_I]
        dfwd = getattr(lib, "grud_decay_input_forward" + suffix)
        dfwd.restype = ctypes.c_int
        dfwd.argtypes = [_I, _I, _I] + [_P] * 3 + [_I, _I] + [_P] * 4 + [_I]
        dbwd = getattr(lib, "grud_decay_input_backward" + suffix)
        dbwd.restype = ctypes.c_int
        dbwd.argtypes = [_I, _I, _I] + [_P] * 3 + [_I, _I] + [_P] * 4 + [_I, _I] + [_P] * 2 + [_I]


def load():
    """``(ctypes library, None)`` with BLAS handed over, or ``(None, reason it is unavailable)``."""
    blas = _blas()
    if blas is None:
        return None, "PyTorch's CPU library exports no sgemm_/dgemm_ on this platform"
    path, err = build()
    if path is None:
        return None, err
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, AttributeError) as e:
        return None, f"cannot load {path}: {e}"
    if lib.grud_kernel_abi() != ABI:
        return None, f"{path} speaks kernel ABI {lib.grud_kernel_abi()}, expected {ABI}"
    lib.grud_set_blas(*blas)
    return lib, None
