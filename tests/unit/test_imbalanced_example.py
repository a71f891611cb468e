"""scripts/imbalanced_example.py: the README's small imbalanced export, as grud reads it."""
from __future__ import annotations

import numpy as np

from grud.data.readers import read_wide_csv

from conftest import load_script


def test_the_example_is_400_series_with_12_positives_and_reads_as_a_wide_export(tmp_path):
    script = load_script("imbalanced_example")
    data, labels = script.write_example(tmp_path)
    ds = read_wide_csv(data, labels=labels, static_variables=["Age"], cache=False)
    assert len(ds) == 400 and int(np.nansum(ds.labels)) == 12
    assert ds.variables == ["HR", "SBP"] and ds.static_names == ["Age"]
    assert 0.2 < np.isnan(ds.values).mean() < 0.8  # most rows hold some variables, not all
    again, _ = script.write_example(tmp_path / "again")
    assert again.read_bytes() == data.read_bytes()  # seeded: the README's numbers come from this file
