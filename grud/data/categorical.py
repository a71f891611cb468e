"""Categorical static variables as one-hot columns, with categories fitted on the training split.

Some per-series constants are codes, not quantities: PhysioNet 2012's ``ICUType`` (1 coronary
care, 2 cardiac surgery recovery, 3 medical, 4 surgical) has no order, and a z-score of it tells a
model that a surgical ICU is "more" than a medical one. :func:`fit_static_categories` lists each
named variable's codes in the *training* split; :func:`one_hot_static` replaces the variable by one
0/1 column per code, named ``<name>=<code>`` (``ICUType=3``). After it every static column is an
ordinary number, so the normaliser, the networks' heads and the scikit-learn baselines all see the
same encoding. The categories travel in the checkpoint (:attr:`FittedStats.static_categories`) and
prediction encodes new data with them:

* an unknown value (NaN) stays unknown: NaN in every column of the variable (the normaliser turns
  it into the training mean, the baselines into their missing-value indicator);
* a code the training split never had gets 0 in every column (and one warning per variable).

Shape:
    ``IrregularDataset.static`` (n, S) -> (n, S - C + sum of category counts) for C categorical variables.
"""
from __future__ import annotations

import logging

import numpy as np

from grud.data.dataset import IrregularDataset
from grud.errors import ConfigError

__all__ = ["fit_static_categories", "one_hot_static", "one_hot_names", "MAX_CATEGORIES"]

log = logging.getLogger(__name__)

#: more distinct codes than this in the training split is an error (a continuous variable named by mistake)
MAX_CATEGORIES = 50


def _code(value: float) -> str:
    return f"{value:g}"


def one_hot_names(name: str, codes: list) -> list[str]:
    """Column names of a one-hot encoded variable: ``<name>=<code>``."""
    return [f"{name}={_code(float(c))}" for c in codes]


def fit_static_categories(train: IrregularDataset, names, key: str = "data.categorical_static") -> dict:
    """``{name: sorted codes}`` of the training split for each static variable in ``names``.

    Raises :class:`grud.ConfigError` for a name that is not a static variable, or a variable with
    no observed value or more than :data:`MAX_CATEGORIES` codes in training.
    """
    names = [str(n) for n in (names or [])]
    unknown = [n for n in names if n not in train.static_names]
    if unknown:
        raise ConfigError(f"{key}: {', '.join(map(repr, unknown))} not among the static variables "
                          f"({', '.join(train.static_names) or 'none'}); list them in data.static_variables too")
    out = {}
    for n in dict.fromkeys(names):
        col = train.static[:, train.static_names.index(n)]
        codes = np.unique(col[np.isfinite(col)])
        if codes.size == 0:
            raise ConfigError(f"{key}: {n!r} has no known value in the training split")
        if codes.size > MAX_CATEGORIES:
            raise ConfigError(f"{key}: {n!r} has {codes.size} distinct values in the training split (at most "
                              f"{MAX_CATEGORIES} for a categorical variable); is it a quantity?")
        out[n] = [float(c) for c in codes]
    return out


def one_hot_static(ds: IrregularDataset, categories: dict) -> IrregularDataset:
    """``ds`` with each variable of ``categories`` replaced by its one-hot columns (see the module docstring).

    Variables of ``categories`` that ``ds`` does not have are left alone (a dataset already
    encoded comes back as it is; for a file without the variable, :meth:`IrregularDataset.align`
    then reports the missing columns).
    """
    names = list(ds.static_names)
    if not categories or not any(n in names for n in categories):
        return ds
    cols, new_names = [], []
    for j, n in enumerate(names):
        if n not in categories:
            cols.append(ds.static[:, j:j + 1])
            new_names.append(n)
            continue
        codes = np.asarray(categories[n], dtype=np.float64)
        x = ds.static[:, j].astype(np.float64)
        known = np.isfinite(x)
        onehot = (x[:, None] == codes[None, :]).astype(np.float32)
        onehot[~known] = np.nan
        unseen = known & ~onehot.any(axis=1)
        if unseen.any():
            log.warning("static variable %s: %d series have a value the training split never had (%s); "
                        "encoded as none of its %d categories", n, int(unseen.sum()),
                        ", ".join(sorted({_code(v) for v in x[unseen]})[:5]), len(codes))
        cols.append(onehot)
        new_names += one_hot_names(n, categories[n])
    static = np.concatenate(cols, axis=1) if cols else ds.static[:, :0]
    return IrregularDataset(ds.ids, ds.variables, new_names, ds.times, ds.values, ds.offsets, static, ds.labels,
                            ds.meta)
