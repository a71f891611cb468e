"""grud.viz.plots: each plot writes a real PNG, draws what it promises and checks its inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grud import DataError
from grud.viz import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


@pytest.fixture
def drawn(monkeypatch):
    """Record, per written PNG, the visible panels (title, lines, legend texts) before the figure closes."""
    record = {}
    save = plots._save

    def spy(fig, out_png):
        panels = []
        for ax in fig.axes:
            if not ax.axison:
                continue
            legend = ax.get_legend()
            panels.append({"title": ax.get_title(),
                           "lines": [(ln.get_xdata(), ln.get_ydata()) for ln in ax.get_lines()],
                           "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                           "texts": [t.get_text() for t in ax.texts]})
        record[str(out_png).rsplit("/", 1)[-1]] = panels
        return save(fig, out_png)

    monkeypatch.setattr(plots, "_save", spy)
    return record


@pytest.fixture(autouse=True)
def figures_are_closed():
    yield
    assert plots.plt.get_fignums() == []


# ---------------------------------------------------------------------------- history
def lightning_csv(path, epochs=4, rng=np.random.default_rng(0)):
    """A CSVLogger-like file: step rows with train loss only, one epoch row with the val metrics."""
    rows = []
    for e in range(epochs):
        for s in range(3):
            rows.append({"epoch": e, "step": 3 * e + s, "train/loss_step": rng.random()})
        rows.append({"epoch": e, "step": 3 * e + 2, "train/loss_epoch": rng.random(), "val/loss": rng.random(),
                     "val/auroc": rng.random()})
    frame = pd.DataFrame(rows)
    frame["val/auprc"] = np.nan  # a column that was never logged
    frame.to_csv(path, index=False)
    return frame


def test_history_one_panel_per_family_values_averaged_per_epoch(tmp_path, drawn):
    frame = lightning_csv(tmp_path / "metrics.csv")
    out = plots.plot_history(tmp_path / "metrics.csv", tmp_path / "plots" / "history.png")
    assert out == tmp_path / "plots" / "history.png"
    assert_png(out)
    panels = drawn["history.png"]
    assert [p["title"] for p in panels] == ["loss", "auroc", "auprc"]
    assert panels[0]["legend"] == [c for c in frame.columns if "loss" in c]  # every loss in one panel
    x, y = panels[0]["lines"][0]
    expected = frame.dropna(subset=["train/loss_step"]).groupby("epoch")["train/loss_step"].mean()
    np.testing.assert_allclose(x, expected.index)
    np.testing.assert_allclose(y, expected.to_numpy())
    assert panels[2]["lines"] == [] and "not logged" in panels[2]["texts"]


@pytest.mark.parametrize("content", ["", "epoch,step,train/loss,val/auroc\n"])
def test_history_of_empty_log_still_writes_png(tmp_path, content):
    (tmp_path / "metrics.csv").write_text(content)
    assert_png(plots.plot_history(tmp_path / "metrics.csv", tmp_path / "history.png"))


def test_history_bad_input_names_file_and_column(tmp_path):
    with pytest.raises(DataError, match="not found"):
        plots.plot_history(tmp_path / "missing.csv", tmp_path / "h.png")
    (tmp_path / "m.csv").write_text("when,val/loss\n1,0.5\n")
    with pytest.raises(DataError, match="epoch") as err:
        plots.plot_history(tmp_path / "m.csv", tmp_path / "h.png")
    assert "m.csv" in str(err.value) and err.value.column == "epoch"
    assert not (tmp_path / "h.png").exists()


# ---------------------------------------------------------------------------- ROC / PR / calibration
def test_binary_curves_carry_sklearn_scores_and_quantile_calibration(tmp_path, drawn):
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100).astype(float)
    prob = np.clip(0.35 * y + 0.65 * rng.random(100), 0, 1)
    y[:5] = np.nan  # unlabelled series are left out
    paths = plots.plot_roc_pr_calibration(y, prob, tmp_path / "out")
    assert [p.name for p in paths] == ["roc.png", "pr.png", "calibration.png"]
    for p in paths:
        assert_png(p)
    keep = np.isfinite(y)
    yk, pk = y[keep], prob[keep]
    assert f"AUROC = {roc_auc_score(yk, pk):.3f}" in drawn["roc.png"][0]["legend"]
    assert f"AUPRC = {average_precision_score(yk, pk):.3f}" in drawn["pr.png"][0]["legend"]
    diagonal, curve = drawn["calibration.png"][0]["lines"]
    np.testing.assert_allclose(diagonal[0], [0, 1])
    order = np.argsort(pk, kind="stable")
    bins = np.array_split(order, 10)  # 95 samples: 10 bins of 9 or 10
    np.testing.assert_allclose(curve[0], [pk[b].mean() for b in bins])
    np.testing.assert_allclose(curve[1], [yk[b].mean() for b in bins])


def test_multiclass_one_vs_rest_curve_per_class(tmp_path, drawn):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 40)
    prob = rng.dirichlet(np.ones(3), 40)
    plots.plot_roc_pr_calibration(y, prob, tmp_path, class_names=["low", "mid", "high"])
    legend = drawn["roc.png"][0]["legend"]
    assert [t.split(" ")[0] for t in legend[1:]] == ["low", "mid", "high"]
    assert len(drawn["calibration.png"][0]["lines"]) == 1 + 3


def test_single_class_labels_plot_without_curves(tmp_path, drawn):
    paths = plots.plot_roc_pr_calibration(np.zeros(8), np.linspace(0, 1, 8), tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    assert any("undefined" in t for t in drawn["roc.png"][0]["legend"])


def test_curve_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"expected shape \(n,\) or \(n, C\) with n = 3"):
        plots.plot_roc_pr_calibration([0, 1, 1], [0.1, 0.9], tmp_path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.plot_roc_pr_calibration([0, 1], [0.1, 1.5], tmp_path)
    with pytest.raises(ValueError, match="binary labels"):
        plots.plot_roc_pr_calibration([0, 2], [0.1, 0.5], tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- forecasts
def forecast_frames(n_ids=5, rng=np.random.default_rng(3)):
    hist, fc = [], []
    counts = {"HR": 0.9, "MAP": 0.6, "Temp": 0.3, "Lactate": 0.05}
    for i in range(n_ids):
        for var, p_obs in counts.items():
            hist += [{"id": 100 + i, "time": float(t), "variable": var, "value": rng.normal()}
                     for t in range(24) if rng.random() < p_obs]
            for t in range(24, 30):
                pred = rng.normal()
                fc.append({"id": 100 + i, "time": float(t), "variable": var, "prediction": pred,
                           "value": rng.normal() if rng.random() < p_obs else np.nan,
                           "lower": pred - 1, "upper": pred + 1})
    return pd.DataFrame(fc), pd.DataFrame(hist)


def test_forecast_grid_shows_first_series_and_most_observed_variables(tmp_path, drawn):
    frame, history = forecast_frames()
    out = plots.plot_forecasts(frame, tmp_path / "fc.png", n_series=2, history=history, n_variables=2)
    assert_png(out)
    assert [p["title"] for p in drawn["fc.png"]] == ["100 · HR", "100 · MAP", "101 · HR", "101 · MAP"]
    x, y = drawn["fc.png"][0]["lines"][0]  # the forecast line of series 100, HR
    expected = frame[(frame["id"] == 100) & (frame["variable"] == "HR")].sort_values("time")
    np.testing.assert_allclose(y, expected["prediction"])


@pytest.mark.parametrize("history", [None, "empty"])
def test_forecasts_without_history_or_interval(tmp_path, drawn, history):
    frame, _ = forecast_frames(n_ids=2)
    frame = frame.drop(columns=["lower", "upper"])
    hist = pd.DataFrame(columns=["id", "time", "variable", "value"]) if history == "empty" else None
    out = plots.plot_forecasts(frame, tmp_path / "fc.png", history=hist, variables=["Temp"])
    assert_png(out)
    assert [p["title"] for p in drawn["fc.png"]] == ["100 · Temp", "101 · Temp"]


def test_forecast_input_errors_name_the_column(tmp_path):
    frame, _ = forecast_frames(n_ids=1)
    with pytest.raises(DataError, match="prediction") as err:
        plots.plot_forecasts(frame.drop(columns=["prediction"]), tmp_path / "fc.png")
    assert err.value.column == "prediction"
    with pytest.raises(DataError, match="Glucose"):
        plots.plot_forecasts(frame, tmp_path / "fc.png", variables=["Glucose"])
    bad = frame.astype({"time": object})
    bad.loc[3, "time"] = "24:00"
    with pytest.raises(DataError, match="'24:00' in row 3"):
        plots.plot_forecasts(bad, tmp_path / "fc.png")
    with pytest.raises(DataError, match="at least one row"):
        plots.plot_forecasts(frame.iloc[:0], tmp_path / "fc.png")


# ---------------------------------------------------------------------------- input decay
def test_input_decay_small_multiples_follow_the_paper_formula(tmp_path, drawn):
    rng = np.random.default_rng(4)
    F = 11
    w, b = rng.normal(0.1, 0.1, F), rng.normal(0.0, 1.0, F)
    names = [f"var{i}" for i in range(F)]
    out = plots.plot_input_decay(w, b, names, tmp_path / "decay.png", max_delta=24.0)
    assert_png(out)
    panels = drawn["decay.png"]
    assert [p["title"] for p in panels] == names  # 11 panels of a 3 x 4 grid visible, 1 switched off
    assert plots._grid(11) == (3, 4) and plots._grid(37) == (6, 7)  # PhysioNet's 37 variables: 6 x 7
    for i in (0, 5, 10):
        delta, gamma = panels[i]["lines"][0]
        assert delta[0] == 0.0 and delta[-1] == 24.0
        np.testing.assert_allclose(gamma, np.exp(-np.maximum(0.0, w[i] * delta + b[i])))
        assert ((gamma > 0) & (gamma <= 1)).all()


def test_input_decay_takes_torch_parameters_and_checks_shapes(tmp_path):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.rand(3))
    b = torch.nn.Parameter(torch.zeros(3))
    assert_png(plots.plot_input_decay(w, b, ["a", "b", "c"], tmp_path / "d.png"))
    with pytest.raises(ValueError, match=r"biases: expected shape \(3,\)"):
        plots.plot_input_decay(np.ones(3), np.ones(4), ["a", "b", "c"], tmp_path / "d.png")
    with pytest.raises(ValueError, match="expected 3 names"):
        plots.plot_input_decay(np.ones(3), np.ones(3), ["a", "b"], tmp_path / "d.png")


# ---------------------------------------------------------------------------- sweep bars
def test_group_bars_with_missing_values_and_overwrite(tmp_path):
    out = tmp_path / "summary.png"
    out.write_bytes(b"old")
    plots.plot_group_bars(["a", "b", "c"], [0.8, np.nan, 0.7], [0.01, np.nan, np.nan], out, metric="test/auroc")
    assert_png(out)
    assert_png(plots.plot_group_bars([], [], [], tmp_path / "empty.png"))
    with pytest.raises(ValueError, match="one per label"):
        plots.plot_group_bars(["a"], [0.1, 0.2], [0, 0], tmp_path / "x.png")


def test_history_leaves_out_test_only_columns_and_colours_by_stage(tmp_path, drawn):
    frame = lightning_csv(tmp_path / "metrics.csv")
    extra = pd.DataFrame([{"epoch": 4, "step": 12, "test/auroc": 0.8, "test/auroc_ci_low": 0.7, "test/n": 40.0}])
    frame = frame.assign(**{"val/n": 20.0, "val/prevalence": 0.1})  # logged each epoch: counts, no metric panel
    pd.concat([frame, extra]).to_csv(tmp_path / "metrics.csv", index=False)
    plots.plot_history(tmp_path / "metrics.csv", tmp_path / "history.png")
    titles = [p["title"] for p in drawn["history.png"]]
    assert titles == ["loss", "auroc", "auprc"]  # no auroc_ci_low or n panel: one value after training is no history
    assert "test/auroc" in drawn["history.png"][1]["legend"]  # beside its validation twin


def test_a_runs_forecast_plot_gets_the_history_before_the_origin():
    from grud.cli.run_plots import _history_frame
    from grud.data.dataset import IrregularDataset

    times = np.array([0.0, 10.0, 30.0, 5.0])
    values = np.array([[1, np.nan], [2, 3], [4, 5], [np.nan, 6]], np.float32)
    ds = IrregularDataset(["a", "b"], ["HR", "MAP"], [], times, values, np.array([0, 3, 4]),
                          np.zeros((2, 0), np.float32), None, {})
    h = _history_frame(ds, [0, 1], history_hours=24.0)
    assert h.to_dict("list") == {"id": ["a", "a", "a", "b"], "time": [0.0, 10.0, 10.0, 5.0],
                                 "variable": ["HR", "HR", "MAP", "MAP"], "value": [1.0, 2.0, 3.0, 6.0]}


@pytest.mark.parametrize("classes, names", [([1, 3, 5, 7], ["class 1", "class 3", "class 5", "class 7"]),
                                            ([0, 1], None)])
def test_a_runs_multiclass_curves_are_named_by_the_label_codes(classes, names, tmp_path, monkeypatch):
    """Codes 1/3/5/7 were drawn as class 0..3 while predictions said probability_1/3/5/7."""
    from types import SimpleNamespace

    from grud.cli import run_plots
    from grud.viz import plots

    seen = {}
    monkeypatch.setattr(plots, "plot_roc_pr_calibration",
                        lambda y, p, out, class_names=None, **kw: seen.setdefault("names", class_names) and [] or [])
    module = SimpleNamespace(last_test=(np.zeros(4), np.full((4, len(classes)), 1 / len(classes))),
                             stats=SimpleNamespace(classes=classes, variables=[]), network=SimpleNamespace())
    run_plots.write_plots(module, tmp_path, dm=None, task_name="classification")
    assert seen["names"] == names
