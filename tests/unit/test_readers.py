"""Behaviour of the CSV and PhysioNet readers on small synthetic files."""
from __future__ import annotations

import io
import logging
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grud import DataError
from grud.errors import ConfigError
from grud.data import IrregularDataset, read_long_csv, read_physionet2012, read_wide_csv
from grud.data.value_ranges import load_value_ranges

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRUD_CACHE_DIR", str(tmp_path / "cache"))


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


LONG = """id,time,variable,value
a,0,HR,80
a,0,Age,61
a,1.5,HR,90
a,1.5,Temp,37.5
a,3,Temp,38.1
b,2,HR,70
b,2.5,Temp,36.9
b,2,Age,40
"""


def assert_same(a: IrregularDataset, b: IrregularDataset) -> None:
    assert a.ids == b.ids
    assert a.variables == b.variables
    assert a.static_names == b.static_names
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.static, b.static)
    if a.labels is None:
        assert b.labels is None
    else:
        np.testing.assert_array_equal(a.labels, b.labels)


# ---------------------------------------------------------------- long format basics
def test_long_reads_steps_variables_and_static(tmp_path):
    ds = read_long_csv(write(tmp_path / "d.csv", LONG), static_variables=["Age"])
    assert ds.ids == ["a", "b"]
    assert ds.variables == ["HR", "Temp"]
    assert ds.static_names == ["Age"]
    a, b = ds[0], ds[1]
    np.testing.assert_array_equal(a.times, [0.0, 1.5, 3.0])
    np.testing.assert_array_equal(a.values, f32([[80, np.nan], [90, 37.5], [np.nan, 38.1]]))
    np.testing.assert_array_equal(b.times, [0.0, 0.5])  # time 0 = b's earliest row (2 h)
    np.testing.assert_array_equal(ds.static[:, 0], [61, 40])
    assert ds.labels is None
    assert ds.meta["kind"] == "long" and ds.meta["time_column"] == "time"
    assert ds.meta["static_variables"] == ["Age"]


def test_shuffled_rows_give_the_same_dataset(tmp_path):
    header, *rows = LONG.strip().split("\n")
    random.Random(0).shuffle(rows)
    shuffled = write(tmp_path / "s.csv", "\n".join([header, *rows]) + "\n")
    assert_same(
        read_long_csv(write(tmp_path / "d.csv", LONG), static_variables=["Age"]),
        read_long_csv(shuffled, static_variables=["Age"]),
    )


def test_measurements_at_the_same_time_are_averaged(tmp_path):
    ds = read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,80\n1,0,HR,91\n1,0,HR,90\n1,1,HR,60\n"))
    np.testing.assert_allclose(ds.values[:, 0], [87.0, 60.0])
    assert ds.lengths.tolist() == [2]


def test_time_zero_is_the_earliest_row_even_without_a_value(tmp_path):
    text = "id,time,variable,value\n1,5,HR,80\n1,2,HR,\n1,1,Age,33\n"
    ds = read_long_csv(write(tmp_path / "d.csv", text), static_variables=["Age"])
    np.testing.assert_array_equal(ds.times, [4.0])  # 5 h - 1 h (the static row is earliest)


def test_empty_values_and_nan_words_are_unobserved(tmp_path):
    text = "id,time,variable,value\n1,0,HR,\n1,0,Temp,37\n1,1,HR,NaN\n1,2,HR,NA\n1,3,Temp,nan\n"
    ds = read_long_csv(write(tmp_path / "d.csv", text))
    assert ds.variables == ["HR", "Temp"]  # HR is seen, although never observed
    np.testing.assert_array_equal(ds.times, [0.0])  # only one time had an observation
    np.testing.assert_array_equal(ds.values, [[np.nan, 37.0]])


def test_series_without_any_observation_is_kept_with_zero_steps(tmp_path):
    text = "id,time,variable,value\n1,0,HR,70\n2,0,HR,\n2,1,Age,50\n"
    ds = read_long_csv(write(tmp_path / "d.csv", text), static_variables=["Age"])
    assert ds.ids == ["1", "2"]
    assert ds.lengths.tolist() == [1, 0]
    assert ds[1].values.shape == (0, 1)
    assert ds.static[1, 0] == 50


def test_integer_ids_sort_numerically_and_keep_their_spelling(tmp_path):
    text = "id,time,variable,value\n10,0,HR,1\n2,0,HR,2\n007,0,HR,3\n"
    ds = read_long_csv(write(tmp_path / "d.csv", text))
    assert ds.ids == ["2", "007", "10"]


def test_static_variables_take_the_earliest_value_and_leave_the_variables(tmp_path):
    text = "id,time,variable,value\n1,3,Weight,80\n1,1,Weight,82\n1,1,Weight,84\n1,2,HR,70\n2,0,HR,60\n"
    ds = read_long_csv(write(tmp_path / "d.csv", text), static_variables=["Weight", "Height"],
                       allow_missing_variables=True)
    assert ds.variables == ["HR"]
    assert ds.static_names == ["Weight", "Height"]
    np.testing.assert_array_equal(ds.static[0], [83.0, np.nan])  # mean of the two at 1 h
    np.testing.assert_array_equal(ds.static[1], [np.nan, np.nan])


def test_a_misspelt_static_column_of_a_wide_file_is_named_with_the_close_name(tmp_path):
    p = write(tmp_path / "w.csv", "id,time,HR,Age\n1,0,80,50\n")
    with pytest.raises(DataError, match=r"missing static column \(data.static_variables\) 'Agee' \(did you mean "
                                        r"'Age'\?\)"):
        read_wide_csv(p, static_variables=["Agee"])
    with pytest.raises(DataError, match=r"missing variable column 'hr' \(did you mean 'HR'\?\)"):
        read_wide_csv(p, variables=["hr"])


def test_a_static_variable_the_long_file_never_holds_is_an_error_with_the_close_name(tmp_path):
    """A typo in data.static_variables would otherwise train on an all-NaN static feature."""
    text = "id,time,variable,value\n1,0,Age,54\n1,1,HR,70\n2,0,Age,61\n2,0,HR,60\n"
    with pytest.raises(DataError, match=r"d\.csv.*'age' \(did you mean 'Age'\?\) never appear in column 'variable'"):
        read_long_csv(write(tmp_path / "d.csv", text), static_variables=["age"])
    with pytest.raises(DataError, match=r"'Height' never appear"):
        read_long_csv(tmp_path / "d.csv", static_variables=["Age", "Height"])


def test_max_hours_drops_rows_after_the_window(tmp_path):
    ds = read_long_csv(write(tmp_path / "d.csv", LONG), static_variables=["Age"], max_hours=1.5)
    np.testing.assert_array_equal(ds[0].times, [0.0, 1.5])
    assert ds.variables == ["HR", "Temp"]
    with pytest.raises(DataError, match="max_hours"):
        read_long_csv(tmp_path / "d.csv", max_hours=-1)


# ---------------------------------------------------------------- time units
@pytest.mark.parametrize(
    "unit, scale",
    [("h", 1.0), ("min", 60.0), ("s", 3600.0), ("d", 1 / 24)],
)
def test_every_numeric_time_unit_becomes_hours(tmp_path, unit, scale):
    hours = [0.0, 0.5, 2.0, 48.0]
    rows = "".join(f"1,{h * scale!r},HR,{i}\n" for i, h in enumerate(hours))
    ds = read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n" + rows), time_unit=unit)
    np.testing.assert_allclose(ds.times, hours, rtol=1e-12, atol=1e-9)


def test_datetime_strings_are_detected_with_the_default_unit(tmp_path):
    text = (
        "id,time,variable,value\n"
        "1,2021-03-04 23:30,HR,1\n1,2021-03-05 01:00,HR,2\n"
        "2,2021-03-01T08:00:00,HR,3\n2,2021-03-01T08:15:00,HR,4\n"
    )
    p = write(tmp_path / "d.csv", text)
    auto = read_long_csv(p)
    np.testing.assert_allclose(auto.times, [0.0, 1.5, 0.0, 0.25])
    assert_same(auto, read_long_csv(p, time_unit="datetime"))


def test_elapsed_hh_mm_text_is_read_as_hours(tmp_path):
    ds = read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n1,00:07,HR,1\n1,47:30,HR,2\n"))
    np.testing.assert_allclose(ds.times, [0.0, 47.5 - 7 / 60])


def test_unknown_time_unit_lists_the_allowed_ones(tmp_path):
    with pytest.raises(DataError) as e:
        read_long_csv(write(tmp_path / "d.csv", LONG), time_unit="hours")
    for unit in ("h", "min", "s", "d", "datetime"):
        assert repr(unit) in str(e.value) or unit in str(e.value)
    assert "'hours'" in str(e.value)


def test_unparseable_time_names_the_line(tmp_path):
    p = write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,1\n1,soon,HR,2\n")
    with pytest.raises(DataError) as e:
        read_long_csv(p)
    assert e.value.line == 3 and e.value.column == "time" and "soon" in str(e.value)
    with pytest.raises(DataError) as e:
        read_long_csv(write(tmp_path / "m.csv", "id,time,variable,value\n1,0,HR,1\n1,12:00,HR,2\n"), time_unit="min")
    assert e.value.line == 3 and "minutes" in str(e.value)


def test_empty_time_is_an_error(tmp_path):
    with pytest.raises(DataError, match="empty time") as e:
        read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,1\n1,,HR,2\n"))
    assert e.value.line == 3


# ---------------------------------------------------------------- errors that name file, line, column
def test_bad_value_names_file_line_and_column(tmp_path):
    p = write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,80\n\n1,1,HR,eighty\n")
    with pytest.raises(DataError) as e:
        read_long_csv(p)
    msg = str(e.value)
    assert str(p) in msg and "line 4" in msg and "'value'" in msg and "eighty" in msg
    assert (e.value.line, e.value.column) == (4, "value")


def test_infinite_value_is_refused_with_its_line(tmp_path):
    with pytest.raises(DataError, match="infinite") as e:
        read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,80\n1,1,HR,inf\n"))
    assert e.value.line == 3


def test_missing_column_lists_the_available_ones(tmp_path):
    p = write(tmp_path / "d.csv", "patient,time,variable,value\n1,0,HR,80\n")
    with pytest.raises(DataError) as e:
        read_long_csv(p)
    msg = str(e.value)
    assert "'id'" in msg and "'patient'" in msg and str(p) in msg
    read_long_csv(p, id_column="patient")  # naming it works


def test_empty_file_and_header_only_file(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_long_csv(write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="no rows"):
        read_long_csv(write(tmp_path / "h.csv", "id,time,variable,value\n\n"))


def test_ragged_row_names_its_line(tmp_path):
    with pytest.raises(DataError, match="fields") as e:
        read_long_csv(write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,80\n1,1,HR\n"))
    assert e.value.line == 3
    with pytest.raises(DataError, match="fields") as e:
        read_long_csv(write(tmp_path / "q.csv", 'id,time,variable,value\n1,0,"H,R",80\n1,1,HR,80,9\n'))
    assert e.value.line == 3


def test_binary_garbage_is_refused(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match="binary"):
        read_long_csv(p)


def test_encodings_bom_latin1_and_utf16(tmp_path):
    text = "id,time,variable,value\n1,0,Température,37\n"
    for enc in ("utf-8-sig", "latin-1", "utf-16"):
        ds = read_long_csv(write(tmp_path / f"{enc}.csv", text, enc))
        assert ds.variables == ["Température"], enc


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, sep):
    ds = read_long_csv(write(tmp_path / "d.csv", LONG.replace(",", sep)), static_variables=["Age"])
    assert_same(ds, read_long_csv(write(tmp_path / "c.csv", LONG), static_variables=["Age"]))


def test_decimal_comma_error_gives_a_hint(tmp_path):
    with pytest.raises(DataError, match="decimal comma") as e:
        read_long_csv(write(tmp_path / "d.csv", "id;time;variable;value\n1;0;Temp;37,5\n"))
    assert e.value.line == 2


# ---------------------------------------------------------------- labels
def test_labels_from_a_path_and_from_a_dataframe(tmp_path, caplog):
    data = write(tmp_path / "d.csv", LONG)
    lab = write(tmp_path / "y.csv", "patient,died\nb,1\na,0\nzz,1\n")
    caplog.set_level(logging.INFO)
    ds = read_long_csv(data, labels=lab, label_column="died", label_id_column="patient")
    np.testing.assert_array_equal(ds.labels, [0, 1])
    assert "1 labels row(s) match no series" in caplog.text
    frame = pd.DataFrame({"id": ["a"], "label": [1]})
    ds2 = read_long_csv(data, labels=frame)
    np.testing.assert_array_equal(ds2.labels, [1, np.nan])  # b has no label row
    assert ds2.label(1) is None


def test_label_conflicts_and_missing_label_columns_are_errors(tmp_path):
    data = write(tmp_path / "d.csv", LONG)
    with pytest.raises(DataError, match="has label") as e:
        read_long_csv(data, labels=write(tmp_path / "y.csv", "id,label\na,0\nb,1\na,1\n"))
    assert e.value.line == 4
    read_long_csv(data, labels=write(tmp_path / "ok.csv", "id,label\na,0\na,0\n"))  # same label twice is fine
    with pytest.raises(DataError, match="'label'") as e:
        read_long_csv(data, labels=write(tmp_path / "n.csv", "id,outcome\na,0\n"))
    assert "outcome" in str(e.value)
    with pytest.raises(DataError, match="label"):
        read_long_csv(data, labels=pd.DataFrame({"id": ["a"], "y": [1]}))
    with pytest.raises(DataError, match="expected a number"):
        read_long_csv(data, labels=pd.DataFrame({"id": ["a"], "label": ["dead"]}))


def test_integer_ids_in_a_label_dataframe_match(tmp_path):
    data = write(tmp_path / "d.csv", "id,time,variable,value\n132539,0,HR,1\n7,0,HR,2\n")
    ds = read_long_csv(data, labels=pd.DataFrame({"id": [132539.0, 7.0], "label": [1, 0]}))
    np.testing.assert_array_equal(ds.labels, [0, 1])


# ---------------------------------------------------------------- prediction-time variables
def test_unknown_variables_at_prediction_are_aligned_to_training(tmp_path, caplog):
    train = read_long_csv(write(tmp_path / "t.csv", LONG), static_variables=["Age"])
    new = read_long_csv(
        write(tmp_path / "p.csv", "id,time,variable,value\nc,0,HR,75\nc,1,SpO2,97\nc,0,Age,70\n"),
        static_variables=["Age"],
    )
    assert new.variables == ["HR", "SpO2"]
    with caplog.at_level(logging.WARNING):
        aligned = new.align(train.variables, train.static_names)
    assert "SpO2" in caplog.text
    assert aligned.variables == ["HR", "Temp"]
    # the step at 1 h held only SpO2: it goes too, as a training read never has a step without a variable
    np.testing.assert_array_equal(aligned.values, [[75, np.nan]])
    without = read_long_csv(write(tmp_path / "q.csv", "id,time,variable,value\nc,0,HR,75\nc,0,Age,70\n"),
                            static_variables=["Age"]).align(train.variables, train.static_names)
    np.testing.assert_array_equal(aligned.times, without.times)
    np.testing.assert_array_equal(aligned.offsets, without.offsets)
    np.testing.assert_array_equal(aligned.static, [[70]])


# ---------------------------------------------------------------- value ranges
def test_value_ranges_drop_impossible_values_and_log_counts(tmp_path, caplog):
    text = "id,time,variable,value\n1,0,pH,7.4\n1,1,pH,735\n1,2,Temp,0\n1,3,Temp,37\n1,4,HR,-5\n1,5,HR,0\n1,6,HR,60\n"
    p = write(tmp_path / "d.csv", text)
    caplog.set_level(logging.INFO)
    ds = read_long_csv(p, value_ranges="physionet2012")
    col = {v: ds.values[:, j] for j, v in enumerate(ds.variables)}
    assert np.nansum(~np.isnan(col["pH"])) == 1 and np.nanmax(col["pH"]) == pytest.approx(7.4)
    assert np.count_nonzero(~np.isnan(col["Temp"])) == 1
    assert np.count_nonzero(~np.isnan(col["HR"])) == 1
    assert ds.meta["out_of_range"] == {"HR": 2, "Temp": 1, "pH": 1}
    assert "1 of 2 'pH'" in caplog.text and "2 of 3 'HR'" in caplog.text
    raw = read_long_csv(p)  # no table: nothing dropped
    assert np.count_nonzero(~np.isnan(raw.values)) == 7


def test_a_range_table_that_matches_no_variable_or_a_misspelt_row_is_warned(tmp_path, caplog):
    """The PhysioNet table on MIMIC-style names checked nothing, and a typo row was dropped, silently."""
    p = write(tmp_path / "d.csv", "id,time,variable,value\n1,0,Heart Rate,80\n1,1,Heart Rate,900\n1,2,SpO2,97\n")
    caplog.set_level(logging.INFO)
    read_long_csv(p, value_ranges="physionet2012", cache=False)
    assert "none of the table's" in caplog.text and "no value is checked" in caplog.text
    caplog.clear()
    d = read_long_csv(p, value_ranges={"Heart Rat": (0, 300), "SpO2": (0, 100)}, cache=False)
    assert "row(s) 'Heart Rat' match no variable; did you mean 'Heart Rate'?" in caplog.text
    assert np.count_nonzero(~np.isnan(d.values)) == 3  # the typo row checked nothing
    caplog.clear()
    read_long_csv(p, value_ranges={"Heart Rate": (0, 300), "Lactate": (0, 30)}, cache=False)
    assert "match no variable" not in caplog.text and "none of the table" not in caplog.text  # absent: normal


def test_value_ranges_from_a_dict_and_an_editable_csv(tmp_path):
    p = write(tmp_path / "d.csv", "id,time,variable,value\n1,0,X,0\n1,1,X,5\n1,2,X,10\n1,3,Y,-1\n")
    d = read_long_csv(p, value_ranges={"X": (0, 10)})
    assert np.count_nonzero(~np.isnan(d.values[:, 0])) == 3
    table = write(tmp_path / "r.csv", "variable,min,max,min_inclusive,max_inclusive\nX,0,10,false,false\nY,0,,true,\n")
    d = read_long_csv(p, value_ranges=table)
    np.testing.assert_array_equal(d.values[:, 0][~np.isnan(d.values[:, 0])], [5])
    assert d.meta["out_of_range"] == {"X": 2, "Y": 1}
    with pytest.raises(DataError, match="neither a built-in"):
        read_long_csv(p, value_ranges="no_such_table")
    with pytest.raises(DataError, match="expected a number") as e:
        read_long_csv(p, value_ranges=write(tmp_path / "bad.csv", "variable,min,max\nX,low,1\n"))
    assert e.value.line == 2 and e.value.column == "min"


def test_builtin_physionet_table_refuses_impossible_values_only():
    r = load_value_ranges("physionet2012")
    inside = lambda name, x: (  # noqa: E731
        (r[name].min is None or x > r[name].min or (x == r[name].min and r[name].min_inclusive))
        and (r[name].max is None or x < r[name].max or (x == r[name].max and r[name].max_inclusive))
    )
    assert not inside("pH", 14.5) and inside("pH", 7.0) and inside("pH", 7.8)
    for name in ("Temp", "HR", "Weight"):
        assert not inside(name, 0.0) and not inside(name, -1.0)
    assert inside("Temp", 32.0) and inside("HR", 220) and inside("Weight", 250)
    for name in ("Glucose", "K", "Na", "Creatinine", "HCT", "Platelets", "WBC", "Lactate"):
        assert not inside(name, -1.0), name
    assert inside("Glucose", 1100) and inside("K", 9.0) and inside("GCS", 3) and not inside("GCS", 2)


# ---------------------------------------------------------------- wide format
WIDE = """id,time,HR,Temp,Age
a,0,80,,61
a,1.5,90,37.5,
a,3,,38.1,
b,2,70,,40
b,2.5,,36.9,
b,4,,,
"""


def test_wide_matches_long(tmp_path):
    wide = read_wide_csv(write(tmp_path / "w.csv", WIDE), static_variables=["Age"])
    assert_same(wide, read_long_csv(write(tmp_path / "l.csv", LONG), static_variables=["Age"]))
    assert wide.meta["kind"] == "wide"


def test_wide_variables_subset_and_missing_variable_column(tmp_path):
    p = write(tmp_path / "w.csv", WIDE)
    ds = read_wide_csv(p, variables=["Temp"])
    assert ds.variables == ["Temp"] and ds.static_names == []
    with pytest.raises(DataError, match="'SpO2'") as e:
        read_wide_csv(p, variables=["SpO2"])
    assert "'HR'" in str(e.value)


def test_wide_bad_cell_names_line_and_column(tmp_path):
    with pytest.raises(DataError) as e:
        read_wide_csv(write(tmp_path / "w.csv", "id,time,HR,Temp\n1,0,80,37\n1,1,80,hot\n"))
    assert (e.value.line, e.value.column) == (3, "Temp")


def test_wide_row_of_empty_cells_still_sets_time_zero(tmp_path):
    ds = read_wide_csv(write(tmp_path / "w.csv", "id,time,HR\n1,1,\n1,3,80\n"))
    np.testing.assert_array_equal(ds.times, [2.0])


# ---------------------------------------------------------------- PhysioNet 2012 (synthetic)
STAY_1 = """Time,Parameter,Value
00:00,RecordID,900001
00:00,Age,54
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,4
00:00,Weight,-1
00:07,HR,73
00:07,Temp,35.1
00:07,Weight,80
00:37,HR,77
00:37,HR,79
01:30,pH,735
47:59,HR,90
"""
STAY_2 = """Time,Parameter,Value
00:00,RecordID,900002
00:00,Age,70
00:00,Gender,1
00:00,Height,170.2
00:00,ICUType,2
00:00,Weight,-1
"""
STAY_3 = """Time,Parameter,Value
00:00,RecordID,900003
00:00,Age,40
00:00,Gender,-1
00:00,Height,-1
00:00,ICUType,3
00:00,Weight,65
02:00,Glucose,110
"""
OUTCOMES = """RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
900001,6,1,5,-1,0
900002,16,8,8,3,1
900003,21,11,19,-1,0
"""


def make_tar(path: Path, stays: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in stays.items():
            data = text.encode()
            info = tarfile.TarInfo(f"set-x/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def physionet(tmp_path):
    stays = {"900001.txt": STAY_1, "900002.txt": STAY_2, "900003.txt": STAY_3}
    tar = make_tar(tmp_path / "set-x.tar.gz", stays)
    folder = tmp_path / "set-x"
    folder.mkdir()
    for name, text in stays.items():
        write(folder / name, text)
    return tar, folder, write(tmp_path / "Outcomes-x.txt", OUTCOMES)


def test_physionet_reader_semantics(physionet):
    tar, _, outcomes = physionet
    ds = read_physionet2012(tar, outcomes)
    assert ds.ids == ["900001", "900002", "900003"]
    assert ds.static_names == ["Age", "Gender", "Height", "ICUType"]
    assert ds.variables == ["Glucose", "HR", "Temp", "Weight", "pH"]
    for forbidden in ("SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death", "RecordID"):
        assert forbidden not in ds.variables + ds.static_names
    np.testing.assert_array_equal(ds.labels, [0, 1, 0])
    np.testing.assert_array_equal(ds.static[0], [54, 0, np.nan, 4])  # Height -1 -> NaN
    np.testing.assert_array_equal(ds.static[2], [40, np.nan, np.nan, 3])  # Gender -1 -> NaN
    s1 = ds[0]
    np.testing.assert_allclose(s1.times, [7 / 60, 37 / 60, 47 + 59 / 60])  # pH 735 dropped: no 01:30 step
    hr, weight = ds.variables.index("HR"), ds.variables.index("Weight")
    np.testing.assert_allclose(s1.values[:, hr], [73, 78, 90])
    assert s1.values[0, weight] == 80
    assert ds.lengths[1] == 0  # stay 2 has no time-varying measurement (Weight -1)
    s3 = ds[2]
    np.testing.assert_allclose(s3.times, [0.0, 2.0])  # Weight 65 at admission is a measurement
    assert ds.meta["kind"] == "physionet2012" and ds.meta["out_of_range"] == {"pH": 1}


def test_physionet_folder_equals_archive_and_max_hours(physionet):
    tar, folder, outcomes = physionet
    assert_same(read_physionet2012(tar, outcomes), read_physionet2012(folder, outcomes))
    short = read_physionet2012(tar, max_hours=24)
    assert short.labels is None
    assert short[0].times.max() < 24


def test_physionet_bad_value_names_member_line_and_column(tmp_path):
    tar = make_tar(tmp_path / "bad.tar.gz", {"1.txt": STAY_2, "2.txt": STAY_3.replace("02:00,Glucose,110", "02:00,Glucose,high")})
    with pytest.raises(DataError) as e:
        read_physionet2012(tar)
    assert "2.txt" in str(e.value) and e.value.line == 8 and e.value.column == "Value"
    tar = make_tar(tmp_path / "t.tar.gz", {"2.txt": STAY_3.replace("02:00,", "2h,")})
    with pytest.raises(DataError, match="HH:MM") as e:
        read_physionet2012(tar)
    assert e.value.line == 8 and e.value.column == "Time"
    tar = make_tar(tmp_path / "h.tar.gz", {"2.txt": "RecordID,SAPS-I\n1,2\n"})
    with pytest.raises(DataError, match="Time,Parameter,Value") as e:
        read_physionet2012(tar)
    assert e.value.line == 1
    with pytest.raises(DataError, match="not found"):
        read_physionet2012(tmp_path / "nope")


def test_physionet_blank_lines_and_crlf_are_tolerated(tmp_path, physionet):
    tar, _, _ = physionet
    odd = make_tar(
        tmp_path / "odd.tar.gz",
        {
            "900001.txt": STAY_1.replace("\n", "\r\n").replace("00:37,HR,77\r\n", "00:37,HR,77\r\n\r\n"),
            "900002.txt": STAY_2,
            "900003.txt": STAY_3.rstrip("\n"),
        },
    )
    assert_same(read_physionet2012(tar), read_physionet2012(odd))


def test_physionet_to_csv_script_round_trips(tmp_path, physionet):
    tar, _, outcomes = physionet
    out, labels = tmp_path / "long.csv", tmp_path / "labels.csv"
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "physionet_to_csv.py"), str(tar), str(out),
         "--outcomes", str(outcomes), "--labels-out", str(labels)],
        capture_output=True, text=True, check=False,
    )
    assert r.returncode == 0, r.stderr
    head = out.read_text().splitlines()[0]
    assert head == "id,time,variable,value"
    again = read_long_csv(out, static_variables=["Age", "Gender", "Height", "ICUType"], labels=labels,
                          value_ranges="physionet2012")
    assert_same(read_physionet2012(tar, outcomes), again)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    other = tmp_path / "Outcomes-other.txt"  # another set's outcomes: no RecordID matches
    text = outcomes.read_text().splitlines()
    other.write_text("\n".join([text[0]] + ["9" + line for line in text[1:]]) + "\n")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "physionet_to_csv.py"), str(tar), str(tmp_path / "x.csv"),
                        "--outcomes", str(other), "--labels-out", str(tmp_path / "y.csv")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "no RecordID of" in r.stderr and not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- against a plain-Python reference
def reference_long(rows, static):
    """The documented semantics, written the slow obvious way."""
    out = {}
    for sid in {r[0] for r in rows}:
        mine = [r for r in rows if r[0] == sid]
        t0 = min(r[1] for r in mine)
        cells, first_static = {}, {}
        for _, t, var, val in mine:
            if val is None:
                continue
            if var in static:
                first_static.setdefault(var, []).append((t - t0, val))
            else:
                cells.setdefault((t - t0, var), []).append(val)
        steps = sorted({t for t, _ in cells})
        st = {}
        for var, obs in first_static.items():
            tmin = min(t for t, _ in obs)
            vals = [v for t, v in obs if t == tmin]
            st[var] = sum(vals) / len(vals)
        out[sid] = (steps, {k: sum(v) / len(v) for k, v in cells.items()}, st)
    return out


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

row_strategy = st.tuples(
    st.sampled_from(["p1", "p2", "p3"]),
    st.integers(0, 12).map(lambda x: x / 4),
    st.sampled_from(["HR", "Temp", "Age"]),
    st.one_of(st.none(), st.integers(-5, 100)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row_strategy, min_size=1, max_size=25))
def test_long_reader_matches_the_reference_semantics(tmp_path, rows):
    text = "id,time,variable,value\n" + "".join(
        f"{i},{t},{v},{'' if x is None else x}\n" for i, t, v, x in rows
    )
    path = write(tmp_path / "h.csv", text)
    if all(v == "Age" for _, _, v, _ in rows):
        with pytest.raises(DataError, match="no time-varying variables"):
            read_long_csv(path, static_variables=["Age"], cache=False)
        return
    if not any(v == "Age" for _, _, v, _ in rows):
        with pytest.raises(DataError, match="'Age' never appear"):
            read_long_csv(path, static_variables=["Age"], cache=False)
    ds = read_long_csv(path, static_variables=["Age"], allow_missing_variables=True, cache=False)
    ref = reference_long(rows, {"Age"})
    assert ds.ids == sorted(ref)
    assert ds.variables == sorted({v for _, _, v, _ in rows} - {"Age"})
    for k, sid in enumerate(ds.ids):
        steps, cells, static = ref[sid]
        s = ds[k]
        np.testing.assert_array_equal(s.times, steps)
        for j, var in enumerate(ds.variables):
            expect = [cells.get((t, var), np.nan) for t in steps]
            np.testing.assert_allclose(s.values[:, j], expect, rtol=1e-6)
        np.testing.assert_allclose(ds.static[k], [static.get("Age", np.nan)], rtol=1e-6)


# ---------------------------------------------------------------- session 12: a user's pass over wide CSVs
def test_a_wide_files_label_column_is_never_an_input_unless_listed(tmp_path, caplog):
    p = write(tmp_path / "w.csv", "id,time,HR,label\n1,0,80,1\n1,1,82,1\n2,0,70,0\n")
    with caplog.at_level(logging.INFO):
        ds = read_wide_csv(p, labels=p, cache=False)
    assert ds.variables == ["HR"] and list(ds.labels) == [1.0, 0.0]
    assert "is the label column" in caplog.text
    assert read_wide_csv(p, variables=["HR", "label"], cache=False).variables == ["HR", "label"]
    assert read_wide_csv(p, label_column="outcome", cache=False).variables == ["HR", "label"]  # not the label


def test_date_times_are_read_in_one_format_per_column(tmp_path, caplog):
    """Day-first and month-first in one column must not both be read: one odd value is an error."""
    mixed = write(tmp_path / "m.csv", "id,time,HR\n1,12/03/2023 23:00,80\n1,13/03/2023 01:00,81\n"
                                      "2,2023-03-01 10:00,80\n2,01/03/2023 11:00,82\n")
    with pytest.raises(DataError, match=r"m.csv, line 4, column 'time': expected a date-time like the other rows"):
        read_wide_csv(mixed, cache=False)
    day_first = write(tmp_path / "d.csv", "id,time,HR\n1,12/03/2023 23:00,80\n1,13/03/2023 01:00,81\n")
    assert list(read_wide_csv(day_first, cache=False).times) == [0.0, 2.0]  # 13/03 can only be day-first
    iso = write(tmp_path / "i.csv", "id,time,HR\n1,2023-03-02 23:00,80\n1,2023-03-03T01:00:00Z,81\n1,2023-03-03,82\n")
    assert list(read_wide_csv(iso, cache=False).times) == [0.0, 1.0, 2.0]  # forms of ISO 8601 mix
    both = write(tmp_path / "b.csv", "id,time,HR\n1,02/03/2023 23:00,80\n1,03/03/2023 01:00,81\n")
    with caplog.at_level(logging.WARNING):
        read_wide_csv(both, cache=False)
    assert "read as %m/%d/%Y %H:%M (2023-02-03); they read in another day/month order too" in caplog.text
    assert "b.csv" in caplog.text
    # two-digit years, which pandas cannot guess a format for: still one order for the column
    short = write(tmp_path / "s.csv", "id,time,HR\n1,12/03/23 10:00,80\n1,13/03/23 10:00,81\n1,11/03/23 10:00,82\n")
    assert list(read_wide_csv(short, cache=False).times) == [0.0, 24.0, 48.0]  # 11, 12, 13 March
    caplog.clear()
    iso = write(tmp_path / "j.csv", "id,time,HR\n1,2023-03-02 10:00,80\n1,2023-03-03 10:00,81\n")
    with caplog.at_level(logging.WARNING):
        assert list(read_wide_csv(iso, cache=False).times) == [0.0, 24.0]
    assert "day/month order" not in caplog.text  # ISO dates are not ambiguous
    # more distinct values than the sample a format is chosen on: the 13th of March comes late
    stamps = pd.date_range("2023-03-01", periods=20000, freq="min")
    rows = "".join(f"1,{t.strftime('%d/%m/%Y %H:%M')},80\n" for t in stamps)
    long = write(tmp_path / "l.csv", "id,time,HR\n" + rows)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        times = read_wide_csv(long, cache=False).times
    assert len(times) == 20000 and times[-1] == pytest.approx(19999 / 60) and "day/month" not in caplog.text


def test_label_matching_is_logged_from_the_cache_and_named_in_the_error(tmp_path, monkeypatch, caplog):
    from grud.data.readers import missing_labels_reason

    monkeypatch.setenv("GRUD_CACHE_DIR", str(tmp_path / "cache"))
    data = write(tmp_path / "w.csv", "id,time,HR\n1,0,80\n2,0,70\n3,0,75\n")
    padded = write(tmp_path / "lab.csv", "id,label\n001,1\n002,0\n003,1\n")
    for attempt in range(2):  # the second read comes from the cache
        caplog.clear()
        with caplog.at_level(logging.INFO):
            ds = read_wide_csv(data, labels=padded)
        assert "no labels id matches a series id (series ids look like '1', labels ids like '001')" in caplog.text
        assert ("from cache" in caplog.text) == (attempt == 1)
    assert "none of the 3 rows of" in missing_labels_reason(ds) and "'001'" in missing_labels_reason(ds)
    partial = write(tmp_path / "lab2.csv", "id,label\n1,1\n02,0\n3,1\n")
    with caplog.at_level(logging.WARNING):
        read_wide_csv(data, labels=partial, cache=False)
    assert "2 of 3 series labelled; 1 labels row(s) match no series (an unlabelled series id: '2'" in caplog.text
    # an id that is in the labels file with an empty cell is not an id written otherwise: no id hint
    blank = write(tmp_path / "lab3.csv", "id,label\n1,1\n2,\n3,1\n9,0\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        read_wide_csv(data, labels=blank, cache=False)
    assert "2 of 3 series labelled; 1 series with an empty label cell; 1 labels row(s) match no series" in caplog.text
    assert "written alike" not in caplog.text and "WARNING" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a blank beside a real mismatch: the example is the mismatch
        read_wide_csv(write(tmp_path / "w4.csv", "id,time,HR\n1,0,80\n2,0,70\n3,0,75\n4,0,1\n"), labels=blank,
                      cache=False)
    assert "an unlabelled series id: '4'" in caplog.text


def test_prediction_reads_a_wide_file_without_a_training_column_as_unobserved(tmp_path):
    p = write(tmp_path / "w.csv", "id,time,HR,Age\n1,0,80,50\n1,1,82,50\n")
    with pytest.raises(DataError, match="'SBP'"):
        read_wide_csv(p, variables=["HR", "SBP"], static_variables=["Age"], cache=False)
    ds = read_wide_csv(p, variables=["HR", "SBP"], static_variables=["Age", "Height"], allow_missing_variables=True,
                       cache=False)
    assert ds.variables == ["HR"] and ds.static_names == ["Age"]
    aligned = ds.align(["HR", "SBP"], ["Age", "Height"])
    assert np.isnan(aligned.values[:, 1]).all() and np.isnan(aligned.static[:, 1]).all()


def test_prediction_never_parses_a_wide_column_the_model_does_not_know(tmp_path, caplog):
    """One text cell in a column unknown to training stopped the whole prediction."""
    from grud.cli.inference import prediction_data_options

    p = write(tmp_path / "w.csv", "id,time,HR,Note,Age\n1,0,80,pending,50\n1,1,82,,50\n")
    with pytest.raises(DataError, match=r"line 2, column 'Note': expected a number, got 'pending' \(every column but "
                                        r"the id, time and label columns is read as a variable: .*data\.variables="):
        read_wide_csv(p, static_variables=["Age"], cache=False)
    trained = {"kind": "csv_wide", "id_column": "id", "time_column": "time", "variables": None,
               "static_variables": ["Age"]}
    opts = prediction_data_options(trained, {"path": str(p)}, {"path"}, False, trained_variables=["HR", "SBP"])
    assert opts["variables"] == ["HR", "SBP"] and opts["allow_missing_variables"]
    with caplog.at_level(logging.WARNING):
        ds = read_wide_csv(p, **{k: v for k, v in opts.items() if k not in ("kind", "path")}, cache=False)
    assert ds.variables == ["HR"] and ds.static_names == ["Age"]
    assert "1 column(s) the model was not trained on, not read: 'Note'" in caplog.text
    # data.variables given at prediction is the user's choice
    explicit = prediction_data_options(trained, {"path": str(p), "variables": ["HR"]}, {"path", "variables"}, False,
                                       trained_variables=["HR", "SBP"])
    assert explicit["variables"] == ["HR"]


def test_minute_offsets_read_as_hours_are_warned_about(tmp_path, caplog):
    """eICU-style minute offsets without time_unit made series span months of 'hours', silently."""
    rows = "".join(f"{i},{t},{80 + t % 7}\n" for i in range(5) for t in range(0, 4320 * 2, 360))
    p = write(tmp_path / "offsets.csv", "stay,offset,HR\n" + rows)
    with caplog.at_level(logging.WARNING):
        read_wide_csv(p, id_column="stay", time_column="offset", cache=False)
    assert "make the median series span 8280 hours (345 days); if they are minutes or seconds, set " \
           "data.time_unit=min" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds = read_wide_csv(p, id_column="stay", time_column="offset", time_unit="min", cache=False)
    assert ds.times.max() == 8280 / 60 and "median series span" not in caplog.text
    days = write(tmp_path / "dates.csv", "stay,when,HR\n1,2024-01-01,80\n1,2024-06-01,81\n")
    with caplog.at_level(logging.WARNING):
        read_wide_csv(days, id_column="stay", time_column="when", cache=False)  # real dates: real hours
    assert "median series span" not in caplog.text


def test_a_text_value_in_a_long_file_names_its_variable_and_the_rule_for_codes(tmp_path):
    """eICU-style statics as text ('Female') said only 'column value: expected a number'; text codes
    are read for categorical_static variables only, so a typo in a numeric static (Age '>89') stays
    an error naming its line, not a silent switch of Age to codes."""
    p = write(tmp_path / "l.csv", "id,time,variable,value\n1,0,HR,80\n1,0,Gender,Female\n2,0,HR,high\n"
                                  "3,0,Gender,Male\n")
    with pytest.raises(DataError, match=r"l\.csv, line 3, column 'value': expected a number, got 'Female' \(static "
                                        r"variable 'Gender': a number, unless it is a code; codes held as text such "
                                        r"as 'F' / 'M' are read for the variables listed in categorical_static"):
        read_long_csv(p, static_variables=["Gender"], cache=False)
    with pytest.raises(DataError, match=r"l\.csv, line 4, column 'value': expected a number, got 'high' "
                                        r"\(variable 'HR'\)"):
        read_long_csv(p, static_variables=["Gender"], categorical_static=["Gender"], cache=False)
    with pytest.raises(DataError, match=r"line 3, column 'value': expected a number, got 'Female' \(variable 'Gender'; "
                                        r"a per-series code held as text may be read as a static variable: list it in "
                                        r"static_variables and categorical_static\)"):
        read_long_csv(p, cache=False)
    with pytest.raises(DataError, match=r"got 'Female' \(variable 'Gender'; static_variables lists 'Gendre', which "
                                        r"the file never holds: did you mean 'Gender'\?\)"):
        read_long_csv(p, static_variables=["Gendre"], categorical_static=["Gendre"], cache=False)
    fixed = write(tmp_path / "l2.csv", "id,time,variable,value\n1,0,HR,80\n1,0,Gender,1\n2,0,HR,high\n")
    with pytest.raises(DataError, match=r"line 4, column 'value': expected a number, got 'high' \(variable 'HR'\)"):
        read_long_csv(fixed, static_variables=["Gender"], cache=False)
    with pytest.raises(ConfigError, match=r"categorical_static: 'Unit' not among the static variables \(Gender\)"):
        read_long_csv(fixed, static_variables=["Gender"], categorical_static=["Unit"], cache=False)


def test_a_capped_value_says_to_write_it_as_a_number(tmp_path):
    """eICU's age "> 89" and a lab's "<0.3" were told the rule for text codes, whose advice (list
    the quantity as categorical) led to a second error."""
    p = write(tmp_path / "cap.csv", "id,time,variable,value\n1,0,HR,80\n1,0,Age,> 89\n2,0,HR,90\n2,1,Lactate,<0.3\n")
    hint = (r"\(a value capped by the export: replace it by a number, such as its limit \(90 for '> 89', 0\.3 for "
            r"'<0\.3'\), before reading\)")
    with pytest.raises(DataError, match=rf"line 3, column 'value': expected a number, got '> 89' {hint} "
                                        rf"\(static variable 'Age'\)$"):
        read_long_csv(p, static_variables=["Age"], cache=False)
    with pytest.raises(DataError, match=rf"line 5, column 'value': expected a number, got '<0.3' {hint} "
                                        rf"\(variable 'Lactate'\)$"):
        read_long_csv(p, cache=False, known_variables=None, static_variables=["Age"], categorical_static=["Age"])
    w = write(tmp_path / "capw.csv", "id,time,HR,Age\n1,0,80,> 89\n2,0,90,70\n")
    with pytest.raises(DataError, match=rf"line 2, column 'Age': expected a number, got '> 89' {hint}$"):
        read_wide_csv(w, static_variables=["Age"], cache=False)
    with pytest.raises(DataError, match=rf"line 2, column 'Age': expected a number, got '> 89' {hint}$"):
        read_wide_csv(w, cache=False)  # a time-varying column: not the text-column advice either
    lab = write(tmp_path / "lab.csv", "id,time,variable,value\n1,0,HR,80\n1,1,Lactate,<0.3\n2,1,Lactate,<0.3\n")
    with pytest.raises(DataError, match=rf"got '<0.3' {hint} \(variable 'Lactate'\)$"):
        read_long_csv(lab, cache=False)  # every value capped: not the text-code hint


def test_static_codes_long_and_wide(tmp_path, caplog):
    """A categorical static variable with text values (Gender F / M, a unit's name) is read as the
    index of each value among its sorted distinct texts, the texts in meta; of a code variable the
    earliest row's code is kept, never a mean (disagreeing codes at that time logged), numbers too;
    value ranges do not touch the text positions."""
    p = write(tmp_path / "l.csv", "id,time,variable,value\n1,0,HR,80\n1,0,Gender, M \n2,5,Gender,F\n"
                                  "2,0,HR,90\n2,0,Gender,M\n2,0,Gender,F\n3,0,HR,70\n3,1,Gender,1\n4,0,HR,60\n")
    with caplog.at_level(logging.WARNING):
        ds = read_long_csv(p, static_variables=["Gender"], categorical_static=["Gender"], cache=False,
                           value_ranges={"Gender": (0, 1)})
    assert ds.meta["static_text"] == {"Gender": ["1", "F", "M"]}
    got = ds.static[:, 0]
    assert got[0] == 2 and got[1] == 2 and got[2] == 0 and np.isnan(got[3])  # series 2: M first at time 0
    assert "1 series have different codes of a static variable (Gender)" in caplog.text
    numeric = write(tmp_path / "n.csv", "id,time,variable,value,\n1,0,HR,80\n1,0,ICU,3\n1,0,ICU,1\n1,0,Age,60\n"
                                        "1,0,Age,61\n".replace(",\n", "\n"))
    nds = read_long_csv(numeric, static_variables=["ICU", "Age"], categorical_static=["ICU"], cache=False)
    assert "static_text" not in nds.meta
    np.testing.assert_array_equal(nds.static, [[3, 60.5]])  # a code: the first row's; a quantity: the mean
    w = write(tmp_path / "w.csv", "id,time,HR,unit,age\n1,0,80,MICU,50\n1,1,81,SICU,\n2,0,90,,60\n2,1,91,CCU,\n")
    wds = read_wide_csv(w, static_variables=["unit", "age"], categorical_static=["unit"], cache=False)
    assert wds.meta["static_text"] == {"unit": ["CCU", "MICU", "SICU"]}
    np.testing.assert_array_equal(wds.static, [[1, 50], [0, 60]])  # series 2: its first known unit
    again = read_wide_csv(w, static_variables=["unit", "age"], categorical_static=["unit"])  # cached, read back
    again = read_wide_csv(w, static_variables=["unit", "age"], categorical_static=["unit"])
    assert again.meta["static_text"] == wds.meta["static_text"]
    with pytest.raises(DataError, match=r"line 2, column 'unit': expected a number, got 'MICU' \(static variable "
                                        r"'unit': a number, unless it is a code"):
        read_wide_csv(w, static_variables=["unit", "age"], cache=False)
    with pytest.raises(DataError, match=r"line 2, column 'unit': expected a number, got 'MICU' .*a per-series code "
                                        r"held as text, such as a unit's name, is a static variable"):
        read_wide_csv(w, static_variables=["age"], cache=False)


def test_a_wide_files_first_bad_cell_is_the_first_by_line(tmp_path):
    """A bad cell on line 15 of the first column was named before one on line 2 of a later column."""
    p = write(tmp_path / "w.csv", "id,time,HR,Gender\n1,0,80,Female\n1,1,x,\n")
    with pytest.raises(DataError, match=r"line 2, column 'Gender': expected a number, got 'Female'"):
        read_wide_csv(p, cache=False)


def test_a_text_label_says_labels_are_class_codes(tmp_path):
    """'expected a number, got 'rehab'' did not say that text outcomes must be coded first."""
    data = write(tmp_path / "w.csv", "id,time,HR\n1,0,80\n2,0,70\n")
    labels = write(tmp_path / "lab.csv", "id,label\n1,home\n2,rehab\n")
    with pytest.raises(DataError, match=r"lab\.csv, line 2, column 'label': expected a number, got 'home' \(labels "
                                        r"are numbers: for classification, class codes; map text outcomes to codes "
                                        r"with data\.label_map, e\.g\. data\.label_map=\{Expired:1,Alive:0\}"):
        read_wide_csv(data, labels=labels, cache=False)
    import pandas as pd

    with pytest.raises(DataError, match=r"expected a number, got 'home' \(labels are numbers"):
        read_wide_csv(data, labels=pd.DataFrame({"id": ["1", "2"], "label": ["home", "rehab"]}), cache=False)
    # a map that names one outcome but not the other: the other is the error
    with pytest.raises(DataError, match=r"line 3, column 'label': expected a number, got 'rehab'"):
        read_wide_csv(data, labels=labels, label_map={"home": 0}, cache=False)


@pytest.mark.parametrize("kind", ["long", "wide"])
def test_label_map_reads_text_outcomes_as_class_codes(tmp_path, kind):
    """eICU's hospitaldischargestatus holds 'Alive' / 'Expired', not 0 / 1."""
    import pandas as pd

    if kind == "long":
        data = write(tmp_path / "d.csv", "id,time,variable,value\n1,0,HR,80\n2,0,HR,70\n3,0,HR,75\n4,0,HR,60\n")
        read = read_long_csv
    else:
        data = write(tmp_path / "d.csv", "id,time,HR\n1,0,80\n2,0,70\n3,0,75\n4,0,60\n")
        read = read_wide_csv
    labels = write(tmp_path / "lab.csv", "id,status\n1,Expired\n2, Alive \n3,1\n4,\n")
    ds = read(data, labels=labels, label_column="status", label_map={"Expired": 1, "Alive": 0}, cache=False)
    np.testing.assert_array_equal(ds.labels[:3], [1.0, 0.0, 1.0])  # text mapped, numbers as they are
    assert np.isnan(ds.labels[3])  # an empty cell is still no label
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "status": ["Expired", "Alive", "Alive", None]})
    ds2 = read(data, labels=frame, label_column="status", label_map={"Expired": 1, "Alive": 0}, cache=False)
    np.testing.assert_array_equal(ds2.labels[:3], [1.0, 0.0, 0.0])
    assert np.isnan(ds2.labels[3])
    # the map is part of what is read: the cache does not hand back a read with another map
    a = read(data, labels=labels, label_column="status", label_map={"Expired": 1, "Alive": 0})
    b = read(data, labels=labels, label_column="status", label_map={"Expired": 0, "Alive": 1})
    np.testing.assert_array_equal(a.labels[:2], [1.0, 0.0])
    np.testing.assert_array_equal(b.labels[:2], [0.0, 1.0])


@pytest.mark.parametrize("bad", [{}, ["Expired"], {"Expired": "one"}, {"Expired": True}, {" ": 1}, "Expired"])
def test_a_bad_label_map_is_a_config_error(tmp_path, bad):
    data = write(tmp_path / "d.csv", "id,time,HR\n1,0,80\n")
    with pytest.raises(ConfigError, match="label_map"):
        read_wide_csv(data, label_map=bad, cache=False)


def test_align_names_absent_static_variables_as_static(tmp_path, caplog):
    ds = read_wide_csv(write(tmp_path / "w.csv", "id,time,HR\n1,0,80\n"), cache=False)
    with caplog.at_level(logging.WARNING):
        ds.align(["HR", "Lactate"], ["Age"])
    assert "absent from this data and read as unobserved: training's 1 variable(s): Lactate; 1 static " \
           "variable(s): Age" in caplog.text


def test_prediction_reads_text_values_of_variables_the_model_does_not_know_as_unobserved(tmp_path, caplog):
    """A long file's 'pending' for a variable the model never saw stopped the whole prediction."""
    from grud.cli.inference import prediction_data_options

    p = write(tmp_path / "l.csv", "id,time,variable,value\n1,0,Comment,pending\n1,1,HR,80\n1,2,Age,50\n"
                                  "2,0,HR,70\n2,1,Lactate,high\n")
    trained = {"kind": "csv_long", "static_variables": ["Age"]}
    opts = prediction_data_options(trained, {"path": str(p)}, {"path"}, False, trained_variables=["HR", "SBP"])
    assert opts["known_variables"] == ["HR", "SBP", "Age"]
    reader = {k: v for k, v in opts.items() if k not in ("kind", "path")}
    with caplog.at_level(logging.WARNING):
        ds = read_long_csv(p, **reader, cache=False)
    assert "2 value(s) of variables the model was not trained on are not numbers (e.g. 'pending' for 'Comment', " \
           "line 2): read as unobserved" in caplog.text
    aligned = ds.align(["HR", "SBP"], ["Age"])
    assert aligned.times[aligned.offsets[0]] == 1.0  # series 1's time 0 is still its 'Comment' row
    np.testing.assert_allclose(aligned.static[:, 0], [50, np.nan])
    # a known variable's text is still an error, and without the list every value must be a number
    bad = write(tmp_path / "b.csv", "id,time,variable,value\n1,0,HR,fast\n")
    with pytest.raises(DataError, match=r"line 2, column 'value': expected a number, got 'fast' \(variable 'HR'\)"):
        read_long_csv(bad, **reader, cache=False)
    with pytest.raises(DataError, match=r"got 'pending' \(variable 'Comment'\)"):
        read_long_csv(p, static_variables=["Age"], cache=False)


def test_malformed_text_is_named_by_file_and_line(tmp_path):
    """Four inputs an acceptance pass found escaping with a bare error or the wrong line."""
    # a lone carriage return inside a line of a file with quotes: was Python's _csv.Error
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b'id,time,variable,value\r\n"1",0,HR,80\r1,1,HR,81\r\n')
    with pytest.raises(DataError, match=r"cr\.csv, line 2: cannot parse the file: a carriage return"):
        read_long_csv(cr, cache=False)
    # an unclosed quote in the last column: was pandas' "EOF inside string starting at row 3", no line
    uq = write(tmp_path / "uq.csv", 'id,time,variable,value\n1,0,HR,80\n1,1,HR,"81\n2,0,HR,70\n')
    with pytest.raises(DataError, match=r"uq\.csv, line 3: cannot parse the file: a quote .* is never closed"):
        read_long_csv(uq, cache=False)
    # one bad H:MM time among H:MM times: was blamed on line 2's valid '00:00'
    for bad in ("1:75", "abc", "5"):
        hm = write(tmp_path / "hm.csv", f"id,time,variable,value\n1,00:00,HR,80\n1,01:30,HR,81\n2,00:00,HR,70\n"
                                        f"2,{bad},HR,71\n")
        with pytest.raises(DataError, match=rf"hm\.csv, line 5, column 'time': expected an elapsed time H:MM .* "
                                            rf"got '{bad}'"):
            read_long_csv(hm, cache=False)


def test_a_huge_physionet_time_is_named_by_its_stay_file_and_line(tmp_path):
    """'00:99999999999999999999' raised a bare OverflowError from the fast path."""
    d = tmp_path / "stays"
    d.mkdir()
    (d / "1.txt").write_text("Time,Parameter,Value\n00:00,RecordID,1\n00:07,HR,80\n00:99999999999999999999,HR,90\n")
    with pytest.raises(DataError, match=r"1\.txt, line 4, column 'Time': expected a time HH:MM"):
        read_physionet2012(d, cache=False)


def test_physionet_errors_the_generic_checks_raise_name_the_stay_file_and_line(tmp_path):
    """A value beyond float32 or a row 1e8 hours in named only the folder, then the series: now the
    stay file and line, from the fast path's hand-over to the line reader."""
    for name, row, fragment in (
            ("132", "00:07,Lactate,1e39", r"132\.txt, line 4, column 'Value': value '1e39' of 'Lactate' is too large"),
            ("7", "100000000:00,Age,54", r"7\.txt, line 4, column 'Time': this 'Age' row is 1e\+08 hours after")):
        d = tmp_path / name
        d.mkdir()
        (d / f"{name}.txt").write_text(f"Time,Parameter,Value\n00:00,RecordID,{name}\n00:00,HR,80\n{row}\n")
        with pytest.raises(DataError, match=fragment):
            read_physionet2012(d, cache=False)
    # a window that drops such a late row reads the stay (a value beyond float32 is refused wherever it
    # lies, in a row max_hours or value_ranges would drop too, as the CSV readers refuse it)
    assert len(read_physionet2012(tmp_path / "7", cache=False, max_hours=48)) == 1


@pytest.mark.parametrize("kind", ["long", "wide"])
def test_time_zero_zero_counts_from_the_time_columns_own_zero(tmp_path, kind, caplog):
    """eICU's offsets are minutes from unit admission, with pre-admission labs at negative offsets:
    time 0 must be admission (offset 0), not each stay's earliest row."""
    if kind == "long":
        data = write(tmp_path / "d.csv", "id,offset,variable,value\n1,-120,HR,99\n1,-60,Age,54\n1,0,HR,80\n"
                                         "1,90,HR,82\n2,30,HR,70\n2,-30,Glucose,200\n2,60,Glucose,150\n")
        read = read_long_csv
    else:
        data = write(tmp_path / "d.csv", "id,offset,HR,Glucose,Age\n1,-120,99,,\n1,-60,,,54\n1,0,80,,\n1,90,82,,\n"
                                         "2,30,70,,\n2,-30,,200,\n2,60,,150,\n")
        read = read_wide_csv
    kw = dict(time_column="offset", time_unit="min", static_variables=["Age"], cache=False)
    first = read(data, **kw)
    np.testing.assert_allclose(first.times, [0.0, 2.0, 3.5, 0.0, 1.0, 1.5])  # from each series' earliest row
    with caplog.at_level(logging.INFO, logger="grud"):
        ds = read(data, time_zero="zero", **kw)
    np.testing.assert_allclose(ds.times, [0.0, 1.5, 0.5, 1.0])  # from offset 0; the rows before it are gone
    i, j = ds.variables.index("HR"), ds.variables.index("Glucose")
    np.testing.assert_array_equal(ds.values[:, i][:2], [80.0, 82.0])
    np.testing.assert_array_equal(ds.values[2:, j], [np.nan, 150.0])
    np.testing.assert_array_equal(ds.static[:, 0], [54.0, np.nan])  # a static row before 0 is kept
    assert ds.meta["before_time_zero"] == {"dropped": 2, "series": 2, "measurements": 6}
    assert ds.meta["time_zero"] == "zero"
    assert "2 of 6 time-varying measurement(s), of 2 series, before time 0 dropped" in caplog.text
    # the option is part of the cache key: a cached read under the other option is not handed back
    cached = dict(kw, cache=True)
    np.testing.assert_allclose(read(data, **cached).times, first.times)
    np.testing.assert_allclose(read(data, time_zero="zero", **cached).times, ds.times)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="grud"):
        np.testing.assert_allclose(read(data, time_zero="zero", **cached).times, ds.times)  # from the cache
    assert "2 of 6 time-varying measurement(s), of 2 series, before time 0 dropped" in caplog.text  # said again


def test_time_zero_zero_refuses_date_times_and_unknown_choices(tmp_path):
    data = write(tmp_path / "d.csv", "id,time,variable,value\n1,2021-03-04 13:45,HR,80\n1,2021-03-04 14:45,HR,82\n")
    for unit in ("h", "datetime"):
        with pytest.raises(DataError, match=r"d\.csv, line 2, column 'time': time_zero 'zero' counts from the time "
                                            r"column's own 0, which date-times such as '2021-03-04 13:45' do not have"):
            read_long_csv(data, time_unit=unit, time_zero="zero", cache=False)
    assert len(read_long_csv(data, cache=False).times) == 2  # the default reads them
    with pytest.raises(ConfigError, match=r"time_zero: expected one of earliest, zero .* got 'admission'"):
        read_long_csv(data, time_zero="admission", cache=False)
    late = write(tmp_path / "late.csv", "id,time,variable,value\n1,5,HR,80\n1,2000000,HR,82\n")
    with pytest.raises(DataError, match=r"line 3, column 'time': this row of series '1' is 2e\+06 hours after its "
                                        r"time 0 \(the time column's 0, time_zero zero\)"):
        read_long_csv(late, time_zero="zero", cache=False)


def test_time_zero_zero_with_nothing_after_zero_is_named_and_most_dropped_is_warned(tmp_path, caplog):
    """Offsets of the wrong sign dropped every measurement: training then failed in numpy's min()."""
    neg = write(tmp_path / "neg.csv", "id,offset,variable,value\n1,-5,HR,80\n1,-3,HR,82\n1,0,Age,50\n2,-1,HR,70\n")
    with pytest.raises(DataError, match=r"neg\.csv, column 'offset': time_zero zero: every one of the 3 time-varying "
                                        r"measurements is before time 0 .* in time_unit 'min'"):
        read_long_csv(neg, time_column="offset", time_unit="min", static_variables=["Age"], time_zero="zero",
                      cache=False)
    most = write(tmp_path / "most.csv", "id,offset,variable,value\n1,-5,HR,80\n1,-3,HR,82\n1,2,HR,81\n")
    with caplog.at_level(logging.INFO, logger="grud"):
        ds = read_long_csv(most, time_column="offset", time_zero="zero", cache=False)
    assert len(ds.times) == 1
    assert any(r.levelno == logging.WARNING and "2 of 3 time-varying measurement(s)" in r.getMessage()
               for r in caplog.records)


def test_negative_elapsed_times_read_as_before_time_zero(tmp_path):
    """-H:MM offsets (pre-admission, as elapsed text) were 'expected a number of hours'."""
    data = write(tmp_path / "d.csv", "id,time,variable,value\n1,-1:30,HR,80\n1,00:00,HR,81\n1,2:15,HR,82\n")
    np.testing.assert_allclose(read_long_csv(data, cache=False).times, [0.0, 1.5, 3.75])
    np.testing.assert_allclose(read_long_csv(data, time_zero="zero", cache=False).times, [0.0, 2.25])
