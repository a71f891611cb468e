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


def _with_rare(n, observe_rare: bool, seed=0):
    """Two variables and two statics; 'rare' and the static 'height' observed only when asked."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        v = np.stack([rng.normal(80, 5, 6), np.full(6, 1e4 if observe_rare else np.nan)], 1).astype(np.float32)
        static = np.array([rng.normal(60, 9), 175.0 if observe_rare else np.nan], np.float32)
        series.append(Series(f"s{i}", np.arange(6.0), v, static, i % 2))
    return IrregularDataset.from_series(series, ["hr", "rare"], ["age", "height"])


def test_a_variable_the_training_split_never_observed_stays_unobserved_in_later_data(caplog):
    """Its statistics are placeholders and its weights never learned: a later observation would
    enter the network in raw units (a probability moved from 0.55 to 0.33 on one such value)."""
    from grud.data.batching import EncodedDataset
    from grud.data.forecast_batching import ForecastDataset
    from grud.models import preset

    with pytest.warns(RuntimeWarning, match="2 variable\\(s\\) never observed in the training split.*rare, height"):
        stats = fit_stats(_with_rare(8, observe_rare=False))
    assert stats.unseen_variables == ["rare"] and stats.unseen_static == ["height"]
    assert FittedStats.from_dict(stats.to_dict()).unseen_variables == ["rare"]  # travels in the checkpoint
    later, plain = _with_rare(4, observe_rare=True, seed=1), _with_rare(4, observe_rare=False, seed=1)
    with caplog.at_level("WARNING", logger="grud"):
        enc = EncodedDataset(later, stats)
    assert "ignoring 28 observation(s)" in caplog.text and "rare (24)" in caplog.text and "height (4)" in caplog.text
    ref = EncodedDataset(plain, stats)
    for k in ("values", "mask", "delta", "static"):
        np.testing.assert_array_equal(getattr(enc, k), getattr(ref, k), err_msg=k)
    net = preset("grud", n_features=2, n_static=2, hidden_size=4).eval()
    a, b = enc.collate([0, 1, 2, 3]), ref.collate([0, 1, 2, 3])
    with torch.no_grad():
        keys = ("values", "mask", "delta", "times", "lengths", "static")
        torch.testing.assert_close(net(*[a[k] for k in keys])[1], net(*[b[k] for k in keys])[1])
    fc = ForecastDataset(later, stats, history_hours=3.0, horizon_hours=3.0)
    assert fc.query_mask[:, 1].sum() == 0 and (fc.static[:, 1] == 0).all()  # never queried, never scored
    old = {k: v for k, v in stats.to_dict().items() if not k.startswith("unseen")}
    assert FittedStats.from_dict(old).hide_unseen(later.values, later.static)[2] == {}  # older statistics
