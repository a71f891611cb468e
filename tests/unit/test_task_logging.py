"""Training metrics are averaged in the task and handed to Lightning on its logging steps only;
evaluation losses are the batch-size-weighted mean of the epoch, logged once."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.unit.tiny_classification_inputs import tiny_stats
from grud.tasks.classification import ClassificationTask


@pytest.fixture()
def task(monkeypatch):
    t = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats())
    t.logged = []
    monkeypatch.setattr(t, "log", lambda name, value, **kw: t.logged.append((name, float(value), kw.get("batch_size"))))
    return t


def test_training_metric_is_the_weighted_mean_since_the_last_logging_step(task):
    task._trainer = SimpleNamespace(log_every_n_steps=3, global_step=0)
    batches = [(1.0, 2), (2.0, 2), (4.0, 4), (10.0, 1), (20.0, 1), (30.0, 2)]
    for step, (loss, size) in enumerate(batches):
        task._trainer.global_step = step
        task.log_running("train/loss", torch.tensor(loss), size)
    # Lightning writes step logs when (global_step + 1) % log_every_n_steps == 0: steps 2 and 5
    assert task.logged == [("train/loss", (2 + 4 + 16) / 8, 8), ("train/loss", (10 + 20 + 60) / 4, 4)]


def test_a_window_never_spans_two_epochs(task):
    task._trainer = SimpleNamespace(log_every_n_steps=2, global_step=0)
    task.log_running("train/loss", torch.tensor(100.0), 1)  # step 0: not a logging step
    task.on_train_epoch_start()
    task._trainer.global_step = 1
    task.log_running("train/loss", torch.tensor(3.0), 1)
    assert task.logged == [("train/loss", 3.0, 1)]


def test_outside_a_trainer_every_call_logs(task):
    task._trainer = None
    task.log_running("train/loss", torch.tensor(5.0), 3)
    assert task.logged == [("train/loss", 5.0, 3)]


def test_evaluation_loss_is_the_batch_size_weighted_mean_of_the_epoch(task):
    task.add_eval_loss("val", torch.tensor(1.0), 3)
    task.add_eval_loss("val", torch.tensor(5.0), 1)
    task.log_eval_loss("val")
    task.log_eval_loss("val")  # reset after logging: nothing more
    assert task.logged == [("val/loss", 2.0, None)]


def test_train_loss_is_the_label_loss_comparable_with_val_loss_and_the_imputation_term_is_its_own(monkeypatch):
    from tests.unit.tiny_classification_inputs import tiny_batch
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), impute_weight=2.0)
    task.logged = []
    monkeypatch.setattr(task, "log", lambda name, value, **kw: task.logged.append((name, float(value))))
    task._trainer = None
    batch = tiny_batch()
    task.eval()  # no dropout: the logged label loss can be recomputed
    total = task.training_step(batch, 0)
    logged = dict(task.logged)
    label = float(task.loss(task(batch)[0], batch["target"]))
    assert logged["train/loss"] == pytest.approx(label, rel=1e-5)
    assert float(total) == pytest.approx(label + 2.0 * logged["train/impute_mse"], rel=1e-5)
    assert logged["train/impute_mse"] > 0
