"""Writing a file atomically: a temporary name in the same folder, then one rename.

Readers see the old file or the complete new one, never a half-written one, and a failed write
leaves nothing behind. The new file gets the permissions an ordinary ``open(path, "w")`` would
give it (the old file's mode when it is replaced, else ``0o666`` less the umask), not the
owner-only ``0o600`` of :func:`tempfile.mkstemp`.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def _create_temporary(path: Path) -> str:
    """Create an empty, unused temporary file next to ``path``; return its name.

    Created with mode ``0o666``, which the kernel lowers by the process umask: exactly the mode
    ``open(path, "w")`` gives a new file (``tempfile.mkstemp`` would give ``0o600``). The umask is
    never read or set, so this is safe while other threads create files.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(tmp)
    raise FileExistsError(f"could not create a temporary file next to {path}")


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    ``write`` receives the temporary path (a ``str``) and may open it in any mode or hand it to a
    library (``torch.save``, ``np.savez``). Any exception, ``KeyboardInterrupt`` included, removes
    the temporary file and propagates; ``path`` is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:  # a replaced file keeps its mode; a new one keeps the umask's
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
