"""Classical baselines: summary-feature classifiers and the LOCF / mean forecasters.

Fair baselines, not straw men: the classifiers see the same 5-statistic summary of every
variable plus the static features (:mod:`grud.tasks.summary_features`), impute with training
medians, standardise with training statistics and choose their regularisation on the
validation split by AUROC (as the non-recurrent baselines of Che et al., Sci. Rep. 2018).

A fitted :class:`SummaryClassifier` serialises to plain python values and torch tensors
(:meth:`SummaryClassifier.state_dict`), so it fits in a checkpoint that loads with
``torch.load(weights_only=True)``; prediction always runs through the numpy implementation
below, so a reloaded model gives bit-identical probabilities.

The forecasting baselines ``locf`` and ``mean_forecast`` are computed by the forecasting task
itself from its history window (:meth:`grud.data.forecast_batching.ForecastDataset.baseline_raw`),
so that they are scored on exactly the queries and scale of the neural forecasters.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import torch

from grud.data.transforms import log1p_columns
from grud.errors import CheckpointError, ConfigError, DataError
from grud.tasks.summary_features import summary_features

log = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "check_task",
    "SummaryClassifier",
]

BASELINES = {
    "logreg": {"tasks": ["classification"]},
    "random_forest": {"tasks": ["classification"]},
    "locf": {"tasks": ["forecast"]},
    "mean_forecast": {"tasks": ["forecast"]},
}


def check_task(name: str, task: str) -> None:
    """Raise :class:`~grud.errors.ConfigError` unless baseline ``name`` serves ``task``."""
    if name not in BASELINES:
        raise ConfigError(f"baseline {name!r} is unknown; expected one of {sorted(BASELINES)}")
    tasks = BASELINES[name]["tasks"]
    if task not in tasks:
        raise ConfigError(
            f"baseline {name!r} does not serve task {task!r}; it serves: {', '.join(tasks)}. "
            f"Baselines for {task!r}: {[b for b, d in BASELINES.items() if task in d['tasks']] or 'none'}"
        )


# ============================================================================ classifiers
DEFAULT_C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULT_LEAF_GRID = (1, 5, 20)
DEFAULT_MAX_FEATURES_GRID = ("sqrt", 0.3)
_STATE_FORMAT = "grud.SummaryClassifier"
_STATE_VERSION = 1


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Forest:
    """Decision trees flattened into one node table; prediction in numpy, vectorised.

    Every tree's nodes are stored consecutively; a leaf points to itself (left = right = its own
    index, threshold +inf), so ``depth`` synchronous steps bring every (tree, sample) pair to
    its leaf. ``proba`` holds each node's class distribution (normalised, as scikit-learn's
    ``predict_proba``); the forest averages its trees.
    """

    def __init__(self, roots, left, right, feature, threshold, proba, depth):
        self.roots = np.asarray(roots, dtype=np.int64)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.proba = np.asarray(proba, dtype=np.float64)
        self.depth = int(depth)

    @classmethod
    def from_sklearn(cls, estimators) -> "_Forest":
        roots, left, right, feature, threshold, proba = [], [], [], [], [], []
        start, depth = 0, 0
        for est in estimators:
            t = est.tree_
            k = t.node_count
            leaf = t.children_left == -1
            idx = np.arange(k) + start
            roots.append(start)
            left.append(np.where(leaf, idx, t.children_left + start))
            right.append(np.where(leaf, idx, t.children_right + start))
            feature.append(np.where(leaf, 0, t.feature))
            threshold.append(np.where(leaf, np.inf, t.threshold))
            v = t.value[:, 0, :].astype(np.float64)
            proba.append(v / v.sum(axis=1, keepdims=True))
            depth = max(depth, int(t.max_depth))
            start += k
        return cls(roots, np.concatenate(left), np.concatenate(right), np.concatenate(feature),
                   np.concatenate(threshold), np.concatenate(proba), depth)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # scikit-learn compares float32 inputs with float64 thresholds: do the same.
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        n = X.shape[0]
        node = np.repeat(self.roots[:, None], n, axis=1)  # (n_trees, n)
        rows = np.arange(n)[None, :]
        for _ in range(self.depth):
            go_left = X[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return self.proba[node].mean(axis=0)  # (n, C)

    def state(self) -> dict:
        return {
            "roots": torch.from_numpy(self.roots.copy()),
            "left": torch.from_numpy(self.left.copy()),
            "right": torch.from_numpy(self.right.copy()),
            "feature": torch.from_numpy(self.feature.copy()),
            "threshold": torch.from_numpy(self.threshold.copy()),
            "proba": torch.from_numpy(self.proba.copy()),
            "depth": self.depth,
        }

    @classmethod
    def from_state(cls, d: dict) -> "_Forest":
        return cls(*(np.asarray(d[k]) for k in ("roots", "left", "right", "feature", "threshold", "proba")),
                   int(d["depth"]))


class SummaryClassifier:
    """Logistic regression or random forest on per-series summary features.

    Features: last, mean, min, max and count of each variable plus the static features
    (:func:`~grud.tasks.summary_features.summary_features`). NaN (never observed / unknown) is
    imputed with the training median; the counts already say which variables were never
    observed, and a 0/1 missing-indicator column is added for every static feature that is
    missing somewhere in the training data. Columns never observed in training are dropped.
    Everything is standardised with training means and standard deviations.

    Hyperparameters are chosen on the validation split by AUROC (macro one-vs-rest for more
    than two classes); the model is fitted on the training split only. Ties go to the first
    grid point (the grids run from strong to weak regularisation).

    Args:
        kind: ``"logreg"`` (L2 logistic regression, C chosen from ``C_grid``) or
            ``"random_forest"`` (``n_estimators`` trees, ``min_samples_leaf`` x
            ``max_features`` chosen from the grids).
        seed: random state of the forest (and of the logistic solver).
        n_jobs: parallel jobs of the forest, and BLAS threads of both kinds.
        C_grid: inverse regularisation strengths tried for ``logreg``.
        class_weight: ``None``, ``"balanced"`` or one weight > 0 per class, in the order of the
            sorted class codes (both kinds; ``task.class_weight`` of a run, as for the networks).
        n_estimators, leaf_grid, max_features_grid: random forest settings.
        variables: time-varying variables to use (default all of the training data).
        log_variables: variables whose values pass through log1p (negatives clipped to 0) before
            the summary, as ``task.value_transform=log`` does for the neural models (the run
            passes :attr:`~grud.data.transforms.FittedStats.log_variables` of the training split).
    """

    def __init__(
        self,
        kind: str = "logreg",
        seed: int = 0,
        n_jobs: int = 1,
        C_grid: Sequence[float] = DEFAULT_C_GRID,
        class_weight: str | Sequence[float] | None = None,
        n_estimators: int = 300,
        leaf_grid: Sequence[int] = DEFAULT_LEAF_GRID,
        max_features_grid: Sequence = DEFAULT_MAX_FEATURES_GRID,
        max_iter: int = 5000,
        variables: Sequence[str] | None = None,
        log_variables: Sequence[str] = (),
    ):
        if kind not in ("logreg", "random_forest"):
            raise ConfigError(f"baseline kind: expected 'logreg' or 'random_forest', got {kind!r}")
        if class_weight in ("none", False):
            class_weight = None
        if class_weight is not None and class_weight != "balanced":
            try:
                if isinstance(class_weight, (str, bytes)):
                    raise TypeError
                class_weight = [float(w) for w in class_weight]
            except (TypeError, ValueError):
                raise ConfigError(f"class_weight: expected null, balanced or a list of weights > 0 (one per class), "
                                  f"got {class_weight!r}") from None
            if not class_weight or any(not (w > 0 and math.isfinite(w)) for w in class_weight):
                raise ConfigError(f"class_weight: expected weights > 0 (one per class), got {class_weight}")
        C_grid = [float(c) for c in C_grid]
        if not C_grid or any(not (c > 0 and math.isfinite(c)) for c in C_grid):
            raise ConfigError(f"C_grid: expected a non-empty list of positive numbers, got {C_grid}")
        if int(n_estimators) < 1:
            raise ConfigError(f"n_estimators: expected a positive integer, got {n_estimators}")
        leaf_grid = [int(x) for x in leaf_grid]
        if not leaf_grid or min(leaf_grid) < 1:
            raise ConfigError(f"leaf_grid: expected a non-empty list of integers >= 1, got {leaf_grid}")
        max_features_grid = [x if isinstance(x, str) else float(x) for x in max_features_grid]
        if not max_features_grid:
            raise ConfigError("max_features_grid: expected a non-empty list")
        self.kind = kind
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.C_grid = C_grid
        self.class_weight = class_weight
        self.n_estimators = int(n_estimators)
        self.leaf_grid = leaf_grid
        self.max_features_grid = max_features_grid
        self.max_iter = int(max_iter)
        self.variables = None if variables is None else [str(v) for v in variables]
        self.log_variables = [str(v) for v in log_variables]
        self._fitted = False

    # ------------------------------------------------------------------ features
    def _raw_features(self, ds) -> tuple[np.ndarray, list[str]]:
        ds = ds.align(self.variables, self.static_names)
        cols = np.isin(np.asarray(self.variables, dtype=object), self.log_variables)
        if cols.any():
            ds = ds.with_values(log1p_columns(ds.values, cols))
        return summary_features(ds)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        ind = np.isnan(X[:, self.indicator_columns]).astype(np.float64)
        X = np.where(np.isnan(X), self.medians[None, :], X)
        X = np.concatenate([X, ind], axis=1)[:, self.keep_columns]
        return (X - self.center) / self.scale

    def _fit_transform(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        observed = ~np.isnan(X).all(axis=0)
        med = np.zeros(X.shape[1])
        med[observed] = np.nanmedian(X[:, observed], axis=0)
        self.medians = med
        n_static = len(self.static_names)
        static_cols = range(X.shape[1] - n_static, X.shape[1])
        self.indicator_columns = [j for j in static_cols if np.isnan(X[:, j]).any() and observed[j]]
        Xi = np.concatenate([np.where(np.isnan(X), med[None, :], X),
                             np.isnan(X[:, self.indicator_columns]).astype(np.float64)], axis=1)
        all_names = list(names) + [f"{names[j]}_missing" for j in self.indicator_columns]
        std = Xi.std(axis=0)
        keep = np.r_[observed, np.ones(len(self.indicator_columns), bool)] & (std > 0)
        self.keep_columns = np.flatnonzero(keep).tolist()
        self.feature_names = [all_names[j] for j in self.keep_columns]
        self.center = Xi[:, keep].mean(axis=0)
        self.scale = std[keep]
        return (Xi[:, keep] - self.center) / self.scale

    # ------------------------------------------------------------------ labels
    @staticmethod
    def _labels(ds, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels of the labelled series, their indices); raises DataError without labels."""
        if ds.labels is None or not np.isfinite(ds.labels).any():
            raise DataError(f"{what}: a classification baseline needs labels, and this data has none")
        idx = np.flatnonzero(np.isfinite(ds.labels))
        if idx.size < len(ds):
            log.warning("%s: %d of %d series have no label and are left out", what, len(ds) - idx.size, len(ds))
        y = ds.labels[idx]
        frac = y != np.round(y)
        if frac.any():
            raise DataError(f"{what}: classification labels must be integers; series "
                            f"{ds.ids[idx[np.argmax(frac)]]!r} has label {y[frac][0]:g}")
        return y, idx

    def _encode(self, y: np.ndarray, what: str) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({float(v) for v in y} - set(pos))
        if unknown:
            raise DataError(f"{what}: labels {unknown[:5]} do not occur in training (classes {self.classes})")
        return np.array([pos[float(v)] for v in y], dtype=np.int64)

    def _score(self, y: np.ndarray, prob: np.ndarray) -> float:
        import warnings

        from grud.tasks.metrics import UndefinedMetricWarning, binary_metrics, multiclass_metrics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if prob.ndim == 1:
                return binary_metrics(y, prob)["auroc"]
            return multiclass_metrics(y, prob)["auroc"]

    # ------------------------------------------------------------------ fit / predict
    def _candidates(self) -> list[dict]:
        if self.kind == "logreg":
            return [{"C": c} for c in self.C_grid]
        return [{"min_samples_leaf": leaf, "max_features": mf}
                for leaf in sorted(self.leaf_grid, reverse=True) for mf in self.max_features_grid]

    def _sklearn_class_weight(self):
        """scikit-learn's form: a list of weights becomes {class index: weight} (labels are encoded)."""
        if isinstance(self.class_weight, list):
            return dict(enumerate(self.class_weight))
        return self.class_weight

    def _fit_one(self, X: np.ndarray, y: np.ndarray, params: dict) -> dict:
        """Fit one candidate; returns its serialisable model state."""
        if self.kind == "logreg":
            from sklearn.linear_model import LogisticRegression

            m = LogisticRegression(C=params["C"], class_weight=self._sklearn_class_weight(),
                                   max_iter=self.max_iter, random_state=self.seed)
            m.fit(X, y)
            return {"coef": m.coef_.astype(np.float64), "intercept": m.intercept_.astype(np.float64)}
        from sklearn.ensemble import RandomForestClassifier

        m = RandomForestClassifier(n_estimators=self.n_estimators, min_samples_leaf=params["min_samples_leaf"],
                                   max_features=params["max_features"], class_weight=self._sklearn_class_weight(),
                                   n_jobs=self.n_jobs, random_state=self.seed)
        m.fit(X, y)
        return {"forest": _Forest.from_sklearn(m.estimators_)}

    def _predict_model(self, model: dict, X: np.ndarray) -> np.ndarray:
        if "forest" in model:
            p = model["forest"].predict_proba(X)
            return p[:, 1] if len(self.classes) == 2 else p
        z = X @ model["coef"].T + model["intercept"]
        return _sigmoid(z[:, 0]) if len(self.classes) == 2 else _softmax(z)

    def fit(self, train_ds, val_ds=None) -> "SummaryClassifier":
        """Fit on ``train_ds``, choosing hyperparameters by AUROC on ``val_ds``.

        Without ``val_ds`` (or when its AUROC is undefined for every candidate) the middle
        grid point is used and a warning is logged. BLAS runs with ``n_jobs`` threads (more
        threads than free cores make the logistic solver orders of magnitude slower).
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_jobs, user_api="blas"):
            return self._fit(train_ds, val_ds)

    def _fit(self, train_ds, val_ds) -> "SummaryClassifier":
        y_raw, idx = self._labels(train_ds, "train data")
        classes = sorted({float(v) for v in y_raw})
        if len(classes) < 2:
            raise DataError(f"train data: need at least two classes to fit a classifier, found only {classes}")
        self.classes = classes
        if isinstance(self.class_weight, list) and len(self.class_weight) != len(classes):
            raise ConfigError(f"class_weight: expected {len(classes)} weights (one per class of the training split, "
                              f"{classes}), got {self.class_weight}")
        y = self._encode(y_raw, "train data")
        self.variables = list(train_ds.variables) if self.variables is None else self.variables
        self.static_names = list(train_ds.static_names)
        X = self._fit_transform(*self._raw_features(train_ds.subset(idx)))
        candidates = self._candidates()
        scores = [float("nan")] * len(candidates)
        best = None
        if val_ds is not None:
            yv_raw, vidx = self._labels(val_ds, "validation data")
            yv = self._encode(yv_raw, "validation data")
            Xv = self._transform(self._raw_features(val_ds.subset(vidx))[0])
            fitted = []
            for i, params in enumerate(candidates):
                model = self._fit_one(X, y, params)
                scores[i] = self._score(yv, self._predict_model(model, Xv))
                fitted.append(model)
                log.info("%s %s: validation AUROC %.4f", self.kind, params, scores[i])
            if np.isfinite(scores).any():
                best = int(np.nanargmax(scores))
                self._model = fitted[best]
        if best is None:
            best = len(candidates) // 2
            log.warning("%s: no usable validation AUROC; using the default %s", self.kind, candidates[best])
            self._model = self._fit_one(X, y, candidates[best])
        self.candidates, self.val_scores, self.best_index = candidates, scores, best
        self.params = candidates[best]
        self._fitted = True
        return self

    def predict_proba(self, ds) -> np.ndarray:
        """Class probabilities: (n,) of the second class for binary labels, else (n, C).

        Columns follow ``self.classes`` (sorted label values seen in training). Variables are
        aligned to the training ones by name (:meth:`IrregularDataset.align`).
        """
        if not self._fitted:
            raise RuntimeError("SummaryClassifier: call fit() or from_state_dict() before predict_proba()")
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_jobs, user_api="blas"):
            return self._predict_model(self._model, self._transform(self._raw_features(ds)[0]))

    # ------------------------------------------------------------------ serialisation
    def state_dict(self) -> dict:
        """Plain python values and torch tensors only (loads with ``torch.load(weights_only=True)``)."""
        if not self._fitted:
            raise RuntimeError("SummaryClassifier: nothing to save before fit()")
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        if "forest" in self._model:
            model = self._model["forest"].state()
        else:
            model = {"coef": t(self._model["coef"]), "intercept": t(self._model["intercept"])}
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "config": {
                "kind": self.kind, "seed": self.seed, "n_jobs": self.n_jobs, "C_grid": list(self.C_grid),
                "class_weight": self.class_weight, "n_estimators": self.n_estimators,
                "leaf_grid": list(self.leaf_grid), "max_features_grid": list(self.max_features_grid),
                "max_iter": self.max_iter, "variables": list(self.variables),
                "log_variables": list(self.log_variables),
            },
            "static_names": list(self.static_names),
            "classes": list(self.classes),
            "feature_names": list(self.feature_names),
            "medians": t(self.medians),
            "indicator_columns": list(self.indicator_columns),
            "keep_columns": list(self.keep_columns),
            "center": t(self.center),
            "scale": t(self.scale),
            "candidates": [dict(c) for c in self.candidates],
            "val_scores": [float(s) for s in self.val_scores],
            "best_index": int(self.best_index),
            "model": model,
        }

    @classmethod
    def from_state_dict(cls, d: dict) -> "SummaryClassifier":
        """Rebuild a fitted classifier from :meth:`state_dict`."""
        if not isinstance(d, dict) or d.get("format") != _STATE_FORMAT:
            raise CheckpointError(f"expected a {_STATE_FORMAT} state dict, got "
                                  f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r}")
        if d.get("version") != _STATE_VERSION:
            raise CheckpointError(f"{_STATE_FORMAT} state version {d.get('version')!r} is not supported "
                                  f"(expected {_STATE_VERSION})")
        try:
            self = cls(**d["config"])
            a = lambda k: np.asarray(d[k], dtype=np.float64)  # noqa: E731
            self.static_names = [str(s) for s in d["static_names"]]
            self.classes = [float(c) for c in d["classes"]]
            self.feature_names = [str(s) for s in d["feature_names"]]
            self.medians, self.center, self.scale = a("medians"), a("center"), a("scale")
            self.indicator_columns = [int(j) for j in d["indicator_columns"]]
            self.keep_columns = [int(j) for j in d["keep_columns"]]
            self.candidates = [dict(c) for c in d["candidates"]]
            self.val_scores = [float(s) for s in d["val_scores"]]
            self.best_index = int(d["best_index"])
            m = d["model"]
            if "proba" in m:
                self._model = {"forest": _Forest.from_state(m)}
            else:
                self._model = {"coef": np.asarray(m["coef"], np.float64),
                               "intercept": np.asarray(m["intercept"], np.float64)}
        except KeyError as e:
            raise CheckpointError(f"{_STATE_FORMAT} state dict lacks the entry {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{_STATE_FORMAT} state dict holds an unusable entry: {e}") from None
        self.params = self.candidates[self.best_index]
        self._fitted = True
        return self
