"""The on-disk dataset cache of the readers: hits, invalidation, corruption, bypass."""
from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grud.data.readers as readers
from grud.data import read_long_csv, read_physionet2012, read_wide_csv

LONG = "id,time,variable,value\na,0,HR,80\na,1,HR,90\na,0,Age,50\nb,0,HR,70\n"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("GRUD_CACHE_DIR", str(d))
    return d


@pytest.fixture
def builds(monkeypatch) -> dict:
    """Count how often each reader really parses its input."""
    counts = {"long": 0, "wide": 0, "physionet": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(readers, "_build_long", counting("long", readers._build_long))
    monkeypatch.setattr(readers, "_build_wide", counting("wide", readers._build_wide))
    monkeypatch.setattr(readers, "_build_physionet", counting("physionet", readers._build_physionet))
    return counts


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "datasets").glob("*.npz")) if (cache_dir / "datasets").exists() else []


def same(a, b) -> bool:
    return (
        a.ids == b.ids
        and a.variables == b.variables
        and a.static_names == b.static_names
        and np.array_equal(a.times, b.times)
        and np.array_equal(a.values, b.values, equal_nan=True)
        and np.array_equal(a.static, b.static, equal_nan=True)
        and np.array_equal(a.offsets, b.offsets)
        and ((a.labels is None and b.labels is None) or np.array_equal(a.labels, b.labels, equal_nan=True))
    )


def test_second_read_comes_from_the_cache(tmp_path, cache_dir, builds):
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    first = read_long_csv(p, static_variables=["Age"])
    second = read_long_csv(p, static_variables=["Age"])
    assert builds["long"] == 1
    assert same(first, second)
    assert second.meta == first.meta
    assert len(entries(cache_dir)) == 1
    with np.load(entries(cache_dir)[0], allow_pickle=False) as z:  # plain arrays, no pickle
        assert set(z.files) >= {"ids", "times", "values", "offsets", "static"}


def test_cached_read_reports_its_current_path(tmp_path, builds):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(LONG)
    b.write_text(LONG)
    read_long_csv(a)
    ds = read_long_csv(b)  # same bytes, same options: a hit
    assert builds["long"] == 1
    assert ds.meta["path"] == str(b)


def test_changed_content_is_read_again(tmp_path, builds):
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    read_long_csv(p)
    p.write_text(LONG.replace("a,1,HR,90", "a,1,HR,95"))
    ds = read_long_csv(p)
    assert builds["long"] == 2
    assert np.nanmax(ds.values) == 95


@pytest.mark.parametrize(
    "options",
    [
        dict(static_variables=["Age"]),
        dict(max_hours=0.5),
        dict(time_unit="min"),
        dict(value_ranges={"HR": (0, 85)}),
        dict(delimiter=","),
        dict(label_column="y", labels=pd.DataFrame({"id": ["a"], "y": [1]})),
    ],
)
def test_every_option_is_part_of_the_key(tmp_path, builds, options):
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    base = read_long_csv(p)
    changed = read_long_csv(p, **options)
    assert builds["long"] == 2
    assert not same(base, changed) or options.get("delimiter") == ","
    read_long_csv(p, **options)
    assert builds["long"] == 2  # and the changed read is cached under its own key


def test_label_file_and_dataframe_content_are_part_of_the_key(tmp_path, builds):
    p, y = tmp_path / "d.csv", tmp_path / "y.csv"
    p.write_text(LONG)
    y.write_text("id,label\na,0\nb,1\n")
    assert read_long_csv(p, labels=y).labels.tolist() == [0, 1]
    y.write_text("id,label\na,1\nb,1\n")
    assert read_long_csv(p, labels=y).labels.tolist() == [1, 1]
    assert read_long_csv(p, labels=pd.DataFrame({"id": ["a", "b"], "label": [0, 0]})).labels.tolist() == [0, 0]
    assert read_long_csv(p, labels=pd.DataFrame({"id": ["a", "b"], "label": [1, 0]})).labels.tolist() == [1, 0]
    assert builds["long"] == 4


def test_editing_a_value_range_table_invalidates(tmp_path, builds):
    p, r = tmp_path / "d.csv", tmp_path / "r.csv"
    p.write_text(LONG)
    r.write_text("variable,min,max\nHR,0,85\n")
    assert read_long_csv(p, value_ranges=r).meta["out_of_range"] == {"HR": 1}
    r.write_text("variable,min,max\nHR,0,300\n")
    assert read_long_csv(p, value_ranges=r).meta["out_of_range"] == {}
    assert builds["long"] == 2


def test_cache_false_neither_reads_nor_writes(tmp_path, cache_dir, builds):
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    read_long_csv(p, cache=False)
    read_long_csv(p, cache=False)
    assert builds["long"] == 2
    assert entries(cache_dir) == []


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path, cache_dir, builds, caplog):
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    good = read_long_csv(p)
    (entry,) = entries(cache_dir)
    entry.write_bytes(b"PK\x03\x04 this is not a zip")
    with caplog.at_level(logging.WARNING):
        again = read_long_csv(p)
    assert "unreadable cache" in caplog.text
    assert same(good, again) and builds["long"] == 2
    third = read_long_csv(p)  # the rewritten entry is valid again
    assert same(good, third) and builds["long"] == 2


def test_unwritable_cache_only_costs_speed(tmp_path, monkeypatch, builds, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GRUD_CACHE_DIR", str(blocker / "cache"))
    p = tmp_path / "d.csv"
    p.write_text(LONG)
    with caplog.at_level(logging.WARNING):
        ds = read_long_csv(p)
    assert len(ds) == 2 and "could not write" in caplog.text


def test_wide_and_physionet_readers_cache_too(tmp_path, builds):
    w = tmp_path / "w.csv"
    w.write_text("id,time,HR\na,0,80\n")
    read_wide_csv(w)
    read_wide_csv(w)
    assert builds["wide"] == 1
    read_wide_csv(w, variables=["HR"])
    assert builds["wide"] == 2
    tar = tmp_path / "s.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        data = b"Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,50\n00:10,HR,80\n"
        info = tarfile.TarInfo("s/1.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    a = read_physionet2012(tar)
    b = read_physionet2012(tar)
    assert builds["physionet"] == 1 and same(a, b)
    read_physionet2012(tar, max_hours=0.1)
    read_physionet2012(tar, value_ranges=None)
    assert builds["physionet"] == 3


def test_cached_read_names_the_current_label_file(tmp_path, builds):
    p, y1, y2 = tmp_path / "d.csv", tmp_path / "y1.csv", tmp_path / "y2.csv"
    p.write_text(LONG)
    y1.write_text("id,label\na,1\n")
    y2.write_text("id,label\na,1\n")
    read_long_csv(p, labels=y1)
    ds = read_long_csv(p, labels=y2)
    assert builds["long"] == 1 and ds.meta["labels"] == str(y2)
