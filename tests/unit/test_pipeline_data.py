"""Fitted statistics, splits, the time grid, collation and bucketing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from grud.data.batching import BucketBatchSampler, EncodedDataset, padding_waste, to_grid
from grud.data.dataset import IrregularDataset, Series
from grud.data.splits import split_dataset
from grud.data.transforms import FittedStats, fit_stats
from grud.errors import ConfigError, DataError


def random_dataset(n=50, F=3, seed=0, labels=True):
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        T = int(rng.integers(0, 12))
        times = np.sort(rng.uniform(0, 48, T))
        values = rng.normal(10 * np.arange(1, F + 1), 1.0, (T, F)).astype(np.float32)
        values[rng.random((T, F)) < 0.5] = np.nan
        series.append(Series(str(1000 + i), times, values, np.array([rng.normal(60, 10)], np.float32),
                             int(i % 4 == 0) if labels else None))
    return IrregularDataset.from_series(series, [f"v{j}" for j in range(F)], ["Age"])


def test_fitted_stats_are_the_datasets_own_and_survive_a_round_trip():
    """fit_stats of a split: its nan-means and stds, its size (the pipeline passes the training
    split: tests/integration/test_train_all.py checks that end to end)."""
    ds = random_dataset(80)
    train, val, test = split_dataset(ds, 0.25, 0.25, seed=1)
    s1 = fit_stats(train)
    np.testing.assert_allclose(s1.value_mean, np.nanmean(train.values, axis=0), rtol=1e-5)
    np.testing.assert_allclose(s1.value_std, np.nanstd(train.values, axis=0), rtol=1e-4)
    np.testing.assert_allclose(s1.static_mean, np.nanmean(train.static, axis=0), rtol=1e-5)
    assert s1.n_train == len(train)
    # statistics are plain containers and survive a round trip
    s2 = FittedStats.from_dict(s1.to_dict())
    assert s2 == s1 and all(isinstance(v, list) for v in (s2.value_mean, s2.input_means))


def test_split_is_seeded_stratified_and_disjoint():
    ds = random_dataset(200)
    a = split_dataset(ds, 0.2, 0.2, seed=3)
    b = split_dataset(ds, 0.2, 0.2, seed=3)
    c = split_dataset(ds, 0.2, 0.2, seed=4)
    assert [x.ids for x in a] == [x.ids for x in b] and a[0].ids != c[0].ids
    ids = [set(x.ids) for x in a]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == 200
    # the shares are of the whole data set (val_fraction is not taken of what the test split left)
    for n, expected in zip(map(len, a), (120, 40, 40)):
        assert abs(n - expected) <= 2, [len(x) for x in a]
    rate = ds.labels.mean()
    for part in a:
        assert abs(part.labels.mean() - rate) < 0.03


def test_test_ids_alone_leave_a_validation_share_of_the_rest():
    """Only data.test_ids: the validation split was empty and training failed on it."""
    ds = random_dataset(n=50)
    ids = list(ds.ids)
    train, val, test = split_dataset(ds, 0.2, 0.0, seed=0, test_ids=ids[:10])
    assert sorted(test.ids) == sorted(ids[:10]) and len(val) == 8 and len(train) == 32
    assert not set(val.ids) & set(train.ids) and not set(val.ids) & set(test.ids)
    train, val, _ = split_dataset(ds, 0.25, 0.0, seed=0, train_ids=ids[10:30], test_ids=ids[:10])
    assert set(train.ids) | set(val.ids) == set(ids[10:30]) and len(val) == 5
    train, val, _ = split_dataset(ds, 0.2, 0.0, seed=0, val_ids=ids[:5])  # named validation ids win
    assert sorted(val.ids) == sorted(ids[:5]) and len(train) == 45


def test_split_by_explicit_ids_and_errors():
    ds = random_dataset(20)
    train, val, test = split_dataset(ds, val_ids=["1000", "1001"], test_ids=["1002"])
    assert val.ids == ["1000", "1001"] and test.ids == ["1002"] and len(train) == 17
    with pytest.raises(DataError, match="not found"):
        split_dataset(ds, val_ids=["nope"])
    with pytest.raises(ConfigError, match="val_fraction"):
        split_dataset(ds, 1.5)


def test_folds_partition_the_data_into_stratified_validation_splits():
    ds = random_dataset(203)  # not a multiple of 5: fold sizes differ by at most one
    rate = ds.labels.mean()
    vals, tests = [], []
    for k in range(5):
        train, val, test = split_dataset(ds, test_fraction=0.1, seed=7, folds=5, fold=k)
        assert not set(train.ids) & set(val.ids) and not (set(train.ids) | set(val.ids)) & set(test.ids)
        assert len(train) + len(val) + len(test) == 203
        assert abs(val.labels.mean() - rate) < 0.05
        vals.append(set(val.ids))
        tests.append(test.ids)
    # one test share for every fold; the five validation folds are disjoint and cover the rest
    assert all(t == tests[0] for t in tests)
    assert sum(map(len, vals)) == len(set.union(*vals)) == 203 - len(tests[0])
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    # the seed draws the folds
    assert split_dataset(ds, seed=7, folds=5, fold=0)[1].ids != split_dataset(ds, seed=8, folds=5, fold=0)[1].ids


def test_fold_errors_name_the_key():
    ds = random_dataset(20)
    with pytest.raises(ConfigError, match="data.folds: expected at least 2"):
        split_dataset(ds, folds=1)
    with pytest.raises(ConfigError, match=r"data.fold: expected 0 <= fold < data.folds = 5, got 5"):
        split_dataset(ds, folds=5, fold=5)
    with pytest.raises(ConfigError, match="cannot be combined"):
        split_dataset(ds, folds=5, val_ids=["1000"])
    with pytest.raises(DataError, match="at least 30 series"):
        split_dataset(ds, folds=30)


def test_grid_averages_bins_and_keeps_empty_steps():
    s = Series("a", np.array([0.2, 0.7, 2.5]), np.array([[1.0, np.nan], [3.0, 5.0], [np.nan, 7.0]], np.float32),
               np.zeros(0, np.float32), None)
    ds = IrregularDataset.from_series([s, Series("e", np.zeros(0), np.zeros((0, 2), np.float32),
                                                 np.zeros(0, np.float32))], ["x", "y"])
    g = to_grid(ds, 1.0)
    np.testing.assert_allclose(g[0].times, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(g[0].values[0], [2.0, 5.0])
    assert np.isnan(g[0].values[1]).all()
    np.testing.assert_allclose(g[0].values[2], [np.nan, 7.0])
    assert len(g[1]) == 0
    with pytest.raises(ConfigError, match="grid"):
        to_grid(ds, 0)


def test_collate_pads_masks_and_never_passes_nan():
    ds = random_dataset(30)
    stats = fit_stats(ds)
    enc = EncodedDataset(ds, stats)
    idx = list(range(30))
    b = enc.collate(idx)
    B, T, F = b["values"].shape
    assert T == max(1, ds.lengths.max()) and F == 3
    for key in ("values", "mask", "delta", "times", "static"):
        assert torch.isfinite(b[key]).all(), key
    for i in idx:
        L = ds.lengths[i]
        assert b["lengths"][i] == L
        assert (b["mask"][i, L:] == 0).all() and (b["values"][i, L:] == 0).all()
        observed = ~np.isnan(ds[i].values)
        np.testing.assert_array_equal(b["mask"][i, :L].numpy(), observed.astype(np.float32))
        z = (ds[i].values - np.array(stats.value_mean)) / np.array(stats.value_std)
        np.testing.assert_allclose(b["values"][i, :L].numpy()[observed], z[observed], rtol=1e-5, atol=1e-5)
    # static features are z-scores of the training statistics too (missing ones 0, the mean)
    zs = (ds.static - np.array(stats.static_mean)) / np.array(stats.static_std)
    np.testing.assert_allclose(b["static"].numpy(), np.nan_to_num(zs), rtol=1e-5, atol=1e-5)
    assert np.abs(zs).max() < 10 and ds.static.std() > 5  # a scale to check: Age ~ N(60, 10)
    assert b["target"].dtype == torch.float32


def test_collated_delta_is_the_papers_delta_of_each_series_and_follows_a_new_mask():
    from grud.data import masking

    ds = random_dataset(40, seed=3)
    enc = EncodedDataset(ds, fit_stats(ds))
    idx = [5, 0, 17, 33, 2]  # any order, mixed lengths (some empty)

    def expected(mask_of):
        b = enc.collate(idx)
        want = masking.time_deltas(b["times"].numpy(), mask_of(b), lengths=b["lengths"].numpy())
        return b["delta"].numpy(), want

    got, want = expected(lambda b: b["mask"].numpy())
    np.testing.assert_allclose(got, want, atol=1e-5)
    # hiding observations (as grud-evaluate task=impute does) must change delta with the mask
    hidden = enc.mask.copy()
    hidden[::2] = 0.0
    enc.mask = hidden
    got2, want2 = expected(lambda b: b["mask"].numpy())
    np.testing.assert_allclose(got2, want2, atol=1e-5)
    assert not np.allclose(got, got2)


def test_bucketing_cuts_padding_and_covers_every_series_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 4000)
    plain = list(BucketBatchSampler(lengths, 64, shuffle=True, bucket=False, seed=0))
    bucketed = list(BucketBatchSampler(lengths, 64, shuffle=True, bucket=True, seed=0))
    assert sorted(i for b in bucketed for i in b) == list(range(4000))
    assert padding_waste(lengths, bucketed) < 0.2 < padding_waste(lengths, plain)
    s = BucketBatchSampler(lengths, 64, seed=0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first  # reshuffled every epoch
    shards = [list(BucketBatchSampler(lengths, 64, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])


@pytest.mark.parametrize("n", [9, 17, 8, 1])
def test_no_training_batch_holds_a_single_series_that_batch_norm_cannot_normalise(n):
    """65 series in batches of 64 left a batch of one: the head's batch norm raised mid-epoch."""
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule
    from grud.tasks.classification import ClassificationTask

    ds = random_dataset(n=n)
    stats = fit_stats(ds)
    dm = GrudDataModule(ds, ds, None, stats, EncodedDataset, batch_size=8, seed=0)
    for epoch in range(3):
        sampler = dm.train_dataloader().batch_sampler
        sampler.set_epoch(epoch)
        sizes = [len(b) for b in sampler]
        assert sorted(i for b in sampler for i in b) == list(range(n)) and len(sizes) == len(sampler)
        assert n == 1 or min(sizes) >= 2
    assert [len(b) for b in dm.val_dataloader().batch_sampler][-1] == (n % 8 or 8)  # evaluation: as cut
    one = GrudDataModule(ds, ds, None, stats, EncodedDataset, batch_size=1, seed=0)  # legal: no batch norm
    assert [len(b) for b in one.train_dataloader().batch_sampler] == [1] * n
    for rank in (0, 1):  # DDP: each replica's batches hold two series or more, and its length says so
        sampler = BucketBatchSampler(np.arange(n) % 5 + 1, 8, seed=0, num_replicas=2, rank=rank, min_batch=2)
        assert len(list(sampler)) == len(sampler) and (n == 1 or min(len(b) for b in sampler) >= 2)
    if n == 9:
        task = ClassificationTask({"name": "grud", "hidden_size": 4}, stats.to_dict())
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(task, datamodule=dm)
        assert trainer.current_epoch == 1


@pytest.mark.parametrize("streams", [1, 2])
def test_a_trainer_reshuffles_the_training_batches_every_epoch(streams):
    """Lightning sets the epoch of ``batch_sampler.sampler``, not of the batch sampler: without it
    every epoch repeated the first one's order (and a resumed run drew another order than an
    uninterrupted one)."""
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule
    from grud.tasks.classification import ClassificationTask

    class Recording(ClassificationTask):
        def training_step(self, batch, batch_idx):
            for k, b in enumerate(batch if isinstance(batch, list) else [batch]):
                seen.setdefault((self.current_epoch, k), []).append(b["index"].tolist())
            return super().training_step(batch, batch_idx)

    seen: dict = {}
    ds = random_dataset(n=40)
    stats = fit_stats(ds)
    dm = GrudDataModule(ds, None, None, stats, EncodedDataset, batch_size=8, seed=0, train_streams=streams)
    task = Recording({"name": "grud", "hidden_size": 4}, stats.to_dict(), optim={"scheduler": "none"},
                     ensemble=streams)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    for k in range(streams):
        orders = [seen[(epoch, k)] for epoch in range(3)]
        for order in orders:
            assert sorted(i for b in order for i in b) == list(range(40))  # every series once per epoch
        assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]
        first = list(BucketBatchSampler(dm.encoded("train").lengths, 8, seed=0 + 104729 * k, min_batch=2))
        assert orders[0] == first  # epoch 0 is the sampler's order for epoch 0


def test_trainer_predict_serves_every_series_once_with_its_index():
    """Trainer.predict rebuilt the predict loader around its own sampler, which the bucketing batch
    sampler took as its lengths: a TypeError for every library user calling it."""
    import pytorch_lightning as pl

    from grud.data.datamodule import GrudDataModule
    from grud.tasks.classification import ClassificationTask

    ds = random_dataset(n=40)
    stats = fit_stats(ds)
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, stats.to_dict()).eval()
    dm = GrudDataModule(None, None, None, stats, task.encode_dataset, batch_size=16, predict=ds)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    parts = trainer.predict(task, datamodule=dm)
    frame = task.predictions_frame(parts, ds)
    assert list(frame["id"]) == ds.ids  # every series once, in the dataset's order
    with torch.no_grad():  # each probability is its own series' (one batch of all 40, no other order)
        whole = task.probabilities(task(task.encode_dataset(ds, stats).collate(list(range(40))))[0]).numpy()
    np.testing.assert_allclose(frame["probability"].to_numpy(), whole, rtol=1e-5, atol=1e-6)


def test_train_streams_serve_each_ensemble_member_its_own_order_of_the_whole_split():
    from grud.data.datamodule import GrudDataModule

    ds = random_dataset(n=50)
    stats = fit_stats(ds)
    single = GrudDataModule(ds, None, None, stats, EncodedDataset, batch_size=8, seed=3)
    three = GrudDataModule(ds, None, None, stats, EncodedDataset, batch_size=8, seed=3, train_streams=3)
    loaders = three.train_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 3
    orders = [[b["index"].tolist() for b in loader] for loader in loaders]
    assert orders[0] == [b["index"].tolist() for b in single.train_dataloader()]  # stream 0 = the single order
    for order in orders:
        assert sorted(i for b in order for i in b) == list(range(50))  # every series once per epoch
    assert orders[1] != orders[0] and orders[2] != orders[1]
    assert three.val_dataloader() == [] and not isinstance(single.train_dataloader(), list)
    with pytest.raises(ValueError, match="train_streams"):
        GrudDataModule(ds, None, None, stats, EncodedDataset, train_streams=0)


@pytest.mark.parametrize("extra, key", [({"test_ids": ["1001"]}, "data.test_ids"),
                                        ({"test_fraction": 0.2}, "data.test_fraction")])
def test_a_test_share_of_data_path_beside_a_test_file_is_a_config_error(extra, key, tmp_path):
    """Either a test file or a share of data.path: silently ignoring one would test on other stays than asked."""
    from grud.cli.pipeline import read_for_run

    data = {"kind": "csv_long", "path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv"),
            "test_fraction": 0.0, **extra}
    with pytest.raises(ConfigError, match=f"{key}.*data.test_path=null"):
        read_for_run(data)


def test_the_csv_presets_default_test_share_yields_to_a_test_file(tmp_path):
    """data=csv_long with data.test_path tests on that file; without one, on a fifth of data.path."""
    import yaml

    from grud.cli.pipeline import read_for_run
    from tests.conftest import make_long_csv

    preset = yaml.safe_load((Path(__file__).parents[2] / "conf" / "data" / "csv_long.yaml").read_text())
    make_long_csv(tmp_path / "train.csv", n_series=40, seed=1, labels_path=tmp_path / "train_labels.csv")
    make_long_csv(tmp_path / "test.csv", n_series=10, seed=2, labels_path=tmp_path / "test_labels.csv")
    own = {**preset, "path": str(tmp_path / "train.csv"), "labels": str(tmp_path / "train_labels.csv")}
    train, val, test, _ = read_for_run({**own, "test_path": str(tmp_path / "test.csv"),
                                        "test_labels": str(tmp_path / "test_labels.csv")})
    assert len(test) == 10 and len(train) + len(val) == 40
    train, val, test, _ = read_for_run(own)
    assert len(test) == 8 and len(train) + len(val) + len(test) == 40
    ids = list(train.ids)  # named test ids: the default share is not also counted
    train, val, test, _ = read_for_run({**own, "val_fraction": 0.85, "test_ids": ids[:5]})
    assert sorted(test.ids) == sorted(ids[:5]) and len(val) + len(train) == 35


def test_a_test_file_without_a_static_variables_rows_reads_it_as_unobserved(tmp_path):
    """The names were checked on data.path; a small test export may simply lack every Age row."""
    import pandas as pd

    from grud.cli.pipeline import read_for_run
    from tests.conftest import make_long_csv

    make_long_csv(tmp_path / "train.csv", n_series=20, seed=1, labels_path=tmp_path / "train_labels.csv")
    make_long_csv(tmp_path / "test.csv", n_series=6, seed=2)
    events = pd.read_csv(tmp_path / "test.csv")
    events[events["variable"] != "Age"].to_csv(tmp_path / "test.csv", index=False)
    data = {"kind": "csv_long", "path": str(tmp_path / "train.csv"), "labels": str(tmp_path / "train_labels.csv"),
            "test_path": str(tmp_path / "test.csv"), "static_variables": ["Age"], "test_fraction": 0.0}
    train, _, test, _ = read_for_run(data)
    assert test.static_names == ["Age"] and np.isnan(test.static).all() and not np.isnan(train.static).all()
    with pytest.raises(DataError, match="'age' \\(did you mean 'Age'\\?\\)"):
        read_for_run({**data, "static_variables": ["age"]})


def test_a_forecast_with_nothing_after_the_history_names_the_window():
    from grud.tasks.forecasting import fit_loss_weights

    times, values = np.array([0.0, 2.0, 5.0] * 4), np.arange(12, dtype=np.float32)[:, None]
    ds = IrregularDataset([f"s{i}" for i in range(4)], ["HR"], [], times, values, np.arange(0, 13, 3),
                          np.zeros((4, 0), np.float32), None, {})
    with pytest.raises(DataError, match=r"after task.history_hours=24 .*spans 5 hours: lower task.history_hours"):
        fit_loss_weights(ds, fit_stats(ds), history_hours=24.0, horizon_hours=24.0)
    assert fit_loss_weights(ds, fit_stats(ds), history_hours=1.0, horizon_hours=24.0) == [1.0]


@pytest.mark.parametrize("value", ["abc", None, True, 1.0, -0.1])
def test_a_split_fraction_that_is_not_a_fraction_names_its_key(value):
    ds = random_dataset(n=20)
    with pytest.raises(ConfigError, match=r"data.val_fraction: expected a fraction in \[0, 1\), got "):
        split_dataset(ds, value, 0.0, seed=0)


def test_a_split_with_few_series_of_a_class_is_warned_about_and_class_counts_are_logged(caplog):
    """3 % positives left 2 in an 80-series validation split, and nothing said so."""
    import logging

    from grud.cli.pipeline import log_class_counts, warn_few_of_a_class

    ds = random_dataset(n=40)  # every fourth series positive: 10 of 40
    with caplog.at_level(logging.INFO, logger="grud"):
        log_class_counts(ds, ds.subset(range(8)), ds.subset(range(0)))
        warn_few_of_a_class(ds, "validation")
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # 10 positives: enough
        warn_few_of_a_class(ds.subset(range(8)), "validation")
        warn_few_of_a_class(ds.subset(range(8)), "test")
        warn_few_of_a_class(ds.subset(range(8)), "validation", monitor="val/loss")  # early stopping is not by it
    assert "series per class: training 0: 30, 1: 10; validation 0: 6, 1: 2" in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3
    assert warned[0].startswith("the validation split holds 6 series of class 0, 2 series of class 1: val/auroc")
    assert "early stopping ranks epochs by val/auroc" in warned[0] and "early stopping" not in warned[1]
    assert warned[2].startswith("the validation split holds 6") and "early stopping" not in warned[2]


def test_a_run_of_few_optimiser_steps_is_warned_about(caplog):
    """A user's 300-series export with trainer.max_epochs=2 took 10 steps: GRU-D stayed at its start
    (Brier score equal across seeds to 1e-6) and lost to logreg, with nothing said."""
    import logging

    from grud.cli.pipeline import FEW_STEPS, warn_few_steps

    with caplog.at_level(logging.WARNING, logger="grud"):
        warn_few_steps(300, 64, 2)
    assert "training takes at most 10 optimiser steps (trainer.max_epochs=2 x 5 batches of 64 of the 300" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grud"):
        warn_few_steps(3200, 64, 40)  # the embedded data's default run: 2,000 steps
        warn_few_steps(64 * FEW_STEPS, 64, 1)
        warn_few_steps(300, 64, -1)  # no epoch limit
    assert caplog.text == ""
