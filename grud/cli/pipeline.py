"""The work behind grud-train, on a plain config dict (Hydra stays in the entry points).

``run_training(cfg, run_dir)`` reads and splits the data, fits statistics on the training split,
trains (or fits a baseline), evaluates on the test split and writes the run directory:
``config.yaml``, ``checkpoints/{best,last}.ckpt``, ``metrics.json``, ``metrics.csv`` (per epoch)
and ``plots/``.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

import grud
from grud.cli.files import atomic_write_json
from grud.cli.metric_values import metric_values
from grud.data.batching import to_grid
from grud.data.dataset import IrregularDataset
from grud.data.loading import read_dataset, resolve_path
from grud.data.readers import missing_labels_reason
from grud.data.splits import split_dataset
from grud.data.transforms import FittedStats, fit_stats
from grud.errors import ConfigError, DataError

log = logging.getLogger("grud")

# data options that describe how to read a file (they travel in the checkpoint for prediction)
READER_KEYS = ("kind", "id_column", "time_column", "variable_column", "value_column", "label_column",
               "label_id_column", "label_map", "time_unit", "time_zero", "static_variables", "categorical_static",
               "variables", "delimiter", "max_hours", "value_ranges", "grid")


def data_hash(paths) -> str:
    """SHA-256 (first 16 hex digits) of the input files; a folder (PhysioNet stays) counts as its
    files' relative names and contents, in sorted order."""
    return data_hashes(paths)[1]


def data_hashes(paths) -> tuple[str, str]:
    """(:func:`data_hash` of the first path alone, :func:`data_hash` of all): one pass over the files."""
    h = hashlib.sha256()
    first = h.hexdigest()[:16]  # no path at all: both are the hash of nothing
    for k, p in enumerate(paths):
        if p is not None:
            _hash_input(h, Path(p))
        if k == 0:
            first = h.hexdigest()[:16]
    return first, h.hexdigest()[:16]


def _hash_input(h, p: Path) -> None:
    folder = p.is_dir()
    for file in sorted(f for f in p.rglob("*") if f.is_file()) if folder else [p]:
        if folder:
            h.update(str(file.relative_to(p)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)


def held_out_record(path, test: IrregularDataset | None, path_hash: str | None = None) -> dict:
    """What the checkpoint keeps of the training file's split, so ``grud-evaluate`` on that file
    scores only the series training held out: the file's size and :func:`data_hash`
    (``path_hash`` when the caller has it), and the ids of its test split (none when the test set
    was another file, ``data.test_path``)."""
    ids = [] if test is None else [i.item() if hasattr(i, "item") else i for i in test.ids]
    return {"data_hash": path_hash or data_hash([path]), "bytes": input_bytes(path), "test_ids": ids}


def input_bytes(path) -> int:
    """The size of an input file, or of all files in an input folder."""
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def versions() -> dict:
    import pytorch_lightning
    import sklearn
    import torch

    return {"grud": grud.__version__, "torch": torch.__version__, "pytorch_lightning": pytorch_lightning.__version__,
            "numpy": np.__version__, "scikit_learn": sklearn.__version__, "python": platform.python_version()}


DEFAULT_TEST_FRACTION = 0.2  # data.test_fraction: null without a data.test_path or id lists


def read_for_run(data: dict, with_grid: bool = True):
    """Read train/val/test per the ``data`` options -> (train, val, test, input paths)."""
    kind = data.get("kind", "physionet2012")
    test_fraction = data.get("test_fraction")
    if test_fraction is None:  # the CSV presets' default: a fifth of data.path unless the test set is named
        named = data.get("test_path") or any(data.get(k) is not None for k in ("train_ids", "val_ids", "test_ids"))
        test_fraction = 0.0 if named else DEFAULT_TEST_FRACTION
    if data.get("test_path") and (data.get("test_ids") is not None or float(test_fraction) > 0):
        given = "data.test_ids" if data.get("test_ids") is not None else f"data.test_fraction={test_fraction}"
        raise ConfigError(f"{given} takes the test set out of data.path, but data.test_path={data['test_path']} "
                          f"already names the test file: set data.test_path=null to use {given.split('=')[0]}")
    opts = {k: v for k, v in data.items() if k not in ("path", "labels", "test_path", "test_labels", "kind")}
    full = read_dataset(kind, data.get("path"), data.get("labels"), key="data.path", **opts)
    paths = [resolve_path(data["path"], "data.path")]
    if data.get("labels") is not None:
        paths.append(resolve_path(data["labels"], "data.labels"))
    seed = int(data.get("split_seed", 0) or 0)
    by = dict(train_ids=data.get("train_ids"), val_ids=data.get("val_ids"), folds=data.get("folds"),
              fold=data.get("fold", 0) or 0)  # how the validation split is chosen
    if data.get("test_path"):
        # the names were checked on data.path; as at prediction, a test file without a static
        # variable's rows (long) or a variable's column (wide) reads it as unobserved
        test_opts = dict(opts, allow_missing_variables=True) if kind in ("csv_long", "csv_wide") else opts
        test = read_dataset(kind, data["test_path"], data.get("test_labels"), key="data.test_path", **test_opts)
        paths.append(resolve_path(data["test_path"], "data.test_path"))
        if data.get("test_labels") is not None:
            paths.append(resolve_path(data["test_labels"], "data.test_labels"))
        train, val, _ = split_dataset(full, data.get("val_fraction", 0.2), 0.0, seed, **by)
    else:
        train, val, test = split_dataset(full, data.get("val_fraction", 0.2), test_fraction, seed,
                                         test_ids=data.get("test_ids"), **by)
    if with_grid and data.get("grid") is not None:
        train, val, test = (to_grid(d, float(data["grid"])) for d in (train, val, test))
    return train, val, test, paths


def reader_options_of(data: dict) -> dict:
    return {k: data.get(k) for k in READER_KEYS if k in data}


#: fewer series of a class than this in the validation or test split: its AUROC is warned about
FEW_OF_A_CLASS = 10

#: fewer optimiser steps than this in a whole training run are warned about
FEW_STEPS = 100


def warn_few_steps(n_train: int, batch_size: int, max_epochs) -> None:
    """Warn when ``trainer.max_epochs`` allows fewer than :data:`FEW_STEPS` optimiser steps: on a
    small export (300 series, 5 batches an epoch) two epochs leave a network near its start, and
    a comparison with the baselines then says little about the model."""
    if max_epochs is None or max_epochs < 0 or n_train == 0:
        return
    batches = -(-n_train // max(batch_size, 1))
    if batches * max_epochs < FEW_STEPS:
        log.warning("training takes at most %d optimiser steps (trainer.max_epochs=%d x %d batches of %d of the %d "
                    "training series): a network barely moves from its start in so few; raise trainer.max_epochs "
                    "(early stopping ends training when validation stops improving) or lower data.batch_size",
                    batches * max_epochs, max_epochs, batches, batch_size, n_train)


#: the metric prefix of each evaluated split
STAGE_OF = {"validation": "val", "test": "test"}


def label_counts(ds: IrregularDataset) -> tuple[np.ndarray, np.ndarray]:
    """(class codes, series per code) of ``ds``'s labelled series (empty without labels)."""
    if ds.labels is None:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.unique(ds.labels[np.isfinite(ds.labels)], return_counts=True)


def log_class_counts(*splits: IrregularDataset) -> None:
    """Log the series per class of the training, validation and test splits."""
    parts = []
    for name, ds in zip(("training", "validation", "test"), splits):
        if ds.labels is None or not len(ds):
            continue
        codes, counts = label_counts(ds)
        parts.append(f"{name} " + ", ".join(f"{c:g}: {n}" for c, n in zip(codes, counts)))
    if parts:
        log.info("series per class: %s", "; ".join(parts))


def warn_few_of_a_class(ds: IrregularDataset, name: str, monitor: str = "val/auroc") -> None:
    """Warn when a class has fewer than :data:`FEW_OF_A_CLASS` series in split ``name``: AUROC,
    AUPRC and their bootstrap interval rest on those few (and early stopping, on the validation
    split, when ``monitor`` is one of them)."""
    codes, counts = label_counts(ds)
    few = [(c, n) for c, n in zip(codes, counts) if n < FEW_OF_A_CLASS]
    if few:
        stage = STAGE_OF[name]
        log.warning("the %s split holds %s: %s/auroc and %s/auprc rest on so few and are noisy (the bootstrap "
                    "interval understates it)%s", name,
                    ", ".join(f"{n} series of class {c:g}" for c, n in few), stage, stage,
                    f"; early stopping ranks epochs by {monitor}: a larger data.val_fraction or data.folds helps"
                    if name == "validation" and monitor in ("val/auroc", "val/auprc") else "")


def class_counts(ds: IrregularDataset, classes: list) -> list:
    if ds.labels is None:
        return [0] * len(classes)
    return [int(np.sum(ds.labels == c)) for c in classes]


#: the Lightning precisions grud trains in (``trainer.precision``)
FULL_PRECISIONS = ("32", "32-true", "64", "64-true")


def make_trainer(cfg: dict, run_dir: Path, monitor: str, mode: str,
                 resumed_epoch: int | None = None):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from grud.cli.checkpoint import SafeCheckpointIO
    from grud.cli.known_warnings import silence_known_warnings

    silence_known_warnings()
    ckpt_dir = run_dir / "checkpoints"
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                        enable_version_counter=False, auto_insert_metric_name=False),
        # last.ckpt after every epoch (what resume=true continues from): Lightning's save_last only
        # writes it when the best checkpoint improves, so a resume would go back to the best epoch
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                        enable_version_counter=False, auto_insert_metric_name=False),
        EarlyStopping(monitor=monitor, mode=mode, patience=int(cfg.get("early_stopping", {}).get("patience", 8))),
    ]
    ema = cfg.get("ema_decay")
    if ema:
        from pytorch_lightning.callbacks import WeightAveraging
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        if not 0.0 < float(ema) < 1.0:
            raise ConfigError(f"ema_decay: expected a number in (0, 1) or null, got {ema}")
        # validation, checkpoints and the final model use the exponential moving average of the weights
        callbacks.insert(0, WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(float(ema))))
    trainer_args = dict(cfg.get("trainer", {}))
    precision = trainer_args.get("precision")
    if precision is not None and str(precision) not in FULL_PRECISIONS:
        raise ConfigError(f"trainer.precision={precision}: grud trains in full precision (32 or 64) only; its fused "
                          "recurrent kernels and gradient clipping do not take mixed or half precision")
    from grud.cli.interrupts import InterruptOnSignal
    from grud.cli.run_logger import LogIntervalWithinEpoch, RunCSVLogger

    callbacks.append(LogIntervalWithinEpoch())  # an epoch shorter than the interval still logs its loss
    callbacks.append(InterruptOnSignal())  # a Ctrl-C Python swallows is raised again after the next batch
    logger = RunCSVLogger(run_dir, keep_until_epoch=resumed_epoch)
    return pl.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=logger,
                      plugins=[SafeCheckpointIO()], use_distributed_sampler=False, **trainer_args)


#: the keys of each task group (conf/task/<name>.yaml); another one is an error, not ignored
TASK_KEYS = {
    "classification": ("name", "head", "class_weight", "impute_weight", "value_transform", "augment_missing",
                       "ensemble"),
    "forecast": ("name", "history_hours", "horizon_hours", "forecast_grid_hours", "decoder", "loss_weight_power",
                 "impute_weight"),
}


def check_task_keys(task: dict, allowed, where: str) -> None:
    """ConfigError for a ``task.*`` key ``where`` does not read (``+task.value_transform=log`` on a
    forecaster was accepted and did nothing), suggesting the closest allowed key."""
    from grud.data.text_tables import closest_name

    for key in task:
        if key not in allowed:
            close = closest_name(key, list(allowed))
            raise ConfigError(f"task.{key}: not a key of {where}{f' (did you mean task.{close}?)' if close else ''}; "
                              f"its keys: {', '.join(k for k in allowed if k != 'name')}")


def build_module(cfg: dict, stats: FittedStats, train: IrregularDataset):
    """The task's Lightning module from plain config sections."""
    from grud.tasks.registry import task_class

    task = dict(cfg.get("task", {}))
    name = task.pop("name", "classification")
    cls = task_class(name)
    check_task_keys(task, TASK_KEYS.get(name, tuple(task)), f"task={name}")
    model = dict(cfg["model"])
    if name == "classification":
        return cls(model=model, stats=stats.to_dict(), optim=cfg.get("optim"), head=task.get("head"),
                   class_weight=task.get("class_weight"), class_counts=class_counts(train, stats.classes),
                   impute_weight=float(task.get("impute_weight", 0.0)),
                   value_transform=task.get("value_transform", "affine"),
                   augment_missing=task.get("augment_missing", 0.0), ensemble=task.get("ensemble", 1))
    from grud.tasks.forecasting import fit_loss_weights

    weights = fit_loss_weights(train, stats, float(task.get("history_hours", 24.0)), task.get("horizon_hours"),
                               power=task.get("loss_weight_power", 0.5))
    return cls(model=model, stats=stats.to_dict(), optim=cfg.get("optim"), decoder=task.get("decoder"),
               history_hours=float(task.get("history_hours", 24.0)), horizon_hours=task.get("horizon_hours"),
               forecast_grid_hours=task.get("forecast_grid_hours"), loss_weights=weights,
               impute_weight=float(task.get("impute_weight", 0.0)))


def is_forecast_baseline(model: dict) -> bool:
    """``locf`` / ``mean_forecast``: fitted on the training split only, nothing chosen on validation."""
    from grud.tasks.forecasting import BASELINES

    return model.get("kind") == "baseline" and model.get("name") in BASELINES


def check_model_serves_task(model: dict, task_name: str) -> None:
    tasks = model.get("tasks")
    if model.get("kind") == "baseline" and tasks and task_name not in tasks:
        raise ConfigError(
            f"model={model.get('name')} serves task {', '.join(tasks)}, not task={task_name}; "
            f"choose a model for {task_name} (e.g. model=grud{' or model=logreg' if task_name == 'classification' else ' or model=locf'})"
        )


def monitor_of(cfg: dict, task_name: str) -> tuple[str, str] | None:
    """``early_stopping.monitor`` as (metric, Lightning mode), or None for the task's own
    (``val/auroc``, ``val/mse``); a metric the task does not report on validation is a ConfigError.
    (A baseline chooses its regularisation its own way: a run ignores the key there.)"""
    from grud.cli.config import TASK_METRICS, own_metric

    metric = (cfg.get("early_stopping") or {}).get("monitor")
    if metric is None:
        return None
    known = TASK_METRICS.get(task_name, {})
    if metric not in known:
        raise ConfigError(f"early_stopping.monitor={metric}: task={task_name} reports {', '.join(known)} on "
                          f"validation (null: the task's own, {own_metric(task_name) or '?'})")
    return metric, "max" if known[metric] == "maximize" else "min"


def monitor_name(cfg: dict, task_name: str) -> str:
    """The validation metric a network's run ranks epochs by: ``early_stopping.monitor`` or the task's own."""
    chosen = monitor_of(cfg, task_name)
    if chosen is not None:
        return chosen[0]
    from grud.tasks.classification import ClassificationTask
    from grud.tasks.forecasting import ForecastTask

    return (ForecastTask if task_name == "forecast" else ClassificationTask).monitor


#: the metric a checkpoint's early stopping ranked epochs by (Lightning keys its callback state by it)
_SAVED_MONITOR = re.compile(r"^EarlyStopping\{'monitor': '([^']+)'")


def saved_monitor(checkpoint: dict) -> str | None:
    """``early_stopping.monitor`` of the run that wrote ``checkpoint`` (None when it has no such state)."""
    for key in checkpoint.get("callbacks") or {}:
        m = _SAVED_MONITOR.match(str(key))
        if m:
            return m.group(1)
    return None


#: numeric keys checked before any work: (key, integer?, bound, bound excluded?, null allowed?)
_NUMBER_KEYS = (("seed", True, None, False, False), ("optim.lr", False, 0.0, True, False),
                ("optim.weight_decay", False, 0.0, False, False), ("optim.grad_clip", False, 0.0, False, True),
                ("trainer.max_epochs", True, -1, False, True), ("data.batch_size", True, 1, False, False),
                ("early_stopping.patience", True, 0, False, False), ("data.grid", False, 0.0, True, True))


#: the keys of each data group (conf/data/<kind>.yaml, and ``+data.split_seed``); another one is
#: an error, not ignored (``+data.val_fractoin=0.3`` was accepted and did nothing)
_SPLIT_KEYS = ("val_fraction", "folds", "fold", "test_fraction", "train_ids", "val_ids", "test_ids", "split_seed")
_FILE_KEYS = ("kind", "path", "labels", "test_path", "test_labels")
_LOADER_KEYS = ("batch_size", "bucket", "num_workers")
_CSV_KEYS = ("id_column", "time_column", "label_column", "label_id_column", "label_map", "time_unit", "time_zero",
             "static_variables", "delimiter")
DATA_KEYS = {
    "physionet2012": (*_FILE_KEYS, "max_hours", "value_ranges", "categorical_static", "grid", *_SPLIT_KEYS,
                      *_LOADER_KEYS),
    "csv_long": (*_FILE_KEYS, *_CSV_KEYS, "variable_column", "value_column", "categorical_static", "max_hours",
                 "value_ranges", "grid", *_SPLIT_KEYS, *_LOADER_KEYS),
    "csv_wide": (*_FILE_KEYS, *_CSV_KEYS, "variables", "categorical_static", "max_hours", "value_ranges", "grid",
                 *_SPLIT_KEYS, *_LOADER_KEYS),
}


def check_data_keys(keys, kind: str) -> None:
    """ConfigError for a ``data.*`` key the reader of ``kind`` does not take, naming the closest
    key of ``kind`` or the data groups that do take it."""
    from grud.data.text_tables import closest_name

    allowed = DATA_KEYS.get(kind)
    if allowed is None:
        return  # the reader reports an unknown kind itself
    for key in keys:
        if key in allowed:
            continue
        others = [k for k, v in DATA_KEYS.items() if key in v]
        close = closest_name(key, list(allowed))
        hint = (f" (a key of {' and '.join(f'data={k}' for k in others)})" if others
                else f" (did you mean data.{close}?)" if close else "")
        raise ConfigError(f"data.{key}: not a key of data={kind}{hint}; its keys: "
                          f"{', '.join(k for k in allowed if k != 'kind')}")


def check_numbers(cfg: dict) -> None:
    """ConfigError naming the key for a number that is text or out of range (``optim.lr=abc``),
    instead of a bare ValueError (or an assertion inside Lightning) later."""
    for key, integer, low, strict, nullable in _NUMBER_KEYS:
        node, found = cfg, True
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                found = False
                break
            node = node[part]
        if not found or (node is None and nullable):
            continue
        ok = isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(float(node))
        if ok and integer:
            ok = float(node) == int(node)
        if ok and low is not None:
            ok = float(node) > low if strict else float(node) >= low
        if not ok:
            kind = "an integer" if integer else "a number"
            bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
            raise ConfigError(f"{key}: expected {kind}{bound}{' or null' if nullable else ''}, got {node!r}")
    task = cfg.get("task") or {}
    if (cfg.get("data") or {}).get("batch_size") == 1 and task.get("name", "classification") == "classification" \
            and (cfg.get("model") or {}).get("kind") != "baseline" and (task.get("head") or {}).get("batch_norm", True):
        raise ConfigError("data.batch_size=1: the classification head's batch norm cannot normalise a batch of one "
                          "series; use data.batch_size >= 2, or task.head.batch_norm=false")


#: model keys that must match between a run's config and the checkpoint it resumes
_RESUME_KEYS = ("name", "input", "cell", "hidden_size", "num_layers", "bidirectional")


def resume_checkpoint(cfg: dict, run_dir: Path, fresh_if_none: bool = False) -> Path | None:
    """``last.ckpt`` to continue from with ``resume=true`` (None without it), checked against ``cfg``
    before anything is written: another model or task is a ConfigError naming both.

    ``fresh_if_none``: with no ``last.ckpt`` the run starts from scratch (a sweep's job that never
    started); otherwise that is an error (most likely another run directory was meant).
    """
    if not cfg.get("resume"):
        return None
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.exists():
        if fresh_if_none:
            log.info("resume=true: %s does not exist (this job never started): starting from scratch", last)
            return None
        raise DataError(
            f"resume=true but there is no checkpoint to resume: {last} does not exist "
            "(use the same hydra.run.dir as the interrupted run, or drop resume=true)")
    from grud.cli.checkpoint import safe_load

    saved = safe_load(last)
    task = (cfg.get("task") or {}).get("name", "classification")
    saved_task = (saved.get("grud") or {}).get("task")
    model = (saved.get("hyper_parameters") or {}).get("model") or {}
    differ = [f"task={saved_task} (asked {task})"] if saved_task and saved_task != task else []
    differ += [f"model.{k}={model[k]} (asked {cfg['model'].get(k)})" for k in _RESUME_KEYS
               if k in model and k in cfg["model"] and model[k] != cfg["model"][k]]
    was = saved_monitor(saved)  # the best checkpoint, patience and the scheduler's state are kept by it
    if was is not None and saved_task in (None, task) and was != monitor_name(cfg, task):
        differ.append(f"early_stopping.monitor={was} (asked {monitor_name(cfg, task)})")
    if differ:
        raise ConfigError(f"resume=true: {last} was trained with {', '.join(differ)}: resume with the "
                          f"interrupted run's overrides, or use another hydra.run.dir")
    return last


def check_resumable(module, checkpoint: Path) -> int:
    """The epoch ``checkpoint`` holds, or a ConfigError naming the weights that differ when
    ``module`` (built from this run's config) cannot take its weights: a task or head setting
    changed since the interrupted run (e.g. ``task.impute_weight``, ``task.head.hidden``).
    Checked before anything is written."""
    from grud.cli.checkpoint import safe_load

    loaded = safe_load(checkpoint)
    saved = {k: tuple(v.shape) for k, v in (loaded.get("state_dict") or {}).items()}
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    differ = sorted(set(saved) ^ set(own)) + sorted(k for k in set(saved) & set(own) if saved[k] != own[k])
    if differ:
        shown = ", ".join(f"{k} ({'only in the checkpoint' if k not in own else 'not in the checkpoint' if k not in saved else f'{saved[k]} there, {own[k]} here'})"
                          for k in differ[:3])
        raise ConfigError(f"resume=true: {checkpoint} holds other weights than this run's config builds: {shown}"
                          f"{f' and {len(differ) - 3} more' if len(differ) > 3 else ''}; a task or model setting "
                          "changed since the interrupted run: resume with its overrides, or use another hydra.run.dir")
    return int(loaded["epoch"])


#: ``run_training(resume_from=...)`` default: resolve ``resume=true`` there (:func:`resume_checkpoint`)
UNCHECKED = object()

# set by Lightning (DDP relaunch), torchrun and Slurm in every process but the first
_RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def is_first_process() -> bool:
    """False in the extra processes of a multi-process run (they share the run directory)."""
    return all(os.environ.get(v, "0") in ("", "0") for v in _RANK_VARIABLES)


#: a run's status record: metrics.json when it completed, failure.json when it failed
RUN_RECORDS = ("metrics.json", "failure.json")
#: the checkpoints a run leaves (with RUN_RECORDS: what tells that a folder holds an earlier run)
RUN_CHECKPOINTS = ("checkpoints/best.ckpt", "checkpoints/last.ckpt")
#: what a run writes into its directory besides config.yaml and train.log (relative paths)
RUN_RESULTS = (*RUN_RECORDS, *RUN_CHECKPOINTS, "metrics.csv", "hparams.yaml",
               "plots/history.png", "plots/roc.png", "plots/pr.png", "plots/calibration.png",
               "plots/forecasts.png", "plots/input_decay.png")


def earlier_run_in(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds what a grud run leaves (its record or a checkpoint)."""
    return any((Path(run_dir) / n).is_file() for n in (*RUN_RECORDS, *RUN_CHECKPOINTS))


def clear_records(run_dir: Path) -> None:
    """Remove an earlier attempt's status record (:data:`RUN_RECORDS`): this run writes its own."""
    for name in RUN_RECORDS:
        (Path(run_dir) / name).unlink(missing_ok=True)


def clear_earlier_run(run_dir: Path, resumed: bool, earlier: bool, config_text: bytes | None = None) -> None:
    """Once a run passed its config and data checks (a refused run leaves the folder as it was, its
    ``config.yaml`` included, so that file always describes the checkpoints beside it): a resumed
    run removes the earlier attempt's record, a fresh one an earlier run's results (only the first
    process of a multi-process run; ``earlier`` from :func:`earlier_run_in` at its start); then
    ``config_text`` (the composed config) is written as ``config.yaml``."""
    if resumed:
        clear_records(run_dir)
    elif earlier and is_first_process():
        remove_previous_results(run_dir)
    if config_text is not None and is_first_process():
        from grud.cli.files import atomic_write_bytes

        atomic_write_bytes(Path(run_dir) / "config.yaml", config_text)


def remove_previous_results(run_dir: Path) -> list[str]:
    """Delete an earlier run's results (:data:`RUN_RESULTS`) from ``run_dir`` before a fresh run
    writes its own there, so the folder never mixes two runs (e.g. a GRU-D's checkpoints and
    plots beside a later logreg's metrics). Other files are left alone. Returns what was removed."""
    removed = []
    for name in RUN_RESULTS:
        path = Path(run_dir) / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    if [r for r in removed if r != "failure.json"]:
        log.warning("%s held an earlier run's results; replaced by this run's: removed %s", run_dir,
                    ", ".join(removed))
    return removed


def run_training(cfg: dict, run_dir: Path, fresh_if_none: bool = False, resume_from=UNCHECKED,
                 config_text: bytes | None = None) -> dict:
    """Train per ``cfg`` (plain dict) into ``run_dir``; returns the metrics written to metrics.json.

    ``fresh_if_none``: with ``resume=true`` and no ``last.ckpt``, start from scratch (sweeps).
    ``resume_from``: what :func:`resume_checkpoint` gave a caller that checked it already (a path
    or None); by default it is checked here. ``config_text``: the composed config, written as
    ``config.yaml`` once the config and data checks pass (a refused run leaves the earlier one).
    """
    import pytorch_lightning as pl

    start = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    earlier = earlier_run_in(run_dir)
    if resume_from is UNCHECKED:
        resume_from = resume_checkpoint(cfg, run_dir, fresh_if_none)
    check_numbers(cfg)
    given_data = cfg.get("data") or {}
    check_data_keys(given_data, given_data.get("kind", "physionet2012"))
    grid = (cfg.get("task") or {}).get("forecast_grid_hours")
    if grid is not None:
        raise ConfigError(f"task.forecast_grid_hours={grid}: a future grid has no truth to train or score on; "
                          f"train on the observed times and set it at grud-predict")
    task_name = cfg.get("task", {}).get("name", "classification")
    check_model_serves_task(cfg["model"], task_name)
    monitor = monitor_of(cfg, task_name)
    if monitor is not None and cfg["model"].get("kind") == "baseline":
        log.info("early_stopping.monitor=%s: model=%s is not trained by epochs; the key applies to networks",
                 monitor[0], cfg["model"].get("name"))
    ckpt_dir = run_dir / "checkpoints"
    seed = int(cfg.get("seed", 0))
    pl.seed_everything(seed, workers=True, verbose=False)
    data = dict(cfg["data"])
    data.setdefault("split_seed", seed)
    train, val, test, paths = read_for_run(data)
    if len(val) == 0 and not is_forecast_baseline(cfg["model"]):  # locf / mean_forecast learn nothing
        raise DataError("the validation split is empty: early stopping, the best checkpoint and the baselines' "
                        "regularisation are chosen on it; set data.val_fraction > 0, data.val_ids or data.folds")
    categories = {}
    if data.get("categorical_static"):  # one-hot codes, the categories of the training split only
        from grud.data.categorical import fit_static_categories, one_hot_static

        categories = fit_static_categories(train, list(data["categorical_static"]))
        train, val, test = (one_hot_static(d, categories) for d in (train, val, test))
    if task_name == "classification":
        for name, ds in (("training", train), ("validation", val), ("test", test)):
            lab = ds.labels if ds.labels is not None else np.zeros(0)
            odd = np.flatnonzero(np.isfinite(lab) & (lab != np.round(lab)))
            if len(odd):
                source = data.get("test_labels") if name == "test" and data.get("test_path") else data.get("labels")
                raise DataError(f"{source or 'the labels'}: classification needs whole-number class codes in "
                                f"{data.get('label_column', 'the label column')!r}, got {lab[odd[0]]:g} for series "
                                f"{ds.ids[odd[0]]!r} ({len(odd)} such label(s) in the {name} split)")
        for name, ds in (("training", train), ("validation", val)):
            if not ds.has_labels:
                raise DataError(f"the {name} split has no labels (classification needs them): "
                                f"{missing_labels_reason(ds)}")
        if len(test) and not test.has_labels:  # before training, not after it
            hint = (f"data.test_path={data['test_path']} needs data.test_labels=FILE (the same file as data.labels "
                    f"if that one holds the test ids too)" if data.get("test_path") and data.get("test_labels") is None
                    else missing_labels_reason(test))
            raise DataError(f"the test split has no labels (classification scores it): {hint}")
        log_class_counts(train, val, test)
        ranked_by = monitor_name(cfg, task_name)
        for name, ds in (("validation", val), ("test", test)):
            seen, _ = label_counts(ds)
            if len(seen) > 1:
                warn_few_of_a_class(ds, name, ranked_by)
            if len(ds) and len(seen) == 1:
                log.warning("the %s split holds labels of one class only (%g): %s/auroc and /auprc are undefined "
                            "(null in metrics.json)%s", name, float(seen[0]), STAGE_OF[name],
                            "; early stopping and the best checkpoint cannot rank epochs by it"
                            if name == "validation" and ranked_by in ("val/auroc", "val/auprc")
                            else "")
    stats = fit_stats(train)
    stats.reader = reader_options_of(data)
    stats.static_categories = categories
    log.info("data: %d train, %d validation, %d test series; %d variables, %d static",
             len(train), len(val), len(test), stats.n_features, stats.n_static)
    log.info("variables: %s; static: %s", ", ".join(train.variables) or "none",
             ", ".join(train.static_names) or "none")
    from grud.data.suspect_variables import static_code_hints, suspect_variable_warnings

    for message in suspect_variable_warnings(train, value_ranges_set=data.get("value_ranges") is not None):
        log.warning(message)
    for message in static_code_hints(train):
        log.info(message)
    metrics: dict = {}
    path_hash, inputs_hash = data_hashes(paths)  # the training file's (held-out record), all inputs' (metrics.json)
    held_out = held_out_record(paths[0], test if not data.get("test_path") else None, path_hash)
    if cfg["model"].get("kind") == "baseline":
        from grud.cli.baseline_runs import run_baseline

        if task_name == "classification":  # task.class_weight checked as for the networks, before the clear
            from grud.tasks.classification import class_weights_of

            class_weights_of((cfg.get("task") or {}).get("class_weight"), class_counts(train, stats.classes),
                             len(stats.classes))
        clear_earlier_run(run_dir, resumed=resume_from is not None, earlier=earlier, config_text=config_text)
        metrics = run_baseline(cfg, run_dir, train, val, test, stats, held_out=held_out)
        epochs, resumed = 0, None
    else:
        module = build_module(cfg, stats, train)
        module.held_out = held_out
        resumed = None if resume_from is None else check_resumable(module, resume_from)
        # the Trainer checks its own arguments (trainer.*, ema_decay): built before anything is replaced
        # (its logger and checkpoints write nothing until fit)
        if monitor is not None:  # early_stopping.monitor: the best epoch, early stopping and the plateau scheduler
            module.monitor, module.monitor_mode = monitor
        trainer = make_trainer(cfg, run_dir, module.monitor, module.monitor_mode, resumed_epoch=resumed)
        clear_earlier_run(run_dir, resumed=resume_from is not None, earlier=earlier, config_text=config_text)
        from grud.models.fast import native

        log.info("native GRU kernel (grud.models.fast.native): %s", native.status())
        if cfg.get("summary", True):
            from grud.models import summary

            print(summary(module.network), flush=True)
        members = getattr(module, "train_streams", 1)  # one training order per ensemble member
        if members > 1:
            log.info("ensemble of %d members (the summary shows one network); %d trainable parameters in all",
                     members, sum(p.numel() for p in module.parameters() if p.requires_grad))
        from grud.data.datamodule import GrudDataModule

        dm = GrudDataModule(train, val, test, stats, module.encode_dataset, batch_size=int(data.get("batch_size", 64)),
                            bucket=bool(data.get("bucket", True)), num_workers=int(data.get("num_workers", 0)),
                            seed=seed, train_streams=members)
        warn_few_steps(len(train), int(data.get("batch_size", 64)), trainer.max_epochs)
        if resumed is not None:
            log.info("resuming from %s (epoch %d)", resume_from, resumed)
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)
        epochs = int(trainer.current_epoch)
        if cfg.get("ema_decay"):
            from pytorch_lightning.callbacks import WeightAveraging

            # a checkpoint's state_dict holds the averaged weights (what grud-predict loads); with the
            # callback attached, loading it for validate/test would restore the raw training weights
            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
        best = ckpt_dir / "best.ckpt"
        ckpt = str(best) if best.exists() else None
        for stage, fn in (("val", trainer.validate), ("test", trainer.test)):
            loader_ds = val if stage == "val" else test
            if loader_ds is None or len(loader_ds) == 0:
                continue
            loggers = trainer.loggers
            if stage == "val":  # the best epoch's validation again: metrics.csv has its row already
                trainer.loggers = []
            try:
                res = fn(module, datamodule=dm, ckpt_path=ckpt, verbose=False, weights_only=True)
            finally:
                trainer.loggers = loggers
            metrics.update(metric_values({k: v for k, v in (res[0] if res else {}).items() if k.startswith(stage + "/")},
                                          float32=True))
        if trainer.global_rank != 0:  # validate/test above are collective under DDP: every rank runs them
            return {}
        if cfg.get("plots", True):
            from grud.cli.run_plots import write_plots

            write_plots(module, run_dir, dm, task_name)
    metrics.update({
        "status": "ok",
        "task": task_name,
        "model": cfg["model"].get("name"),
        "seed": seed,
        "epochs": epochs,
        "resumed_from_epoch": resumed,
        # the validation metric that picked best.ckpt (a network's; a baseline chooses no epoch)
        "monitor": None if cfg["model"].get("kind") == "baseline" else module.monitor,
        "seconds": round(time.time() - start, 2),
        "data_hash": inputs_hash,
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        **({"classes": len(stats.classes)} if task_name == "classification" else {}),
        **{f"version/{k}": v for k, v in versions().items()},
    })
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics
