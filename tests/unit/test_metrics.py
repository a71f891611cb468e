"""Metrics: against scikit-learn on random data, masked errors against hand computation."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, brier_score_loss, roc_auc_score

from grud.tasks.metrics import (
    UndefinedMetricWarning,
    binary_metrics,
    bootstrap_ci,
    bootstrap_distribution,
    masked_mae,
    masked_mse,
    masked_mse_loss,
    multiclass_metrics,
)


def _binary_problem(n, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    if ties:
        p = p.round(2)  # many tied scores
    return y, p


# ------------------------------------------------------------------ classification
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [True, False])
def test_binary_metrics_match_sklearn(seed, ties):
    y, p = _binary_problem(300, seed, ties=ties)
    m = binary_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, (p >= 0.5).astype(float)))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["n"] == 300


def test_binary_metrics_mask_and_missing_labels_drop_series():
    y, p = _binary_problem(200, 3)
    keep = np.random.default_rng(0).random(200) < 0.6
    masked = binary_metrics(y, p, mask=keep)
    assert masked == binary_metrics(y[keep], p[keep])
    y_nan = np.where(keep, y, np.nan)  # unlabelled series are skipped by default
    assert binary_metrics(y_nan, p) == masked
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics(y_nan, p, mask=np.ones(200))


def test_binary_metrics_one_class_gives_nan_with_warning_not_crash():
    y = np.zeros(10)
    p = np.linspace(0, 1, 10)
    with pytest.warns(UndefinedMetricWarning):
        m = binary_metrics(y, p)
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx(np.mean(p**2))


def test_binary_metrics_reject_bad_shapes_and_probabilities():
    with pytest.raises(ValueError, match=r"expected 5 labels"):
        binary_metrics(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_metrics(np.array([0.0, 1.0]), np.array([0.2, 1.7]))
    with pytest.raises(ValueError, match="finite"):
        binary_metrics(np.array([0.0, 1.0]), np.array([0.2, np.nan]))


def test_multiclass_metrics_match_sklearn_and_hand_brier():
    rng = np.random.default_rng(0)
    n, C = 400, 3
    y = rng.integers(0, C, n)
    logits = rng.normal(size=(n, C)) + 1.5 * np.eye(C)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = multiclass_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    hand = np.mean([sum((p[i, c] - (y[i] == c)) ** 2 for c in range(C)) for i in range(n)])
    assert m["brier"] == pytest.approx(hand)


def test_multiclass_metrics_absent_class_warns_and_averages_present_ones():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)  # class 2 never occurs
    p = rng.dirichlet(np.ones(3), 50)
    with pytest.warns(UndefinedMetricWarning, match="absent"):
        m = multiclass_metrics(y, p)
    expected = np.mean([roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert m["auroc"] == pytest.approx(expected)
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(multiclass_metrics(np.zeros(50), p)["auroc"])


# ------------------------------------------------------------------ bootstrap
@pytest.mark.parametrize(
    "metric,reference",
    [
        ("auroc", roc_auc_score),
        ("auprc", average_precision_score),
        ("accuracy", lambda y, p: accuracy_score(y, (p >= 0.5).astype(float))),
        ("brier", brier_score_loss),
    ],
)
def test_vectorised_bootstrap_equals_metric_on_each_resample(metric, reference):
    # Same seed -> same resamples: the callable path recomputes each with sklearn.
    y, p = _binary_problem(150, 4)
    fast = bootstrap_distribution(y, p, metric, n_boot=20, seed=7)
    slow = bootstrap_distribution(y, p, reference, n_boot=20, seed=7)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert np.unique(fast).size > 1  # the resamples really differ


def test_the_interval_does_not_depend_on_the_order_of_the_rows():
    """A run's test epoch (batch order) and grud-evaluate (file order) gave different intervals."""
    y, p = _binary_problem(300, 8)
    perm = np.random.default_rng(1).permutation(len(y))
    assert bootstrap_ci(y, p, "auroc", n_boot=200) == bootstrap_ci(y[perm], p[perm], "auroc", n_boot=200)
    rng = np.random.default_rng(2)
    yc = rng.integers(0, 3, 90)
    pc = rng.dirichlet(np.ones(3), 90)
    order = rng.permutation(90)
    assert bootstrap_ci(yc, pc, "auroc", n_boot=30) == bootstrap_ci(yc[order], pc[order], "auroc", n_boot=30)


def test_bootstrap_keeps_class_sizes():
    y, p = _binary_problem(100, 5)
    prevalence = bootstrap_distribution(y, y.copy(), lambda yy, pp: yy.mean(), n_boot=30)
    np.testing.assert_allclose(prevalence, y.mean())


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    y_small, p_small = _binary_problem(200, 6, ties=False)
    y_big, p_big = _binary_problem(4000, 6, ties=False)
    widths = []
    for y, p in [(y_small, p_small), (y_big, p_big)]:
        low, high = bootstrap_ci(y, p, "auroc", n_boot=300, seed=0)
        assert low < roc_auc_score(y, p) < high
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]  # ~ 1/sqrt(20) expected


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_bootstrap_ci_is_the_percentile_interval_of_the_bootstrap_distribution(alpha):
    """The (1 - alpha) interval cuts alpha / 2 off each tail of the resampled metric.

    A version cut alpha off each tail (a 90 % interval reported as 95 %) still contained
    the estimate; only the tails' sizes reveal it.
    """
    y, p = _binary_problem(300, 9, ties=False)
    values = bootstrap_distribution(y, p, "auroc", n_boot=400, seed=3)
    low, high = bootstrap_ci(y, p, "auroc", n_boot=400, alpha=alpha, seed=3)
    np.testing.assert_allclose([low, high], np.quantile(values, [alpha / 2, 1 - alpha / 2]), rtol=0, atol=1e-12)
    # the share of resamples left out on each side is alpha / 2 (up to one resample)
    assert abs(np.mean(values < low) - alpha / 2) <= 1.5 / values.size
    assert abs(np.mean(values > high) - alpha / 2) <= 1.5 / values.size


def test_bootstrap_ci_multiclass_and_degenerate():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 120)
    p = rng.dirichlet(np.ones(3), 120) * 0.5 + 0.5 * np.eye(3)[y]
    low, high = bootstrap_ci(y, p, "accuracy", n_boot=50)
    assert low <= multiclass_metrics(y, p)["accuracy"] <= high
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        with pytest.raises(UndefinedMetricWarning):
            bootstrap_ci(np.ones(10), np.linspace(0, 1, 10))
    with pytest.warns(UndefinedMetricWarning):
        assert all(np.isnan(bootstrap_ci(np.ones(10), np.linspace(0, 1, 10))))


# ------------------------------------------------------------------ masked errors
def _tiny_forecast():
    # (B=2, T=2, F=3); variable 2 never observed; NaN targets where unobserved.
    pred = np.array([[[1.0, 0.0, 5.0], [2.0, 4.0, 5.0]], [[3.0, 1.0, 5.0], [0.0, 0.0, 5.0]]])
    target = np.array([[[2.0, np.nan, np.nan], [2.0, 1.0, np.nan]], [[1.0, np.nan, np.nan], [np.nan, 3.0, np.nan]]])
    mask = np.array([[[1, 0, 0], [1, 1, 0]], [[1, 0, 0], [0, 1, 0]]])
    # variable 0: errors 1, 0, 2 (observed 3 times); variable 1: errors 3, 3 (observed twice)
    return pred, target, mask


def test_masked_errors_by_hand_numpy_and_torch():
    pred, target, mask = _tiny_forecast()
    cases = {
        ("mse", "variable"): ((1 + 0 + 4) / 3 + (9 + 9) / 2) / 2,
        ("mse", "all"): (1 + 0 + 4 + 9 + 9) / 5,
        ("mae", "variable"): ((1 + 0 + 2) / 3 + (3 + 3) / 2) / 2,
        ("mae", "all"): (1 + 0 + 2 + 3 + 3) / 5,
    }
    for (name, reduce), expected in cases.items():
        fn = masked_mse if name == "mse" else masked_mae
        got_np = fn(pred, target, mask, reduce=reduce)
        got_t = fn(torch.tensor(pred), torch.tensor(target), torch.tensor(mask).bool(), reduce=reduce)
        assert isinstance(got_np, float)
        assert got_np == pytest.approx(expected)
        assert float(got_t) == pytest.approx(expected)


def test_masked_errors_nothing_observed_is_nan_and_shapes_checked():
    pred, target, mask = _tiny_forecast()
    assert np.isnan(masked_mse(pred, target, np.zeros_like(mask)))
    assert np.isnan(masked_mae(pred, target, np.zeros_like(mask), reduce="all"))
    with pytest.raises(ValueError, match=r"same shape"):
        masked_mse(pred, target, mask[..., :2])
    with pytest.raises(ValueError, match="reduce"):
        masked_mse(pred, target, mask, reduce="mean")


def test_masked_mse_loss_value_weight_and_gradient():
    pred, target, mask = _tiny_forecast()
    p = torch.tensor(pred, requires_grad=True)
    loss = masked_mse_loss(p, torch.tensor(target), torch.tensor(mask))
    assert loss.item() == pytest.approx((1 + 0 + 4 + 9 + 9) / 5)
    loss.backward()
    assert torch.isfinite(p.grad).all()  # NaN targets where unobserved do not leak into grads
    assert (p.grad[torch.tensor(mask) == 0] == 0).all()
    w = torch.tensor([1.0, 3.0, 10.0])
    weighted = masked_mse_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask), weight=w)
    assert float(weighted) == pytest.approx((1 + 0 + 4 + 3 * (9 + 9)) / (3 + 3 * 2))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        masked_mse_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask), weight=torch.ones(2))


def test_masked_mse_loss_empty_mask_is_zero_with_gradient():
    p = torch.randn(2, 4, 3, requires_grad=True)
    loss = masked_mse_loss(p, torch.full((2, 4, 3), float("nan")), torch.zeros(2, 4, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (p.grad == 0).all()
