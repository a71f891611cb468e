"""metrics.json writes what a float32 metric holds (0.142, not 0.1420000046491623) and counts as integers."""
from __future__ import annotations

import json
import math

import numpy as np

from grud.cli.metric_values import metric_value, metric_values


def test_a_float32_metric_is_written_as_its_shortest_decimal_and_reads_back_the_same():
    for x in (0.142, 0.8521329, 7.6433e-3, 3.3e-7, 1.0, 0.0, -0.25):
        widened = float(np.float32(x))  # what Lightning hands back for a float32 tensor
        v = metric_value("test/auroc", widened)
        assert np.float32(v) == np.float32(widened)
        assert json.dumps(v) == json.dumps(float(str(np.float32(x))))
    assert json.dumps(metric_value("test/prevalence", 0.1420000046491623)) == "0.142"


def test_counts_are_integers_and_float64_values_keep_every_digit():
    assert json.dumps(metric_values({"test/n": 4000.0, "val/n": 80.0})) == '{"test/n": 4000, "val/n": 80}'
    assert metric_value("test/auroc", 0.123456789) == 0.123456789  # not a float32: kept
    assert metric_value("test/n", 12.5) == 12.5
    assert math.isnan(metric_value("test/mse", float("nan")))
    assert metric_value("test/mse", float("inf")) == float("inf")
