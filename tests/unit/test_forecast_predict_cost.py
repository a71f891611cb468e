"""scripts/forecast_predict_cost.py: both variants are timed on the same batches and agree."""
from __future__ import annotations

import re

import pytest

from conftest import load_script


def test_reports_both_variants_with_their_ratio_and_that_they_agree(capsys):
    script = load_script("forecast_predict_cost")
    assert script.main(["--series", "40", "--rounds", "1", "--mc-samples", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    head = re.match(r"40 stays, 1 batches of 256, mc_samples=2, 1 thread\(s\), 1 rounds; "
                    r"the frame keeps (\d+) of (\d+) ", out)
    assert head and 0 < int(head[1]) < int(head[2])
    for name in ("decode every entry", "decode output rows"):
        assert "ratio to decode every entry" in next(line for line in out.splitlines() if line.startswith(name))
    assert "(median of rounds) 1.000" in next(line for line in out.splitlines() if line.startswith("decode every"))
    diff = float(re.search(r"kept rows: (\S+) \(raw units\)", out)[1])
    assert diff < 1e-3
    with pytest.raises(SystemExit):
        script.main(["--rounds", "0"])
