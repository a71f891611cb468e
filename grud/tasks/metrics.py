"""Classification metrics, bootstrap intervals and masked regression errors.

Pure numpy / torch (no Lightning, no Hydra). Every metric takes a mask so that series
without a label, or entries that were never observed, never count:

* classification: ``mask`` (n,) with 1 = this series counts; by default every series whose
  label is finite.
* regression / forecasting: ``mask`` (..., F) with 1 = observed (the vocabulary of
  :mod:`grud.data`); unobserved entries of ``pred`` and ``target`` may hold anything,
  NaN included.

Conventions:

* ``accuracy`` of a binary classifier predicts class 1 when ``prob >= 0.5``.
* ``brier`` is the mean squared difference between the predicted probabilities and the
  one-hot outcome (binary: ``mean((prob - y)**2)``, range 0..1; multi-class: the sum over
  classes, Brier 1950, range 0..2).
* ``auprc`` is the average precision (the step-wise area without interpolation that
  :func:`sklearn.metrics.average_precision_score` computes).

Undefined metrics (one class only, no sample left) are NaN and raise an
:class:`UndefinedMetricWarning`, never an exception.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch

__all__ = [
    "UndefinedMetricWarning",
    "binary_metrics",
    "multiclass_metrics",
    "bootstrap_ci",
    "bootstrap_distribution",
    "masked_mse",
    "masked_mae",
    "masked_mse_loss",
]

BINARY_METRICS = ("auroc", "auprc", "accuracy", "brier")


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined on these labels (e.g. only one class present) and is NaN."""


# ---------------------------------------------------------------------------- checks
def _labels_and_mask(y_true, mask, n_expected: int | None = None, name: str = "y_true"):
    """Return (y (n,) float64, keep (n,) bool) after checking shapes."""
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected shape (n,), got {y.shape}")
    if n_expected is not None and y.shape[0] != n_expected:
        raise ValueError(f"{name}: expected {n_expected} labels (one per row of prob), got {y.shape[0]}")
    if mask is None:
        keep = np.isfinite(y)
    else:
        m = np.asarray(mask)
        if m.shape != y.shape:
            raise ValueError(f"mask: expected shape {y.shape} (like {name}), got {m.shape}")
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask: expected only 0/1 (or False/True) values")
        keep = m.astype(bool)
        if not np.isfinite(y[keep]).all():
            raise ValueError(f"{name}: mask selects labels that are NaN/inf; mask them out or drop them")
    return y, keep


def _check_prob(prob: np.ndarray, name: str = "prob") -> None:
    if not np.isfinite(prob).all():
        raise ValueError(f"{name}: expected finite probabilities, found NaN/inf")
    if prob.size and (prob.min() < -1e-6 or prob.max() > 1 + 1e-6):
        raise ValueError(f"{name}: expected probabilities in [0, 1], got range [{prob.min():g}, {prob.max():g}]")


def _check_binary_labels(y: np.ndarray) -> None:
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"y_true: expected binary labels 0/1, got {np.unique(y[bad])[:5].tolist()}")


def _undefined(what: str) -> float:
    warnings.warn(what, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


# ---------------------------------------------------------------------------- ranking metrics
def _auroc(y: np.ndarray, prob: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney) formula, ties counted one half."""
    from scipy.stats import rankdata

    n_pos = float(y.sum())
    n_neg = float(y.shape[0] - n_pos)
    ranks = rankdata(prob)  # average ranks for ties
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_precision(y: np.ndarray, prob: np.ndarray) -> float:
    """Average precision: the sum over distinct scores, from the highest, of the recall gained
    there times the precision there; :func:`sklearn.metrics.average_precision_score`'s definition
    (tested against it), in numpy: that function spent ~10 ms a call looking up dataframe plugins."""
    order = np.argsort(-prob, kind="stable")
    ps, ys = prob[order], y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct score (ties together)
    pos = np.add.reduceat(ys, starts)
    tp = np.cumsum(pos)
    seen = np.cumsum(np.diff(np.r_[starts, ps.shape[0]]))
    return float((pos * tp / seen).sum() / tp[-1])


def binary_metrics(y_true, prob, mask=None) -> dict:
    """AUROC, AUPRC (average precision), accuracy at 0.5 and Brier score of a binary classifier.

    Args:
        y_true: (n,) labels 0/1 (NaN allowed where ``mask`` is 0).
        prob: (n,) predicted probability of class 1.
        mask: (n,) 1 = the series counts; default: every finite label.

    Returns:
        ``{"auroc", "auprc", "accuracy", "brier", "n", "prevalence"}`` as python floats/ints.
        AUROC and AUPRC are NaN (with an :class:`UndefinedMetricWarning`) when only one class
        is present; everything is NaN when no series is left.

    Shape:
        y_true, prob, mask: (n,)
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"prob: expected shape (n,) for binary metrics, got {p.shape}")
    y, keep = _labels_and_mask(y_true, mask, p.shape[0])
    y, p = y[keep], p[keep]
    _check_prob(p)
    _check_binary_labels(y)
    n = int(y.shape[0])
    out = {"n": n, "prevalence": float(y.mean()) if n else float("nan")}
    if n == 0:
        _undefined("binary_metrics: no labelled sample left after masking; all metrics are NaN")
        return {**out, "auroc": float("nan"), "auprc": float("nan"), "accuracy": float("nan"), "brier": float("nan")}
    if 0 < y.sum() < n:
        out["auroc"] = _auroc(y, p)
        out["auprc"] = _average_precision(y, p)
    else:
        out["auroc"] = _undefined(f"binary_metrics: only class {int(y[0])} present; AUROC and AUPRC are NaN")
        out["auprc"] = float("nan")
    out["accuracy"] = float(((p >= 0.5) == (y == 1)).mean())
    out["brier"] = float(((p - y) ** 2).mean())
    return out


def multiclass_metrics(y_true, prob, mask=None) -> dict:
    """Macro one-vs-rest AUROC and AUPRC, accuracy (argmax) and multi-class Brier score.

    Args:
        y_true: (n,) integer class labels in ``0..C-1`` (NaN allowed where ``mask`` is 0).
        prob: (n, C) predicted class probabilities, rows summing to 1.
        mask: (n,) 1 = the series counts; default: every finite label.

    Returns:
        ``{"auroc", "auprc", "accuracy", "brier", "n"}``. The macro averages run over the
        classes present in ``y_true`` (each needs positives and negatives); a class that is
        absent is skipped with an :class:`UndefinedMetricWarning`, and fewer than two classes
        present gives NaN.

    Shape:
        y_true, mask: (n,); prob: (n, C)
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"prob: expected shape (n, C) with C >= 2, got {p.shape}")
    y, keep = _labels_and_mask(y_true, mask, p.shape[0])
    y, p = y[keep], p[keep]
    _check_prob(p)
    C = p.shape[1]
    if not np.isin(y, np.arange(C)).all():
        raise ValueError(f"y_true: expected integer classes 0..{C - 1} (prob has {C} columns), "
                         f"got {np.unique(y[~np.isin(y, np.arange(C))])[:5].tolist()}")
    if p.size and np.abs(p.sum(1) - 1).max() > 1e-4:
        raise ValueError(f"prob: expected rows summing to 1, max deviation {np.abs(p.sum(1) - 1).max():g}")
    n = int(y.shape[0])
    if n == 0:
        _undefined("multiclass_metrics: no labelled sample left after masking; all metrics are NaN")
        return {"n": 0, "auroc": float("nan"), "auprc": float("nan"), "accuracy": float("nan"), "brier": float("nan")}
    yi = y.astype(np.int64)
    present = np.bincount(yi, minlength=C) > 0
    if present.sum() < 2:
        auroc = _undefined(f"multiclass_metrics: only class {yi[0]} present; AUROC and AUPRC are NaN")
        auprc = float("nan")
    else:
        if not present.all():
            _undefined(f"multiclass_metrics: classes {np.flatnonzero(~present).tolist()} absent; "
                       "macro AUROC/AUPRC average over the others")
        cls = np.flatnonzero(present)
        auroc = float(np.mean([_auroc((yi == c).astype(float), p[:, c]) for c in cls]))
        auprc = float(np.mean([_average_precision((yi == c).astype(float), p[:, c]) for c in cls]))
    onehot = np.eye(C)[yi]
    return {
        "n": n,
        "auroc": auroc,
        "auprc": auprc,
        "accuracy": float((p.argmax(1) == yi).mean()),
        "brier": float(((p - onehot) ** 2).sum(1).mean()),
    }


# ---------------------------------------------------------------------------- bootstrap
def _stratified_counts(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) how often each sample is drawn when resampling each class with replacement.

    Class sizes are kept fixed (stratified bootstrap), so every resample holds every class.
    """
    n = y.shape[0]
    counts = np.zeros((n_boot, n), dtype=np.int32)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = idx.shape[0]
        draws = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
        counts[:, idx] = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    return counts


def _binary_from_counts(metric: str, y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Binary ``metric`` on each resample given by ``counts`` (B, n) -> (B,), vectorised."""
    w = counts.astype(np.float64)
    if metric == "accuracy":
        return w @ ((p >= 0.5) == (y == 1)).astype(np.float64) / w.sum(1)
    if metric == "brier":
        return w @ ((p - y) ** 2) / w.sum(1)
    # Ranking metrics: group tied scores (ascending), weight positives / negatives per group.
    order = np.argsort(p, kind="stable")
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    pos = np.add.reduceat(ws * ys, starts, axis=1)  # (B, G)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    P, N = pos.sum(1), neg.sum(1)
    if metric == "auroc":
        below = np.cumsum(neg, axis=1) - neg
        return (pos * (below + 0.5 * neg)).sum(1) / (P * N)
    if metric == "auprc":
        tp = np.cumsum(pos[:, ::-1], axis=1)  # descending thresholds
        fp = np.cumsum(neg[:, ::-1], axis=1)
        tot = tp + fp
        precision = np.divide(tp, tot, out=np.zeros_like(tp), where=tot > 0)
        return (pos[:, ::-1] * precision).sum(1) / P
    raise ValueError(f"metric: expected one of {BINARY_METRICS} or a callable, got {metric!r}")


def bootstrap_distribution(
    y_true, prob, metric: str | Callable = "auroc", n_boot: int = 1000, seed: int = 0, mask=None
) -> np.ndarray:
    """The metric on ``n_boot`` stratified bootstrap resamples -> (n_boot,).

    Binary ``prob`` (n,) with a named metric (``auroc``, ``auprc``, ``accuracy``, ``brier``)
    is vectorised over resamples (1000 resamples of 4,000 series take well under a second).
    Multi-class ``prob`` (n, C) or a callable ``metric(y, prob) -> float`` loops over
    resamples (slower).

    Shape:
        y_true (n,); prob (n,) binary or (n, C); mask (n,) 1 = scored -> (n_boot,).
    """
    if int(n_boot) < 1:
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot}")
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"prob: expected shape (n,) or (n, C), got {p.shape}")
    y, keep = _labels_and_mask(y_true, mask, p.shape[0])
    y, p = y[keep], p[keep]
    _check_prob(p)
    if y.shape[0] == 0 or np.unique(y).shape[0] < 2:
        _undefined("bootstrap: fewer than two classes present; the interval is NaN")
        return np.full(int(n_boot), np.nan)
    # a canonical row order (by label, then probabilities): the same predictions give the same
    # interval whatever order they come in (a run's batches, a file's rows)
    order = np.lexsort((*(p.T[::-1] if p.ndim == 2 else (p,)), y))
    y, p = y[order], p[order]
    rng = np.random.default_rng(seed)
    counts = _stratified_counts(y, int(n_boot), rng)
    if p.ndim == 1 and isinstance(metric, str):
        _check_binary_labels(y)
        return _binary_from_counts(metric, y, p, counts)
    if isinstance(metric, str):
        if metric not in BINARY_METRICS:
            raise ValueError(f"metric: expected one of {BINARY_METRICS} or a callable, got {metric!r}")
        name = metric
        metric = lambda yy, pp: multiclass_metrics(yy, pp)[name]  # noqa: E731
    idx = np.arange(y.shape[0])
    out = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        rows = np.repeat(idx, counts[b])
        out[b] = metric(y[rows], p[rows])
    return out


def bootstrap_ci(
    y_true, prob, metric: str | Callable = "auroc", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
    mask=None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` confidence interval of a metric.

    Resamples series with replacement within each class (stratified: every resample keeps the
    class sizes, so AUROC is always defined). See :func:`bootstrap_distribution`.

    Returns:
        ``(low, high)`` python floats; ``(nan, nan)`` with a warning when undefined.

    Shape:
        y_true (n,); prob (n,) binary or (n, C); mask (n,) 1 = scored.
    """
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha}")
    values = bootstrap_distribution(y_true, prob, metric, n_boot, seed, mask)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------------------------------------------------------------------------- masked errors
_REDUCTIONS = ("variable", "all")


def _check_masked_args(pred, target, mask, reduce):
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce: expected one of {_REDUCTIONS}, got {reduce!r}")
    if tuple(pred.shape) != tuple(target.shape) or tuple(mask.shape) != tuple(pred.shape):
        raise ValueError(
            f"pred, target, mask: expected the same shape (..., F), got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    if len(pred.shape) == 0:
        raise ValueError("pred: expected at least one dimension (..., F), got a scalar")


def _masked_error(pred, target, mask, reduce: str, squared: bool):
    if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        mask = torch.as_tensor(mask, device=pred.device)
        _check_masked_args(pred, target, mask, reduce)
        if mask.dtype != torch.bool:
            if ((mask != 0) & (mask != 1)).any():
                raise ValueError("mask: expected only 0/1 (or False/True) values")
            mask = mask != 0
        zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
        # Replace unobserved entries before subtracting: NaN there must not poison the gradient.
        diff = torch.where(mask, pred, zero) - torch.where(mask, target.to(pred.dtype), zero)
        err = diff * diff if squared else diff.abs()
        m = mask.to(pred.dtype)
        if reduce == "all":
            return err.sum() / m.sum()  # 0/0 = NaN when nothing is observed
        F = pred.shape[-1]
        total, count = err.reshape(-1, F).sum(0), m.reshape(-1, F).sum(0)
        has = count > 0
        per_var = total / count.clamp_min(1)
        return (per_var * has).sum() / has.sum()
    pred, target, mask = np.asarray(pred, np.float64), np.asarray(target, np.float64), np.asarray(mask)
    _check_masked_args(pred, target, mask, reduce)
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask: expected only 0/1 (or False/True) values")
        mask = mask.astype(bool)
    diff = np.where(mask, pred, 0.0) - np.where(mask, target, 0.0)
    err = diff * diff if squared else np.abs(diff)
    if reduce == "all":
        n = mask.sum()
        return float(err.sum() / n) if n else float("nan")
    F = pred.shape[-1]
    total, count = err.reshape(-1, F).sum(0), mask.reshape(-1, F).sum(0)
    has = count > 0
    return float((total[has] / count[has]).mean()) if has.any() else float("nan")


def masked_mse(pred, target, mask, reduce: str = "variable"):
    """Mean squared error over observed entries.

    ``reduce="variable"`` averages the squared errors of each variable over its observed
    entries, then averages over the variables observed at least once (the protocol of
    t-PatchGNN, Zhang et al. ICML 2024, so that frequent variables do not dominate).
    ``reduce="all"`` pools all observed entries. NaN when nothing is observed.

    Works on numpy arrays (returns a python float) and torch tensors (returns a 0-dim tensor,
    differentiable).

    Shape:
        pred, target, mask: (..., F), e.g. (B, T, F); mask 1 = observed
    """
    return _masked_error(pred, target, mask, reduce, squared=True)


def masked_mae(pred, target, mask, reduce: str = "variable"):
    """Mean absolute error over observed entries; reductions as in :func:`masked_mse`.

    Shape:
        pred, target, mask: (..., F); mask 1 = observed
    """
    return _masked_error(pred, target, mask, reduce, squared=False)


def masked_mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None):
    """Differentiable training loss: (weighted) mean squared error over observed entries.

    ``sum(w_f * mask * (pred - target)**2) / sum(w_f * mask)`` with ``w_f = weight[f]``
    (all ones by default, i.e. the pooled mean). Unobserved ``target`` entries may be NaN.
    Returns a zero that still carries a gradient (of zero) when nothing is observed, so a
    batch without targets does not break training.

    Shape:
        pred, target, mask: (..., F); weight: (F,) non-negative; output: scalar
    """
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred: expected a torch.Tensor, got {type(pred).__name__}")
    target = torch.as_tensor(target, device=pred.device)
    mask = torch.as_tensor(mask, device=pred.device)
    _check_masked_args(pred, target, mask, "all")
    F = pred.shape[-1]
    m = mask if mask.dtype == torch.bool else mask != 0
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    diff = torch.where(m, pred, zero) - torch.where(m, target.to(pred.dtype), zero)
    mf = m.to(pred.dtype)
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=pred.dtype, device=pred.device)
        if tuple(weight.shape) != (F,):
            raise ValueError(f"weight: expected shape ({F},) (one per variable), got {tuple(weight.shape)}")
        if not torch.isfinite(weight).all() or (weight < 0).any():
            raise ValueError("weight: expected finite non-negative values")
        mf = mf * weight
    num = (diff * diff * mf).sum()
    den = mf.sum()
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, num * 0)
