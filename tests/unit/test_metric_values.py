"""metrics.json writes what a float32 metric holds (0.142, not 0.1420000046491623), keeps float64
scores whole and writes counts as integers."""
from __future__ import annotations

import json
import math

import numpy as np

from grud.cli.metric_values import metric_value, metric_values


def test_a_float32_metric_is_written_as_its_shortest_decimal_and_reads_back_the_same():
    assert json.dumps(metric_value("test/prevalence", 0.1420000046491623, float32=True)) == "0.142"
    assert json.dumps(metric_value("test/mse", float(np.float32(7.6433e-3)), float32=True)) == "0.0076433"
    assert json.dumps(metric_value("test/x", float(np.float32(3.3e-7)), float32=True)) == "3.3e-07"
    for x in (0.8521329, 1.0, 0.0, -0.25, 123456.79):
        widened = float(np.float32(x))  # what Lightning hands back for a float32 tensor
        assert np.float32(metric_value("test/auroc", widened, float32=True)) == np.float32(widened)


def test_float64_scores_keep_every_digit_and_counts_are_integers():
    assert metric_value("test/prevalence", 77 / 512) == 0.150390625  # exact in float32, yet a float64 score
    assert metric_value("test/auroc", 0.123456789) == 0.123456789
    assert metric_value("test/auroc", 0.1420000046491623) == 0.1420000046491623
    assert json.dumps(metric_values({"test/n": 4000.0, "val/n": 80.0}, float32=True)) == '{"test/n": 4000, "val/n": 80}'
    assert metric_value("test/n", 12.5) == 12.5
    assert math.isnan(metric_value("test/mse", float("nan"), float32=True))
    assert metric_value("test/mse", float("inf"), float32=True) == float("inf")
