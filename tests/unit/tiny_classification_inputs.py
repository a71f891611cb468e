"""Tiny inputs for the classification task's unit tests: fitted statistics of two variables and
one static feature, and a padded batch of ragged series (shared by several test modules)."""
from __future__ import annotations

import numpy as np
import torch

from grud.data import masking
from grud.data.dataset import IrregularDataset, Series
from grud.data.transforms import fit_stats


def tiny_stats(n_classes=2):
    rng = np.random.default_rng(0)
    series = [Series(str(i), np.arange(3.0), rng.normal(size=(3, 2)).astype(np.float32), np.zeros(1, np.float32),
                     i % n_classes) for i in range(12)]
    return fit_stats(IrregularDataset.from_series(series, ["a", "b"], ["s"])).to_dict()


def tiny_batch(b=6, t=5, f=2, n_classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, t, f, generator=g) < 0.6).float()
    times = torch.arange(t, dtype=torch.float32).expand(b, t).contiguous()
    lengths = torch.tensor([t, t - 1, 3, t, 2, t])[:b]
    return {"values": torch.randn(b, t, f, generator=g) * mask, "mask": mask,
            "delta": masking.time_deltas(times, mask, lengths=lengths), "times": times, "lengths": lengths,
            "static": torch.randn(b, 1, generator=g), "target": torch.arange(b) % n_classes}
