"""The classification task: pooling over real steps, class weights, probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data.dataset import IrregularDataset, Series
from grud.data.transforms import fit_stats
from grud.errors import ConfigError
from grud.tasks.classification import ClassificationTask


def _stats(n_classes=2):
    rng = np.random.default_rng(0)
    series = [Series(str(i), np.arange(3.0), rng.normal(size=(3, 2)).astype(np.float32), np.zeros(1, np.float32),
                     i % n_classes) for i in range(12)]
    return fit_stats(IrregularDataset.from_series(series, ["a", "b"], ["s"])).to_dict()


@pytest.mark.parametrize("pool", ["last_mean", "last_max"])
def test_pooling_uses_only_real_steps(pool):
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, _stats(), head={"pool": pool})
    outputs = torch.randn(3, 5, 4)
    last = torch.randn(3, 4)
    lengths = torch.tensor([5, 2, 0])
    pooled = task.pooled(outputs, last, lengths)
    assert pooled.shape == (3, 8)
    torch.testing.assert_close(pooled[:, :4], last)
    agg = outputs[1, :2].mean(0) if pool == "last_mean" else outputs[1, :2].amax(0)
    torch.testing.assert_close(pooled[1, 4:], agg)
    assert torch.equal(pooled[2, 4:], torch.zeros(4))  # a series with no step pools to zeros
    changed = outputs.clone()
    changed[1, 2:] = 100.0  # padding never reaches the head
    torch.testing.assert_close(task.pooled(changed, last, lengths)[1], pooled[1])


def test_bad_pool_and_single_class_are_config_errors():
    with pytest.raises(ConfigError, match="pool"):
        ClassificationTask({"name": "gru_mean"}, _stats(), head={"pool": "attention"})
    with pytest.raises(ConfigError, match="two classes"):
        ClassificationTask({"name": "gru_mean"}, _stats(n_classes=1))


def test_balanced_class_weights_and_multiclass_probabilities():
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, _stats(3), class_weight="balanced",
                              class_counts=[6, 3, 3])
    torch.testing.assert_close(task.class_weights, torch.tensor([12 / 18, 12 / 9, 12 / 9]))
    p = task.probabilities(torch.randn(5, 3))
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
