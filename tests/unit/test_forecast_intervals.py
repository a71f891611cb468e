"""Split-conformal forecast intervals: the quantile rule, groups, coverage, the task and its checkpoint."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from grud.cli.checkpoint_ensemble import average_forecast_frames
from grud.data.transforms import fit_stats
from grud.errors import ConfigError
from grud.tasks import forecast_intervals as CI
from grud.tasks.forecasting import ForecastTask

from test_forecasting import MODEL, make_dataset


def test_the_conformal_quantile_is_the_ceil_n_plus_1_level_th_smallest():
    r = np.arange(1.0, 10.0)  # 1..9
    assert CI.conformal_quantile(r, 0.9) == 9.0  # ceil(10 * 0.9) = 9
    assert CI.conformal_quantile(r, 0.5) == 5.0
    assert CI.conformal_quantile(r[:8], 0.9) == np.inf  # ceil(9 * 0.9) = 9 > 8: too few for the level
    assert CI.conformal_quantile(np.zeros(0), 0.5) == np.inf


def test_groups_split_by_time_since_the_last_observation_and_never_observed():
    since = torch.tensor([[[0.5, 2.0, 30.0], [12.0, 5.0, 0.0]], [[30.0, 1.0, 3.0], [24.0, 6.0, 11.9]]])  # (2, 2, 3)
    last_mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    g = CI.interval_group(since, last_mask)
    # bins [0, 1) [1, 3) [3, 6) [6, 12) [12, 24) [24, inf) are groups 1..6; never observed is 0
    assert g.tolist() == [[[1, 2, 0], [5, 3, 0]], [[6, 2, 3], [6, 4, 4]]]
    assert g.max() < CI.N_GROUPS


def _synthetic(n, rng, scales):
    """(pred, target, mask, group) (1, n, F) with residual scale scales[f][group]."""
    F = len(scales)
    group = torch.from_numpy(rng.integers(0, CI.N_GROUPS, (1, n, F)))
    scale = torch.tensor(scales, dtype=torch.float64)[torch.arange(F).expand(1, n, F), group]
    pred = torch.from_numpy(rng.normal(0, 1, (1, n, F)))
    target = pred + scale * torch.from_numpy(rng.standard_t(4, (1, n, F)))
    mask = torch.from_numpy((rng.random((1, n, F)) < 0.7).astype(np.float64))
    return pred, target, mask, group


def test_half_widths_cover_new_residuals_at_their_level_in_every_group():
    rng = np.random.default_rng(0)
    scales = [[0.1 * (1 + g) for g in range(CI.N_GROUPS)], [2.0] * CI.N_GROUPS]
    pool = CI.ResidualPool(2)
    pool.add(*_synthetic(20000, rng, scales))
    hw = pool.halfwidths()
    assert hw.shape == (len(CI.INTERVAL_LEVELS), 2, CI.N_GROUPS)
    assert (hw[:, 0, -1] > 3 * hw[:, 0, 0]).all()  # the wide group gets the wide interval
    assert (torch.diff(hw, dim=0) > 0).all()  # higher level, wider
    pred, target, mask, group = _synthetic(40000, np.random.default_rng(1), scales)
    for li, level in enumerate(CI.INTERVAL_LEVELS):
        width = CI.halfwidth_at(hw, level, group).double()
        inside = ((target - pred).abs() <= width)[mask > 0]
        for f in range(2):
            for g in range(CI.N_GROUPS):
                cell = ((torch.arange(2).expand_as(group) == f) & (group == g))[mask > 0]
                assert float(inside[cell].double().mean()) == pytest.approx(level, abs=0.04), (level, f, g)


def test_small_groups_fall_back_to_the_variable_and_small_variables_to_all():
    pool = CI.ResidualPool(3)
    res = {(0, 1): np.full(40, 1.0), (0, 2): np.full(5, 50.0), (1, 1): np.full(3, 9.0), (2, 3): np.full(40, 4.0)}
    for (f, g), r in res.items():
        n = len(r)
        pred = torch.zeros(1, n, 3)
        target = torch.zeros(1, n, 3)
        target[0, :, f] = torch.from_numpy(r).float()
        mask = torch.zeros(1, n, 3)
        mask[0, :, f] = 1
        pool.add(pred, target, mask, torch.full((1, n, 3), g))
    hw = pool.halfwidths((0.5,))[0]
    assert hw[0, 1] == 1.0  # its own 40 residuals
    assert hw[0, 2] == 1.0 and hw[0, 0] == 1.0  # 5 residuals: variable 0's 45 pooled (median 1)
    all_median = CI.conformal_quantile(np.concatenate(list(res.values())), 0.5)
    assert hw[1, 1] == all_median and hw[1, 4] == all_median  # variable 1 has 3 in all: every residual
    assert hw[2, 3] == 4.0
    assert torch.isnan(CI.ResidualPool(2).halfwidths()).all()


@pytest.fixture(scope="module")
def calibrated():
    train, val = make_dataset(16, seed=1), make_dataset(40, seed=3, n_rows=40)
    stats = fit_stats(train)
    torch.manual_seed(0)
    task = ForecastTask(MODEL, stats.to_dict(), decoder={"dropout": 0.0})
    with torch.no_grad():
        task.decoder.out.weight.normal_(0, 0.5)
    task.eval()
    task.log = lambda *a, **k: None  # no trainer attached
    assert not task.calibrated
    enc = task.encode_dataset(val, stats)
    with torch.no_grad():
        for b in (range(0, 20), range(20, 40)):
            task.validation_step(enc.collate(list(b)), 0)
    task.on_validation_epoch_end()
    return task, stats


def test_a_validation_epoch_calibrates_the_task_and_the_checkpoint_carries_it(calibrated):
    task, stats = calibrated
    assert task.calibrated and torch.isfinite(task.interval_halfwidth).all()
    ckpt = {}
    task.on_save_checkpoint(ckpt)
    buf = __import__("io").BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    fresh = ForecastTask(MODEL, stats.to_dict())
    assert not fresh.calibrated
    fresh.on_load_checkpoint(loaded)
    assert torch.equal(fresh.interval_halfwidth, task.interval_halfwidth)
    fresh.on_load_checkpoint({"grud": {"task": "forecast"}})  # written before intervals: unchanged
    assert torch.equal(fresh.interval_halfwidth, task.interval_halfwidth)
    with pytest.raises(RuntimeError, match="interval_halfwidth: expected"):
        fresh.on_load_checkpoint({"grud": {"interval_halfwidth": torch.zeros(2, 2)}})


def test_conformal_bounds_are_the_forecast_plus_minus_the_half_width_in_raw_units(calibrated):
    task, stats = calibrated
    ds = make_dataset(10, seed=2)
    enc = task.encode_dataset(ds, stats)
    batch = enc.collate(range(len(ds)))
    part = task.predict_step(batch, 0, interval="conformal", interval_level=0.8)
    plain = task.predict_step(batch, 0)
    assert torch.equal(part["prediction"], plain["prediction"]) and "lower" not in plain
    hw = CI.halfwidth_at(task.interval_halfwidth, 0.8, CI.interval_group(batch["since_last"], batch["last_mask"]))
    std = torch.tensor(np.asarray(stats.value_std, np.float32))
    np.testing.assert_allclose(part["upper"] - part["prediction"], hw * std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(part["prediction"] - part["lower"], hw * std, rtol=1e-4, atol=1e-4)
    df = task.predictions_frame([part], ds)
    assert list(df.columns)[-2:] == ["lower", "upper"] and (df["lower"] < df["upper"]).all()


@pytest.mark.parametrize("kw, match", [
    (dict(interval="bootstrap"), "interval: expected one of"),
    (dict(interval="conformal", interval_level=0.85), r"interval_level: expected one of \[0.5, 0.8, 0.9, 0.95\]"),
    (dict(interval="conformal", mc_samples=4), "set mc_samples=0"),
    (dict(interval="mc", interval_level=0.8, mc_samples=4), "other levels need interval=conformal"),
])
def test_interval_settings_it_cannot_serve_are_config_errors(calibrated, kw, match):
    task, stats = calibrated
    batch = task.encode_dataset(make_dataset(4, seed=2), stats).collate(range(4))
    with pytest.raises(ConfigError, match=match):
        task.predict_step(batch, 0, **kw)


def test_an_uncalibrated_checkpoint_refuses_conformal_intervals(calibrated):
    _, stats = calibrated
    task = ForecastTask(MODEL, stats.to_dict()).eval()
    batch = task.encode_dataset(make_dataset(4, seed=2), stats).collate(range(4))
    with pytest.raises(ConfigError, match="holds no conformal half-widths"):
        task.predict_step(batch, 0, interval="conformal")


def test_an_ensemble_averages_its_members_bounds():
    rows = {"id": ["a", "a"], "time": [25.0, 26.0], "variable": ["HR", "HR"], "value": [70.0, np.nan]}
    a = pd.DataFrame({**rows, "prediction": [70.0, 72.0], "lower": [60.0, 62.0], "upper": [80.0, 82.0]})
    b = pd.DataFrame({**rows, "prediction": [74.0, 70.0], "lower": [70.0, 50.0], "upper": [78.0, 90.0]})
    out = average_forecast_frames([a, b])
    np.testing.assert_allclose(out["prediction"], [72.0, 71.0])
    np.testing.assert_allclose(out["lower"], [65.0, 56.0])
    np.testing.assert_allclose(out["upper"], [79.0, 86.0])
    assert "lower" not in average_forecast_frames([a.drop(columns=["lower", "upper"]), b])


def test_a_frame_with_conformal_bounds_scores_the_test_epochs_coverage(calibrated):
    """grud-evaluate of an ensemble scores coverage from the frame's bounds; one checkpoint's frame gives the epoch's."""
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule
    from grud.tasks.forecasting import forecast_frame_metrics

    trained, stats = calibrated
    task = ForecastTask(MODEL, stats.to_dict(), decoder={"dropout": 0.0})
    task.load_state_dict(trained.state_dict())
    task.interval_halfwidth = trained.interval_halfwidth.clone()
    task.eval()
    ds = make_dataset(30, seed=5, n_rows=40)
    dm = GrudDataModule(ds, None, ds, stats, task.encode_dataset, batch_size=8)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    epoch = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert 0.0 < epoch["test/interval_coverage"] < 1.0
    enc = task.encode_dataset(ds, stats)
    part = task.predict_step(enc.collate(range(len(ds))), 0, interval="conformal", interval_level=CI.COVERAGE_LEVEL)
    frame = task.predictions_frame([part], ds)
    got = forecast_frame_metrics(frame, ds, stats, task.history_hours, task.horizon_hours)
    assert got["test/interval_coverage"] == pytest.approx(epoch["test/interval_coverage"], abs=1e-3)
    assert "test/interval_coverage" not in forecast_frame_metrics(frame.drop(columns=["lower", "upper"]), ds, stats,
                                                                  task.history_hours, task.horizon_hours)
