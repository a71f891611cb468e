"""Per-series statistics of ragged series: last, mean, min, max and count of every variable.

The summary of Che et al. (Sci. Rep. 2018) for their non-recurrent baselines, used here by
:func:`grud.tasks.summary_features.summary_features` (the baselines' features) and by
:class:`~grud.data.batching.EncodedDataset` (the classification head's summary input, computed
once per series). ``np.*.reduceat`` over the row offsets, no Python loop over series.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STATISTICS", "ragged_statistics", "ragged_summary"]

STATISTICS = ("last", "mean", "min", "max", "count")


def ragged_statistics(v: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of :data:`STATISTICS` of flat rows ``v`` (N, F), NaN = unobserved, per series.

    Returns ``last``, ``mean``, ``min``, ``max`` (n, F) float64, NaN where a variable was never
    observed in a series, and ``count`` (n, F) float64 (0 there).

    ``reduceat`` over the starts of the non-empty series: they delimit exactly their rows (empty
    series own no row), which keeps it away from its "equal indices" and "index == len" pitfalls.
    """
    n, F = len(offsets) - 1, v.shape[1]
    out = {k: np.full((n, F), np.nan) for k in STATISTICS}
    out["count"] = np.zeros((n, F))
    lengths = np.diff(offsets)
    nonempty = np.flatnonzero(lengths > 0)
    if nonempty.size == 0 or F == 0:
        return out
    starts = offsets[:-1][nonempty]
    v = v.astype(np.float64)
    obs = ~np.isnan(v)
    count = np.add.reduceat(obs.astype(np.int64), starts, axis=0)
    total = np.add.reduceat(np.where(obs, v, 0.0), starts, axis=0)
    vmin = np.minimum.reduceat(np.where(obs, v, np.inf), starts, axis=0)
    vmax = np.maximum.reduceat(np.where(obs, v, -np.inf), starts, axis=0)
    rows = np.arange(v.shape[0])[:, None]
    last_row = np.maximum.reduceat(np.where(obs, rows, -1), starts, axis=0)
    seen = count > 0
    last = np.where(seen, v[np.maximum(last_row, 0), np.arange(F)[None, :]], np.nan)
    out["count"][nonempty] = count
    out["mean"][nonempty] = np.where(seen, total / np.maximum(count, 1), np.nan)
    out["min"][nonempty] = np.where(seen, vmin, np.nan)
    out["max"][nonempty] = np.where(seen, vmax, np.nan)
    out["last"][nonempty] = last
    return out


def ragged_summary(values: np.ndarray, mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The classification head's summary of every series at once, from flat rows.

    The summary input of an encoded dataset (:class:`~grud.data.batching.EncodedDataset` with
    ``summary=True``): the same numbers as :func:`grud.tasks.summary_features.batch_summary` of any
    padded batch of these series (computed in float64 here, so equal to float32 rounding), computed
    once per dataset instead of for every batch of every epoch. Unobserved: 0 for last, mean, min
    and max; ``count`` enters as ``log1p(count)``.

    Shape:
        values, mask: (N, F) flat rows of n series delimited by ``offsets`` (n+1,) -> (n, 5F) float32
    """
    values, mask = np.asarray(values), np.asarray(mask)
    if values.shape != mask.shape or values.ndim != 2:
        raise ValueError(f"values and mask: expected the same (N, F) shape, got {values.shape} and {mask.shape}")
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(values):
        raise ValueError(f"offsets: expected (n+1,) row offsets from 0 to {len(values)}, got shape {offsets.shape}"
                         + (f" from {offsets[0]} to {offsets[-1]}" if offsets.ndim == 1 and len(offsets) else ""))
    stats = ragged_statistics(np.where(mask > 0, values, np.nan), offsets)
    blocks = [np.log1p(stats[k]) if k == "count" else np.nan_to_num(stats[k], nan=0.0) for k in STATISTICS]
    return np.concatenate(blocks, axis=1).astype(np.float32)
