"""Run-directory files (JSON, CSV, bytes), each written through :func:`grud.atomic_files.atomic_write`."""
from __future__ import annotations

import json
import math
from pathlib import Path

from grud.atomic_files import atomic_write

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_csv", "atomic_write_json", "output_file"]


def output_file(value, default: str, key: str = "output") -> Path:
    """The file a command writes, checked before any work: a regular file or a new name (not a
    folder, a device or a link to one) whose nearest existing folder is writable. Creates nothing."""
    import os

    from grud.errors import ConfigError

    out = Path(str(value or default)).expanduser()
    if out.is_dir():
        raise ConfigError(f"{key}={value}: is a directory; expected a file name such as {out / default}")
    if out.exists() and (out.is_symlink() or not out.is_file()):
        raise ConfigError(f"{key}={value}: is not a regular file (a device or a link); expected a file name "
                          f"(the file is written under a temporary name, then renamed onto it)")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{key}={value}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value}: cannot write in {folder} (permission denied)")
    if folder == out.parent:  # it exists: try a file there (some file systems refuse what access() allows)
        import tempfile

        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise ConfigError(f"{key}={value}: cannot write in {folder} ({err.strerror or err})") from None
    return out


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def json_text(obj) -> str:
    """``obj`` as the JSON grud writes: plain types, NaN and infinities as null (valid JSON)."""
    return json.dumps(_plain(obj), indent=2, sort_keys=True) + "\n"


def atomic_write_json(path, obj) -> Path:
    return atomic_write_bytes(path, json_text(obj).encode())


def atomic_write_csv(path, frame, float_format: str | None = None) -> Path:
    """``frame`` as CSV (no index), streamed into the temporary file: never the whole text in memory."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format=float_format,
                                                       encoding="utf-8", lineterminator="\n"))
