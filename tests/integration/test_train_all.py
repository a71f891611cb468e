"""Every recurrent preset and every baseline trains a few steps on each task it serves.

In process through grud.api.train (the same pipeline as grud-train), on a tiny synthetic export.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

import grud.api
from grud.models import PRESETS
from tests.conftest import make_long_csv

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.limit_train_batches=2",
        "data.batch_size=16", "summary=false", "plots=false"]
SMALL = ["model.hidden_size=8"]  # recurrent presets only (baselines have no hidden size)
FORECAST = ["task=forecast", "task.history_hours=15", "task.horizon_hours=15", "task.decoder.hidden=8"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    make_long_csv(d / "events.csv", n_series=48, labels_path=d / "labels.csv")
    return d


def data_args(d):
    return ["data=csv_long", f"data.path={d / 'events.csv'}", f"data.labels={d / 'labels.csv'}",
            "data.static_variables=[Age]"]


def _train(d, run, extra):
    return grud.api.train([*data_args(d), *TINY, *extra], run_dir=run)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_for_classification_and_forecast(export, tmp_path, name):
    run = _train(export, tmp_path / "cls", [f"model={name}", *SMALL])
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "ok" and math.isfinite(m["test/auroc"]) and m["epochs"] == 1
    pred = grud.api.predict(run / "checkpoints/best.ckpt", [f"data.path={export / 'events.csv'}"])
    assert pred["probability"].between(0, 1).all() and len(pred) == 48

    run = _train(export, tmp_path / "fc", [f"model={name}", *SMALL, *FORECAST])
    m = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(m["test/mse"]) and math.isfinite(m["test/mse_vs_locf"]) and m["test/mse_vs_locf"] > 0


@pytest.mark.parametrize("name", ["logreg", "random_forest"])
def test_classification_baselines(export, tmp_path, name):
    run = _train(export, tmp_path / name, [f"model={name}"])
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/auroc"] > 0.5
    ckpt = torch.load(run / "checkpoints/best.ckpt", weights_only=True)
    assert ckpt["grud"]["baseline"] == name
    pred = grud.api.predict(run / "checkpoints/best.ckpt", [f"data.path={export / 'events.csv'}"])
    assert list(pred.columns) == ["id", "probability"]


@pytest.mark.parametrize("name", ["locf", "mean_forecast"])
def test_forecast_baselines(export, tmp_path, name):
    run = _train(export, tmp_path / name, [f"model={name}", *FORECAST])
    m = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(m["test/mse"])
    if name == "locf":
        assert m["test/mse_vs_locf"] == pytest.approx(1.0)
    pred = grud.api.predict(run / "checkpoints/best.ckpt", [f"data.path={export / 'events.csv'}"],
                            task_overrides=["task.history_hours=15"])
    assert {"id", "time", "variable", "prediction", "value"} <= set(pred.columns)


def test_a_baseline_refuses_a_task_it_does_not_serve(export, tmp_path):
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match="serves task classification"):
        _train(export, tmp_path / "x", ["model=logreg", *FORECAST])


def test_forecast_predictions_mc_dropout_and_grid(export, tmp_path):
    run = _train(export, tmp_path / "fc", ["model=grud", *SMALL, *FORECAST])
    ckpt = run / "checkpoints/best.ckpt"
    pred = grud.api.predict(ckpt, [f"data.path={export / 'events.csv'}"], mc_samples=5)
    assert {"id", "time", "variable", "prediction", "value", "lower", "upper"} <= set(pred.columns)
    assert (pred["lower"] <= pred["upper"]).all()
    assert not [c for c in pred.columns if c.startswith("draw_")]  # draws are kept only to pool an ensemble
    assert (pred["time"] >= 15).all() and set(pred["variable"]) <= {"HR", "MAP", "Lactate"}
    grid = grud.api.predict(ckpt, [f"data.path={export / 'events.csv'}"],
                            task_overrides=["task.history_hours=10", "task.forecast_grid_hours=5"])
    assert grid["value"].isna().any() and (grid["time"] > 10).all()


def test_classification_mc_dropout_and_imputation_evaluation(export, tmp_path):
    run = _train(export, tmp_path / "imp", ["model=grud", *SMALL, "task.impute_weight=0.5"])
    ckpt = run / "checkpoints/best.ckpt"
    pred = grud.api.predict(ckpt, [f"data.path={export / 'events.csv'}"], mc_samples=8)
    assert (pred["probability_std"] > 0).any()
    from grud.cli.inference import load_model, read_for_prediction
    from grud.tasks.imputation import imputation_report

    model = load_model(ckpt)
    ds = read_for_prediction({"kind": "csv_long", "path": str(export / "events.csv"),
                              "static_variables": ["Age"]}, model.stats)
    rep = imputation_report(model, ds, rate=0.1, seed=0)
    assert rep["impute/n_hidden"] > 0
    for k in ("model", "mean", "locf"):
        assert math.isfinite(rep[f"impute/mse_{k}"]) and math.isfinite(rep[f"impute/mae_{k}"])
    # the command line, in the spelling (task=impute) and in the config's (task.name=impute)
    import subprocess

    reports = []
    for spelling in ("task=impute", "task.name=impute"):
        out = tmp_path / f"{spelling.replace('=', '_')}.json"
        proc = subprocess.run(["grud-evaluate", f"checkpoint={ckpt}", f"data.path={export / 'events.csv'}",
                               spelling, f"output={out}"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports.append(json.loads(out.read_text()))
    assert reports[0] == reports[1] and reports[0]["impute/n_hidden"] > 0 and "impute/mae_model" in reports[0]


def test_with_ema_the_metrics_are_those_of_the_averaged_weights_the_checkpoint_holds(export, tmp_path):
    """ema_decay: validation, test metrics and the checkpoint all use the moving average of the weights."""
    from grud.tasks.metrics import binary_metrics

    test_csv = make_long_csv(tmp_path / "test.csv", n_series=30, seed=5, labels_path=tmp_path / "test_labels.csv")
    run = _train(export, tmp_path / "ema", ["model=grud", *SMALL, "ema_decay=0.5", "trainer.max_epochs=2",
                                            f"data.test_path={test_csv}", f"data.test_labels={tmp_path / 'test_labels.csv'}"])
    ckpt = torch.load(run / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    raw = ckpt["current_model_state"]  # the training weights; state_dict holds their average
    assert any(not torch.equal(raw[k], v) for k, v in ckpt["state_dict"].items() if k in raw)
    m = json.loads((run / "metrics.json").read_text())
    pred = grud.api.predict(run / "checkpoints/best.ckpt", [f"data.path={test_csv}"])
    import pandas as pd

    y = pd.read_csv(tmp_path / "test_labels.csv").set_index("id").loc[pred["id"], "label"].to_numpy()
    assert m["test/brier"] == pytest.approx(binary_metrics(y, pred["probability"].to_numpy())["brier"], abs=1e-6)


def test_an_unlabelled_test_file_is_an_error_before_training(export, tmp_path):
    """data.test_path without data.test_labels: one clear error up front, not a KeyError after training."""
    from grud.errors import DataError

    test_csv = make_long_csv(tmp_path / "test.csv", n_series=10, seed=5)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text('{"status": "ok"}')  # an earlier run's
    with pytest.raises(DataError, match=r"test split has no labels .*needs data.test_labels=FILE"):
        _train(export, tmp_path / "r", ["model=grud", *SMALL, f"data.test_path={test_csv}"])
    assert not (tmp_path / "r" / "checkpoints" / "best.ckpt").exists()
    assert not (tmp_path / "r" / "config.yaml").exists()  # written only once the checks pass
    # the earlier run's record stays; this attempt's failure is the newer record
    assert json.loads((tmp_path / "r" / "failure.json").read_text())["type"] == "DataError"
    assert (tmp_path / "r" / "failure.json").stat().st_mtime_ns >= (tmp_path / "r" / "metrics.json").stat().st_mtime_ns


def test_the_checkpoints_statistics_come_from_the_training_split_alone(export, tmp_path):
    """Fitting the normaliser on train + validation + test instead of the training split passed
    every test: the checkpoint's statistics are now compared with the run's own training split."""
    import numpy as np
    import yaml

    from grud.cli.checkpoint import safe_load
    from grud.cli.pipeline import read_for_run

    run = _train(export, tmp_path / "r", ["model=gru_mean", *SMALL])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    train, val, test, _ = read_for_run({**cfg["data"], "split_seed": cfg["seed"]})
    stats = safe_load(run / "checkpoints" / "best.ckpt")["hyper_parameters"]["stats"]
    assert stats["n_train"] == len(train) and len(val) and len(test)
    np.testing.assert_allclose(stats["value_mean"], np.nanmean(train.values, axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["static_mean"], np.nanmean(train.static, axis=0), rtol=1e-5)
    everything = np.concatenate([train.values, val.values, test.values])
    assert not np.allclose(stats["value_mean"], np.nanmean(everything, axis=0), rtol=1e-5)


def test_last_ckpt_holds_the_final_epoch_and_metrics_csv_one_validation_row_per_epoch(export, tmp_path):
    """resume=true continues from last.ckpt: it must be the last epoch's, not the best one's."""
    import pandas as pd

    run = _train(export, tmp_path / "r", ["model=gru_mean", *SMALL, "optim.lr=1e-12", "trainer.max_epochs=3",
                                          "early_stopping.patience=100"])  # no epoch improves on the first
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 2
    rows = pd.read_csv(run / "metrics.csv")
    val_epochs = rows.loc[rows["val/auroc"].notna(), "epoch"].tolist()
    assert val_epochs == [0, 1, 2]  # the best epoch's validation after fit adds no row


def test_resume_with_another_model_is_refused_before_the_config_is_replaced(export, tmp_path):
    from grud.cli.pipeline import resume_checkpoint
    from grud.errors import ConfigError, DataError

    run = _train(export, tmp_path / "r", ["model=gru_mean", *SMALL])
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"resume=true: .*last.ckpt was trained with model.name=gru_mean \(asked grud\)"):
        _train(export, run, ["model=grud", *SMALL, "resume=true"])
    assert (run / "config.yaml").read_text() == before
    # another early_stopping.monitor: its best checkpoint, patience and plateau scheduler were kept by val/auroc
    with pytest.raises(ConfigError, match=r"trained with early_stopping\.monitor=val/auroc \(asked val/loss\)"):
        _train(export, run, ["model=gru_mean", *SMALL, "resume=true", "early_stopping.monitor=val/loss"])
    assert resume_checkpoint({"resume": True, "model": {"name": "gru_mean"}, "early_stopping": {"monitor": "val/auroc"}},
                             run) == run / "checkpoints" / "last.ckpt"  # the same metric, named: resumes
    # a sweep's job that never started has nothing to resume: it starts afresh; a single run says so
    assert resume_checkpoint({"resume": True, "model": {}}, tmp_path / "never", fresh_if_none=True) is None
    with pytest.raises(DataError, match="no checkpoint to resume"):
        resume_checkpoint({"resume": True, "model": {}}, tmp_path / "never")
