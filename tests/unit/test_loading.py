"""grud.data.loading: the entry points' reading of the data group."""
from __future__ import annotations

import pytest

from grud.data.loading import read_dataset
from grud.errors import ConfigError, DataError


def test_a_reader_option_error_names_the_groups_key(tmp_path):
    """`data.time_unit=minutes` said `time_unit: ...`, a key the command line never shows."""
    p = tmp_path / "w.csv"
    p.write_text("id,time,HR\n1,0,80\n")
    with pytest.raises(ConfigError, match=r"^data\.time_unit: expected one of h, min, s, d, datetime, got 'minutes'"):
        read_dataset("csv_wide", p, time_unit="minutes")
    with pytest.raises(ConfigError, match=r"^data\.label_column: expected a column name"):
        read_dataset("csv_long", p, label_column="")
    with pytest.raises(DataError, match=r"missing\.csv: data\.test_path: file not found"):
        read_dataset("csv_wide", tmp_path / "missing.csv", key="data.test_path")
    assert len(read_dataset("csv_wide", p)) == 1


def test_a_list_of_files_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.path: expected one file, got a list of 2 \(a\.csv, b\.csv\); "
                                          r"measurements from several tables go into one long file"):
        read_dataset("csv_long", ["a.csv", "b.csv"])
