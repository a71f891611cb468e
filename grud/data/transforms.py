"""Statistics fitted on the training split only, and the transforms that use them.

:class:`FittedStats` holds everything a model needs to see new data the way it saw training
data: the variable and static lists, the z-score normaliser (centre and scale per variable),
GRU-D's empirical means in the normalised space (x-tilde of Che et al. 2018), per-variable
minimum and maximum (the forecasting metric's scale) and the reader's column names and time
unit. It is fitted once (:func:`fit_stats`) and travels inside the checkpoint as plain lists
(:meth:`FittedStats.to_dict`), so prediction reproduces it exactly.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from grud.data import masking
from grud.data.dataset import IrregularDataset
from grud.errors import DataError


@dataclass
class FittedStats:
    """Training-split statistics. All fields are plain python values (checkpoint-safe).

    Shape:
        value_mean, value_std, input_means, value_min, value_max: (F,)
        static_mean, static_std: (S,)
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

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FittedStats":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    # ------------------------------------------------------------------ transforms
    @property
    def n_features(self) -> int:
        return len(self.variables)

    @property
    def n_static(self) -> int:
        return len(self.static_names)

    def normalise_values(self, values: np.ndarray) -> np.ndarray:
        """(..., F) raw -> z-scores; NaN stays NaN."""
        mean = np.asarray(self.value_mean, np.float32)
        std = np.asarray(self.value_std, np.float32)
        return ((values - mean) / std).astype(np.float32)

    def denormalise_values(self, values):
        """(..., F) z-scores -> raw units (numpy or torch)."""
        mean = np.asarray(self.value_mean, np.float32)
        std = np.asarray(self.value_std, np.float32)
        if hasattr(values, "new_tensor"):
            return values * values.new_tensor(std) + values.new_tensor(mean)
        return values * std + mean

    def normalise_static(self, static: np.ndarray) -> np.ndarray:
        """(n, S) raw -> z-scores with unknown entries at the training mean (0)."""
        if static.shape[-1] == 0:
            return static.astype(np.float32)
        z = (static - np.asarray(self.static_mean, np.float32)) / np.asarray(self.static_std, np.float32)
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def minmax_scale(self, values):
        """(..., F) raw -> (x - min) / (max - min) with the training min and max (forecast metric scale)."""
        lo = np.asarray(self.value_min, np.float32)
        span = np.asarray(self.value_max, np.float32) - lo
        span = np.where(span > 0, span, 1.0).astype(np.float32)
        if hasattr(values, "new_tensor"):
            return (values - values.new_tensor(lo)) / values.new_tensor(span)
        return (values - lo) / span


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


def fit_stats(train: IrregularDataset) -> FittedStats:
    """Fit the normaliser, GRU-D input means and min/max on the TRAINING split only."""
    if len(train) == 0:
        raise DataError("the training split is empty: nothing to fit statistics on")
    mean, std, lo, hi, count = _nan_stats(train.values)
    never = [v for v, c in zip(train.variables, count) if c == 0]
    if never:
        warnings.warn(
            f"{len(never)} variable(s) never observed in the training split (kept, always unobserved): "
            + ", ".join(never),
            RuntimeWarning,
            stacklevel=2,
        )
    s_mean, s_std, *_ = _nan_stats(train.static) if train.static.shape[1] else (np.zeros(0), np.ones(0))
    z = (train.values - mean.astype(np.float32)) / std.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        input_means = masking.empirical_mean(np.nan_to_num(z), masking.observed_mask(z))
    # a never-observed variable has no mean: use the normaliser's centre (0 in z-space)
    input_means = np.nan_to_num(np.asarray(input_means, np.float64), nan=0.0)
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
    )
