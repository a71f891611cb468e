"""Fixed-length summary features of ragged series, for the classical baselines and the
optional summary input of the classification head (:func:`batch_summary` of a padded batch,
:func:`~grud.data.series_summary.ragged_summary` of a whole encoded dataset).

For each series and variable: the last observed value, the mean, min and max of the
observed values and the number of observations (the summary used for the non-recurrent
baselines of Che et al., Sci. Rep. 2018, and by most PhysioNet 2012 entries), followed by the
static features. Computed with ``np.*.reduceat`` over the row offsets of
:class:`~grud.data.dataset.IrregularDataset`, without a Python loop over series.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from grud.data.series_summary import STATISTICS, ragged_statistics
from grud.errors import ConfigError

__all__ = ["STATISTICS", "batch_summary", "series_statistics", "summary_features"]


def _variable_index(ds, variables: Sequence[str] | None) -> list[int]:
    if variables is None:
        return list(range(len(ds.variables)))
    variables = [str(v) for v in variables]
    unknown = [v for v in variables if v not in ds.variables]
    if unknown:
        raise ConfigError(
            f"variables: {unknown} not in this dataset; expected names among {list(ds.variables)}"
        )
    return [ds.variables.index(v) for v in variables]


def series_statistics(ds, variables: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per-series statistics of the observed values of each variable.

    Args:
        ds: an :class:`~grud.data.dataset.IrregularDataset`.
        variables: names (and order) of the variables to summarise; default all.

    Returns:
        dict with ``last``, ``mean``, ``min``, ``max`` (n, F) float64, NaN where the variable
        was never observed in that series (including empty series), and ``count`` (n, F)
        float64 (0 there).

    Shape:
        values (N, F) ragged over ``offsets`` (n+1,) -> each statistic (n, F)
    """
    cols = _variable_index(ds, variables)
    values = ds.values[:, cols] if cols != list(range(ds.values.shape[1])) else ds.values
    return ragged_statistics(values, ds.offsets)


def summary_features(ds, variables: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Summary feature matrix of a dataset: 5 statistics per variable, then the static features.

    Columns are grouped by statistic: ``<var>_last`` for every variable, then ``<var>_mean``,
    ``<var>_min``, ``<var>_max``, ``<var>_count``, then the static names. Values are NaN where a
    variable was never observed in a series (its count is 0) and where a static value is
    unknown; no imputation happens here (the baselines impute with training statistics).

    Args:
        ds: an :class:`~grud.data.dataset.IrregularDataset`.
        variables: names (and order) of the time-varying variables to use; default all.

    Returns:
        ``(X, names)`` with X (n, 5F + S) float64 and ``len(names) == 5F + S``.

    Shape:
        X: (n, 5F + S)
    """
    stats = series_statistics(ds, variables)
    var_names = list(ds.variables) if variables is None else [str(v) for v in variables]
    blocks = [stats[k] for k in STATISTICS] + [np.asarray(ds.static, dtype=np.float64).reshape(len(ds), -1)]
    names = [f"{v}_{k}" for k in STATISTICS for v in var_names] + list(ds.static_names)
    X = np.concatenate(blocks, axis=1)
    return X, names


def batch_summary(values: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The five statistics of :data:`STATISTICS` per variable, for a padded batch (differentiable).

    Same statistics as :func:`series_statistics`, but on the (normalised) values a network sees:
    a variable never observed in a series gets 0 (the training mean in z-score space) for its
    last, mean, min and max, and ``count`` enters as ``log1p(count)``.

    Shape:
        values, mask: (B, T, F); lengths: (B,) -> (B, 5F), grouped by statistic as in
        :func:`summary_features` (``last`` of every variable, then ``mean``, ...).
    """
    if values.shape != mask.shape or values.dim() != 3:
        raise ValueError(f"values and mask: expected the same (B, T, F) shape, got {tuple(values.shape)} "
                         f"and {tuple(mask.shape)}")
    T = values.shape[1]
    steps = torch.arange(T, device=values.device)
    obs = (mask > 0) & (steps[None, :, None] < lengths[:, None, None])
    count = obs.sum(1).to(values.dtype)
    seen = count > 0
    zero = values.new_zeros(())
    mean = torch.where(obs, values, zero).sum(1) / count.clamp_min(1)
    vmin = torch.where(seen, values.masked_fill(~obs, float("inf")).amin(1), zero)
    vmax = torch.where(seen, values.masked_fill(~obs, float("-inf")).amax(1), zero)
    last_step = torch.where(obs, steps[None, :, None], -1).amax(1)  # (B, F), -1 if never observed
    last = values.gather(1, last_step.clamp_min(0)[:, None, :])[:, 0]
    last = torch.where(seen, last, zero)
    return torch.cat([last, mean, vmin, vmax, torch.log1p(count)], dim=-1)
