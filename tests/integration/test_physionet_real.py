"""The embedded PhysioNet 2012 set-a, read end to end (a few seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grud.data import read_physionet2012

DATA = Path(__file__).resolve().parents[2] / "data" / "physionet2012"
OUTCOME_COLUMNS = ("SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRUD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def set_a(tmp_path_factory):
    if not (DATA / "set-a.tar.gz").exists():
        pytest.skip("embedded PhysioNet data not present")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRUD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    try:
        first = read_physionet2012(DATA / "set-a.tar.gz", DATA / "Outcomes-a.txt")
        cached = read_physionet2012(DATA / "set-a.tar.gz", DATA / "Outcomes-a.txt")
    finally:
        mp.undo()
    return first, cached


def test_set_a_counts(set_a):
    ds, _ = set_a
    assert len(ds) == 4000
    assert int(np.nansum(ds.labels)) == 554
    assert not np.isnan(ds.labels).any()
    assert len(ds.variables) == 37 and ds.variables == sorted(ds.variables)
    assert ds.static_names == ["Age", "Gender", "Height", "ICUType"]
    assert "Weight" in ds.variables
    for name in OUTCOME_COLUMNS + ("RecordID",):
        assert name not in ds.variables and name not in ds.static_names


def test_set_a_empty_stays_are_kept(set_a):
    ds, _ = set_a
    empty = sorted(ds.ids[i] for i in np.flatnonzero(ds.lengths == 0))
    assert empty == ["140501", "140936", "141264"]
    assert ds.ids[0] == "132539"


def test_set_a_values_are_clean(set_a):
    ds, _ = set_a
    step = np.diff(ds.times)
    within = np.ones(len(step), dtype=bool)
    bounds = ds.offsets[1:-1]
    within[bounds[(bounds > 0) & (bounds < len(ds.times))] - 1] = False  # series boundaries
    assert (step[within] > 0).all()  # strictly ascending times within each series
    assert ds.times.min() >= 0 and ds.times.max() <= 48
    col = {v: ds.values[:, j] for j, v in enumerate(ds.variables)}
    assert np.nanmax(col["pH"]) <= 14
    for name in ("Temp", "HR", "Weight"):
        assert np.nanmin(col[name]) > 0, name
    assert not (ds.values == -1).any()
    assert not (ds.static == -1).any()
    assert set(np.unique(ds.static[:, 1][~np.isnan(ds.static[:, 1])])) <= {0.0, 1.0}
    assert (np.isnan(ds.values).all(axis=1) == False).all()  # noqa: E712 - every step holds an observation


def test_set_a_cached_read_is_identical(set_a):
    ds, cached = set_a
    assert cached.ids == ds.ids and cached.variables == ds.variables
    np.testing.assert_array_equal(cached.values, ds.values)
    np.testing.assert_array_equal(cached.times, ds.times)
    np.testing.assert_array_equal(cached.static, ds.static)
    np.testing.assert_array_equal(cached.labels, ds.labels)
    assert cached.meta == ds.meta
