"""LightningDataModule over already-read, already-split datasets.

The entry point reads and splits the data (:mod:`grud.data.loading`, :mod:`grud.data.splits`),
fits :class:`~grud.data.transforms.FittedStats` on the training split and hands everything
here; this module only encodes (normalise once) and serves batches, bucketed by length.
"""
from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch

from grud.data.batching import BucketBatchSampler
from grud.data.dataset import IrregularDataset
from grud.data.transforms import FittedStats


class GrudDataModule(pl.LightningDataModule):
    """Serves train/val/test/predict loaders.

    Args:
        train, val, test: the splits (val/test may be empty or None).
        stats: statistics fitted on ``train`` (fit them on the training split only).
        encode: ``encode(ds, stats) -> dataset with .collate`` (the task's ``encode_dataset``;
            ``ClassificationTask`` encodes with its own statistics, those it was built with, and
            ignores ``stats``; ``ForecastTask`` uses ``stats``).
        batch_size: series per batch.
        bucket: batch series of similar length together (less padding).
        num_workers: DataLoader worker processes (0 = in the main process).
        seed: shuffling seed (combined with the epoch).
        train_streams: K independently shuffled passes over the training split served side by
            side (an ensemble's members, one order each): the training loader then yields a list
            of K batches per step. Stream 0 is the order a single stream would have.
    """

    def __init__(self, train: IrregularDataset | None, val: IrregularDataset | None, test: IrregularDataset | None,
                 stats: FittedStats, encode: Callable, batch_size: int = 64, bucket: bool = True,
                 num_workers: int = 0, seed: int = 0, predict: IrregularDataset | None = None,
                 train_streams: int = 1):
        super().__init__()
        if int(train_streams) < 1:
            raise ValueError(f"train_streams: expected >= 1, got {train_streams}")
        self.train_streams = int(train_streams)
        self.stats, self.encode = stats, encode
        self.batch_size, self.bucket, self.num_workers, self.seed = int(batch_size), bool(bucket), int(num_workers), seed
        self._raw = {"train": train, "val": val, "test": test, "predict": predict}
        self._encoded: dict = {}

    def encoded(self, split: str):
        if split not in self._encoded:
            ds = self._raw[split]
            self._encoded[split] = None if ds is None or len(ds) == 0 else self.encode(ds, self.stats)
        return self._encoded[split]

    def _loader(self, split: str, shuffle: bool, stream: int = 0):
        enc = self.encoded(split)
        if enc is None:
            return []
        replicas, rank = 1, 0
        if shuffle and self.trainer is not None and self.trainer.world_size > 1:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = BucketBatchSampler(enc.lengths, self.batch_size, shuffle=shuffle, bucket=self.bucket,
                                     seed=self.seed + 104729 * stream, num_replicas=replicas, rank=rank,
                                     min_batch=min(2, self.batch_size) if shuffle else 1)  # batch norm: >= 2
        if shuffle and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        # the loader's own generator seeds its workers: creating an iterator then draws nothing from
        # the global generator that dropout uses, so a checkpoint's random state is the one the next
        # epoch starts from (resume=true repeats an uninterrupted run)
        generator = torch.Generator().manual_seed(self.seed + 104729 * stream)
        return torch.utils.data.DataLoader(enc, batch_sampler=sampler, collate_fn=enc.collate,
                                           num_workers=self.num_workers, generator=generator,
                                           persistent_workers=self.num_workers > 0)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """Batches are built on the CPU: on a CPU run there is nothing to move (Lightning would
        still walk every batch, about half a millisecond each)."""
        if torch.device(device).type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self):
        if self.train_streams == 1:
            return self._loader("train", shuffle=True)
        # a list of loaders: Lightning zips them, so a training step receives a list of K batches
        return [self._loader("train", shuffle=True, stream=k) for k in range(self.train_streams)]

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def predict_dataloader(self):
        """Batches in the order of the series (a plain batch sampler): ``Trainer.predict`` rebuilds
        the loader around its own index sampler, which a length-bucketing sampler cannot take.
        Each batch carries ``index``, the series' positions, to join predictions back."""
        enc = self.encoded("predict")
        if enc is None:
            return []
        return torch.utils.data.DataLoader(enc, batch_size=self.batch_size, shuffle=False, collate_fn=enc.collate,
                                           num_workers=self.num_workers,
                                           persistent_workers=self.num_workers > 0)
