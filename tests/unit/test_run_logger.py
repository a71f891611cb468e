"""metrics.csv of a run: no false "files will be deleted" warning, stale history dropped, resumed history kept."""
from __future__ import annotations

import csv
import warnings

from grud.cli.run_logger import RunCSVLogger


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _old_run(run_dir):
    (run_dir / "config.yaml").write_text("seed: 0\n")
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "val/auroc"])
        w.writeheader()
        w.writerows([{"epoch": 0, "val/auroc": 0.7}, {"epoch": 1, "val/auroc": 0.8}, {"epoch": 2, "val/auroc": 0.6}])


def test_a_fresh_run_in_a_populated_directory_warns_nothing_and_replaces_only_metrics(tmp_path):
    _old_run(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger = RunCSVLogger(tmp_path)
        logger.log_metrics({"val/auroc": 0.75}, step=0)
        logger.save()
    assert (tmp_path / "config.yaml").read_text() == "seed: 0\n"
    assert [r["val/auroc"] for r in _rows(tmp_path / "metrics.csv")] == ["0.75"]


def test_a_resumed_run_keeps_the_epochs_up_to_the_checkpoint(tmp_path):
    _old_run(tmp_path)
    logger = RunCSVLogger(tmp_path, keep_until_epoch=1)
    logger.experiment  # opening the writer must not drop the history before the first save
    assert len(_rows(tmp_path / "metrics.csv")) == 3
    logger.log_metrics({"epoch": 2, "val/auroc": 0.9}, step=5)
    logger.save()
    assert [(r["epoch"], r["val/auroc"]) for r in _rows(tmp_path / "metrics.csv")] == [
        ("0", "0.7"), ("1", "0.8"), ("2", "0.9")]
