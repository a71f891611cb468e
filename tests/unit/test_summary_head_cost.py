"""scripts/summary_head_cost.py: the three variants are timed on the same batches and reported."""
from __future__ import annotations

import pytest

from conftest import load_script


def test_reports_every_variant_with_its_ratio(capsys):
    script = load_script("summary_head_cost")
    assert script.main(["--series", "40", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 stays, 1 batches of 64")
    for name in ("no summary", "summary precomputed", "summary per batch"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert "ratio to no summary" in line
    assert "ratio to no summary (median of rounds) 1.000" in next(
        line for line in out.splitlines() if line.startswith("no summary"))



@pytest.mark.parametrize("args, key", [(["--rounds", "0"], "--rounds"), (["--threads", "0"], "--threads"),
                                       (["--series", "0"], "--series")])
def test_a_count_below_one_is_a_usage_error_naming_it(args, key, capsys):
    script = load_script("summary_head_cost")
    with pytest.raises(SystemExit) as exc:
        script.main(args)
    assert exc.value.code == 2 and f"{key}: expected >= 1" in capsys.readouterr().err
