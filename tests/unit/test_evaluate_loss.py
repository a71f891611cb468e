"""grud-evaluate's test/loss: the class-weighted cross-entropy a test epoch reports, from the probabilities."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from grud.cli.inference import classification_metrics


def _ds(labels):
    return SimpleNamespace(labels=np.asarray(labels, np.float64), meta={})


def test_binary_loss_is_the_weighted_cross_entropy_of_the_probabilities():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=40))
    y = torch.tensor(rng.integers(0, 2, 40)).float()
    y[:2] = torch.tensor([0.0, 1.0])
    frame = pd.DataFrame({"probability": torch.sigmoid(logits).numpy()})
    labels = np.where(y.numpy() > 0, 1.0, 0.0)
    labels[5] = np.nan  # unlabelled: no loss
    keep = ~np.isnan(labels)
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    got = classification_metrics(frame, _ds(labels), [0, 1], class_weights=w.numpy())["test/loss"]
    per = F.binary_cross_entropy_with_logits(logits[keep], y[keep].double(), reduction="none")
    weight = torch.where(y[keep] > 0.5, w[1], w[0])
    assert got == pytest.approx(float((weight * per).sum() / weight.sum()), rel=1e-9)
    assert "test/loss" not in classification_metrics(frame, _ds(labels), [0, 1])  # a baseline: no loss


def test_multiclass_loss_is_torchs_weighted_cross_entropy():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(30, 3)))
    y = torch.tensor(np.r_[0, 1, 2, rng.integers(0, 3, 27)])
    frame = pd.DataFrame(torch.softmax(logits, -1).numpy(), columns=["probability_1", "probability_2",
                                                                     "probability_3"])
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    got = classification_metrics(frame, _ds(y.numpy() + 1.0), [1, 2, 3], class_weights=w.numpy())["test/loss"]
    assert got == pytest.approx(float(F.cross_entropy(logits, y, weight=w)), rel=1e-9)
