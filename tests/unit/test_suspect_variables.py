"""Warnings for time-varying variables that look like an outcome, a static feature or a row id."""
from __future__ import annotations

import numpy as np

from grud.data.dataset import IrregularDataset, Series
from grud.data.suspect_variables import constant_per_series, distinct_on_every_row, suspect_variable_warnings


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
