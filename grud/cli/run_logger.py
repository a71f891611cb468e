"""The per-epoch history of a run (metrics.csv): written atomically, kept across a resume."""
from __future__ import annotations

import csv
import io
import logging
import math
import os

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from lightning_fabric.loggers.logger import rank_zero_experiment

from grud.cli.files import atomic_write_bytes


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, but every save rewrites metrics.csv through a temporary file,
    and a resumed run starts from the rows of epochs <= ``keep_until_epoch``."""

    def __init__(self, log_dir: str, keep_until_epoch: int | None = None):
        path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        kept = []
        if keep_until_epoch is not None and os.path.isfile(path):
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(float(row.get("epoch") or "nan")) <= keep_until_epoch:
                            kept.append({k: v for k, v in row.items() if v not in ("", None)})
                    except ValueError:
                        continue  # a row of a killed write
        self._resuming = keep_until_epoch is not None
        super().__init__(log_dir=log_dir)
        self.rows = kept

    def _check_log_dir_exists(self) -> None:
        """The run directory already holds config.yaml and train.log by design, so Lightning's
        warning that it "exists and is not empty" (and that files will be deleted) is wrong here:
        only metrics.csv is replaced. A fresh run removes a stale one; a resumed run keeps it
        until the first save rewrites it atomically with the kept rows."""
        if not self._resuming and self._fs.isfile(self.metrics_file_path):
            self._fs.rm_file(self.metrics_file_path)

    def log_hparams(self, params: dict) -> None:
        """``hparams.yaml`` as Lightning writes it, but straight from the plain containers with
        PyYAML (its C emitter when present), atomically: Lightning's detour through OmegaConf took
        70 ms for the fitted statistics of PhysioNet 2012, a tenth of a fast epoch."""
        import yaml

        self.hparams.update(params)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        try:
            text = yaml.dump(dict(self.hparams), Dumper=dumper, sort_keys=False)
        except yaml.YAMLError:  # a value PyYAML cannot represent: Lightning's writer skips it with a warning
            return super().log_hparams(params)
        atomic_write_bytes(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), text.encode())

    def save(self) -> None:
        if not self.metrics:
            return
        self.rows.extend(self.metrics)
        self.metrics = []
        keys = sorted(set().union(*self.rows))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.metrics_file_path, buf.getvalue().encode())


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` in the run directory itself (see :class:`_HistoryWriter`)."""

    def __init__(self, run_dir, keep_until_epoch: int | None = None):
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._keep_until_epoch = keep_until_epoch

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(self.log_dir, self._keep_until_epoch)
        return self._experiment


class LogIntervalWithinEpoch(Callback):
    """Caps ``trainer.log_every_n_steps`` at the optimiser steps of one epoch, when training starts
    (the count Lightning knows then: after ``limit_train_batches``, per process under DDP, divided
    by ``accumulate_grad_batches``): an interval longer than an epoch logged no training loss at
    all (no ``train/loss`` row in metrics.csv, no green line in history.png)."""

    def on_train_start(self, trainer, pl_module) -> None:
        batches = trainer.num_training_batches
        if not isinstance(batches, (int, float)) or not math.isfinite(batches):
            return  # an iterable loader of unknown length
        steps = max(1, int(batches) // max(1, int(trainer.accumulate_grad_batches)))
        if trainer.log_every_n_steps > steps:
            logging.getLogger("grud").info("trainer.log_every_n_steps=%d: an epoch has %d optimiser step(s); "
                                           "logging every %d", trainer.log_every_n_steps, steps, steps)
            trainer.log_every_n_steps = steps
