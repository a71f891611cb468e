"""scripts/locf_protocol_variants.py: LOCF's error under the three treatments of an unseen variable."""
from __future__ import annotations

import numpy as np
import pytest

from grud.data.dataset import IrregularDataset, Series
from grud.data.forecast_batching import ForecastDataset
from grud.data.transforms import fit_stats

from conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("locf_protocol_variants")


def test_unseen_variables_are_forecast_with_the_mean_dropped_or_the_minimum(script):
    # series a sees x and y before 24 h; series b never sees y before 24 h (y = 4 at 30 h).
    nan = np.nan
    a = Series("a", np.array([0.0, 10.0, 30.0]), np.array([[0, 0], [2, 2], [4, 2]], np.float32), np.zeros(0))
    b = Series("b", np.array([1.0, 30.0]), np.array([[2, nan], [2, 4]], np.float32), np.zeros(0))
    ds = IrregularDataset.from_series([a, b], ["x", "y"])
    stats = fit_stats(ds)  # x: min 0, max 4; y: min 0, max 4, mean 2
    fd = ForecastDataset(ds, stats, 24.0, 24.0)
    # queries at 30 h: a (x 4 vs last 2, y 2 vs 2), b (x 2 vs 2, y 4 vs unseen); scale 1/4
    sq_a_x = (2 / 4) ** 2
    mean_y = float(stats.value_mean[1])
    expected = {
        "mean": ([sq_a_x / 2, ((4 - mean_y) / 4) ** 2 / 2], sq_a_x + ((4 - mean_y) / 4) ** 2),
        "drop": ([sq_a_x / 2, 0.0], sq_a_x),
        "minimum": ([sq_a_x / 2, (4 / 4) ** 2 / 2], sq_a_x + 1.0),
    }
    for unseen, (per_var, pooled_sum) in expected.items():
        per_variable, pooled = script.locf_errors(fd, stats, unseen)
        assert per_variable == pytest.approx(np.mean(per_var)), unseen
        n_queries = 3 if unseen == "drop" else 4
        assert pooled == pytest.approx(pooled_sum / n_queries), unseen
