"""scripts/static_text_cost.py: both files are read, in processes of their own, and compared."""
from __future__ import annotations

import pytest

from conftest import load_script


def test_reads_both_files_and_reports_the_ratio(capsys):
    script = load_script("static_text_cost")
    assert script.main(["--series", "30", "--rows", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Gender as numbers:") and "(30 series, 150 rows)" in out[0]
    assert out[1].startswith("Gender as text   :") and "(30 series, 150 rows)" in out[1]
    assert out[2].startswith("text / numbers: time ") and "peak memory" in out[2]


def test_a_count_below_one_is_a_usage_error_naming_it(capsys):
    script = load_script("static_text_cost")
    with pytest.raises(SystemExit) as exc:
        script.main(["--rows", "0"])
    assert exc.value.code == 2 and "--rows: expected >= 1" in capsys.readouterr().err
