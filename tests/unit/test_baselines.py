"""Summary features, the summary-feature classifiers and the forecast baselines."""
import io

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from grud.data.dataset import IrregularDataset, Series
from grud.errors import ConfigError, DataError
from grud.tasks.baselines import (
    BASELINES,
    SummaryClassifier,
    _Forest,
    check_task,
)
from grud.tasks.summary_features import summary_features


def _random_dataset(n=12, F=4, S=2, seed=0, labels=None):
    """Random ragged dataset with empty series, a never-observed variable and unknown statics."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        T = 0 if i % 5 == 2 else int(rng.integers(1, 7))
        times = np.sort(rng.uniform(0, 48, T))
        values = rng.normal(size=(T, F)).astype(np.float32)
        values[rng.random((T, F)) < 0.5] = np.nan
        values[:, F - 1] = np.nan  # never observed anywhere
        static = rng.normal(size=S).astype(np.float32)
        static[rng.random(S) < 0.3] = np.nan
        label = None if labels is None else labels[i]
        series.append(Series(str(i), times, values, static, label))
    return IrregularDataset.from_series(series, [f"v{j}" for j in range(F)], [f"s{j}" for j in range(S)])


def _slow_summary(ds):
    rows = []
    for s in ds:
        feats = {k: [] for k in ("last", "mean", "min", "max", "count")}
        for f in range(len(ds.variables)):
            obs = [float(x) for x in s.values[:, f] if not np.isnan(x)]
            feats["last"].append(obs[-1] if obs else np.nan)
            feats["mean"].append(sum(obs) / len(obs) if obs else np.nan)
            feats["min"].append(min(obs) if obs else np.nan)
            feats["max"].append(max(obs) if obs else np.nan)
            feats["count"].append(float(len(obs)))
        rows.append(sum(feats.values(), []) + [float(x) for x in s.static])
    return np.array(rows)


# ------------------------------------------------------------------ summary features
@pytest.mark.parametrize("seed", [0, 1])
def test_summary_features_match_slow_python(seed):
    ds = _random_dataset(seed=seed)
    assert (ds.lengths == 0).any()
    X, names = summary_features(ds)
    assert X.shape == (len(ds), 5 * 4 + 2) and len(names) == X.shape[1]
    np.testing.assert_allclose(X, _slow_summary(ds), rtol=1e-6, equal_nan=True)
    assert names[0] == "v0_last" and names[4 * 4] == "v0_count" and names[-1] == "s1"


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_summary_is_the_summary_of_a_padded_batch(seed):
    """The head's summary input: the baselines' statistics, with padding and unobserved entries ignored."""
    from grud.tasks.summary_features import batch_summary

    ds = _random_dataset(seed=seed)
    n, F, T = len(ds), len(ds.variables), int(ds.lengths.max()) + 2  # two padded steps at least
    values = torch.full((n, T, F), 7.0)  # garbage where not observed: it must not count
    mask = torch.zeros(n, T, F)
    for i, s in enumerate(ds):
        obs = torch.from_numpy(~np.isnan(s.values))
        values[i, : len(s.values)][obs] = torch.from_numpy(np.nan_to_num(s.values)).float()[obs]
        mask[i, : len(s.values)] = obs.float()
    mask[:, -1] = 1.0  # a mask 1 beyond a series' length is padding all the same
    got = batch_summary(values, mask, torch.as_tensor(ds.lengths))
    X, _ = summary_features(ds)
    want = np.nan_to_num(X[:, : 5 * F])
    want[:, 4 * F:] = np.log1p(want[:, 4 * F:])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, T, F\)"):
        batch_summary(values[0], mask[0], torch.as_tensor(ds.lengths))


def test_summary_features_variable_selection_and_unknown_variable():
    ds = _random_dataset(seed=2)
    X, names = summary_features(ds, variables=["v2", "v0"])
    full, full_names = summary_features(ds)
    for j, name in enumerate(names):
        np.testing.assert_array_equal(X[:, j], full[:, full_names.index(name)])
    assert names[:2] == ["v2_last", "v0_last"]
    with pytest.raises(ConfigError, match="v9"):
        summary_features(ds, variables=["v9"])


# ------------------------------------------------------------------ classifiers
def _one_step_dataset(x, y):
    """One time step per series: each column of x is one variable."""
    n, F = x.shape
    return IrregularDataset([str(i) for i in range(n)], [f"x{j}" for j in range(F)], [], np.zeros(n),
                            x.astype(np.float32), np.arange(n + 1), None, y)


def _learnable(n, seed, F=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F))
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=n) > 0).astype(float)
    return _one_step_dataset(x, y)


def test_logreg_beats_chance_and_selects_best_val_candidate():
    train, val, test = _learnable(200, 0), _learnable(100, 1), _learnable(300, 2)
    clf = SummaryClassifier("logreg").fit(train, val)
    p = clf.predict_proba(test)
    assert p.shape == (300,)
    assert roc_auc_score(test.labels, p) > 0.85
    assert clf.best_index == int(np.nanargmax(clf.val_scores))
    assert len(clf.val_scores) == len(clf.C_grid)


def test_logreg_choice_of_C_follows_the_validation_labels():
    # x1 and x2 are correlated. Training labels depend on x2 - x1 (a partial effect only a weakly
    # regularised fit recovers); strong L2 shrinks towards the marginal direction (x2 alone).
    rng = np.random.default_rng(0)

    def draw(n, rule):
        z1, z2 = rng.normal(size=(2, n))
        x = np.stack([z1, z1 + 0.5 * z2], axis=1)
        signal = x[:, 1] - x[:, 0] if rule == "partial" else x[:, 1]
        return _one_step_dataset(x, (signal + 0.1 * rng.normal(size=n) > 0).astype(float))

    train = draw(300, "partial")
    grid = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    c_partial = SummaryClassifier("logreg", C_grid=grid).fit(train, draw(300, "partial")).params["C"]
    c_marginal = SummaryClassifier("logreg", C_grid=grid).fit(train, draw(300, "marginal")).params["C"]
    assert c_partial > c_marginal


def test_multiclass_logreg_and_forest_give_probability_rows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 3))
    y = np.argmax(x + 0.3 * rng.normal(size=x.shape), axis=1).astype(float)
    ds = _one_step_dataset(x, y)
    train, val, test = ds.subset(range(120)), ds.subset(range(120, 180)), ds.subset(range(180, 240))
    for clf in (SummaryClassifier("logreg"), SummaryClassifier("random_forest", n_estimators=15, leaf_grid=(3,))):
        p = clf.fit(train, val).predict_proba(test)
        assert p.shape == (60, 3)
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert (p.argmax(1) == test.labels).mean() > 0.6  # chance is 1/3


def test_forest_numpy_prediction_matches_sklearn():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(150, 5))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    rf = RandomForestClassifier(n_estimators=12, min_samples_leaf=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(_Forest.from_sklearn(rf.estimators_).predict_proba(X), rf.predict_proba(X),
                               atol=1e-12)


@pytest.mark.parametrize("kind", ["random_forest", "logreg"])
def test_state_dict_round_trip_through_weights_only_load(kind):
    labels = np.r_[np.zeros(20), np.ones(20)]
    ds = _random_dataset(n=40, seed=5, labels=labels)
    clf = SummaryClassifier(kind, n_estimators=10, leaf_grid=(1, 4)).fit(ds.subset(range(0, 40, 2)),
                                                                       ds.subset(range(1, 40, 2)))
    buf = io.BytesIO()
    torch.save({"baseline": clf.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["baseline"]
    again = SummaryClassifier.from_state_dict(state)
    np.testing.assert_array_equal(again.predict_proba(ds), clf.predict_proba(ds))
    assert again.params == clf.params and again.feature_names == clf.feature_names


def test_prediction_aligns_variables_by_name():
    train, val, test = _learnable(200, 0), _learnable(100, 1), _learnable(50, 2)
    clf = SummaryClassifier("logreg").fit(train, val)
    order = [5, 4, 3, 2, 1, 0]
    shuffled = IrregularDataset(test.ids, [test.variables[j] for j in order], [], test.times,
                                test.values[:, order], test.offsets, None, test.labels)
    np.testing.assert_allclose(clf.predict_proba(shuffled), clf.predict_proba(test))


def test_fit_rejects_unusable_labels():
    ds = _random_dataset(n=10, seed=6)
    with pytest.raises(DataError, match="labels"):
        SummaryClassifier().fit(ds)
    with pytest.raises(DataError, match="two classes"):
        SummaryClassifier().fit(ds.with_labels(np.ones(10)))
    with pytest.raises(DataError, match="integers"):
        SummaryClassifier().fit(ds.with_labels(np.linspace(0, 1, 10)))
    with pytest.raises(ConfigError, match="kind"):
        SummaryClassifier("svm")


def test_check_task_names_the_tasks_a_baseline_serves():
    for name, spec in BASELINES.items():
        for task in spec["tasks"]:
            check_task(name, task)
    with pytest.raises(ConfigError, match="serves: classification"):
        check_task("logreg", "forecast")
    with pytest.raises(ConfigError, match="serves: forecast"):
        check_task("locf", "classification")
    with pytest.raises(ConfigError, match="unknown"):
        check_task("xgboost", "classification")



def test_log_variables_are_summarised_after_log1p_at_fit_and_after_reload():
    rng = np.random.default_rng(3)
    x = np.c_[np.exp(rng.normal(1.0, 1.5, size=(240, 1))), rng.normal(size=(240, 2))]
    y = (np.log1p(x[:, 0]) + x[:, 1] + 0.5 * rng.normal(size=240) > 1.5).astype(float)
    ds = _one_step_dataset(x, y)
    pre = _one_step_dataset(np.c_[np.log1p(x[:, :1]), x[:, 1:]], y)  # the same data, transformed beforehand
    fit, val = range(0, 240, 2), range(1, 240, 2)
    clf = SummaryClassifier("logreg", log_variables=["x0"]).fit(ds.subset(fit), ds.subset(val))
    ref = SummaryClassifier("logreg").fit(pre.subset(fit), pre.subset(val))
    np.testing.assert_allclose(clf.predict_proba(ds), ref.predict_proba(pre), atol=1e-6)  # float32 rounding
    assert not np.allclose(SummaryClassifier("logreg").fit(ds.subset(fit), ds.subset(val)).predict_proba(ds),
                           clf.predict_proba(ds))
    buf = io.BytesIO()
    torch.save({"baseline": clf.state_dict()}, buf)
    buf.seek(0)
    again = SummaryClassifier.from_state_dict(torch.load(buf, weights_only=True)["baseline"])
    assert again.log_variables == ["x0"]
    np.testing.assert_array_equal(again.predict_proba(ds), clf.predict_proba(ds))
    assert ds.values[0, 0] == np.float32(x[0, 0])  # the caller's data is left as it was


def test_a_run_with_value_transform_log_gives_the_baseline_the_training_splits_log_variables(tmp_path):
    from grud.cli.baseline_runs import run_baseline
    from grud.data.transforms import fit_stats

    rng = np.random.default_rng(4)
    x = np.c_[np.exp(rng.normal(1.0, 1.5, size=(150, 1))), rng.normal(size=(150, 1))]
    ds = _one_step_dataset(x, (x[:, 1] > 0).astype(float))
    train, val, test = ds.subset(range(0, 150, 3)), ds.subset(range(1, 150, 3)), ds.subset(range(2, 150, 3))
    stats = fit_stats(train)
    assert stats.log_variables == ["x0"]  # heavy-tailed and positive; x1 is not
    for transform, expected in (("log", ["x0"]), ("affine", [])):
        cfg = {"model": {"name": "logreg"}, "task": {"name": "classification", "value_transform": transform},
               "plots": False}
        metrics = run_baseline(cfg, tmp_path / transform, train, val, test, stats)
        assert metrics["test/auroc"] > 0.8
        saved = torch.load(tmp_path / transform / "checkpoints/best.ckpt", weights_only=True)["grud"]["state"]
        assert saved["config"]["log_variables"] == expected
    with pytest.raises(ConfigError, match="task.value_transform"):
        run_baseline({"model": {"name": "logreg"}, "task": {"value_transform": "sqrt"}}, tmp_path / "x",
                     train, val, test, stats)


@pytest.mark.parametrize("kind", ["logreg", "random_forest"])
def test_a_runs_class_weight_weighs_the_baselines_fit(kind, tmp_path):
    """task.class_weight was ignored by logreg and random_forest (a weighted sweep compared weighted
    networks with unweighted baselines): a list weighs each class as scikit-learn's dict does."""
    from sklearn.linear_model import LogisticRegression

    from grud.cli.baseline_runs import run_baseline
    from grud.data.transforms import fit_stats

    train, val, test = _learnable(200, 0), _learnable(100, 1), _learnable(120, 2)
    stats = fit_stats(train)
    probs = {}
    for weight in (None, [1.0, 20.0], "balanced"):
        cfg = {"model": {"name": kind}, "task": {"name": "classification", "class_weight": weight}, "plots": False}
        run_baseline(cfg, tmp_path / str(weight), train, val, test, stats)
        saved = torch.load(tmp_path / str(weight) / "checkpoints/best.ckpt", weights_only=True)["grud"]["state"]
        assert saved["config"]["class_weight"] == weight
        probs[str(weight)] = SummaryClassifier.from_state_dict(saved).predict_proba(test)
    # up-weighting the positives raises every probability of a positive
    assert probs["[1.0, 20.0]"].mean() > probs["None"].mean() + 0.05
    if kind == "logreg":  # the list is scikit-learn's {class index: weight}
        clf = SummaryClassifier("logreg", class_weight=[1.0, 20.0]).fit(train, val)
        X = clf._transform(clf._raw_features(train)[0])
        ref = LogisticRegression(C=clf.C_grid[clf.best_index], class_weight={0: 1.0, 1: 20.0}, max_iter=5000)
        ref.fit(X, train.labels.astype(int))
        np.testing.assert_allclose(clf._model["coef"], ref.coef_, rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match=r"task\.class_weight: expected 2 weights"):
        run_baseline({"model": {"name": kind}, "task": {"class_weight": [1.0, 2.0, 3.0]}, "plots": False},
                     tmp_path / "bad", train, val, test, stats)


def test_a_multiclass_baseline_run_draws_one_vs_rest_curves_as_a_network_run_does(tmp_path):
    """Multi-class logreg wrote no plots/ (only binary runs drew ROC, PR and calibration curves)."""
    from grud.cli.baseline_runs import run_baseline
    from grud.data.transforms import fit_stats

    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 3))
    ds = _one_step_dataset(x, np.argmax(x + 0.3 * rng.normal(size=x.shape), axis=1).astype(float))
    train, val, test = ds.subset(range(120)), ds.subset(range(120, 180)), ds.subset(range(180, 240))
    metrics = run_baseline({"model": {"name": "logreg"}, "task": {"name": "classification"}}, tmp_path, train, val,
                           test, fit_stats(train))
    assert "test/auroc" in metrics and "test/auroc_ci_low" not in metrics  # the interval is binary only
    for name in ("roc.png", "pr.png", "calibration.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000, name
