"""Writing a file atomically: a temporary name in the same folder, then one rename.

Readers see the old file or the complete new one, never a half-written one, and a failed write
leaves nothing behind. The new file gets the permissions an ordinary ``open(path, "w")`` would
give it (the old file's mode when it is replaced, else ``0o666`` less the umask), not the
owner-only ``0o600`` of :func:`tempfile.mkstemp`.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    ``write`` receives the temporary path (a ``str``) and may open it in any mode or hand it to a
    library (``torch.save``, ``np.savez``). Any exception, ``KeyboardInterrupt`` included, removes
    the temporary file and propagates; ``path`` is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
