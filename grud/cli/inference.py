"""Loading a checkpoint and applying it to new data (grud-predict, grud-evaluate, grud.api)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grud.cli.checkpoint import safe_load
from grud.cli.metric_values import metric_values
from grud.data.batching import BucketBatchSampler, to_grid
from grud.data.categorical import check_no_text_static
from grud.data.dataset import IrregularDataset
from grud.data.loading import read_dataset
from grud.data.transforms import FittedStats
from grud.errors import CheckpointError, ConfigError, DataError
from grud.tasks import metrics as M

log = logging.getLogger("grud")


@dataclass
class LoadedModel:
    """A checkpoint ready for prediction: a Lightning task module, or a fitted baseline."""

    path: Path
    task: str
    stats: FittedStats
    module: object = None        # TaskModule for neural models
    baseline: str | None = None  # name for baselines
    baseline_state: dict | None = None

    @property
    def held_out(self) -> dict | None:
        """The training file's hash and test ids (:func:`grud.cli.pipeline.held_out_record`); None
        for checkpoints written before they were kept, or outside grud-train."""
        if self.module is not None:
            return getattr(self.module, "held_out", None)
        return (self.baseline_state or {}).get("held_out")


#: model keys added after checkpoints were first written, with the value those checkpoints imply
#: (the presets' defaults may differ): the mixed input fed delta in hours; every network started
#: from the zero state
MODEL_KEYS_ADDED_LATER = {"mixed_delta": "hours", "static_state": False}


def load_model(checkpoint) -> LoadedModel:
    """Read ``checkpoint`` safely (weights_only) and rebuild its model from plain hyperparameters."""
    path = Path(str(checkpoint))
    ckpt = safe_load(path)
    info = ckpt.get("grud")
    if "hyper_parameters" in ckpt and "state_dict" in ckpt:
        from grud.tasks.base import rebuilding_saved
        from grud.tasks.registry import task_class

        task = (info or {}).get("task", "classification")
        hp = dict(ckpt["hyper_parameters"])
        if isinstance(hp.get("model"), dict):
            # keys a checkpoint saved before they existed does not name: the behaviour it was trained with
            hp["model"] = {**MODEL_KEYS_ADDED_LATER, **hp["model"]}
        if isinstance(hp.get("stats"), dict):  # checked before a model is built on them
            _refuse_unusable_stats(FittedStats.from_dict(hp["stats"]), path)
        try:
            with rebuilding_saved():
                module = task_class(task)(**hp)
            _imputers_as_saved(module, ckpt["state_dict"])
            module.load_state_dict(ckpt["state_dict"])
            module.on_load_checkpoint(ckpt)  # what a task keeps outside its weights
        except (TypeError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"does not match this version of grud ({' '.join(str(exc).split())[:200]})",
                                  path=path) from None
        bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # training stops before a non-finite step, so its checkpoints never hold these
            raise CheckpointError(f"damaged: {len(bad)} weight tensor(s) hold NaN or inf (e.g. {bad[0]}); every "
                                  f"prediction would be NaN", path=path)
        module.eval()
        return LoadedModel(path, task, module.stats, module=module)
    if isinstance(info, dict) and "baseline" in info:
        stats = FittedStats.from_dict(info["stats"])
        _refuse_unusable_stats(stats, path)
        return LoadedModel(path, info["task"], stats, baseline=info["baseline"], baseline_state=info)
    raise CheckpointError("not a grud checkpoint (no model hyperparameters or baseline state)", path=path)


def _refuse_unusable_stats(stats: FittedStats, path) -> None:
    problems = stats.problems()
    if problems:
        raise CheckpointError(f"damaged: its statistics are unusable ({'; '.join(problems)})", path=path)


def _imputers_as_saved(module, state_dict: dict) -> None:
    """Give ``module`` next-step imputers of the width its checkpoint saved.

    Checkpoints of bidirectional networks written before the imputer read only the forward
    direction (``NextStepImputer``) hold an imputer over both directions: it is rebuilt at that
    width, so the checkpoint loads and imputes exactly as it was trained.
    """
    from grud.models.heads import NextStepImputer

    suffix = ".proj.weight"
    for key, weight in state_dict.items():
        if not key.endswith("imputer" + suffix):
            continue
        name = key[: -len(suffix)]
        try:
            current = module.get_submodule(name)
        except AttributeError:
            continue  # load_state_dict names the unexpected key
        if isinstance(current, NextStepImputer) and tuple(current.proj.weight.shape) != tuple(weight.shape):
            parent, _, attr = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, attr,
                    NextStepImputer(weight.shape[1], weight.shape[0]))


#: files a data group names for training (data/physionet2012.yaml's Outcomes-a.txt, say): at
#: prediction they are read only when the user names them (data.labels=...)
_TRAINING_FILES = ("labels", "test_path", "test_labels")


def prediction_data_options(train_reader: dict, given: dict, explicit: set, group_chosen: bool,
                            trained_variables: list | None = None) -> dict:
    """Data options at prediction: training's, unless the user set them on the command line.

    A data group chosen at prediction (``data=csv_wide``) switches the file type; its defaults
    fill only what training's reader did not set (a PhysioNet model reading a CSV gets the CSV
    column defaults; its static variables are PhysioNet's Age, Gender, Height and ICUType), so
    training's time unit, static variables and column names stay. Its
    training files (labels, test set) come only with its own ``path``: given another
    ``data.path``, the group's labels belong to other series. A wide file is read for
    ``trained_variables`` (the model's time-varying variables) unless ``data.variables`` is given:
    other columns are reported and never parsed (a text cell in a column the model does not know
    stopped the prediction).
    """
    if "path" in explicit:
        given = {k: v for k, v in given.items() if k in explicit or k not in _TRAINING_FILES}
    opts = {k: v for k, v in (train_reader or {}).items()}
    for k, v in given.items():
        if k in explicit or (k == "kind" and group_chosen) or (k not in opts and v is not None):
            opts[k] = v
    trained_static = (train_reader or {}).get("static_variables")
    if (train_reader or {}).get("kind") == "physionet2012":
        from grud.data.readers import PHYSIONET_STATIC

        trained_static = list(PHYSIONET_STATIC)  # fixed by that format; a CSV export names them
        if opts.get("kind") != "physionet2012" and "static_variables" not in explicit:
            opts["static_variables"] = trained_static
    if "static_variables" in explicit and trained_static is not None \
            and sorted(map(str, given.get("static_variables") or [])) != sorted(map(str, trained_static)):
        raise ConfigError(
            f"data.static_variables={list(given.get('static_variables') or [])}: the model was trained with "
            f"static variables {list(trained_static)}, and its inputs are fixed (a static read as a time series, "
            "or one left out, changes every prediction); drop the override: training's list is the default")
    check_prediction_data_keys(sorted(k for k in explicit if k in given), opts.get("kind") or "csv_long")
    if opts.get("kind") == "csv_wide" and "variables" not in explicit:
        opts["allow_missing_variables"] = True  # training's columns: absent ones are all-unobserved
        if opts.get("variables") is None and trained_variables is not None:
            opts["variables"] = [str(v) for v in trained_variables]
    if opts.get("kind") == "csv_long" and "static_variables" not in explicit:
        opts["allow_missing_variables"] = True  # training's static list: one the file lacks is unobserved
    if opts.get("kind") == "csv_long" and trained_variables is not None:
        # the model drops other variables: their text values read as unobserved instead of stopping the prediction
        opts["known_variables"] = [str(v) for v in trained_variables] + [str(v) for v in opts.get("static_variables") or []]
    return opts


#: why a training key does nothing at prediction (the split keys: every series is read)
_NOT_READ_AT_PREDICTION = {"categorical_static": "the codes come from the checkpoint",
                           **dict.fromkeys(("test_path", "test_labels"), "the test file of a training run"),
                           **dict.fromkeys(("bucket", "num_workers"), "how training batches are drawn")}


def check_prediction_data_keys(keys, kind: str) -> None:
    """ConfigError for a ``data.*`` key that prediction does not read: one no data group has
    (:func:`grud.cli.pipeline.check_data_keys`), or one of training only (the split, the batches,
    the categorical codes, which come from the checkpoint), that was accepted and did nothing."""
    from grud.cli.pipeline import check_data_keys
    from grud.data.loading import prediction_reader_keys

    check_data_keys(keys, kind)
    read = ("kind", "path", "labels", "grid", *prediction_reader_keys(kind))
    for key in keys:
        if key in read:
            continue
        if key == "batch_size":
            raise ConfigError("data.batch_size: a training key; at prediction the series per batch are batch_size=N "
                              "(no data. prefix)")
        what = _NOT_READ_AT_PREDICTION.get(key, "prediction reads every series of data.path")  # the split keys
        raise ConfigError(f"data.{key}: a training key that prediction does not read ({what}); prediction reads "
                          f"data.{', data.'.join(read)}")


def read_for_prediction(opts: dict, stats: FittedStats, need_labels: bool = False) -> IrregularDataset:
    """Read the file ``opts`` names and lay it out as the model of ``stats`` was trained on."""
    return prepare_for_model(read_raw(opts, need_labels), opts, stats)


def read_raw(opts: dict, need_labels: bool = False) -> IrregularDataset:
    """Read the file ``opts`` names with its reader options (no model's statistics involved yet)."""
    if not opts.get("path") or str(opts["path"]) == "???":  # ??? is Hydra's "not given"
        raise ConfigError("data.path: the file to predict on is required (data.path=FILE)")
    kind = opts.get("kind") or "csv_long"
    ds = read_dataset(kind, opts["path"], opts.get("labels"), key="data.path",
                      **{k: v for k, v in opts.items() if k not in ("path", "labels", "kind")})
    if need_labels and not ds.has_labels:
        from grud.data.readers import missing_labels_reason

        raise DataError(f"evaluation needs labels, and {missing_labels_reason(ds)}", path=opts["path"])
    return ds


def held_out_part(ds: IrregularDataset, members: list, path) -> IrregularDataset:
    """The series of ``ds`` that training held out, when ``path`` is the file the model (every
    member of an ensemble that names one) was trained on: scoring the training file whole would
    score series the model learnt from. Another file, or checkpoints that keep no record, give
    ``ds`` unchanged. Members that held out different series (runs of different split seeds) are a
    :class:`ConfigError`: no split of the file is a test set for all of them. A training file
    with no test split (the test set was another file) is scored whole, with a warning."""
    from grud.data.loading import resolve_path

    records = [m.held_out for m in members if m.held_out]
    if not records:
        return ds
    file = resolve_path(path, "data.path")
    same_as = same_file(file)
    same = [r for r in records if same_as(r)]
    if not same:
        return ds
    held = [frozenset(map(str, r.get("test_ids") or [])) for r in same]
    if len(set(held)) > 1:
        raise ConfigError(
            f"data.path={path} is the file the {len(same)} members were trained on, and they held out different "
            f"series as their test splits (their runs drew different splits: the split follows the seed unless "
            f"+data.split_seed fixes it); only {len(frozenset.intersection(*held))} series are held out from all of "
            "them: score the ensemble on a separate test file, or train its members with one +data.split_seed")
    if not held[0]:
        log.warning("data.path=%s is the file the model was trained on, and none of its series was held out as a "
                    "test split (training's test set was another file): these metrics score series the model "
                    "learnt from", path)
        return ds
    rows = [i for i, x in enumerate(ds.ids) if str(x) in held[0]]
    log.info("data.path=%s is the file the model was trained on: scoring the %d series training held out as its "
             "test split (of %d in the file), as the run's test/ metrics did", path, len(rows), len(ds))
    return ds.subset(rows)


def same_file(path: Path):
    """A test of whether ``path`` holds the bytes of the training file a record describes
    (:func:`grud.cli.pipeline.held_out_record`): its size first, then its hash, each read once
    however many records (ensemble members) are tested."""
    from grud.cli.pipeline import data_hash, input_bytes

    size = input_bytes(path)
    digest: list = []  # computed at the first record of the right size

    def test(record: dict) -> bool:
        if record.get("bytes") is not None and record["bytes"] != size:
            return False
        if not digest:
            digest.append(data_hash([path]))
        return record.get("data_hash") == digest[0]

    return test


def prepare_for_model(ds: IrregularDataset, opts: dict, stats: FittedStats) -> IrregularDataset:
    """``ds`` on the model's time grid, static codes one-hot with its categories, in its variable order."""
    if opts.get("grid") is not None:
        ds = to_grid(ds, float(opts["grid"]))
    if stats.static_categories:  # the training split's one-hot encoding (grud.data.categorical)
        from grud.data.categorical import one_hot_static

        ds = one_hot_static(ds, stats.static_categories)
    ds = ds.align(stats.variables, stats.static_names)
    check_no_text_static(ds, "the checkpoint reads {name!r} as a number (it was not in data.categorical_static "
                             "at training): give the numbers training had")
    return ds


#: at most this many (series, query, variable) entries in one forecast prediction batch: the
#: decoder's activations grow with it (a 0.1 h grid over 80 h of 57 variables for 256 series
#: held 11.7 M entries and peaked at 10 GB)
MAX_FORECAST_ENTRIES = 1 << 20


def split_by_entries(batches: list, query_counts, n_features: int, budget: int = MAX_FORECAST_ENTRIES) -> list:
    """Cut each batch (a list of series) so that series x longest query count x F stays within
    ``budget`` entries (a batch is padded to its longest query count); a series over budget alone
    forms a batch. Order kept.

    Shape:
        query_counts (n,) queries per series -> batches of indices into it.
    """
    out = []
    counts = np.asarray(query_counts)
    for b in batches:
        part, longest = [], 0
        for i in b:
            q = max(int(counts[i]), 1)
            if part and (len(part) + 1) * max(longest, q) * n_features > budget:
                out.append(part)
                part, longest = [], 0
            part.append(i)
            longest = max(longest, q)
        if part:
            out.append(part)
    return out


def _batches(enc, batch_size: int, progress):
    sampler = BucketBatchSampler(enc.lengths, batch_size, shuffle=False, bucket=True)
    batches = list(sampler)
    if hasattr(enc, "query_counts"):  # forecasting: bound the decoder's memory
        batches = split_by_entries(batches, enc.query_counts, len(enc.stats.variables))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=progress if isinstance(progress, str) else "predict", unit="batch", leave=False)
    for b in batches:
        yield enc.collate(b)


def id_column_of(model: LoadedModel) -> str:
    """The id column a model's predictions carry: training's ``data.id_column`` (``id`` if unset)."""
    return model.stats.reader.get("id_column") or "id"


def predict_frame(model: LoadedModel, ds: IrregularDataset, mc_samples: int = 0, batch_size: int = 256,
                  task_overrides: dict | None = None, progress: bool | str = True, keep_draws: bool = False,
                  interval: str = "mc", interval_level: float = 0.9) -> pd.DataFrame:
    """Predictions for every series of ``ds`` as a DataFrame (raw units; see README).

    ``keep_draws`` (forecasting with ``mc_samples``): also one ``draw_<k>`` column per draw, for
    pooling the draws of an ensemble's members. ``interval`` (forecasting): ``mc`` = ``lower`` /
    ``upper`` from the MC-dropout draws (with ``mc_samples``), ``conformal`` = the forecast -+ the
    checkpoint's conformal half-width at ``interval_level`` (:mod:`grud.tasks.forecast_intervals`).
    ``progress``: a progress bar over the batches (a text: its label, e.g. which chunk).
    """
    id_column = ds.meta.get("id_column") or id_column_of(model)  # the input's, as it was read
    task_overrides = task_overrides or {}
    if int(mc_samples) < 0 or int(mc_samples) == 1:
        raise ConfigError(f"mc_samples: expected 0 (off) or a number of draws >= 2 (a spread needs two), "
                          f"got {mc_samples}")
    if int(mc_samples) > 0 and model.baseline is not None:
        raise ConfigError(f"mc_samples={mc_samples}: the {model.baseline} baseline has no dropout to sample "
                          f"({model.path}); set mc_samples=0")
    if interval != "mc" and (model.task == "classification" or model.baseline is not None):
        raise ConfigError(f"interval={interval}: only a recurrent forecaster's checkpoint has conformal intervals "
                          f"({model.path} is {'the ' + model.baseline + ' baseline' if model.baseline else 'a classifier'})")
    if task_overrides and model.task == "classification":
        raise ConfigError(f"task.{next(iter(task_overrides))}: forecast window keys apply to forecasting "
                          f"checkpoints; {model.path} is a classifier")
    if model.baseline is not None:
        return _baseline_frame(model, ds, id_column, task_overrides)
    module = model.module
    for key in WINDOW_KEYS:
        if key in task_overrides and hasattr(module, key):
            setattr(module, key, task_overrides[key])
    extra = {} if model.task == "classification" else {"keep_draws": keep_draws, "interval": interval,
                                                       "interval_level": float(interval_level)}
    if extra:
        module.check_interval(interval, float(interval_level), mc_samples)  # before reading any batch
    enc = module.encode_dataset(ds, module.stats)
    parts = []
    with torch.no_grad():
        for i, batch in enumerate(_batches(enc, batch_size, progress)):
            parts.append(module.predict_step(batch, i, mc_samples=int(mc_samples), **extra))
    if not parts:
        raise DataError("no series to predict on")
    return module.predictions_frame(parts, enc.ds, id_column=id_column)


def _baseline_frame(model: LoadedModel, ds, id_column, task_overrides) -> pd.DataFrame:
    if model.task == "classification":
        from grud.tasks.baselines import SummaryClassifier

        clf = SummaryClassifier.from_state_dict(model.baseline_state["state"])
        prob = clf.predict_proba(ds)
        if prob.ndim == 1:
            return pd.DataFrame({id_column: ds.ids, "probability": prob})
        return pd.DataFrame({id_column: ds.ids, **{f"probability_{c}": prob[:, k]
                                                    for k, c in enumerate(model.stats.classes)}})
    from grud.tasks.forecasting import forecast_baseline_frame

    history, horizon = forecast_window(model, task_overrides)
    return forecast_baseline_frame(model.baseline, ds, model.stats, history, horizon,
                                   grid_hours=task_overrides.get("forecast_grid_hours"), id_column=id_column)


#: the ``task.*`` keys that set a forecast window at prediction (grud.api.PREDICT_TASK_KEYS, the same)
WINDOW_KEYS = ("history_hours", "horizon_hours", "forecast_grid_hours")


def window_value(key: str, value):
    """A ``task.*`` window value given at prediction: ``horizon_hours`` inf is None (to the end of
    each series); anything else as given."""
    return None if key == "horizon_hours" and value is not None and float(value) == float("inf") else value


def forecast_window(model: LoadedModel, task_overrides: dict | None = None) -> tuple[float, float | None]:
    """(history_hours, horizon_hours) a forecast checkpoint predicts with: the user's ``task.*``
    overrides, else the window it was trained with (a module's attributes, a baseline's state)."""
    task_overrides = task_overrides or {}
    if model.module is not None:
        trained = {"history_hours": model.module.history_hours, "horizon_hours": model.module.horizon_hours}
    else:
        st = model.baseline_state
        trained = {"history_hours": st.get("history_hours", 24.0), "horizon_hours": st.get("horizon_hours")}
    window = {k: task_overrides.get(k, v) for k, v in trained.items()}
    return float(window["history_hours"]), window["horizon_hours"]


def classification_metrics(frame: pd.DataFrame, ds: IrregularDataset, classes, class_weights=None) -> dict:
    """The ``test/`` classification keys of metrics.json from a prediction frame in ``ds``'s order.

    With ``class_weights`` (C,) (a network's: its loss weighs classes so) ``test/loss`` too: the
    weighted cross-entropy sum(w l) / sum(w) of the frame's probabilities, the loss a test epoch
    reports (an ensemble's: that of the mean probability, as a ``task.ensemble`` run's)."""
    keep = np.isfinite(ds.labels)
    y = ds.labels[keep]
    unknown = sorted(set(np.unique(y).tolist()) - set(float(c) for c in classes))
    if unknown:
        raise DataError(f"labels {', '.join(f'{u:g}' for u in unknown)} were not seen in training (its classes: "
                        f"{', '.join(f'{float(c):g}' for c in classes)}); data.label_column holds other codes",
                        path=(ds.meta or {}).get("labels"),
                        column=((ds.meta or {}).get("label_match") or {}).get("column"))
    y = np.searchsorted(np.asarray(classes, np.float64), y)  # class index: 0/1 also for labels coded 1/2
    if len(classes) == 2:
        p = frame["probability"].to_numpy()[keep]
        res = M.binary_metrics(y, p)
        res["auroc_ci_low"], res["auroc_ci_high"] = M.bootstrap_ci(y, p, "auroc")
        p_true = np.where(y == 1, p, 1.0 - p)
    else:
        p = frame[[f"probability_{c}" for c in classes]].to_numpy()[keep]
        res = M.multiclass_metrics(y, p)
        p_true = p[np.arange(len(y)), y] if len(y) else np.zeros(0)
    if class_weights is not None and len(y):
        w = np.asarray(class_weights, np.float64)[y]
        nll = -np.log(np.clip(np.asarray(p_true, np.float64), 1e-12, 1.0))
        res["loss"] = float((w * nll).sum() / w.sum())
    return metric_values({f"test/{k}": v for k, v in res.items()})


def empty_window_error(history_hours: float, horizon_hours: float | None, ds: IrregularDataset) -> DataError:
    """The error for forecast scoring when no observation of ``ds`` falls in the window."""
    end = "the end" if horizon_hours is None else f"{history_hours + horizon_hours:g} h"
    return DataError(f"no observation falls in the forecast window ({history_hours:g} h to {end}): nothing to "
                     f"score; set task.history_hours / task.horizon_hours", path=(ds.meta or {}).get("path"))


def evaluate(model: LoadedModel, ds: IrregularDataset, task_overrides: dict | None = None) -> dict:
    """Test metrics (the ``test/`` keys of metrics.json) of ``model`` on labelled ``ds``."""
    task_overrides = task_overrides or {}
    if model.task == "classification":
        return classification_metrics(predict_frame(model, ds, progress=False), ds, model.stats.classes)
    if model.baseline is not None:
        raise ConfigError(f"evaluate(): the {model.baseline} baseline is scored from its prediction frame "
                          f"(grud-evaluate does that: grud.cli.evaluate.forecast_ensemble_metrics)")
    import pytorch_lightning as pl

    from grud.cli.known_warnings import silence_known_warnings

    silence_known_warnings()
    module = model.module
    for key in ("history_hours", "horizon_hours"):
        if key in task_overrides:
            setattr(module, key, task_overrides[key])
    enc = module.encode_dataset(ds, module.stats)
    if not float(np.asarray(enc.query_mask).sum()):
        raise empty_window_error(module.history_hours, module.horizon_hours, ds)
    loader = torch.utils.data.DataLoader(enc, batch_sampler=BucketBatchSampler(enc.lengths, 256, shuffle=False),
                                         collate_fn=enc.collate)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, accelerator="cpu",
                         devices=1, enable_model_summary=False)
    res = trainer.test(module, dataloaders=loader, verbose=False)
    return metric_values({k: v for k, v in (res[0] if res else {}).items() if k.startswith("test/")}, float32=True)
