"""Warnings for time-varying variables that look like an outcome, a static feature, a row id, or
hold values no patient has."""
from __future__ import annotations

import numpy as np

from grud.data.dataset import IrregularDataset, Series
from grud.data.suspect_variables import (constant_per_series, distinct_on_every_row, far_values, static_code_hints,
                                         suspect_variable_warnings)


def export(n=60, steps=6, seed=0, row_id_start=1):
    """heart rate varies; ``expired`` repeats each series' outcome on every row (0 or 1);
    ``MechVent`` is 1 wherever observed; ``rowid`` counts the rows of the file."""
    rng = np.random.default_rng(seed)
    series, row = [], row_id_start
    for i in range(n):
        times = np.arange(steps, dtype=float)
        outcome = float(i % 3 == 0)
        hr = rng.normal(80, 10, steps)
        vent = np.where(rng.random(steps) < 0.5, 1.0, np.nan)
        ids = np.arange(row, row + steps, dtype=float)
        row += steps
        values = np.stack([hr, np.full(steps, outcome), vent, ids], axis=1).astype(np.float32)
        series.append(Series(str(i), times, values, np.zeros(0, np.float32), None))
    return IrregularDataset.from_series(series, ["HR", "expired", "MechVent", "rowid"], [])


def test_an_outcome_repeated_on_every_row_and_a_row_id_are_named():
    ds = export()
    assert constant_per_series(ds) == ["expired"]  # not MechVent: one value over the whole data
    assert distinct_on_every_row(ds) == ["rowid"]  # not HR: it is not whole numbers
    messages = suspect_variable_warnings(ds)
    assert len(messages) == 2 and "'expired'" in messages[0] and "data.static_variables" in messages[0]
    assert "'rowid'" in messages[1] and "data.variables" in messages[1]


def test_large_row_ids_that_float32_rounds_together_are_still_named():
    ds = export(row_id_start=37_000_000)  # consecutive ids 37,000,000+ round to steps of 4 in float32
    assert np.unique(ds.values[:, 3]).size < len(ds.values)
    assert distinct_on_every_row(ds) == ["rowid"]


def test_a_few_series_or_rows_are_not_enough_to_warn():
    ds = export(n=10)  # 10 series with repeated values, 60 rows: below both thresholds
    assert suspect_variable_warnings(ds) == []


def test_a_variable_that_changes_within_one_series_is_not_constant_per_series():
    ds = export()
    values = ds.values.copy()
    values[ds.offsets[5] + 1, 1] = 1 - values[ds.offsets[5] + 1, 1]  # series 5 changes its 'expired' once
    assert constant_per_series(ds.with_values(values)) == []


def test_values_far_outside_the_rest_are_named_only_without_a_value_range_table():
    """A user's CSV with HR 999 and Temp 370 trained without value_ranges (the CSV default) and
    forecast temperatures up to 360 C, with nothing said."""
    rng = np.random.default_rng(0)
    n = 400
    hr = rng.normal(85, 15, n)
    hr[[5, 77]] = [999.0, 950.0]
    temp = rng.normal(37, 0.7, n)
    temp[9] = 370.0
    alt = np.exp(rng.normal(3.5, 1.0, n))  # a heavy-tailed lab: up to ~30x its median, no error
    flag = np.zeros(n)
    flag[3] = 1.0  # a rare flag: its 1st and 99th percentiles are equal, not judged
    values = np.stack([hr, temp, alt, flag], axis=1).astype(np.float32)
    series = [Series(str(i), np.arange(4, dtype=float), values[4 * i:4 * i + 4], np.zeros(0, np.float32), None)
              for i in range(n // 4)]
    ds = IrregularDataset.from_series(series, ["HR", "Temp", "ALT", "flag"], [])
    far = far_values(ds)
    assert sorted(far) == ["HR", "Temp"]
    assert far["HR"][:2] == (2, 999.0) and far["Temp"][:2] == (1, 370.0)
    messages = suspect_variable_warnings(ds, value_ranges_set=False)
    assert any(m.startswith("variable 'Temp': 1 value(s) lie far outside the rest (e.g. 370;") and "data.value_ranges" in m
               for m in messages)
    assert suspect_variable_warnings(ds) == []  # a table given: its ranges judge the values


def test_a_static_of_a_few_whole_numbers_is_named_as_maybe_codes():
    """PhysioNet's ICUType (1-4) in a converted CSV went in as an amount with nothing said."""
    rng = np.random.default_rng(0)
    n = 50
    static = np.stack([rng.integers(1, 5, n), rng.integers(0, 2, n), rng.normal(65, 15, n),
                       np.r_[1.0, np.full(n - 1, np.nan)]], axis=1).astype(np.float32)
    series = [Series(str(i), np.arange(2, dtype=float), np.ones((2, 1), np.float32), static[i], None)
              for i in range(n)]
    ds = IrregularDataset.from_series(series, ["HR"], ["ICUType", "Gender", "Age", "Rare"])
    hints = static_code_hints(ds)
    assert hints == ["static variable 'ICUType' holds 4 distinct whole numbers (1, 2, 3, 4) and is read as an amount; "
                     "if they are codes (a unit, a type), list it in data.categorical_static (one 0/1 column per code)"]
