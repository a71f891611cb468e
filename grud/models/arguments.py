"""Checks of constructor arguments shared by the cells, the layer and the network.

Each check returns the normalised value or raises :class:`grud.ConfigError` naming the argument
(``key``: ``model.hidden_size`` for the network's config keys, ``GRUCell hidden_size`` for a cell
built by hand) with what was expected and what it got.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from grud.errors import ConfigError

__all__ = ["integer", "probability", "boolean", "one_of", "finite_or_none", "periods_list"]


def integer(key: str, value, minimum: int) -> int:
    """An integer >= ``minimum`` (a float with an integer value is accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(key: str, value) -> float:
    """A dropout probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{key}: expected a probability in [0, 1), got {value!r}")
    return float(value)


def boolean(key: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return bool(value)


def one_of(key: str, value, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def finite_or_none(key: str, value) -> float | None:
    """A finite number, or None (e.g. ``forget_bias``: None keeps torch's initialisation)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                              or not np.isfinite(value)):
        raise ConfigError(f"{key}: expected a finite number or null, got {value!r}")
    return None if value is None else float(value)


def periods_list(key: str, periods, integral: bool) -> list:
    """A non-empty, strictly increasing list of positive periods: integers when ``integral``
    (steps), else finite numbers (hours)."""
    if periods is None or isinstance(periods, (str, bytes)) or not hasattr(periods, "__iter__"):
        raise ConfigError(f"{key}: expected a list of increasing positive numbers, got {periods!r}")
    periods = list(periods)
    clean = []
    for p in periods:
        ok = not isinstance(p, bool) and isinstance(p, numbers.Real) and np.isfinite(p) and p > 0
        if ok and integral:
            ok = float(p).is_integer()
        if not ok:
            what = "positive integers (steps)" if integral else "positive numbers (hours)"
            raise ConfigError(f"{key}: expected {what}, got {periods!r}")
        clean.append(int(p) if integral else float(p))
    if not clean or any(b <= a for a, b in zip(clean, clean[1:])):
        raise ConfigError(f"{key}: expected a non-empty, strictly increasing list, got {periods!r}")
    return clean
