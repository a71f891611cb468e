"""IrregularDataset checks what it is built from: shapes, and times a network can decay by."""
from __future__ import annotations

import numpy as np
import pytest

from grud.data.dataset import IrregularDataset, Series
from grud.errors import DataError

VARS = ["HR", "MAP", "Temp", "Lab"]


def build(times, values, offsets=(0, 3, 6), static=None, labels=None):
    return IrregularDataset(["a", "b"], VARS, ["Age"], np.asarray(times, float), values, np.asarray(offsets),
                            static if static is not None else np.ones((2, 1)), labels)


def test_values_laid_out_otherwise_are_refused_with_expected_and_actual():
    """A transposed (F, N) array was reshaped into (N, F) silently: row 0 became [0, 4, 8, 12]."""
    times, values = np.arange(6.0), np.arange(24, dtype=np.float32).reshape(6, 4)
    assert np.array_equal(build(times, values).values[0], [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"values: expected shape \(N, F\) = \(6, 4\) .*got \(4, 6\)"):
        build(times, values.T)
    with pytest.raises(ValueError, match=r"static: expected shape \(n, S\) = \(2, 1\), got \(1, 2\)"):
        build(times, values, static=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"labels: expected shape \(n,\) = \(2,\), got \(3,\)"):
        build(times, values, labels=[0, 1, 0])
    with pytest.raises(ValueError, match=r"offsets: expected ascending from 0"):
        build(times, values, offsets=(0, 7, 6))


def test_a_series_whose_values_do_not_match_its_times_is_named():
    """(4, 3) and (3, 4) values for 2 and 4 times passed because the totals matched."""
    good = Series("ok", np.arange(2.0), np.zeros((2, 4), np.float32), np.ones(1, np.float32))
    bad = Series("odd", np.arange(4.0), np.zeros((3, 4), np.float32), np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"series 'odd': values: expected shape \(T, F\) = \(4, 4\), got \(3, 4\)"):
        IrregularDataset.from_series([good, bad], VARS, ["Age"])
    empty = Series("e", np.zeros(0), np.zeros((0, 4), np.float32), np.ones(1, np.float32))
    assert len(IrregularDataset.from_series([good, empty], VARS, ["Age"])) == 2


def test_unsorted_or_non_finite_times_and_infinite_values_are_data_errors():
    values = np.zeros((6, 4), np.float32)
    with pytest.raises(DataError, match=r"times: expected ascending times within each series .*got 5 then 2 in "
                                        r"series 'a'"):
        build([0, 5, 2, 0, 1, 2], values)  # GRU-D would decay by a delta of -3
    assert len(build([0, 1, 2, 0, 1, 2], values)) == 2  # a new series starts again at 0
    with pytest.raises(DataError, match=r"times: expected finite hours, got nan at row 4 \(series 'b'\)"):
        build([0, 1, 2, 0, np.nan, 2], values)
    inf = values.copy()
    inf[1, 2] = np.inf
    with pytest.raises(DataError, match=r"values: expected finite numbers or NaN \(missing\)"):
        build(np.arange(6.0), inf)
    with pytest.raises(DataError, match=r"static: expected finite numbers or NaN"):
        build(np.arange(6.0), values, static=np.array([[1.0], [np.inf]]))
