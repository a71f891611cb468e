"""Several classification checkpoints as one model: paths, checks, the averaged frame."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from grud.cli import checkpoint_ensemble as E
from grud.errors import CheckpointError, ConfigError, DataError


def test_checkpoint_paths_takes_a_file_a_list_or_sorted_glob_matches(tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "best.ckpt").write_bytes(b"")
    one = tmp_path / "a" / "checkpoints" / "best.ckpt"
    assert E.checkpoint_paths(str(one)) == [one]
    matches = E.checkpoint_paths(str(tmp_path / "*" / "checkpoints" / "best.ckpt"))
    assert [p.parent.parent.name for p in matches] == ["a", "b", "c"]
    # a list, with a pattern inside and a file named twice
    listed = E.checkpoint_paths([str(one), str(tmp_path / "[bc]" / "checkpoints" / "best.ckpt"), str(one)])
    assert [p.parent.parent.name for p in listed] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"checkpoint: no file matches the pattern '.*nothing\*'"):
        E.checkpoint_paths(str(tmp_path / "nothing*"))
    with pytest.raises(ConfigError, match="got \\[\\]"):
        E.checkpoint_paths([])


def _member(path, task="classification", classes=(0.0, 1.0), id_column="subject_id", variables=("HR", "MAP")):
    stats = SimpleNamespace(classes=list(classes), reader={"id_column": id_column}, variables=list(variables))
    return SimpleNamespace(path=Path(path), task=task, stats=stats)


def test_members_must_serve_one_task_with_the_same_classes_variables_and_id_column(monkeypatch):
    members = {}
    monkeypatch.setattr("grud.cli.inference.load_model", lambda p: members[str(p)])
    members.update(a=_member("a"), b=_member("b"), f=_member("f", task="forecast"), c=_member("c", classes=(0, 1, 2)),
                   i=_member("i", id_column="stay"), g=_member("g", task="forecast"),
                   v=_member("v", task="forecast", variables=("HR",)))
    assert [m.path.name for m in E.load_members(["a", "b"])] == ["a", "b"]
    assert [m.path.name for m in E.load_members("f")] == ["f"]
    assert [m.path.name for m in E.load_members(["f", "g"])] == ["f", "g"]  # forecasts average too
    with pytest.raises(ConfigError, match="must serve one task; a is a classification checkpoint and f a forecast"):
        E.load_members(["a", "f"])
    with pytest.raises(CheckpointError, match=r"forecasts the variables \['HR'\], but f \['HR', 'MAP'\]"):
        E.load_members(["f", "v"])
    with pytest.raises(CheckpointError, match=r"has classes \[0, 1, 2\], but a has \[0.0, 1.0\]"):
        E.load_members(["a", "c"])
    with pytest.raises(CheckpointError, match="reads ids from column 'stay'"):
        E.load_members(["a", "i"])


def test_the_ensemble_frame_is_the_mean_and_mc_spread_pools_every_members_draws():
    rng = np.random.default_rng(0)
    K, N, n = 3, 5, 40  # members, series, MC draws per member
    draws = rng.beta(2, 5, (K, n, N)) + np.arange(K)[:, None, None] * 0.1
    frames = [pd.DataFrame({"id": [f"s{i}" for i in range(N)], "probability": d.mean(0),
                            "probability_std": d.std(0, ddof=1)}) for d in draws]
    out = E.average_probability_frames(frames, mc_samples=n)
    assert list(out.columns) == ["id", "probability", "probability_std"]
    np.testing.assert_allclose(out["probability"], draws.mean((0, 1)))
    pooled = draws.transpose(2, 0, 1).reshape(N, K * n)
    np.testing.assert_allclose(out["probability_std"], pooled.std(1, ddof=1))
    # without MC dropout only the mean, also for one column per class
    multi = [pd.DataFrame({"id": ["x", "y"], "probability_a": [p, 1 - p], "probability_b": [1 - p, p]})
             for p in (0.2, 0.4)]
    out = E.average_probability_frames(multi)
    assert list(out.columns) == ["id", "probability_a", "probability_b"]
    np.testing.assert_allclose(out["probability_a"], [0.3, 0.7])
    # a member without a spread (logreg) counts as n equal draws
    flat = pd.DataFrame({"id": ["x"], "probability": [0.5]})
    spread = pd.DataFrame({"id": ["x"], "probability": [0.5], "probability_std": [0.0]})
    np.testing.assert_allclose(E.average_probability_frames([flat, spread], mc_samples=10)["probability_std"], [0.0])


def test_members_that_predicted_other_series_are_an_error():
    a = pd.DataFrame({"id": ["x", "y"], "probability": [0.1, 0.2]})
    b = pd.DataFrame({"id": ["y", "x"], "probability": [0.1, 0.2]})
    with pytest.raises(DataError, match="different series"):
        E.average_probability_frames([a, b])


def _forecasts(prediction, ids=("x", "x", "y"), times=(25.0, 25.0, 30.5), variables=("HR", "MAP", "HR")):
    return pd.DataFrame({"RecordID": list(ids), "time": list(times), "variable": list(variables),
                         "prediction": list(prediction), "value": [80.0, np.nan, 75.0][:len(ids)]})


def test_a_forecast_ensemble_is_the_mean_forecast_of_the_same_rows():
    out = E.average_forecast_frames([_forecasts([70.0, 90.0, 60.0]), _forecasts([80.0, 100.0, 64.0])])
    assert list(out.columns) == ["RecordID", "time", "variable", "prediction", "value"]
    np.testing.assert_allclose(out["prediction"], [75.0, 95.0, 62.0])
    np.testing.assert_array_equal(out["value"], [80.0, np.nan, 75.0])
    for other in (_forecasts([1.0, 2.0, 3.0], times=(25.0, 26.0, 30.5)),       # another window
                  _forecasts([1.0, 2.0, 3.0], variables=("HR", "HR", "MAP")),  # other rows
                  _forecasts([1.0, 2.0], ids=("x", "y"), times=(25.0, 30.5), variables=("HR", "HR"))):
        with pytest.raises(DataError, match="predicted different rows"):
            E.average_forecast_frames([_forecasts([70.0, 90.0, 60.0]), other])


def test_a_forecast_ensembles_interval_pools_every_members_draws():
    rng = np.random.default_rng(0)
    K, n = 3, 20
    draws = rng.normal(70, 5, (K, 3, n)) + np.arange(K)[:, None, None] * 4.0  # members disagree
    frames = []
    for d in draws:
        f = _forecasts(d.mean(1))
        f["lower"], f["upper"] = np.quantile(d, [0.05, 0.95], axis=1)
        for k in range(n):
            f[f"draw_{k}"] = d[:, k]
        frames.append(f)
    out = E.average_forecast_frames(frames, mc_samples=n)
    assert list(out.columns) == ["RecordID", "time", "variable", "prediction", "value", "lower", "upper"]
    pooled = draws.transpose(1, 0, 2).reshape(3, K * n)
    np.testing.assert_allclose(out["prediction"], pooled.mean(1))
    np.testing.assert_allclose(out["lower"], np.quantile(pooled, 0.05, axis=1))
    np.testing.assert_allclose(out["upper"], np.quantile(pooled, 0.95, axis=1))
    assert (out["upper"] - out["lower"] > np.mean([f["upper"] - f["lower"] for f in frames], 0)).all()
    # a member without draws (locf) counts as n draws at its prediction
    locf = _forecasts([60.0, 60.0, 60.0])
    both = E.average_forecast_frames([locf, _forecasts([60.0, 60.0, 60.0])], mc_samples=4)
    np.testing.assert_allclose(both[["lower", "upper"]].to_numpy(), 60.0)
    with pytest.raises(DataError, match="carries 20 Monte-Carlo draws, expected mc_samples=5"):
        E.average_forecast_frames(frames[:2], mc_samples=5)
