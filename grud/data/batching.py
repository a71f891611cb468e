"""From a dataset to padded batches: optional time grid, encoding, collation, bucketing.

A batch is a dict of tensors in grud's one vocabulary:

Shape:
    values: (B, T, F) normalised, 0 where unobserved (never NaN)
    mask: (B, T, F) 1.0 = observed
    delta: (B, T, F) hours since the variable was last observed (Che et al. 2018, eq. 2)
    times: (B, T) hours since each series' time 0; 0 at padded steps
    lengths: (B,) int64 number of real steps
    static: (B, S) normalised, 0 where unknown
    target: (B,) float (binary) or int64 (multi-class), when the dataset has labels
    index: (B,) int64 position of each series in its dataset
    summary: (B, 5F) per-variable summary of the observed inputs, when encoded with ``summary=True``
        (:func:`grud.data.series_summary.ragged_summary`)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from grud.data import masking
from grud.data.dataset import IrregularDataset
from grud.data.series_summary import ragged_summary
from grud.data.transforms import FittedStats
from grud.errors import ConfigError


def to_grid(ds: IrregularDataset, bin_hours: float) -> IrregularDataset:
    """Average values into bins of ``bin_hours`` on a dense grid.

    Series i gets steps at 0, w, 2w, ... up to the bin of its last row; bins with no
    observation become all-unobserved steps (the hourly set-up of Che et al. 2018).

    Shape:
        ds: times (N,), values (N, F), offsets (n + 1,) -> times (N',), values (N', F),
        offsets (n + 1,), N' = sum over series of (last bin index + 1); static (n, S) and
        labels (n,) unchanged
    """
    w = float(bin_hours)
    if not math.isfinite(w) or w <= 0:
        raise ConfigError(f"data.grid: expected a positive bin width in hours or null, got {bin_hours!r}")
    n, F = len(ds), len(ds.variables)
    lengths = ds.lengths
    series_of_row = np.repeat(np.arange(n), lengths)
    bins = np.floor(ds.times / w + 1e-9).astype(np.int64)
    n_bins = np.zeros(n, dtype=np.int64)
    if len(bins):
        np.maximum.at(n_bins, series_of_row, bins + 1)
    offsets = np.concatenate([[0], np.cumsum(n_bins)]).astype(np.int64)
    out_rows = offsets[series_of_row] + bins
    total = int(offsets[-1])
    obs = np.isfinite(ds.values)
    sums = np.zeros((total, F), dtype=np.float64)
    counts = np.zeros((total, F), dtype=np.int64)
    np.add.at(sums, out_rows, np.where(obs, ds.values, 0.0))
    np.add.at(counts, out_rows, obs.astype(np.int64))
    values = np.divide(sums, counts, out=np.full((total, F), np.nan), where=counts > 0).astype(np.float32)
    times = (np.arange(total) - np.repeat(offsets[:-1], n_bins)) * w
    meta = dict(ds.meta, grid=w)
    return IrregularDataset(ds.ids, ds.variables, ds.static_names, times, values, offsets, ds.static, ds.labels, meta)


def class_targets(labels: np.ndarray | None, classes: list) -> np.ndarray | None:
    """Map label values to 0..C-1 by the training ``classes``; unknown or missing labels -> -1.

    Shape:
        labels (n,); classes (C,) -> (n,) int64, or ``None`` when ``labels`` is ``None``
    """
    if labels is None:
        return None
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    for k, c in enumerate(classes):
        out[labels == c] = k
    return out


class EncodedDataset(torch.utils.data.Dataset):
    """A dataset normalised with training statistics, kept flat; items are series indices.

    Collation (:meth:`collate`) gathers the flat rows of a list of indices into padded tensors,
    so no per-series Python work happens in the loader; ``delta`` is computed once for all rows
    (:func:`grud.data.masking.ragged_time_deltas`, again whenever :attr:`mask` is replaced).
    With ``summary=True`` every batch also carries ``summary`` (B, 5F), the classification head's
    per-variable summary of the observed inputs, likewise computed once per series (again
    whenever :attr:`values` or :attr:`mask` is replaced). Editing :attr:`mask` in place (e.g.
    ``enc.mask[1] = 0``, which hides flat row 1) leaves an already computed ``delta`` (and
    ``summary``) stale; assign a new array (``enc.mask = new_mask``) to have them recomputed.

    Shape:
        values, mask, delta: (N, F) flat rows, series delimited by ``ds.offsets`` (n + 1,)
        static: (n, S); lengths: (n,); targets: (n,) int64 (-1 = no known class) or ``None``
        summary: (n, 5F)
        collate(indices of B series) -> the batch of the module docstring, T = longest of them
    """

    def __init__(self, ds: IrregularDataset, stats: FittedStats, summary: bool = False):
        if list(ds.variables) != list(stats.variables) or list(ds.static_names) != list(stats.static_names):
            ds = ds.align(stats.variables, stats.static_names)
        self.ds = ds
        self.stats = stats
        raw_values, raw_static = stats.inputs_of(ds)
        z = stats.normalise_values(raw_values)
        observed = np.isfinite(z)
        self.with_summary = bool(summary)
        self._summary = None
        self.values = np.where(observed, z, 0.0).astype(np.float32)
        self.mask = observed.astype(np.float32)
        self.static = stats.normalise_static(raw_static)
        self.lengths = ds.lengths
        self.targets = class_targets(ds.labels, stats.classes) if stats.classes else None

    @property
    def values(self) -> np.ndarray:
        """(N, F) flat normalised values, 0 where unobserved; setting them recomputes the summary."""
        return self._values

    @values.setter
    def values(self, values: np.ndarray) -> None:
        self._values = values
        self._summary = None

    @property
    def mask(self) -> np.ndarray:
        """(N, F) flat mask; setting it (e.g. to hide values on purpose) recomputes delta and the summary."""
        return self._mask

    @mask.setter
    def mask(self, mask: np.ndarray) -> None:
        self._mask = mask
        self._delta = None
        self._summary = None

    @property
    def summary(self) -> np.ndarray:
        """(n, 5F) per-series summary of the observed inputs (:func:`~grud.data.series_summary.ragged_summary`),
        computed once per values and mask."""
        if self._summary is None:
            self._summary = ragged_summary(self._values, self._mask, self.ds.offsets)
        return self._summary

    @property
    def delta(self) -> np.ndarray:
        """(N, F) flat hours since each variable's last observation, computed once per mask."""
        if self._delta is None:
            self._delta = masking.ragged_time_deltas(self.ds.times, self._mask, self.ds.offsets).astype(np.float32)
        return self._delta

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        B = len(idx)
        T = max(int(lengths.max()) if B else 0, 1)
        steps = np.arange(T)
        valid = steps[None, :] < lengths[:, None]
        if len(self.values):
            # one gather per array over the flat rows of every (series, step); padded steps read row
            # 0 and are zeroed afterwards (a handful of rows, where np.where would pass over all)
            rows = np.where(valid, self.ds.offsets[idx][:, None] + steps[None, :], 0).reshape(-1)
            padded = np.flatnonzero(~valid.reshape(-1))
            values, mask, delta = (self._gather(src, rows, padded).reshape(B, T, src.shape[1])
                                   for src in (self.values, self.mask, self.delta))
            times = self._gather(self.ds.times, rows, padded).reshape(B, T)
        else:
            values = np.zeros((B, T, self.values.shape[1]), np.float32)
            mask, delta, times = np.zeros_like(values), np.zeros_like(values), np.zeros((B, T))
        batch = {
            "values": torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
            "delta": torch.from_numpy(np.ascontiguousarray(delta, dtype=np.float32)),
            "times": torch.from_numpy(np.ascontiguousarray(times, dtype=np.float32)),
            "lengths": torch.from_numpy(lengths.astype(np.int64)),
            "static": torch.from_numpy(self.static[idx]),
            "index": torch.from_numpy(idx),
        }
        if self.with_summary:
            batch["summary"] = torch.from_numpy(self.summary[idx])
        if self.targets is not None:
            t = self.targets[idx]
            batch["target"] = torch.from_numpy(t) if len(self.stats.classes) > 2 else torch.from_numpy(
                t.astype(np.float32))
        return batch

    @staticmethod
    def _gather(src: np.ndarray, rows: np.ndarray, padded: np.ndarray) -> np.ndarray:
        out = src.take(rows, axis=0)
        out[padded] = 0
        return out


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar length (less padding), reshuffled every epoch, DDP-aware.

    Shuffles all indices, sorts them by length within pools of ``pool_batches`` batches,
    cuts the pools into batches and shuffles the batch order. With ``num_replicas > 1``
    each replica takes every ``num_replicas``-th batch (same count on every replica).
    A last batch smaller than ``min_batch`` joins the one before it (training uses 2: batch
    norm cannot normalise a batch of one series, e.g. 65 series in batches of 64).
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, bucket: bool = True, seed: int = 0,
                 pool_batches: int = 50, drop_last: bool = False, num_replicas: int = 1, rank: int = 0,
                 min_batch: int = 1):
        if batch_size < 1:
            raise ConfigError(f"data.batch_size: expected a positive integer, got {batch_size}")
        if not 1 <= int(min_batch) <= max(int(batch_size), 1):
            raise ValueError(f"min_batch: expected 1 .. batch_size ({batch_size}), got {min_batch}")
        self.min_batch = int(min_batch)
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.shuffle, self.bucket, self.seed = shuffle, bucket, int(seed)
        self.pool = max(1, pool_batches) * self.batch_size
        self.drop_last = drop_last
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sampler(self) -> "BucketBatchSampler":
        """Itself, where torch's ``BatchSampler`` keeps the index sampler it wraps: Lightning sets
        the epoch of ``batch_sampler.sampler`` at the start of every epoch (``set_epoch``), not of
        the batch sampler, so without this the order would be drawn once and repeated every epoch."""
        return self

    def _batches(self) -> list:
        n = len(self.lengths)
        rng = np.random.default_rng(self.seed + 7919 * self.epoch)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            if self.shuffle:
                pools = [order[i:i + self.pool] for i in range(0, n, self.pool)]
                order = np.concatenate([p[np.argsort(self.lengths[p], kind="stable")] for p in pools]) if n else order
            else:
                order = np.argsort(self.lengths, kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        elif len(batches) > 1 and len(batches[-1]) < self.min_batch:
            batches[-2:] = [np.concatenate(batches[-2:])]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:
            per = int(math.ceil(len(batches) / self.num_replicas))
            batches = batches + batches[: per * self.num_replicas - len(batches)]
            batches = batches[self.rank::self.num_replicas]
        return [b.tolist() for b in batches]

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        k = n // self.batch_size if self.drop_last else int(math.ceil(n / self.batch_size))
        if not self.drop_last and k > 1 and n - (k - 1) * self.batch_size < self.min_batch:
            k -= 1  # the short last batch joined the one before it
        return int(math.ceil(k / self.num_replicas)) if self.num_replicas > 1 else k


def padding_waste(lengths, batches) -> float:
    """Fraction of padded steps among all steps of ``batches`` (lists of indices)."""
    lengths = np.asarray(lengths)
    padded = total = 0
    for b in batches:
        ls = lengths[np.asarray(b)]
        T = max(int(ls.max()), 1) if len(ls) else 0
        total += T * len(ls)
        padded += T * len(ls) - int(ls.sum())
    return padded / total if total else 0.0
