"""Argument checks for the recurrence entry points: shapes, dtypes, devices, with expected vs actual."""
from __future__ import annotations

from torch import Tensor

__all__ = ["check_shape", "check_same_dtype_device"]


def check_shape(name: str, x: Tensor | None, expected: tuple, symbols: str | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` (if given) has shape ``expected``.

    ``symbols`` spells the expected shape with the house symbols, e.g. ``"(B, T, 3H)"``; without
    it the message shows the numbers only.
    """
    if x is None:
        return
    spelled = f"{symbols} = {tuple(expected)}" if symbols else str(tuple(expected))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {spelled}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {spelled}, got {tuple(x.shape)}")


def check_same_dtype_device(reference_name: str, reference: Tensor, **others: Tensor | None) -> None:
    """Raise ``ValueError`` unless every tensor in ``others`` has ``reference``'s dtype and device."""
    if not reference.is_floating_point():
        raise ValueError(f"{reference_name}: expected a floating point tensor, got dtype {reference.dtype}")
    for name, x in others.items():
        if x is None:
            continue
        if x.dtype != reference.dtype:
            raise ValueError(f"{name}: expected dtype {reference.dtype} (as {reference_name}), got {x.dtype}")
        if x.device != reference.device:
            raise ValueError(f"{name}: expected device {reference.device} (as {reference_name}), got {x.device}")
