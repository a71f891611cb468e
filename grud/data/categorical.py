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

Codes may be numbers or text (``Gender`` as ``F`` / ``M``: the readers keep such a variable's
texts in ``meta["static_text"]``); a code is matched by its text, so a number code ``3`` and a
text code ``3`` are the same category, and a new file's texts need not be those of training.
A text-coded variable is not a quantity: :func:`check_no_text_static` refuses one that is not
encoded before statistics are fitted or a model reads it.

Shape:
    ``IrregularDataset.static`` (n, S) -> (n, S - C + sum of category counts) for C categorical variables.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from grud.data.dataset import IrregularDataset
from grud.data.text_tables import read_numbers
from grud.errors import ConfigError, DataError

__all__ = ["fit_static_categories", "one_hot_static", "one_hot_names", "check_no_text_static", "MAX_CATEGORIES"]

log = logging.getLogger(__name__)

#: more distinct codes than this in the training split is an error (a continuous variable named by mistake)
MAX_CATEGORIES = 50


def _code(value) -> str:
    """A category's name: a text code as it is, a number as ``%g`` (``3.0`` -> ``3``)."""
    return value if isinstance(value, str) else f"{float(value):g}"


def _key(value):
    """What a code is matched by: its number when it reads as one, as the readers read numbers
    (``3``, ``3.0`` and the text ``"3"`` are one category; ``TRUE`` / ``FALSE``, any case, are 1
    / 0), else its text (case kept: ``f`` is not ``F``)."""
    if isinstance(value, str):
        number, unparsed = read_numbers(pd.Series([value]))
        return value if unparsed[0] or np.isnan(number[0]) else float(number[0])
    return float(value)


def one_hot_names(name: str, codes: list) -> list[str]:
    """Column names of a one-hot encoded variable: ``<name>=<code>``."""
    return [f"{name}={_code(c)}" for c in codes]


def text_static(ds: IrregularDataset) -> dict:
    """``{name: sorted texts}`` of ``ds``'s static variables held as text codes (see the readers)."""
    texts = ds.meta.get("static_text") or {}
    return {n: list(texts[n]) for n in ds.static_names if n in texts}


def check_no_text_static(ds: IrregularDataset, advice: str = "one-hot encode it first: one_hot_static(ds, "
                         "fit_static_categories(train, [{name!r}])) (grud.data.categorical)") -> None:
    """Raise :class:`grud.DataError` when ``ds`` still holds a static variable as text codes: its
    numbers are positions in a list of texts, not quantities, so it must be one-hot encoded.
    ``advice`` ends the message (``{name}`` is the variable)."""
    texts = text_static(ds)
    if texts:
        name, words = next(iter(texts.items()))
        shown = ", ".join(repr(w) for w in words[:4]) + (", ..." if len(words) > 4 else "")
        raise DataError(f"static variable {name!r} holds text ({shown}), not numbers: "
                        + advice.format(name=name), path=ds.meta.get("path"))


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
            raise ConfigError(f"{key}: {n!r} has no known value in the training split (its values are empty, or "
                              f"it never appears; a code is read from the value column only, text codes included)")
        texts = text_static(train).get(n)
        if texts is None:
            out[n] = [float(c) for c in codes]
        else:
            chosen = {}  # one category per key: the text "1.0" is the text "1"
            for text in sorted(texts[int(c)] for c in codes):
                chosen.setdefault(_key(text), text)
            out[n] = list(chosen.values())
        if len(out[n]) > MAX_CATEGORIES:
            raise ConfigError(f"{key}: {n!r} has {len(out[n])} distinct values in the training split (at most "
                              f"{MAX_CATEGORIES} for a categorical variable); is it a quantity?")
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
        codes = categories[n]
        x = ds.static[:, j].astype(np.float64)
        known = np.isfinite(x)
        position = {_key(c): k for k, c in enumerate(codes)}
        texts = text_static(ds).get(n)
        if texts is not None:  # positions in the file's texts: each text matched once
            present = np.asarray(texts, dtype=object)
            at_known = x[known].astype(np.int64)
        else:
            present, at_known = np.unique(x[known], return_inverse=True)
        lookup = np.array([position.get(_key(v), -1) for v in present], dtype=np.int64)
        at = np.full(len(x), -1, dtype=np.int64)
        at[known] = lookup[at_known] if len(present) else -1
        onehot = np.zeros((len(x), len(codes)), dtype=np.float32)
        onehot[np.flatnonzero(at >= 0), at[at >= 0]] = 1.0
        onehot[~known] = np.nan
        unseen = known & (at < 0)
        if unseen.any():
            new_codes = sorted({_code(present[k]) for k in np.unique(at_known[unseen[known]])})
            if unseen.sum() == known.sum():
                log.warning("static variable %s: none of the %d series with a value has a code the training split had "
                            "(here %s; training %s): every one is encoded as none of its categories; recode "
                            "the file's codes as training's", n, int(known.sum()), ", ".join(new_codes[:5]),
                            ", ".join(_code(c) for c in codes[:5]))
            else:
                log.warning("static variable %s: %d series have a value the training split never had (%s); "
                            "encoded as none of its %d categories", n, int(unseen.sum()), ", ".join(new_codes[:5]),
                            len(codes))
        cols.append(onehot)
        new_names += one_hot_names(n, categories[n])
    static = np.concatenate(cols, axis=1) if cols else ds.static[:, :0]
    return IrregularDataset(ds.ids, ds.variables, new_names, ds.times, ds.values, ds.offsets, static, ds.labels,
                            ds.meta)
