"""Seeded train/validation/test splits by series id, stratified by label where there are labels."""
from __future__ import annotations

import numpy as np

from grud.data.dataset import IrregularDataset
from grud.errors import ConfigError, DataError


def _check_fraction(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"data.{name}: expected a fraction in [0, 1), got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= number < 1.0:
        raise ConfigError(f"data.{name}: expected a fraction in [0, 1), got {value!r}")
    return number


def _strata(indices: np.ndarray, labels) -> list[np.ndarray]:
    """``indices`` grouped by label value (series without a label form a group of their own; one group if ``labels`` is None)."""
    if labels is None:
        return [indices]
    lab = labels[indices]
    keys = np.where(np.isfinite(lab), lab, -np.inf)
    return [indices[keys == k] for k in np.unique(keys)]


def _and_rest(indices: np.ndarray, taken: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(the ``taken`` parts of ``indices`` joined and sorted, the indices not taken)."""
    taken = np.sort(np.concatenate(taken))
    return taken, np.setdiff1d(indices, taken, assume_unique=True)


def _stratified_take(indices: np.ndarray, labels, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (taken, rest) with ``fraction`` taken per label stratum."""
    if fraction == 0.0 or len(indices) == 0:
        return indices[:0], indices
    strata = _strata(indices, labels)
    taken = []
    for s in strata:
        s = rng.permutation(s)
        k = int(round(fraction * len(s)))
        taken.append(s[:k])
    return _and_rest(indices, taken)


def _stratified_fold(indices: np.ndarray, labels, folds: int, fold: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (fold ``fold`` of ``folds``, the other folds), stratified by label.

    Each label stratum is shuffled and dealt round-robin into the folds, so every fold holds
    1/``folds`` of each class (give or take one series) and the folds partition ``indices``.
    """
    strata = _strata(indices, labels)
    taken, offset = [], 0
    for s in strata:
        s = rng.permutation(s)
        # continue the deal where the previous stratum stopped, so the fold sizes stay balanced
        taken.append(s[(np.arange(len(s)) + offset) % folds == fold])
        offset = (offset + len(s)) % folds
    return _and_rest(indices, taken)


def _check_folds(folds, fold) -> tuple[int, int]:
    try:
        k, i = int(folds), int(fold)
    except (TypeError, ValueError):
        raise ConfigError(f"data.folds / data.fold: expected integers, got {folds!r} / {fold!r}") from None
    if k < 2:
        raise ConfigError(f"data.folds: expected at least 2 folds (or null for data.val_fraction), got {k}")
    if not 0 <= i < k:
        raise ConfigError(f"data.fold: expected 0 <= fold < data.folds = {k}, got {i}")
    return k, i


def _indices_of(ds: IrregularDataset, ids, name: str) -> np.ndarray:
    pos = {s: i for i, s in enumerate(ds.ids)}
    missing = [str(i) for i in ids if str(i) not in pos]
    if missing:
        raise DataError(
            f"data.{name}: {len(missing)} id(s) not found in the data, e.g. {', '.join(missing[:5])}"
        )
    return np.array([pos[str(i)] for i in ids], dtype=np.int64)


def split_dataset(
    ds: IrregularDataset,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify: bool = True,
    train_ids=None,
    val_ids=None,
    test_ids=None,
    folds: int | None = None,
    fold: int = 0,
) -> tuple[IrregularDataset, IrregularDataset, IrregularDataset]:
    """Split ``ds`` into (train, val, test).

    Explicit id lists win over fractions: with ``val_ids``/``test_ids`` given, those series go
    there and (unless ``train_ids`` is given) everything else is training data. Without
    ``val_ids``, ``val_fraction`` of the training ids (stratified) validates.

    With ``folds`` = K, the series left after the test share are dealt into K stratified folds
    (seeded by ``seed``) and fold ``fold`` is the validation split, in place of ``val_fraction``:
    the K runs of one seed with fold = 0 .. K-1 validate on disjoint sets that cover all of it
    (K-fold cross-validation, as in Che et al. 2018).

    Shape:
        ds: n series (times (N,), values (N, F), static (n, S), labels (n,)) -> three datasets of
        n_train, n_val, n_test series with the same F and S; they partition the n series unless
        explicit id lists leave some out (``train_ids`` given).
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction must leave training data, got {val_fraction} + {test_fraction}"
        )
    labels = ds.labels if (stratify and ds.has_labels) else None
    rng = np.random.default_rng(seed)
    everything = np.arange(len(ds))
    explicit = train_ids is not None or val_ids is not None or test_ids is not None
    if folds is not None:
        folds, fold = _check_folds(folds, fold)
        if explicit:
            raise ConfigError("data.folds cannot be combined with data.train_ids/val_ids/test_ids: "
                              "set data.folds=null, or drop the id lists")
    if explicit:
        val = _indices_of(ds, val_ids or [], "val_ids")
        test = _indices_of(ds, test_ids or [], "test_ids")
        if train_ids is not None:
            train = _indices_of(ds, train_ids, "train_ids")
        else:
            train = np.setdiff1d(everything, np.concatenate([val, test]))
        overlap = set(train) & (set(val) | set(test)) or set(val) & set(test)
        if overlap:
            raise DataError(f"data.train_ids/val_ids/test_ids overlap in {len(overlap)} series")
        if val_ids is None and val_fraction > 0:  # no validation ids: data.val_fraction of the training ids
            val, train = _stratified_take(train, labels, val_fraction, rng)
    else:
        test, rest = _stratified_take(everything, labels, test_fraction, rng)
        if folds is not None:
            if len(rest) < folds:
                raise DataError(f"data.folds = {folds} folds need at least {folds} series, "
                                f"{len(rest)} are left after the test share")
            val, train = _stratified_fold(rest, labels, folds, fold, rng)
        else:
            val, train = _stratified_take(rest, labels, val_fraction / (1.0 - test_fraction), rng)
    if len(train) == 0:
        raise DataError("the training split is empty: lower data.val_fraction/test_fraction or add data")
    return ds.subset(train), ds.subset(val), ds.subset(test)
