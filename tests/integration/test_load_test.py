"""scripts/load_test.py at 1/100 of its size: generates, trains, predicts, reports (no timing asserted)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load_test.py"


def test_load_test_at_one_hundredth_size(tmp_path):
    out = tmp_path / "load"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--scale", "0.01", "--out", str(out), "--hidden-size", "8"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = proc.stdout
    # both figures are printed, with the verdict against the targets
    assert re.search(r"grud-predict wall time +[\d.]+ s +target < 300 s: (met|MISSED)", report), report
    assert re.search(r"grud-predict peak RSS +[\d.]+ GiB +target < 4.00 GiB: (met|MISSED)", report), report
    assert "predictions            complete and valid" in report
    assert "predict:" in proc.stderr, "grud-predict showed no progress bar"

    events = pd.read_csv(out / "events.csv", dtype={"id": str})
    assert list(events.columns) == ["id", "time", "variable", "value"]
    assert events["id"].nunique() == 500
    assert 300 <= len(events) / 500 <= 500  # about 400 rows per series
    first_ids = events["id"].head(200)
    assert not first_ids.is_monotonic_increasing, "rows are not shuffled"
    pred = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    assert sorted(pred["id"]) == sorted(events["id"].unique())
    assert pred["probability"].between(0, 1).all()


def test_load_test_refuses_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--scale", "0.001", "--checkpoint", str(tmp_path / "no.ckpt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no.ckpt: file not found" in proc.stderr


@pytest.mark.parametrize("args, message", [(["--scale", "0"], "--scale: expected a fraction > 0"),
                                           (["--series", "-5"], "--series: expected >= 1"),
                                           (["--train-epochs", "0"], "--train-epochs: expected >= 1")])
def test_load_test_refuses_sizes_that_cannot_run(args, message):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
