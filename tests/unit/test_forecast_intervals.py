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


def _pool_of(cells: dict, n_features: int, held=None) -> CI.ResidualPool:
    """A pool holding residuals ``cells[(variable, group)]``."""
    pool = CI.ResidualPool(n_features, held=held)
    for (f, g), r in cells.items():
        n = len(r)
        pred, target, mask = torch.zeros(1, n, n_features), torch.zeros(1, n, n_features), torch.zeros(1, n, n_features)
        target[0, :, f] = torch.from_numpy(np.asarray(r, np.float64)).float()
        mask[0, :, f] = 1
        pool.add(pred, target, mask, torch.full((1, n, n_features), g))
    return pool


def test_small_groups_share_their_own_residuals_not_the_variables():
    """Small cells form a remainder per variable; small remainders one across variables; then all."""
    big = np.linspace(0.0, 1.0, 40)
    cells = {(0, 1): big, (0, 2): np.full(20, 50.0), (0, 6): np.full(15, 60.0),  # variable 0: remainder of 35
             (1, 1): big, (1, 3): np.full(5, 9.0),  # variable 1: remainder of 5 -> across variables
             (2, 3): big, (2, 4): np.full(28, 7.0)}  # variable 2: remainder of 28 -> across variables
    hw = _pool_of(cells, 4).halfwidths((0.5,))[0]
    assert hw[0, 1] == CI.conformal_quantile(big, 0.5) and hw[1, 1] == hw[0, 1] and hw[2, 3] == hw[0, 1]
    remainder_0 = CI.conformal_quantile(np.r_[np.full(20, 50.0), np.full(15, 60.0)], 0.5)
    assert remainder_0 == 50.0 and (hw[0, [0, 2, 3, 4, 5, 6]] == remainder_0).all()  # empty cells too
    across = CI.conformal_quantile(np.r_[np.full(5, 9.0), np.full(28, 7.0)], 0.5)
    assert (hw[1, [0, 2, 3, 4, 5, 6]] == across).all() and (hw[2, [0, 1, 2, 4, 5, 6]] == across).all()
    assert (hw[3] == across).all()  # never seen in validation: the remainder across variables
    tiny = _pool_of({(0, 1): big, (1, 2): np.full(3, 9.0)}, 2).halfwidths((0.5,))[0]
    assert (tiny[1] == 9.0).all()  # 3 < 30: its own quantile, as it is wider than every residual's
    assert (tiny[0, [0, 2]] == 9.0).all() and CI.conformal_quantile(np.r_[big, np.full(3, 9.0)], 0.5) < 9.0
    narrow = _pool_of({(0, 1): 10 + big, (1, 2): np.full(3, 0.5)}, 2).halfwidths((0.5,))[0]
    assert (narrow[1] == CI.conformal_quantile(np.r_[10 + big, np.full(3, 0.5)], 0.5)).all()  # never narrower
    assert torch.isnan(CI.ResidualPool(2).halfwidths()).all()


def test_held_variables_zeros_stay_out_of_the_shared_fallback():
    """A variable forecast exactly by rule (constant in training) has residuals of 0: pooled across
    variables they would narrow the other variables' rare groups below their level."""
    cells = {(0, 1): np.zeros(200), (0, 3): np.zeros(25),  # held: many zeros, a small remainder
             (1, 1): np.linspace(0.0, 1.0, 40), (1, 2): np.full(10, 5.0)}  # variable 1: remainder of 10
    held = np.array([True, False])
    hw = _pool_of(cells, 2, held=held).halfwidths((0.5,))[0]
    # variable 1's remainder (10 residuals of 5) is too few alone and, without the zeros, stays 5
    assert (hw[1, [0, 2, 3, 4, 5, 6]] == 5.0).all()
    assert hw[0, 1] == 0.0  # the held variable's big group keeps its own (zero) quantile
    assert (hw[0, [0, 2, 3, 4, 5, 6]] == 0.0).all()  # its own small cells pool with its zeros, as before
    mixed = _pool_of(cells, 2).halfwidths((0.5,))[0]  # not held: 25 zeros + 10 fives give 0
    assert (mixed[1, [0, 2]] == 0.0).all()
    # constant in training need not mean constant later: a held variable's own residuals of 5 keep
    # its small cells at least that wide (they were 0.94, from the other variable's alone)
    rng = np.random.default_rng(0)
    off = _pool_of({(0, 0): np.full(10, 5.0), (1, 1): rng.random(200), (1, 0): rng.random(20)}, 2, held=held)
    hw = off.halfwidths((0.9,))[0]
    assert hw[0, 0] == 5.0 and hw[1, 0] < 1.0  # the other variable's fallback without the held 5s
    # every variable held: the fallback still has residuals to draw on (was +inf)
    alone = _pool_of({(0, 1): rng.random(500), (0, 3): rng.random(10)}, 1, held=[True]).halfwidths((0.9,))[0]
    assert torch.isfinite(alone).all()
    with pytest.raises(ValueError, match="expected 2 flags"):
        CI.ResidualPool(2, held=[True])


def test_a_rare_wide_group_is_covered_at_its_level():
    """A variable's never-observed group is small and errs most: the variable's quantile would
    cover it a few % of the time, its own remainder at the level."""
    rng = np.random.default_rng(0)

    def draw(n_big, n_small):
        return {**{(0, g): 0.1 * np.abs(rng.normal(size=n_big)) for g in range(1, CI.N_GROUPS)},
                (0, 0): 2.0 * np.abs(rng.normal(size=n_small))}

    hw = _pool_of(draw(500, 25), 1).halfwidths((0.9,))[0]  # group 0 has 25 < 30
    new = draw(2000, 20000)
    assert np.mean(new[(0, 0)] <= float(hw[0, 0])) >= 0.8  # variable 0's pooled quantile: about 7 %
    assert np.mean(new[(0, 3)] <= float(hw[0, 3])) == pytest.approx(0.9, abs=0.03)


def test_quantile_ranks_are_exact_at_every_level():
    from fractions import Fraction

    for level in CI.INTERVAL_LEVELS:
        exact = Fraction(str(level))
        for n in range(1, 3000):
            want = -((-(n + 1) * exact.numerator) // exact.denominator)  # exact ceil
            assert CI.conformal_rank(n, level) == want, (n, level)


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
    assert fresh.interval_window == {"history_hours": 24.0, "horizon_hours": 24.0} == task.window()
    fresh.on_load_checkpoint({"grud": {"task": "forecast"}})  # written before intervals: unchanged
    assert torch.equal(fresh.interval_halfwidth, task.interval_halfwidth)


def test_half_widths_of_another_layout_are_ignored_with_a_warning(calibrated, caplog):
    """An older grud's table (other levels or groups) must not be read with this version's layout."""
    task, stats = calibrated
    ckpt = {"grud": {}}
    task.on_save_checkpoint(ckpt)
    old = {"grud": {**ckpt["grud"], "interval_halfwidth": ckpt["grud"]["interval_halfwidth"][[0, 4, 6, 7]],
                    "interval_layout": None}}  # four levels, written before the layout was stored
    same_shape = {"grud": {**ckpt["grud"], "interval_layout": {**ckpt["grud"]["interval_layout"],
                                                                "since_last_edges_hours": [2, 4, 8, 16, 32]}}}
    for bad in (old, same_shape):
        fresh = ForecastTask(MODEL, stats.to_dict())
        with caplog.at_level("WARNING"):
            fresh.on_load_checkpoint(bad)
        assert not fresh.calibrated and "another layout" in caplog.text
        caplog.clear()


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
    (dict(interval="conformal", interval_level=0.83), r"interval_level: expected one of \[0.5, 0.6, .*, 0.99\]"),
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


def test_a_level_too_high_for_the_validation_residuals_is_a_config_error(calibrated):
    task, stats = calibrated
    task = __import__("copy").deepcopy(task)
    task.interval_halfwidth[CI.level_index(0.99)] = float("inf")  # fewer than 99 residuals in a pool
    batch = task.encode_dataset(make_dataset(4, seed=2), stats).collate(range(4))
    with pytest.raises(ConfigError, match="too few residuals for this level"):
        task.predict_step(batch, 0, interval="conformal", interval_level=0.99)
    task.predict_step(batch, 0, interval="conformal", interval_level=0.9)


def test_another_window_at_prediction_warns(calibrated, caplog):
    task, stats = calibrated
    task = __import__("copy").deepcopy(task)
    batch = task.encode_dataset(make_dataset(4, seed=2), stats).collate(range(4))
    with caplog.at_level("WARNING"):
        task.predict_step(batch, 0, interval="conformal")
    assert "measured on the window" not in caplog.text
    task.history_hours = 12.0
    with caplog.at_level("WARNING"):
        task.predict_step(batch, 0, interval="conformal")
    assert "measured on the window {'history_hours': 24.0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        task.predict_step(batch, 0, interval="conformal")  # the next batch: said once per window
    assert "measured on the window" not in caplog.text
    task.history_hours = 6.0
    with caplog.at_level("WARNING"):
        task.on_test_epoch_start()  # grud-evaluate: test/interval_coverage of the measured window
    assert "this run uses {'history_hours': 6.0" in caplog.text


def test_on_the_validation_split_itself_every_level_is_reached(calibrated):
    """By construction each residual's group covers at least the level of its own residuals."""
    task, stats = calibrated
    val = make_dataset(40, seed=3, n_rows=40)  # the fixture's validation split
    batch = task.encode_dataset(val, stats).collate(range(len(val)))
    with torch.no_grad():
        pred = task(batch, only=batch["query_mask"])[0]
    group = CI.interval_group(batch["since_last"], batch["last_mask"])
    m = batch["query_mask"] > 0
    for level in CI.INTERVAL_LEVELS:
        hw = CI.halfwidth_at(task.interval_halfwidth, level, group)
        inside = ((pred - batch["query_values"]).abs() <= hw)[m]
        assert float(inside.double().mean()) >= level, level


def test_half_widths_never_shrink_as_the_level_rises():
    """A rare wide group pooled across variables at 0.9 but with all residuals at 0.99 (too few
    pooled for that level) must not get a narrower 99 % interval."""
    rng = np.random.default_rng(0)
    cells = {(0, 1): rng.exponential(0.1, 500), (0, 0): rng.exponential(5.0, 10), (1, 2): rng.exponential(0.1, 40)}
    hw = _pool_of(cells, 3).halfwidths()
    assert (torch.diff(hw, dim=0) >= 0).all()
    assert hw[CI.level_index(0.99), 0, 0] >= hw[CI.level_index(0.9), 0, 0] > 1.0
