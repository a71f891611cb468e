"""Safe checkpoint I/O: atomic writes, and loads that cannot execute code.

Every load uses ``torch.load(weights_only=True)``: a checkpoint that carries anything but
tensors and plain containers (e.g. a malicious pickle) is refused with a
:class:`grud.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from grud.cli.files import atomic_write
from grud.errors import CheckpointError


def safe_load(path, map_location="cpu") -> dict:
    """The checkpoint dictionary at ``path``, read with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` naming the file for: a missing file or a folder, an empty,
    damaged or truncated file, a file of another format, a checkpoint holding anything but
    tensors and plain containers (refused before anything in it runs), and a file that is not
    a checkpoint dictionary.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError("checkpoint not found", path=path)
    if path.is_dir():
        raise CheckpointError("expected a checkpoint file (best.ckpt, last.ckpt), got a folder", path=path)
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint: {exc.strerror or exc}", path=path) from None
    if empty:
        raise CheckpointError("empty file: expected a checkpoint written by grud-train", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint: {exc.strerror or exc}", path=path) from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes fail torch's unpickler in any way (IndexError, ...)
        said = " ".join(str(exc).split())[:300]
        if ("Weights only load failed" in said or "weights_only" in said) and not _cut_inside_zip_magic(path):
            raise CheckpointError(
                f"refused to load: not a safe grud checkpoint (only tensors and plain containers are "
                f"accepted; torch.load(weights_only=True) said: {said})", path=path) from None
        raise CheckpointError(
            f"not a readable checkpoint: damaged, truncated or another format (torch.load said: "
            f"{said or type(exc).__name__})", path=path) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"expected a checkpoint dictionary, found {type(ckpt).__name__}", path=path)
    return ckpt


#: the first bytes of every file torch.save writes (a zip archive)
_ZIP_MAGIC = b"PK\x03\x04"


def _cut_inside_zip_magic(path: Path) -> bool:
    """True for a file shorter than the zip magic that begins like it: a checkpoint cut in its
    first bytes. torch reads any file without the full magic as a legacy pickle, so its
    unpickler, not its zip reader, reports the damage."""
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    return len(head) < len(_ZIP_MAGIC) and _ZIP_MAGIC.startswith(head)


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to a temporary name, then rename (see :func:`grud.cli.files.atomic_write`)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: write to a temporary name then rename; load with weights_only=True."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return safe_load(path, map_location=map_location or "cpu")
