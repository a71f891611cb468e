"""Categorical static variables: one-hot columns with the training split's categories."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from grud.data.categorical import MAX_CATEGORIES, fit_static_categories, one_hot_static
from grud.data.dataset import IrregularDataset, Series
from grud.data.transforms import fit_stats
from grud.errors import ConfigError


def _ds(codes, ages=None):
    ages = ages or [50.0] * len(codes)
    series = [Series(f"s{i}", np.array([0.0, 1.0]), np.array([[1.0], [2.0]]), static=np.array([a, c]), label=i % 2)
              for i, (a, c) in enumerate(zip(ages, codes))]
    return IrregularDataset.from_series(series, ["HR"], ["Age", "ICUType"])


def test_codes_come_from_the_training_split_and_become_named_columns():
    train = _ds([3.0, 1.0, 3.0, 2.0], ages=[40, 50, 60, 70])
    cats = fit_static_categories(train, ["ICUType"])
    assert cats == {"ICUType": [1.0, 2.0, 3.0]}
    enc = one_hot_static(train, cats)
    assert enc.static_names == ["Age", "ICUType=1", "ICUType=2", "ICUType=3"]
    np.testing.assert_array_equal(enc.static, [[40, 0, 0, 1], [50, 1, 0, 0], [60, 0, 0, 1], [70, 0, 1, 0]])
    assert one_hot_static(enc, cats) is enc  # already encoded


def test_unknown_stays_unknown_and_an_unseen_code_is_none_of_the_categories(caplog):
    cats = {"ICUType": [1.0, 2.0]}
    with caplog.at_level(logging.WARNING):
        enc = one_hot_static(_ds([np.nan, 4.0, 2.0]), cats)
    assert np.isnan(enc.static[0, 1:]).all()
    np.testing.assert_array_equal(enc.static[1:, 1:], [[0, 0], [0, 1]])
    assert "1 series have a value the training split never had (4)" in caplog.text
    # the normaliser sees ordinary 0/1 columns: the unknown row sits at the training mean
    stats = fit_stats(one_hot_static(_ds([1.0, 2.0, 2.0, 1.0]), cats))
    z = stats.normalise_static(enc.static)
    np.testing.assert_array_equal(z[0, 1:], [0.0, 0.0])


def test_mistakes_name_the_key_and_what_was_expected():
    train = _ds([1.0, 2.0])
    with pytest.raises(ConfigError, match=r"data.categorical_static: 'Unit' not among the static variables \(Age, ICUType\)"):
        fit_static_categories(train, ["Unit"])
    with pytest.raises(ConfigError, match="'ICUType' has no known value in the training split"):
        fit_static_categories(_ds([np.nan, np.nan]), ["ICUType"])
    many = _ds([float(i) for i in range(MAX_CATEGORIES + 1)])
    with pytest.raises(ConfigError, match=rf"'ICUType' has {MAX_CATEGORIES + 1} distinct values .* is it a quantity"):
        fit_static_categories(many, ["ICUType"])


def _text_ds(texts, codes):
    """A dataset whose ICUType is held as text codes (as the readers give a column of names)."""
    ds = _ds(codes)
    return IrregularDataset(ds.ids, ds.variables, ds.static_names, ds.times, ds.values, ds.offsets, ds.static,
                            ds.labels, {"static_text": {"ICUType": list(texts)}, "path": "units.csv"})


def test_text_codes_come_from_the_training_split_and_match_by_text_across_files(caplog):
    texts = ["CCU", "MICU", "SICU"]
    full = _text_ds(texts, [1.0, 2.0, 1.0, 0.0])
    train = full.subset([0, 1, 2])  # CCU only outside training
    cats = fit_static_categories(train, ["ICUType"])
    assert cats == {"ICUType": ["MICU", "SICU"]}
    assert one_hot_static(train, cats).static_names == ["Age", "ICUType=MICU", "ICUType=SICU"]
    # another file's list of texts differs: matched by the text, not its position
    other = _text_ds(["MICU", "Neuro", "SICU"], [2.0, 1.0, 0.0, np.nan])
    with caplog.at_level(logging.WARNING):
        enc = one_hot_static(other, cats)
    np.testing.assert_array_equal(enc.static[:3, 1:], [[0, 1], [0, 0], [1, 0]])
    assert np.isnan(enc.static[3, 1:]).all()
    assert "1 series have a value the training split never had (Neuro)" in caplog.text
    # a number code and its text are one category: numbers fitted, texts given (and the reverse)
    np.testing.assert_array_equal(one_hot_static(_text_ds(["1", "3.0"], [0.0, 1.0]), {"ICUType": [1.0, 3.0]}).static[:, 1:],
                                  [[1, 0], [0, 1]])
    np.testing.assert_array_equal(one_hot_static(_ds([3.0, 1.0]), {"ICUType": ["1", "3"]}).static[:, 1:],
                                  [[0, 1], [1, 0]])
    # a file none of whose codes training had (numbers where training had names): said as such
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        none = one_hot_static(_ds([0.0, 1.0, np.nan]), cats)
    assert (none.static[:2, 1:] == 0).all()
    assert "none of the 2 series with a value has a code the training split had (here 0, 1; training MICU, SICU)" \
        in caplog.text
    # "1" and "1.0" in one file are one category (named by the first text)
    assert fit_static_categories(_text_ds(["1", "1.0", "F"], [0.0, 1.0, 2.0]), ["ICUType"]) == {"ICUType": ["1", "F"]}
    # TRUE / FALSE read as 1 / 0 where a column holds nothing else (as the readers read them): the same codes
    flags = {"ICUType": ["FALSE", "TRUE", "unknown"]}
    np.testing.assert_array_equal(one_hot_static(_ds([1.0, 0.0]), flags).static[:, 1:], [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(one_hot_static(_text_ds(["f", "true"], [0.0, 1.0]), flags).static[:, 1:],
                                  [[0, 0, 0], [0, 1, 0]])  # case of a word kept: "f" is not FALSE


def test_text_codes_are_refused_where_they_would_be_read_as_quantities():
    from grud.data.categorical import check_no_text_static
    from grud.errors import DataError

    ds = _text_ds(["CCU", "MICU"], [0.0, 1.0])
    with pytest.raises(DataError, match=r"units.csv: static variable 'ICUType' holds text \('CCU', 'MICU'\), not "
                                        r"numbers: one-hot encode it first: one_hot_static\(ds, fit_static_categories"):
        fit_stats(ds)
    with pytest.raises(DataError, match=r"holds text \('CCU', 'MICU'\), not numbers: the model reads 'ICUType' as"):
        check_no_text_static(ds, "the model reads {name!r} as a number")
    enc = one_hot_static(ds, fit_static_categories(ds, ["ICUType"]))
    check_no_text_static(enc)  # encoded: nothing left as text
    assert fit_stats(enc).static_names == ["Age", "ICUType=CCU", "ICUType=MICU"]
