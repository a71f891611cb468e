"""The per-series summary computed once at encoding (the classification head's summary input)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data.batching import BucketBatchSampler, EncodedDataset
from grud.data.dataset import IrregularDataset, Series
from grud.data.series_summary import ragged_summary
from grud.data.transforms import fit_stats
from grud.tasks.classification import ClassificationTask, hide_observed
from grud.tasks.summary_features import batch_summary


def _ragged(n=15, F=3, seed=0):
    """Ragged series with empty ones, a variable never observed and a label each."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        T = 0 if i % 6 == 4 else int(rng.integers(1, 9))
        values = rng.normal(size=(T, F)).astype(np.float32) * 10
        values[rng.random((T, F)) < 0.5] = np.nan
        values[:, F - 1] = np.nan if i % 2 else values[:, F - 1]
        series.append(Series(str(i), np.sort(rng.uniform(0, 48, T)), values, np.zeros(1, np.float32), i % 2))
    return IrregularDataset.from_series(series, [f"v{j}" for j in range(F)], ["s"])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_encoded_summary_is_batch_summary_of_every_batch(seed):
    ds = _ragged(seed=seed)
    assert (ds.lengths == 0).any()
    enc = EncodedDataset(ds, fit_stats(ds), summary=True)
    for idx in [list(range(len(ds))), [3, 4, 0], [4], list(BucketBatchSampler(ds.lengths, 4, shuffle=False))[0]]:
        batch = enc.collate(idx)
        want = batch_summary(batch["values"], batch["mask"], batch["lengths"])
        assert batch["summary"].dtype == torch.float32 and batch["summary"].shape == want.shape
        torch.testing.assert_close(batch["summary"], want, rtol=1e-5, atol=1e-6)
    assert "summary" not in EncodedDataset(ds, fit_stats(ds)).collate([0, 1])  # only when asked for


def test_the_summary_follows_replaced_values_and_mask():
    """Hiding values on purpose (as grud-evaluate task=impute does) must not leave a stale summary."""
    ds = _ragged()
    enc = EncodedDataset(ds, fit_stats(ds), summary=True)
    before = enc.summary.copy()
    kept = enc.mask * (np.random.default_rng(0).random(enc.mask.shape) > 0.5)
    enc.mask = kept.astype(np.float32)
    enc.values = (enc.values * kept).astype(np.float32)
    batch = enc.collate(range(len(ds)))
    torch.testing.assert_close(batch["summary"], batch_summary(batch["values"], batch["mask"], batch["lengths"]),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(enc.summary, before)


def test_ragged_summary_checks_its_inputs():
    with pytest.raises(ValueError, match=r"same \(N, F\) shape"):
        ragged_summary(np.zeros((4, 2)), np.zeros((4, 3)), np.array([0, 4]))
    with pytest.raises(ValueError, match="offsets"):
        ragged_summary(np.zeros((4, 2)), np.zeros((4, 2)), np.array([0, 3]))


def _task_and_data(**task_options):
    ds = _ragged()
    stats = fit_stats(ds)
    torch.manual_seed(0)
    task = ClassificationTask({"name": "grud", "hidden_size": 4}, stats.to_dict(), head={"summary": True},
                              **task_options).eval()
    return task, task.encode_dataset(ds, stats)


def test_the_head_gives_the_same_logits_with_the_precomputed_summary_as_without():
    task, enc = _task_and_data()
    batch = enc.collate(range(len(enc)))
    assert "summary" in batch
    without = {k: v for k, v in batch.items() if k != "summary"}
    with torch.no_grad():
        torch.testing.assert_close(task(batch)[0], task(without)[0], rtol=1e-5, atol=1e-5)
        wrong = dict(batch, summary=batch["summary"][:, :-1])
        with pytest.raises(ValueError, match=r"batch\['summary'\]: expected shape"):
            task(wrong)


def test_augmented_batches_summarise_what_is_left_after_hiding():
    """Under task.augment_missing the head must not see the summary of the values it was denied."""
    task, enc = _task_and_data(augment_missing=0.5)
    batch = enc.collate(range(len(enc)))
    hidden = hide_observed(batch, 0.5, generator=torch.Generator().manual_seed(0))
    assert "summary" not in hidden and "summary" in batch
    with torch.no_grad():
        got = task.head_input(torch.zeros(len(enc), hidden["values"].shape[1], 4), torch.zeros(len(enc), 4), hidden)
    want = batch_summary(hidden["values"], hidden["mask"], hidden["lengths"])
    torch.testing.assert_close(got[:, -want.shape[1]:], want)
    assert not torch.allclose(want, batch["summary"])
