"""The forecasting task: no leak past the horizon, masked scoring, outputs, loss weights, baselines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data.dataset import IrregularDataset, Series
from grud.data.forecast_batching import ForecastDataset, check_window
from grud.data.transforms import fit_stats
from grud.errors import ConfigError
from grud.tasks import metrics as M
from grud.tasks.forecasting import (
    ForecastTask,
    VariableErrors,
    fit_loss_weights,
    forecast_baseline_frame,
    forecast_baseline_metrics,
)

H, HZ = 24.0, 24.0
VARIABLES = ["HR", "Temp", "Lab"]
MODEL = {"name": "grud", "hidden_size": 8}


def make_dataset(n=12, seed=0, n_rows=30) -> IrregularDataset:
    """Series over 0..48 h with a sparse 'Lab' variable; one series has no history, one no future."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        if i == 0:
            t = np.sort(rng.uniform(H, 48, 8))  # nothing before the horizon
        elif i == 1:
            t = np.sort(rng.uniform(0, H - 1, 8))  # nothing after it
        else:
            t = np.sort(np.concatenate([[0.0, H], rng.choice(np.arange(1, 48 * 12) / 12, n_rows, replace=False)]))
        v = np.stack([70 + 10 * np.sin(t / 5) + rng.normal(0, 2, len(t)),
                      37 + rng.normal(0, 0.5, len(t)),
                      rng.lognormal(1, 0.5, len(t))], 1).astype(np.float32)
        v[rng.random(v.shape) < np.array([0.2, 0.5, 0.85])] = np.nan
        v[np.isnan(v).all(1), 0] = 75.0
        series.append(Series(f"s{i}", t, v, np.array([rng.normal(60, 10)], np.float32)))
    return IrregularDataset.from_series(series, VARIABLES, ["Age"])


@pytest.fixture(scope="module")
def data():
    train, test = make_dataset(16, seed=1), make_dataset(10, seed=2)
    return train, test, fit_stats(train)


def make_task(stats, **kw):
    torch.manual_seed(0)
    return ForecastTask(MODEL, stats.to_dict(), **kw)


def perturb_future(ds: IrregularDataset, rng) -> IrregularDataset:
    values = ds.values.copy()
    after = ds.times >= H
    values[after] = values[after] * rng.uniform(0.2, 5.0, values[after].shape).astype(np.float32) + 100
    return IrregularDataset(ds.ids, ds.variables, ds.static_names, ds.times, values, ds.offsets, ds.static)


HISTORY_KEYS = ("values", "mask", "delta", "times", "lengths", "static", "last_values", "last_mask",
                "history_means", "history_counts")


# ---------------------------------------------------------------------------- no leak
def test_history_tensors_hold_only_rows_before_the_horizon(data):
    _, ds, stats = data
    fd = ForecastDataset(ds, stats, H, HZ)
    b = fd.collate(range(len(ds)))
    real = torch.arange(b["times"].shape[1])[None, :] < b["lengths"][:, None]
    assert (b["times"][real] < H).all()
    # the history holds exactly the rows before the horizon, none dropped
    before = np.array([(s.times < H).sum() for s in ds])
    assert (b["mask"].sum((1, 2)).numpy() == [np.isfinite(s.values[s.times < H]).sum() for s in ds]).all()
    assert (b["lengths"].numpy() == np.maximum(before, 1)).all()
    # a series with no history still gets one (unobserved) step, never a NaN
    assert b["lengths"][0] == 1 and b["mask"][0].sum() == 0
    assert all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())


def test_future_values_change_nothing_the_encoder_or_decoder_sees(data):
    train, ds, stats = data
    task = make_task(stats).eval()
    with torch.no_grad():
        for p in task.decoder.out.parameters():  # make the decoder non-trivial
            p.normal_()
    a = ForecastDataset(ds, stats, H, HZ).collate(range(len(ds)))
    b = ForecastDataset(perturb_future(ds, np.random.default_rng(0)), stats, H, HZ).collate(range(len(ds)))
    for k in HISTORY_KEYS + ("since_last", "lead_times", "query_times"):
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["query_values"], b["query_values"])  # the truth did change
    with torch.no_grad():
        (pa, oa), (pb, ob) = task(a), task(b)
    assert torch.equal(oa, ob) and torch.equal(pa, pb)


def test_queries_are_the_observed_rows_inside_the_horizon(data):
    _, ds, stats = data
    fd = ForecastDataset(ds, stats, H, 12.0)
    for i, s in enumerate(ds):
        keep = (s.times >= H) & (s.times <= H + 12.0) & np.isfinite(s.values).any(1)
        q = slice(fd.query_offsets[i], fd.query_offsets[i + 1])
        np.testing.assert_array_equal(fd.query_times[q], s.times[keep])
        np.testing.assert_array_equal(fd.query_mask[q] > 0, np.isfinite(s.values[keep]))


def test_grid_queries_have_truth_only_where_an_observation_falls_on_the_grid():
    t = np.array([0.0, 5.0, 26.0, 27.0, 30.0])
    v = np.array([[1, 2], [3, np.nan], [5, 6], [7, 8], [np.nan, 9]], np.float32)
    ds = IrregularDataset.from_series([Series("a", t, v, np.zeros(0, np.float32))], ["x", "y"])
    fd = ForecastDataset(ds, fit_stats(ds), 24.0, 6.0, grid_hours=2.0)
    np.testing.assert_allclose(fd.query_times, [26, 28, 30])
    np.testing.assert_array_equal(fd.query_mask, [[1, 1], [0, 0], [0, 1]])
    np.testing.assert_allclose(fd.query_raw[[0, 2]], [[5, 6], [0, 9]])
    assert fd.query_on_grid.all()


def test_a_grid_of_very_many_forecast_rows_is_warned_about(monkeypatch, caplog):
    """A 0.1 h grid over days gave a many-GB output frame without a word."""
    import logging

    import grud.data.forecast_batching as fb

    t = np.array([0.0, 5.0, 26.0])
    v = np.array([[1, 2], [3, np.nan], [5, 6]], np.float32)
    ds = IrregularDataset.from_series([Series("a", t, v, np.zeros(0, np.float32))], ["x", "y"])
    monkeypatch.setattr(fb, "LARGE_GRID_ENTRIES", 100)
    with caplog.at_level(logging.WARNING, logger="grud"):
        ForecastDataset(ds, fit_stats(ds), 24.0, 6.0, grid_hours=0.1)  # 1 x 60 x 2 = 120 rows
        assert "1 series x 60 times x 2 variables = 120 forecast rows" in caplog.text
        caplog.clear()
        ForecastDataset(ds, fit_stats(ds), 24.0, 6.0, grid_hours=1.0)  # 12 rows
    assert "forecast rows" not in caplog.text
    # grud-predict encodes a file chunk by chunk: one warning, with the whole file's series count
    caplog.clear()
    state = {"n": 50, "warned": False}
    with caplog.at_level(logging.WARNING, logger="grud"):
        for _ in range(3):  # three chunks of one series, each 24 rows alone: below the bar
            with fb.whole_file_grid_warning(state):
                ForecastDataset(ds, fit_stats(ds), 24.0, 6.0, grid_hours=0.5)
    assert caplog.text.count("forecast rows") == 1 and "50 series x 12 times x 2 variables = 1.2e+03" in caplog.text


def test_since_last_counts_from_the_last_history_observation_or_from_time_zero(data):
    """since_last is the query time minus the variable's last time before the horizon; a variable the
    series never observed before the horizon counts from the series' time 0 (the GRU-D convention),
    so its since_last is the query time itself, not the time since the horizon."""
    _, ds, stats = data
    fd = ForecastDataset(ds, stats, H, HZ)
    b = fd.collate(range(len(ds)))
    never_seen = 0
    for i, s in enumerate(ds):
        n_q = int(b["query_lengths"][i])
        assert n_q == fd.query_counts[i]
        for f in range(len(VARIABLES)):
            seen = s.times[(s.times < H) & np.isfinite(s.values[:, f])]
            start = seen[-1] if len(seen) else 0.0
            never_seen += n_q * (len(seen) == 0)
            qt = b["query_times"][i, :n_q].numpy()
            np.testing.assert_allclose(b["since_last"][i, :n_q, f].numpy(), qt - start, rtol=1e-6)
        assert (b["since_last"][i, n_q:] == 0).all()  # padded queries
    assert never_seen > 0  # the case is exercised (series 0 has no history)


@pytest.mark.parametrize("kw", [dict(history_hours=-1), dict(horizon_hours=0),
                                dict(forecast_grid_hours=0.0), dict(horizon_hours=None, forecast_grid_hours=1.0),
                                dict(decoder={"hidden": 0}), dict(decoder={"width": 3}),
                                dict(loss_weights=[1.0, 2.0])])
def test_bad_settings_raise_config_errors(data, kw):
    with pytest.raises(ConfigError):
        make_task(data[2], **kw)


# ---------------------------------------------------------------------------- scoring
def test_epoch_errors_average_per_variable_over_all_batches_and_ignore_unobserved():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 40, 3)), rng.normal(size=(2, 40, 3))
    mask = (rng.random((40, 3)) < np.array([0.9, 0.5, 0.1])).astype(float)
    target[1][mask == 0] = 1e6  # garbage where unobserved must not count
    acc = VariableErrors(3)
    for sl in (slice(0, 7), slice(7, 40)):  # unequal batches
        acc.add(pred[0][sl], target[1][sl], mask[sl])
    assert acc.mse() == pytest.approx(M.masked_mse(pred[0], target[1], mask, reduce="variable"))
    assert acc.mae() == pytest.approx(M.masked_mae(pred[0], target[1], mask, reduce="variable"))


def test_untrained_model_is_locf_and_matches_the_baseline_protocol(data):
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule

    train, test, stats = data
    task = make_task(stats)
    dm = GrudDataModule(train, None, test, stats, task.encode_dataset, batch_size=4)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    res = trainer.test(task, datamodule=dm, verbose=False)[0]
    base = forecast_baseline_metrics("locf", train, test, stats, H, HZ)
    assert res["test/mse_vs_locf"] == pytest.approx(1.0)
    assert res["test/mse"] == pytest.approx(base["test/mse"], rel=1e-5)
    assert res["test/mae"] == pytest.approx(base["test/mae"], rel=1e-5)


def slow_locf_mse(train, test, stats, h, hz):
    """Reference: loop over series, queries and variables."""
    lo, hi = np.array(stats.value_min), np.array(stats.value_max)
    sq = {f: [] for f in range(len(VARIABLES))}
    for s in test:
        for f in range(len(VARIABLES)):
            past = [(t, x) for t, x in zip(s.times, s.values[:, f]) if t < h and np.isfinite(x)]
            guess = past[-1][1] if past else np.nanmean(train.values[:, f])
            for t, x in zip(s.times, s.values[:, f]):
                if h <= t <= h + hz and np.isfinite(x):
                    sq[f].append(((guess - x) / (hi[f] - lo[f])) ** 2)
    return np.mean([np.mean(v) for v in sq.values() if v])


def test_locf_baseline_equals_a_slow_reference(data):
    train, test, stats = data
    got = forecast_baseline_metrics("locf", train, test, stats, H, HZ)
    assert got["test/mse"] == pytest.approx(slow_locf_mse(train, test, stats, H, HZ), rel=1e-5)
    assert got["test/mse_vs_locf"] == pytest.approx(1.0)
    mean = forecast_baseline_metrics("mean_forecast", train, test, stats, H, HZ)
    assert mean["test/mse"] != pytest.approx(got["test/mse"])
    with pytest.raises(ConfigError):
        forecast_baseline_metrics("nope", train, test, stats, H, HZ)


def test_mean_forecast_baseline_equals_a_slow_reference(data):
    """mean_forecast predicts the mean of the series' history observations, and the training mean
    for a variable the series never observed before the horizon (never 0 or NaN)."""
    train, test, stats = data
    train_mean = [np.nanmean(train.values[:, f]) for f in range(len(VARIABLES))]
    expected, sq = [], {f: [] for f in range(len(VARIABLES))}
    lo, hi = np.array(stats.value_min), np.array(stats.value_max)
    fell_back = 0
    for s in test:
        guesses = []
        for f in range(len(VARIABLES)):
            past = [x for t, x in zip(s.times, s.values[:, f]) if t < H and np.isfinite(x)]
            guesses.append(np.mean(past) if past else train_mean[f])
            fell_back += not past
        for t, row in zip(s.times, s.values):
            if H <= t <= H + HZ:
                for f, x in enumerate(row):
                    if np.isfinite(x):
                        expected.append(guesses[f])
                        sq[f].append(((guesses[f] - x) / (hi[f] - lo[f])) ** 2)
    assert fell_back > 0  # the training-mean fallback is exercised (series 0 has no history)
    frame = forecast_baseline_frame("mean_forecast", test, stats, H, HZ)
    np.testing.assert_allclose(frame["prediction"].to_numpy(np.float64), expected, rtol=1e-5)
    got = forecast_baseline_metrics("mean_forecast", train, test, stats, H, HZ)
    assert got["test/mse"] == pytest.approx(np.mean([np.mean(v) for v in sq.values() if v]), rel=1e-5)


# ---------------------------------------------------------------------------- loss weights
def test_loss_weights_favour_rare_variables_and_with_power_1_track_the_metric(data):
    train, _, stats = data
    w = np.array(fit_loss_weights(train, stats, H, HZ))
    assert w.shape == (3,) and w.mean() == pytest.approx(1.0) and (w > 0).all()
    w1 = torch.tensor(fit_loss_weights(train, stats, H, HZ, power=1.0))
    fd = ForecastDataset(train, stats, H, HZ)
    target, mask = torch.tensor(fd.query_values), torch.tensor(fd.query_mask)
    task = make_task(stats)
    ratios = []
    for seed in range(3):  # loss / metric is the same constant for any prediction
        pred = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(seed)) * (seed + 1)
        loss = M.masked_mse_loss(pred, target, mask, weight=w1)
        metric = M.masked_mse(task.to_minmax(pred), task.to_minmax(target), mask, reduce="variable")
        ratios.append(float(loss / metric))
    assert np.ptp(ratios) < 1e-4 * ratios[0]
    # a variable with no training query gets weight 0
    empty = IrregularDataset(train.ids, train.variables, train.static_names, train.times,
                             np.where(train.times[:, None] >= H, np.array([1, 1, np.nan]), 1) * train.values,
                             train.offsets, train.static)
    assert fit_loss_weights(empty, stats, H, HZ)[2] == 0.0


@pytest.mark.parametrize("power, expect", [(0.0, "equal"), (1.0, "metric"), (-1, "error"), ("x", "error")])
def test_loss_weight_power_is_a_task_setting(data, power, expect):
    from grud.cli.pipeline import build_module

    train, _, stats = data
    cfg = {"model": dict(MODEL), "optim": None,
           "task": {"name": "forecast", "history_hours": H, "horizon_hours": HZ, "loss_weight_power": power}}
    if expect == "error":
        with pytest.raises(ConfigError, match="task.loss_weight_power"):
            build_module(cfg, stats, train)
        return
    w = build_module(cfg, stats, train).loss_weights.numpy()
    if expect == "equal":
        np.testing.assert_allclose(w, 1.0)
    else:
        np.testing.assert_allclose(w, fit_loss_weights(train, stats, H, HZ, power=1.0), rtol=1e-6)


# ---------------------------------------------------------------------------- training
def test_a_few_training_steps_reduce_the_loss(data):
    train, _, stats = data
    task = make_task(stats, loss_weights=fit_loss_weights(train, stats, H, HZ), decoder={"dropout": 0.0})
    batch = task.encode_dataset(train, stats).collate(range(2, 10))
    task.log = lambda *a, **k: None  # no trainer attached
    opt = torch.optim.Adam(task.parameters(), lr=2e-2)
    task.train()
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = task.training_step(batch, 0)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


# ---------------------------------------------------------------------------- outputs
def test_predictions_frame_lists_observed_truths_in_raw_units(data):
    _, ds, stats = data
    task = make_task(stats).eval()
    enc = task.encode_dataset(ds, stats)
    parts = [task.predict_step(enc.collate(b), 0) for b in ([3, 1, 0], [2, 4, 5, 6, 7, 8, 9])]
    df = task.predictions_frame(parts, ds, id_column="RecordID")
    assert list(df.columns) == ["RecordID", "time", "variable", "prediction", "value"]
    expected = []
    for s in ds:
        for t, row in zip(s.times, s.values):
            if H <= t <= H + HZ:
                expected += [(s.id, t, v, x) for v, x in zip(VARIABLES, row) if np.isfinite(x)]
    assert len(df) == len(expected)
    assert list(df["RecordID"]) == [e[0] for e in expected]
    np.testing.assert_array_equal(df["time"].to_numpy(), [e[1] for e in expected])
    assert list(df["variable"]) == [e[2] for e in expected]
    np.testing.assert_array_equal(df["value"].to_numpy(np.float32), np.array([e[3] for e in expected], np.float32))
    # untrained = LOCF, in raw units: the prediction is the last value seen before the horizon
    s = ds[3]
    hr_hist = s.values[s.times < H, 0]
    last = hr_hist[np.isfinite(hr_hist)][-1]
    got = df[(df["RecordID"] == s.id) & (df["variable"] == "HR")]["prediction"].to_numpy()
    np.testing.assert_allclose(got, last, rtol=1e-5)
    base = forecast_baseline_frame("locf", ds, stats, H, HZ, id_column="RecordID")
    np.testing.assert_allclose(base["prediction"], df["prediction"], rtol=1e-5)


def test_raw_truths_are_written_as_their_decimals_not_float32_noise():
    from grud.float32_text import float32_decimals
    stored = np.array([94.8, 0.01, 7.25, -3.3, 123456.7, 0.0, np.nan], np.float32)
    got = float32_decimals(stored)
    np.testing.assert_array_equal(got[:-1], [94.8, 0.01, 7.25, -3.3, 123456.7, 0.0])
    assert np.isnan(got[-1])
    assert "%.6f" % got[0] == "94.800000"
    rng = np.random.default_rng(0)
    x = (rng.lognormal(0, 4, 10_000) * rng.choice([-1, 1], 10_000)).astype(np.float32)
    np.testing.assert_array_equal(float32_decimals(x).astype(np.float32), x)  # nothing float32 holds is lost


def test_future_grid_predicts_every_variable_and_mc_dropout_gives_bounds(data):
    _, ds, stats = data
    task = make_task(stats, decoder={"dropout": 0.3})
    with torch.no_grad():
        task.decoder.out.weight.normal_()
    task.history_hours, task.forecast_grid_hours = 12.0, 4.0
    task.eval()
    enc = task.encode_dataset(ds, stats)
    df = task.predictions_frame([task.predict_step(enc.collate(range(len(ds))), 0, mc_samples=8)], ds)
    assert list(df.columns) == ["id", "time", "variable", "prediction", "value", "lower", "upper"]
    assert len(df) == len(ds) * 6 * len(VARIABLES)  # grid 16, 20, ..., 36 h
    np.testing.assert_allclose(sorted(set(df["time"])), [16, 20, 24, 28, 32, 36])
    for r in df[df["value"].notna()].itertuples():  # truth only where an input row falls on the grid
        s = ds[ds.ids.index(r.id)]
        at = np.flatnonzero(np.abs(s.times - r.time) < 1e-6)
        assert len(at) == 1 and s.values[at[0], VARIABLES.index(r.variable)] == np.float32(r.value)
    assert (df["lower"] <= df["upper"]).all() and (df["upper"] - df["lower"]).max() > 0
    assert np.isfinite(df["prediction"]).all()


@pytest.mark.parametrize("grid", [None, 4.0])
def test_prediction_decodes_only_the_rows_it_outputs_and_they_equal_a_full_decode(data, grid):
    _, ds, stats = data
    task = make_task(stats, decoder={"dropout": 0.3})
    with torch.no_grad():
        task.decoder.out.weight.normal_()
    task.forecast_grid_hours = grid
    task.eval()
    batch = task.encode_dataset(ds, stats).collate(range(len(ds)))
    calls = []
    hook = task.decoder.out.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    part = task.predict_step(batch, 0)
    hook.remove()
    kept = (batch["query_mask"] > 0) | (batch["query_on_grid"] > 0)[..., None]
    assert calls == [int(kept.sum())]
    if grid is None:  # observed queries: most (query, variable) entries are unobserved and skipped
        assert int(kept.sum()) < 0.6 * batch["query_mask"].numel()
    with torch.no_grad():
        full = {**part, "prediction": stats.denormalise_values(task(batch)[0])}
    got, want = task.predictions_frame([part], ds), task.predictions_frame([full], ds)
    assert len(got) == int(kept.sum())
    np.testing.assert_allclose(got["prediction"], want["prediction"], rtol=1e-6)
    assert (np.abs(got["prediction"] - forecast_baseline_frame("locf", ds, stats, H, HZ, grid_hours=grid)
                   ["prediction"]) > 1e-3).any()  # the decoder did change the forecast


@pytest.mark.parametrize("history, horizon, grid, key", [
    ("24h", 24, None, "history_hours"),
    (-1, 24, None, "history_hours"),
    (24, 0, None, "horizon_hours"),
    (24, float("nan"), None, "horizon_hours"),
    (24, 24, [1, 2, 3], "forecast_grid_hours"),
    (24, 24, True, "forecast_grid_hours"),
    (24, 24, 0, "forecast_grid_hours"),
    (24, None, 1, "forecast_grid_hours"),
    (24, 24, 25, "forecast_grid_hours"),
])
def test_a_bad_forecast_window_is_a_config_error_naming_the_key(history, horizon, grid, key):
    with pytest.raises(ConfigError, match=f"task.{key}"):
        check_window(history, horizon, grid)


def test_a_good_forecast_window_comes_back_as_floats():
    assert check_window(24, "24", 0.5) == (24.0, 24.0, 0.5)
    assert check_window(0, None, None) == (0.0, None, None)


# ---------------------------------------------------------------------------- scoring a prediction frame
def test_a_prediction_frame_scores_as_the_test_epoch_does(data):
    """forecast_frame_metrics (what grud-evaluate uses for an averaged forecast) equals the test epoch."""
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule
    from grud.errors import DataError
    from grud.tasks.forecasting import forecast_frame_metrics

    train, ds, stats = data
    task = make_task(stats, decoder={"dropout": 0.0})
    with torch.no_grad():  # a model that is not LOCF
        task.decoder.out.weight.normal_(0, 0.5)
    task.eval()
    dm = GrudDataModule(train, None, ds, stats, task.encode_dataset, batch_size=4)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    epoch = trainer.test(task, datamodule=dm, verbose=False)[0]
    enc = task.encode_dataset(ds, stats)
    frame = task.predictions_frame([task.predict_step(enc.collate(range(len(ds))), 0)], ds)
    got = forecast_frame_metrics(frame, ds, stats, H, HZ)
    assert 0.0 < abs(got["test/mse_vs_locf"] - 1.0)
    for key in ("test/mse", "test/mae", "test/mse_vs_locf", "test/mae_vs_locf", "test/locf_mse"):
        assert got[key] == pytest.approx(epoch[key], rel=1e-4), key
    # LOCF's own frame scores 1.0; a frame of another window is an error, not a wrong number
    locf = forecast_baseline_frame("locf", ds, stats, H, HZ)
    assert forecast_frame_metrics(locf, ds, stats, H, HZ)["test/mse_vs_locf"] == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"observed rows, but the window \(history_hours=12.0"):
        forecast_frame_metrics(frame, ds, stats, 12.0, HZ)


def test_variable_errors_of_long_rows_equal_those_of_the_wide_arrays():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    mask = rng.random((30, 3)) < np.array([0.8, 0.4, 0.1])
    wide, long = VariableErrors(3), VariableErrors(3)
    wide.add(pred, np.where(mask, target, 0.0), mask)
    r, f = np.nonzero(mask)
    long.add_rows(f, pred[r, f], target[r, f])
    assert long.mse() == pytest.approx(wide.mse()) and long.mae() == pytest.approx(wide.mae())
    np.testing.assert_allclose(long.per_variable_mse(), wide.per_variable_mse())


def test_forecast_prediction_batches_stay_within_the_entry_budget_and_keep_every_series_once():
    from grud.cli.inference import split_by_entries

    counts = np.array([10, 400, 3, 3, 3, 50, 0, 2000])
    batches = [[0, 1, 2, 3], [4, 5, 6, 7]]
    out = split_by_entries(batches, counts, n_features=5, budget=4000)
    assert [i for b in out for i in b] == [0, 1, 2, 3, 4, 5, 6, 7]  # order kept, each once
    for b in out:
        assert len(b) == 1 or len(b) * max(max(counts[i], 1) for i in b) * 5 <= 4000
    assert [7] in out  # over budget alone: its own batch
    assert split_by_entries(batches, counts, 5, budget=10 ** 9) == batches


def test_a_float64_forecaster_predicts_and_trains_like_the_float32_one(data):
    """ForecastTask.double() failed in the decoder (float32 batch features against float64 weights);
    ClassificationTask.double() worked."""
    train, test, stats = data
    single = make_task(stats).eval()
    double = make_task(stats).eval().double()
    batch = single.encode_dataset(test, stats).collate(list(range(len(test))))
    with torch.no_grad():
        p32, p64 = single.predict_step(batch, 0)["prediction"], double.predict_step(batch, 0)["prediction"]
    assert p64.dtype == torch.float64
    torch.testing.assert_close(p64.float(), p32, rtol=1e-4, atol=1e-4)
    loss = double.train().training_step(double.encode_dataset(train, stats).collate(list(range(8))), 0)
    assert loss.dtype == torch.float64 and torch.isfinite(loss)


def test_a_variable_constant_in_training_is_forecast_by_its_last_value_as_locf_does():
    """PhysioNet's MechVent is 1 whenever recorded: the decoder's correction there only added error."""
    rng = np.random.default_rng(3)
    series = []
    for i in range(8):
        t = np.sort(np.concatenate([[0.0, H], rng.uniform(0, 48, 20)]))
        v = np.stack([70 + rng.normal(0, 5, len(t)), np.ones(len(t))], 1).astype(np.float32)
        v[rng.random(v.shape) < 0.4] = np.nan
        v[np.isnan(v).all(1), 0] = 70.0
        series.append(Series(f"s{i}", t, v, np.zeros(0, np.float32)))
    ds = IrregularDataset.from_series(series, ["HR", "Flag"], [])
    stats = fit_stats(ds)
    task = make_task(stats, decoder={"dropout": 0.1})
    assert task.constant_variables.tolist() == [False, True]
    with torch.no_grad():
        task.decoder.out.bias.fill_(0.5)  # a correction everywhere
    task.eval()
    batch = task.encode_dataset(ds, stats).collate(range(len(ds)))
    out = task.predict_step(batch, 0)
    keep = batch["query_mask"] > 0
    flag = out["prediction"][..., 1][keep[..., 1]]
    assert flag.numel() and torch.allclose(flag, torch.ones_like(flag))  # the constant, not 1 + correction
    hr = out["prediction"][..., 0][keep[..., 0]]
    last = stats.denormalise_values(batch["last_values"] * batch["last_mask"])[..., 0]
    assert not torch.allclose(hr, last[:, None].expand_as(out["prediction"][..., 0])[keep[..., 0]])  # HR corrected
    mc = task.predict_step(batch, 0, mc_samples=3)  # MC dropout runs the decoder in training mode
    for key in ("prediction", "lower", "upper"):
        got = mc[key][..., 1][keep[..., 1]]
        assert torch.allclose(got, torch.ones_like(got)), key
    # training is left as it was: the decoder's own forecast, correction included
    raw = task(batch, hold_constant=False)[0][..., 1][keep[..., 1]]
    assert not torch.allclose(raw, torch.zeros_like(raw))
    # its zero validation residuals stay out of the half-widths other variables fall back on
    task.validation_step(batch, 0)
    assert task._errors["val"]["residuals"].held.tolist() == [False, True]
