"""Training statistics and value transforms: the log transform of heavy-tailed variables."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data.dataset import IrregularDataset, Series
from grud.data.transforms import FittedStats, fit_stats, log_candidates
from grud.errors import DataError


def _dataset(n=40, T=5, seed=0):
    """Three variables: 'heavy' log-normal (skewed, positive), 'normal' symmetric, 'signed' skewed
    but with negative values."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        heavy = rng.lognormal(0.0, 1.5, size=T)
        normal = rng.normal(10.0, 2.0, size=T)
        signed = rng.exponential(2.0, size=T) ** 2 - 1.0
        v = np.stack([heavy, normal, signed], axis=1).astype(np.float32)
        v[rng.random((T, 3)) < 0.3] = np.nan
        series.append(Series(str(i), np.arange(T, dtype=float), v, np.zeros(1, np.float32), i % 2))
    return IrregularDataset.from_series(series, ["heavy", "normal", "signed"], ["s"])


def test_log_candidates_are_skewed_non_negative_variables_of_the_training_split():
    ds = _dataset()
    assert log_candidates(ds.values, list(ds.variables)) == ["heavy"]
    stats = fit_stats(ds)
    assert stats.log_variables == ["heavy"]
    assert stats.value_transform == "affine"


def test_log_transform_z_scores_log1p_and_round_trips_exactly():
    ds = _dataset()
    affine = fit_stats(ds)
    log = affine.with_value_transform("log")
    z = log.normalise_values(ds.values)
    # the heavy variable is standardised in log1p space, the others exactly as before
    heavy = np.log1p(ds.values[:, 0][np.isfinite(ds.values[:, 0])])
    np.testing.assert_allclose(np.nanmean(z[:, 0]), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(z[:, 0]), 1.0, atol=1e-4)
    np.testing.assert_allclose(z[:, 0][np.isfinite(z[:, 0])], (heavy - heavy.mean()) / heavy.std(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_array_equal(z[:, 1:], affine.normalise_values(ds.values)[:, 1:])
    assert np.array_equal(np.isnan(z), np.isnan(ds.values))  # NaN stays NaN
    np.testing.assert_allclose(log.denormalise_values(z), ds.values, rtol=1e-4, atol=1e-5)
    back = log.denormalise_values(torch.from_numpy(np.nan_to_num(z)))
    np.testing.assert_allclose(back.numpy()[np.isfinite(ds.values)], ds.values[np.isfinite(ds.values)], rtol=1e-4,
                               atol=1e-5)


def test_value_transform_travels_as_plain_lists_and_switches_back():
    stats = fit_stats(_dataset()).with_value_transform("log")
    d = stats.to_dict()
    again = FittedStats.from_dict(d)
    assert again.value_transform == "log" and again.with_value_transform("log") is again
    x = np.array([[3.0, 9.0, 1.0]], np.float32)
    np.testing.assert_array_equal(again.normalise_values(x), stats.normalise_values(x))
    affine = again.with_value_transform("affine")
    np.testing.assert_allclose(affine.normalise_values(x), fit_stats(_dataset()).normalise_values(x), rtol=1e-6)


def test_statistics_without_log_parameters_refuse_the_log_transform():
    d = fit_stats(_dataset()).to_dict()
    for k in ("log_variables", "log_value_mean", "log_value_std", "log_input_means", "value_transform"):
        d.pop(k)  # statistics saved before the log transform existed
    old = FittedStats.from_dict(d)
    assert old.with_value_transform("affine") is old
    with pytest.raises(DataError, match="log"):
        old.with_value_transform("log")
    with pytest.raises(ValueError, match="value_transform"):
        old.with_value_transform("sqrt")
