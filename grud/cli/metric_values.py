"""Metric values as metrics.json and grud-evaluate report them.

Lightning hands back each logged metric as a Python float widened from a float32 tensor, so
``0.142`` arrived as ``0.1420000046491623``: digits the computation never had. A float32 value
is written as the shortest decimal that reads back as the same float32 (``0.142``), a count
(``test/n``) as an integer; float64 values (the summary baselines' scikit-learn scores) keep
every digit.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["metric_value", "metric_values"]


def metric_value(key: str, value) -> float | int:
    """``value`` as written under ``key``: an integer for a count (``*/n``), the shortest decimal
    of a float32 for a value that is one, else the float itself."""
    v = float(value)
    if not math.isfinite(v):
        return v
    if key.rsplit("/", 1)[-1] == "n" and v.is_integer():
        return int(v)
    single = np.float32(v)
    if float(single) == v:  # exactly a float32: numpy's str is its shortest round-tripping decimal
        return float(str(single))
    return v


def metric_values(metrics: dict) -> dict:
    """:func:`metric_value` of every item of ``metrics``."""
    return {k: metric_value(k, v) for k, v in metrics.items()}
