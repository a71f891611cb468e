"""Time-varying variables that look like something else: an outcome, a static feature, a row id,
or values no patient has (read without a table of possible values).

A wide CSV makes every column a variable unless ``data.variables`` lists them, so an export's
outcome column under another name than ``data.label_column`` (``expired`` beside a labels file's
``hospitaldischargestatus``), or its row-id column (eICU's ``vitalperiodicid``), silently becomes
a model input: the outcome one leaks the label (test AUROC 1.0). These checks run on the training
split and only warn: both patterns can be genuine.
"""
from __future__ import annotations

import numpy as np

from grud.data.dataset import IrregularDataset

#: a pattern counts only when at least this many series (constant per series) or observations
#: (a new value on every row) show it
MIN_SERIES = 20
MIN_OBSERVATIONS = 200


def constant_per_series(ds: IrregularDataset, min_series: int = MIN_SERIES) -> list[str]:
    """Variables that hold a single value within every series observing them twice or more (at
    least ``min_series`` such series), yet more than one value across series: one value per
    series is what an outcome or a static feature looks like, not a measurement over time.
    A variable constant over the whole data (a flag such as PhysioNet's ``MechVent``) is not one."""
    nonempty = np.diff(ds.offsets) > 0
    starts, ends = ds.offsets[:-1][nonempty], ds.offsets[1:][nonempty]  # a series' rows are contiguous
    if not len(starts):
        return []
    by_variable = np.ascontiguousarray(ds.values.T)  # (F, N): reductions along a row are fast
    with np.errstate(invalid="ignore"):  # a series that never observes a variable gives NaN
        lo = np.fmin.reduceat(by_variable, starts, axis=1)  # (F, series with rows), NaN ignored
        hi = np.fmax.reduceat(by_variable, starts, axis=1)
    seen = np.cumsum(np.isfinite(by_variable), axis=1, dtype=np.int64)
    counts = seen[:, ends - 1] - np.where(starts > 0, seen[:, np.maximum(starts - 1, 0)], 0)
    names = []
    for f, name in enumerate(ds.variables):
        repeated = counts[f] >= 2
        if repeated.sum() >= min_series and np.all(lo[f, repeated] == hi[f, repeated]) \
                and np.nanmin(lo[f]) < np.nanmax(hi[f]):
            names.append(name)
    return names


def distinct_on_every_row(ds: IrregularDataset, min_observations: int = MIN_OBSERVATIONS) -> list[str]:
    """Variables whose observed values (at least ``min_observations``) are whole numbers, all
    different, or from a million up and never decreasing over time within a series (values are
    kept as float32, so large consecutive ids can round onto each other): what a row-id column
    looks like, not a measurement."""
    names = []
    series = np.repeat(np.arange(len(ds)), np.diff(ds.offsets))
    for f, name in enumerate(ds.variables):
        col = ds.values[:, f]
        seen = np.isfinite(col)
        v = col[seen]
        if v.size < min_observations or not np.all(v == np.round(v)):
            continue
        same_series = series[seen][1:] == series[seen][:-1]  # rows are in time order within a series
        rising = bool(np.all(np.diff(v)[same_series] >= 0)) and same_series.any()
        if np.unique(v).size == v.size or (np.abs(v).min() >= 1e6 and rising):
            names.append(name)
    return names


#: a value beyond this many 1st-99th percentile spreads outside that range is far from the rest
FAR_SPREADS = 10.0


def far_values(ds: IrregularDataset, min_observations: int = MIN_OBSERVATIONS,
               spreads: float = FAR_SPREADS) -> dict[str, tuple[int, float, float, float]]:
    """``{variable: (count, the farthest value, 1st percentile, 99th percentile)}`` for variables
    (at least ``min_observations`` values) with values more than ``spreads`` times the 1st-99th
    percentile spread outside it: a heart rate of 999 among 50-130, a temperature of 370 (a
    missing decimal point) among 35-40, what a table of possible values (``value_ranges``) drops.
    Heavy tails of a lab pass (ALT up to 10,000 with 99 % below 1,000); a variable whose 1st and
    99th percentiles are equal (a flag) is not judged."""
    out = {}
    for f, name in enumerate(ds.variables):
        v = ds.values[:, f]
        v = v[np.isfinite(v)].astype(np.float64)
        if v.size < min_observations:
            continue
        lo, hi = np.percentile(v, [1, 99])
        spread = hi - lo
        if spread <= 0:
            continue
        far = (v < lo - spreads * spread) | (v > hi + spreads * spread)
        if far.any():
            worst = v[far][np.argmax(np.abs(v[far] - (lo + hi) / 2))]
            out[name] = (int(far.sum()), float(worst), float(lo), float(hi))
    return out


#: a static variable with this many distinct whole numbers (3 to 10) may be codes read as an amount
CODE_COUNTS = range(3, 11)


def static_code_hints(ds: IrregularDataset) -> list[str]:
    """One message per static variable of ``ds`` (the training split, after the one-hot step) that
    holds a few distinct whole numbers (PhysioNet's ICUType 1-4 converted to a CSV): read as an
    amount, a model treats a code 4 as twice a code 2. Two values (a 0/1 flag) are fine as a number."""
    out = []
    for j, name in enumerate(ds.static_names):
        v = ds.static[:, j]
        v = np.unique(v[np.isfinite(v)])
        if len(v) in CODE_COUNTS and np.all(v == np.round(v)):
            out.append(f"static variable {name!r} holds {len(v)} distinct whole numbers ({', '.join(f'{x:g}' for x in v)}) "
                       f"and is read as an amount; if they are codes (a unit, a type), list it in "
                       f"data.categorical_static (one 0/1 column per code)")
    return out


def suspect_variable_warnings(ds: IrregularDataset, value_ranges_set: bool = True) -> list[str]:
    """One message per suspect variable of ``ds`` (the training split), naming what to do; without
    a table of possible values (``value_ranges_set=False``) also the variables with far values."""
    out = [f"variable {name!r} holds one value per series (in every series that observes it twice or more), "
           f"like an outcome or a static feature: if it is the outcome, drop it from the file or list the inputs "
           f"in data.variables (wide files); if it is static, give it in data.static_variables"
           for name in constant_per_series(ds)]
    out += [f"variable {name!r} holds a different whole number on every row, like a row id: if it is one, drop it "
            f"from the file or list the inputs in data.variables (wide files)"
            for name in distinct_on_every_row(ds)]
    if not value_ranges_set:
        out += [f"variable {name!r}: {count} value(s) lie far outside the rest (e.g. {worst:g}; 98 % lie within "
                f"{lo:g} to {hi:g}), like impossible values or another unit: give data.value_ranges=RANGES.csv "
                f"(variable,min,max; data.value_ranges=physionet2012 is the built-in table, for PhysioNet's variable "
                f"names) to read values outside a variable's possible range as unobserved"
                for name, (count, worst, lo, hi) in far_values(ds).items()]
    return out
