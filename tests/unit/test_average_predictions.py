"""scripts/average_predictions.py: the AUROC of averaged grud-predict outputs, and its errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("average_predictions")


def test_scores_each_file_and_the_mean_probability(script, tmp_path, capsys):
    rng = np.random.default_rng(0)
    ids = np.arange(100, 160)
    y = rng.integers(0, 2, len(ids))
    pd.DataFrame({"RecordID": ids, "In-hospital_death": y}).to_csv(tmp_path / "labels.csv", index=False)
    probs = [np.clip(0.3 * y + rng.uniform(0, 0.8, len(ids)), 0, 1) for _ in range(2)]
    for k, p in enumerate(probs):  # rows in another order than the labels
        pd.DataFrame({"RecordID": ids[::-1], "probability": p[::-1]}).to_csv(tmp_path / f"p{k}.csv", index=False)
    assert script.main(["--labels", str(tmp_path / "labels.csv"), str(tmp_path / "p0.csv"),
                        str(tmp_path / "p1.csv")]) == 0
    out = capsys.readouterr().out
    assert f"AUROC {roc_auc_score(y, probs[0]):.4f}" in out
    assert f"averaged probability\t{roc_auc_score(y, (probs[0] + probs[1]) / 2):.4f}" in out


def test_an_unknown_id_is_an_error_naming_the_file(script, tmp_path, capsys):
    pd.DataFrame({"RecordID": [1, 2], "In-hospital_death": [0, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"RecordID": [1, 3], "probability": [0.1, 0.9]}).to_csv(tmp_path / "p.csv", index=False)
    assert script.main(["--labels", str(tmp_path / "labels.csv"), str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "p.csv" in err and "no label" in err


def test_the_label_column_physionet_to_csv_writes_is_found_without_an_option(script, tmp_path, capsys):
    pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"id": ["a", "b", "c", "d"], "probability": [0.1, 0.8, 0.3, 0.6]}).to_csv(tmp_path / "p.csv",
                                                                                        index=False)
    assert script.main(["--labels", str(tmp_path / "labels.csv"), str(tmp_path / "p.csv")]) == 0
    assert "AUROC 1.0000" in capsys.readouterr().out
