"""Statistics fitted on the training split only, and the transforms that use them.

:class:`FittedStats` holds everything a model needs to see new data the way it saw training
data: the variable and static lists, the z-score normaliser (centre and scale per variable),
GRU-D's empirical means in the normalised space (x-tilde of Che et al. 2018), per-variable
minimum and maximum (the forecasting metric's scale) and the reader's column names and time
unit. It is fitted once (:func:`fit_stats`) and travels inside the checkpoint as plain lists
(:meth:`FittedStats.to_dict`), so prediction reproduces it exactly.

Value transforms (``value_transform``): ``affine`` (the default) z-scores raw values; ``log``
first maps the heavy-tailed, non-negative variables (:attr:`FittedStats.log_variables`, chosen on
the training split by :func:`log_candidates`) through ``log1p`` and z-scores them in that space.
:func:`fit_stats` fits the parameters of both, so a task picks one with
:meth:`FittedStats.with_value_transform` without seeing the training data again; both are
exactly invertible (:meth:`FittedStats.denormalise_values`).
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from grud.data import masking
from grud.data.categorical import check_no_text_static
from grud.data.dataset import IrregularDataset
from grud.errors import ConfigError, DataError

log = logging.getLogger("grud")


def _hide_columns(arr: np.ndarray, unseen: list, names: list, hidden: dict) -> np.ndarray:
    """``arr`` with the columns ``unseen`` names set to NaN (a copy, only when one holds a value);
    ``hidden`` gets ``{name: values hidden}``. Shape: arr (N, len(names))."""
    cols = [names.index(v) for v in unseen if v in names]
    if not cols or not len(arr):
        return arr
    counts = np.isfinite(arr[:, cols]).sum(0)
    if not counts.any():
        return arr
    arr = arr.copy()
    arr[:, cols] = np.nan
    hidden.update({names[c]: int(k) for c, k in zip(cols, counts) if k})
    return arr


@dataclass
class FittedStats:
    """Training-split statistics. All fields are plain python values (checkpoint-safe).

    ``value_mean``, ``value_std`` and ``input_means`` are those of the active ``value_transform``;
    ``log_value_mean``, ``log_value_std`` and ``log_input_means`` hold the ``log`` transform's
    (equal to the affine ones outside ``log_variables``); empty in statistics saved before they
    existed, which then only support ``affine``.

    Shape:
        value_mean, value_std, input_means, value_min, value_max: (F,)
        log_value_mean, log_value_std, log_input_means: (F,) or empty
        static_mean, static_std: (S,)
        classes: (C,) sorted integer labels of the training split, empty without labels
    """

    variables: list
    static_names: list
    value_mean: list
    value_std: list
    static_mean: list
    static_std: list
    input_means: list
    value_min: list
    value_max: list
    n_train: int = 0
    classes: list = field(default_factory=list)
    reader: dict = field(default_factory=dict)
    value_transform: str = "affine"
    log_variables: list = field(default_factory=list)
    log_value_mean: list = field(default_factory=list)
    log_value_std: list = field(default_factory=list)
    log_input_means: list = field(default_factory=list)
    #: categorical static variables as one-hot columns (:mod:`grud.data.categorical`): name -> the
    #: training split's codes; ``static_names`` then holds the one-hot columns' names
    static_categories: dict = field(default_factory=dict)
    #: variables and static columns never observed in the training split: the model never learned
    #: from them, so data it is later given hides them (:meth:`hide_unseen`); empty in older statistics
    unseen_variables: list = field(default_factory=list)
    unseen_static: list = field(default_factory=list)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FittedStats":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        stats = cls(**known)
        if stats.static_categories and "categorical_static" not in stats.reader:
            # saved before the reader took the list (session 18): its codes are those variables
            stats.reader = {**stats.reader, "categorical_static": list(stats.static_categories)}
        return stats

    def problems(self) -> list[str]:
        """What makes these statistics unusable (empty when none): duplicate names, per-variable
        fields of the wrong length, a non-positive or non-finite scale, non-finite centres. Fitted
        statistics never have them; a damaged or hand-edited checkpoint may."""
        out = []
        for what, names in (("variables", self.variables), ("static_names", self.static_names)):
            twice = [n for n, k in Counter(map(str, names)).items() if k > 1]
            if twice:
                out.append(f"{what} name {twice[0]!r} twice")
        F, S = self.n_features, self.n_static
        fields = [("value_mean", F), ("value_std", F), ("input_means", F), ("value_min", F), ("value_max", F),
                  ("static_mean", S), ("static_std", S)]
        fields += [(k, F) for k in ("log_value_mean", "log_value_std", "log_input_means") if len(getattr(self, k))]
        for key, n in fields:
            v = np.asarray(getattr(self, key), dtype=np.float64)
            if v.shape != (n,):
                out.append(f"{key} has {v.size} values for {n} {'static variables' if key.startswith('static') else 'variables'}")
            elif not np.isfinite(v).all():
                out.append(f"{key} holds NaN or inf")
            elif key.endswith("std") and not (v > 0).all():
                out.append(f"{key} holds a scale <= 0")
        return out

    # ------------------------------------------------------------------ transforms
    @property
    def n_features(self) -> int:
        return len(self.variables)

    @property
    def n_static(self) -> int:
        return len(self.static_names)

    def with_value_transform(self, kind: str) -> "FittedStats":
        """A copy whose normaliser is ``kind`` (``affine`` or ``log``; see the module docstring).

        The same object back when it already uses ``kind``. ``log`` needs statistics fitted by
        this version of :func:`fit_stats` (older checkpoints hold only the affine ones).
        """
        if kind not in VALUE_TRANSFORMS:
            raise ValueError(f"value_transform: expected one of {', '.join(VALUE_TRANSFORMS)}, got {kind!r}")
        if kind == self.value_transform:
            return self
        F = self.n_features
        if kind == "log" and not (len(self.log_value_mean) == len(self.log_value_std) == len(self.log_input_means) == F):
            raise DataError("value_transform log: these statistics carry no log-space parameters (fitted by an older "
                            "grud); refit on the training data or use value_transform affine")
        d = self.to_dict()
        # swap the active parameters with the stored alternative ones
        d["value_mean"], d["log_value_mean"] = list(self.log_value_mean), list(self.value_mean)
        d["value_std"], d["log_value_std"] = list(self.log_value_std), list(self.value_std)
        d["input_means"], d["log_input_means"] = list(self.log_input_means), list(self.input_means)
        d["value_transform"] = kind
        return FittedStats.from_dict(d)

    def _log_columns(self) -> np.ndarray:
        """(F,) bool: the columns the active transform passes through log1p."""
        cols = np.zeros(self.n_features, dtype=bool)
        if self.value_transform == "log" and self.log_variables:
            cols[[self.variables.index(v) for v in self.log_variables]] = True
        return cols

    def inputs_of(self, ds: IrregularDataset) -> tuple[np.ndarray, np.ndarray]:
        """(values, static) of ``ds`` (already in this model's layout) as the model may read them:
        :meth:`hide_unseen` applied, a warning logged naming what was hidden."""
        values, static, hidden = self.hide_unseen(ds.values, ds.static)
        if hidden:
            log.warning("ignoring %d observation(s) of variable(s) the training split never observed (the model "
                        "never learned from them): %s", sum(hidden.values()),
                        ", ".join(f"{k} ({n})" for k, n in hidden.items()))
        return values, static

    def hide_unseen(self, values: np.ndarray, static: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """``values`` and ``static`` with the columns training never observed set to NaN (unobserved).

        Such a column has placeholder statistics (mean 0, std 1, min 0, max 1) and weights that
        never learned: an observation there would enter the network in raw units. Returns copies
        only where something is hidden, and ``{name: observations hidden}`` for the columns that
        held any.

        Shape:
            values (N, F), static (n, S) in the order of ``variables`` / ``static_names``.
        """
        hidden: dict = {}
        values = _hide_columns(values, self.unseen_variables, self.variables, hidden)
        static = _hide_columns(static, self.unseen_static, self.static_names, hidden)
        return values, static, hidden

    def normalise_values(self, values: np.ndarray) -> np.ndarray:
        """(..., F) raw -> z-scores (after log1p on ``log_variables`` under ``log``); NaN stays NaN."""
        mean = np.asarray(self.value_mean, np.float32)
        std = np.asarray(self.value_std, np.float32)
        cols = self._log_columns()
        if cols.any():
            values = log1p_columns(np.asarray(values, np.float32), cols)
        return ((values - mean) / std).astype(np.float32)

    def denormalise_values(self, values):
        """(..., F) z-scores -> raw units (numpy or torch); the exact inverse of :meth:`normalise_values`."""
        mean = np.asarray(self.value_mean, np.float32)
        std = np.asarray(self.value_std, np.float32)
        cols = self._log_columns()
        torch_input = hasattr(values, "new_tensor")
        out = values * values.new_tensor(std) + values.new_tensor(mean) if torch_input else values * std + mean
        if cols.any():  # only the log columns (expm1 of another column's raw value may overflow)
            idx = np.flatnonzero(cols).tolist()
            out = out.clone() if torch_input else np.array(out, dtype=np.result_type(out, np.float32))
            out[..., idx] = out[..., idx].expm1() if torch_input else np.expm1(out[..., idx])
        return out

    def normalise_static(self, static: np.ndarray) -> np.ndarray:
        """(n, S) raw -> z-scores with unknown entries at the training mean (0)."""
        if static.shape[-1] == 0:
            return static.astype(np.float32)
        z = (static - np.asarray(self.static_mean, np.float32)) / np.asarray(self.static_std, np.float32)
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def minmax_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max - min) of every variable in float64, the span 1 where it is 0 (a constant variable).

        Shape:
            -> (F,), (F,)
        """
        lo = np.asarray(self.value_min, np.float64)
        span = np.asarray(self.value_max, np.float64) - lo
        return lo, np.where(span > 0, span, 1.0)

    def minmax_scale(self, values):
        """(..., F) raw -> (x - min) / (max - min) with the training min and max (forecast metric scale).

        In float32, as the metric has always been computed on a batch (:meth:`minmax_bounds` is float64)."""
        lo = np.asarray(self.value_min, np.float32)
        span = np.asarray(self.value_max, np.float32) - lo
        span = np.where(span > 0, span, 1.0).astype(np.float32)
        if hasattr(values, "new_tensor"):
            return (values - values.new_tensor(lo)) / values.new_tensor(span)
        return (values - lo) / span


#: the value transforms of :class:`FittedStats`
VALUE_TRANSFORMS = ("affine", "log")


def check_value_transform(kind) -> str:
    """``kind`` if it names one of :data:`VALUE_TRANSFORMS`, else a config error naming the key."""
    if kind not in VALUE_TRANSFORMS:
        raise ConfigError(f"task.value_transform: expected one of {', '.join(VALUE_TRANSFORMS)}, got {kind!r}")
    return kind


def log1p_columns(values: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 ``values`` with ``log1p`` on the columns where the boolean ``cols`` is true.

    A negative value there (none in the training split, which chose the columns) is clipped to 0
    first; NaN stays NaN. The input is not modified.

    Shape:
        values (..., F); cols (F,) -> (..., F)
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cols, np.log1p(np.maximum(values, 0.0)), values).astype(np.float32)
#: :func:`log_candidates`: minimum training skewness of a variable sent through log1p
LOG_SKEW_THRESHOLD = 1.0


def _skewness(x: np.ndarray) -> float:
    x = x[np.isfinite(x)].astype(np.float64)
    if x.size < 3:
        return 0.0
    sd = x.std()
    return 0.0 if sd <= 0 else float(np.mean(((x - x.mean()) / sd) ** 3))


def log_candidates(values: np.ndarray, variables: list, threshold: float = LOG_SKEW_THRESHOLD) -> list:
    """Variables whose training values are heavy-tailed and non-negative: ``log1p`` candidates.

    A variable qualifies when all its observed (training) values are >= 0, their skewness exceeds
    ``threshold`` and ``log1p`` lowers the absolute skewness (e.g. Creatinine, BUN, Lactate, ALT,
    Urine in PhysioNet 2012; not MAP, whose zeros would make it skewed the other way).

    Shape:
        values (N, F) raw, NaN where unobserved -> a list of names among ``variables``.
    """
    out = []
    for j, name in enumerate(variables):
        x = values[:, j]
        x = x[np.isfinite(x)]
        if x.size < 3 or x.min() < 0:
            continue
        skew = _skewness(x)
        if skew > threshold and abs(_skewness(np.log1p(x))) < abs(skew):
            out.append(name)
    return out


def _nan_stats(x: np.ndarray):
    """Per-column mean, std, min, max over finite entries; never-observed columns get (0, 1, 0, 1)."""
    finite = np.isfinite(x)
    count = finite.sum(0)
    xs = np.where(finite, x, 0.0).astype(np.float64)
    mean = np.divide(xs.sum(0), count, out=np.zeros(x.shape[1]), where=count > 0)
    var = np.divide(((xs - mean) ** 2 * finite).sum(0), count, out=np.ones(x.shape[1]), where=count > 0)
    std = np.sqrt(var)
    std = np.where(std > 1e-6, std, 1.0)
    lo = np.where(count > 0, np.where(finite, x, np.inf).min(0), 0.0)
    hi = np.where(count > 0, np.where(finite, x, -np.inf).max(0), 1.0)
    return mean, std, lo, hi, count


def _input_means(z: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = masking.empirical_mean(np.nan_to_num(z), masking.observed_mask(z))
    # a never-observed variable has no mean: use the normaliser's centre (0 in z-space)
    return np.nan_to_num(np.asarray(means, np.float64), nan=0.0)


def fit_stats(train: IrregularDataset) -> FittedStats:
    """Fit the normaliser, GRU-D input means and min/max on the TRAINING split only.

    The result uses the ``affine`` transform and also carries the ``log`` transform's parameters
    (:func:`log_candidates` chooses its variables on this split).

    Shape:
        train.values (N, F), train.static (n, S), train.labels (n,) -> :class:`FittedStats` with
        per-variable fields (F,), static_mean / static_std (S,), classes (C,)
    """
    if len(train) == 0:
        raise DataError("the training split is empty: nothing to fit statistics on")
    check_no_text_static(train)
    mean, std, lo, hi, count = _nan_stats(train.values)
    never = [v for v, c in zip(train.variables, count) if c == 0]
    s_mean, s_std, _, _, s_count = _nan_stats(train.static)  # (S,) each; S may be 0
    never_static = [v for v, c in zip(train.static_names, s_count) if c == 0]
    if never or never_static:
        warnings.warn(
            f"{len(never) + len(never_static)} variable(s) never observed in the training split (kept as inputs, "
            "always unobserved, also in data given later): " + ", ".join([*never, *never_static]),
            RuntimeWarning,
            stacklevel=2,
        )
    z = (train.values - mean.astype(np.float32)) / std.astype(np.float32)
    input_means = _input_means(z)
    log_vars = log_candidates(train.values, list(train.variables))
    cols = np.isin(np.asarray(train.variables, dtype=object), log_vars)
    logged = log1p_columns(train.values, cols)
    l_mean, l_std, *_ = _nan_stats(logged)
    l_mean, l_std = np.where(cols, l_mean, mean), np.where(cols, l_std, std)
    log_input_means = _input_means((logged - l_mean.astype(np.float32)) / l_std.astype(np.float32))
    classes = []
    if train.has_labels:
        classes = sorted({int(v) for v in train.labels[np.isfinite(train.labels)]})
    return FittedStats(
        variables=list(train.variables),
        static_names=list(train.static_names),
        value_mean=mean.tolist(),
        value_std=std.tolist(),
        static_mean=np.asarray(s_mean).tolist(),
        static_std=np.asarray(s_std).tolist(),
        input_means=input_means.tolist(),
        value_min=lo.tolist(),
        value_max=hi.tolist(),
        n_train=len(train),
        classes=classes,
        reader={k: v for k, v in train.meta.items() if isinstance(v, (str, int, float, bool, list, type(None)))},
        log_variables=list(log_vars),
        log_value_mean=np.asarray(l_mean).tolist(),
        log_value_std=np.asarray(l_std).tolist(),
        log_input_means=log_input_means.tolist(),
        unseen_variables=never,
        unseen_static=never_static,
    )
