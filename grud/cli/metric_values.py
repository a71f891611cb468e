"""Metric values as metrics.json and grud-evaluate report them.

Lightning hands back each metric a network logged as a Python float widened from a float32
tensor, so ``0.142`` arrived as ``0.1420000046491623``: digits the computation never had. Such
values (``float32=True``) are written as the shortest decimal that reads back as the same
float32 (``0.142``); the scores scikit-learn computes in float64 (the summary baselines,
ensembles scored from a prediction frame) keep every digit. A count (``test/n``) is an integer.
"""
from __future__ import annotations

import math

from grud.float32_text import float32_decimals

__all__ = ["metric_value", "metric_values"]


def metric_value(key: str, value, float32: bool = False) -> float | int:
    """``value`` as written under ``key``: an integer for a whole count (``*/n``); with ``float32``
    (a value computed in float32) its shortest decimal; else the float itself."""
    v = float(value)
    if not math.isfinite(v):
        return v
    if key.rsplit("/", 1)[-1] == "n" and v.is_integer():
        return int(v)
    return float(float32_decimals(v)) if float32 else v


def metric_values(metrics: dict, float32: bool = False) -> dict:
    """:func:`metric_value` of every item of ``metrics``."""
    return {k: metric_value(k, v, float32) for k, v in metrics.items()}
