"""Several checkpoints applied as one model: the mean of their probabilities or of their forecasts.

    grud-predict  checkpoint='CV/*/checkpoints/best.ckpt' data.path=TEST.csv output=PRED.csv
    grud-evaluate checkpoint=[a/checkpoints/best.ckpt,b/checkpoints/best.ckpt] data.path=... data.labels=...

Classification members average their probabilities; forecast members average their
``prediction`` at every (series, time, variable) row, so they must share the variables and the
forecast window (``task.history_hours`` and friends apply to every member).

The usual source is a K-fold sweep (``grud-train -m data.folds=5 data.fold=0,1,2,3,4``): each
member was trained and early-stopped on its own folds, and averaging them is a cross-validation
ensemble (bagging over the folds). Every member reads the data with its own fitted statistics
(normaliser, one-hot categories, training means) from its own checkpoint, so each prediction is
exactly the one that member alone would make.
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from grud.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger("grud")

_GLOB_CHARS = set("*?[")


def checkpoint_paths(checkpoint) -> list[Path]:
    """``checkpoint`` as a list of files: one path, a list of paths, or glob patterns (sorted matches)."""
    items = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint]
    if checkpoint is None or str(checkpoint) in ("", "???"):  # ??? is Hydra's "not given" (a glob otherwise)
        raise ConfigError("checkpoint: required, e.g. checkpoint=OUT/checkpoints/best.ckpt")
    if not items:
        raise ConfigError("checkpoint: expected a checkpoint file, a list of them or a glob pattern, got []")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ConfigError(f"checkpoint: no file matches the pattern {text!r}")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(text))
    return list(dict.fromkeys(paths))  # a file named twice counts once


def load_members(checkpoint) -> list:
    """The :class:`~grud.cli.inference.LoadedModel` of every checkpoint ``checkpoint`` names.

    Several members must all serve one task and read ids from the same column; classification
    members must have the same classes, forecast members the same variables.
    """
    from grud.cli.inference import id_column_of, load_model

    members = [load_model(p) for p in checkpoint_paths(checkpoint)]
    if len(members) == 1:
        return members
    first = members[0]
    for m in members:
        if m.task != first.task:
            raise ConfigError(f"checkpoint: the members of an ensemble must serve one task; {first.path} is a "
                              f"{first.task} checkpoint and {m.path} a {m.task} checkpoint")
        if m.task == "classification" and list(m.stats.classes) != list(first.stats.classes):
            raise CheckpointError(f"has classes {list(m.stats.classes)}, but {first.path} has "
                                  f"{list(first.stats.classes)}: the members of an ensemble must share their classes",
                                  path=m.path)
        if m.task != "classification" and list(m.stats.variables) != list(first.stats.variables):
            raise CheckpointError(f"forecasts the variables {list(m.stats.variables)}, but {first.path} "
                                  f"{list(first.stats.variables)}: the members of a forecast ensemble must share "
                                  f"their variables", path=m.path)
        if id_column_of(m) != id_column_of(first):
            raise CheckpointError(f"reads ids from column {id_column_of(m)!r}, but {first.path} from "
                                  f"{id_column_of(first)!r}", path=m.path)
    return members


def average_probability_frames(frames: list[pd.DataFrame], mc_samples: int = 0) -> pd.DataFrame:
    """The ensemble's prediction frame: the mean of the members' ``probability*`` columns.

    With Monte-Carlo dropout (``mc_samples`` = N draws per member) each ``probability_std*``
    column becomes the standard deviation of all members' draws pooled (each member's draws have
    its mean and sample standard deviation; a member without the column, e.g. ``logreg``, counts
    as N equal draws), so the spread includes the disagreement between members.
    """
    id_column = frames[0].columns[0]
    ids = frames[0][id_column]
    for f in frames[1:]:
        if f.columns[0] != id_column or len(f) != len(ids) or not np.array_equal(f[id_column].to_numpy(),
                                                                                    ids.to_numpy()):
            raise DataError("the members of the ensemble predicted different series "
                            "(they must read the same file with the same id column)")
    out = {id_column: ids.to_numpy()}
    prob_columns = [c for c in frames[0].columns if c.startswith("probability") and not c.startswith("probability_std")]
    K = len(frames)
    for col in prob_columns:
        p = np.stack([f[col].to_numpy(dtype=np.float64) for f in frames])  # (K, N series)
        mean = p.mean(0)
        out[col] = mean
        if mc_samples > 0:
            std_col = "probability_std" + col[len("probability"):]
            s = np.stack([f[std_col].to_numpy(dtype=np.float64) if std_col in f.columns else np.zeros(len(ids))
                          for f in frames])
            n = int(mc_samples)
            # sum of squares of each member's n draws from its mean and unbiased std, pooled over K * n draws
            squares = ((n - 1) * s ** 2 + n * p ** 2).sum(0)
            var = (squares - K * n * mean ** 2) / max(K * n - 1, 1)
            out[std_col] = np.sqrt(np.clip(var, 0.0, None))
    return pd.DataFrame(out)


def average_forecast_frames(frames: list[pd.DataFrame], mc_samples: int = 0) -> pd.DataFrame:
    """The forecast ensemble's frame: the mean of the members' ``prediction`` at every row.

    Every member must have predicted the same rows (id, ``time``, ``variable``, in the same
    order); ``value`` (the observed truth) is the first member's. With Monte-Carlo dropout
    (``mc_samples`` = N draws per member, carried as ``draw_<k>`` columns, see
    :func:`grud.cli.inference.predict_frame`) ``lower`` / ``upper`` are the 5th / 95th
    percentiles of all members' draws pooled, so the interval includes the disagreement between
    members; a member without draws (``locf``) counts as N draws at its prediction. Without draws,
    members' ``lower`` / ``upper`` (conformal intervals) are averaged: the mean forecast -+ the mean
    half-width. That carries no conformal guarantee of its own (a value every member covers is
    covered; beyond that, nothing is promised); measured, it covered slightly more than each member
    (README, grud-evaluate's ``test/interval_coverage``).
    """
    from grud.tasks.forecasting import DRAW_PREFIX, FORECAST_KEYS, MC_QUANTILES, same_forecast_rows

    first = frames[0]
    if not all(same_forecast_rows(first, f) for f in frames[1:]):
        raise DataError("the members of the forecast ensemble predicted different rows (they must read the same "
                        "file with the same id column and forecast window)")
    out = first[[first.columns[0], *FORECAST_KEYS, "prediction", "value"]].copy()
    n = int(mc_samples)
    if n <= 0:
        out["prediction"] = np.mean([f["prediction"].to_numpy(dtype=np.float64) for f in frames], axis=0)
        if all("lower" in f.columns and "upper" in f.columns for f in frames):
            for k in ("lower", "upper"):
                out[k] = np.mean([f[k].to_numpy(dtype=np.float64) for f in frames], axis=0)
    else:
        draws = []
        for f in frames:
            cols = [c for c in f.columns if c.startswith(DRAW_PREFIX)]
            d = f[cols].to_numpy(np.float64) if cols else np.repeat(f["prediction"].to_numpy(np.float64)[:, None], n, 1)
            if d.shape[1] != n:
                raise DataError(f"a member of the forecast ensemble carries {d.shape[1]} Monte-Carlo draws, "
                                f"expected mc_samples={n}")
            draws.append(d)
        pooled = np.concatenate(draws, axis=1)  # (rows, K * N)
        out["prediction"] = pooled.mean(1)
        out["lower"], out["upper"] = np.quantile(pooled, MC_QUANTILES, axis=1)
    return out


#: series per chunk of :func:`predict_members_in_chunks` (grud-predict's memory: the prediction rows
#: of this many series at a time, not of the whole file)
CHUNK_SERIES = 1024


def predict_members(members: list, options_for: Callable, mc_samples: int = 0, batch_size: int = 256,
                    task_overrides: dict | None = None, need_labels: bool = False, progress: bool = True,
                    interval: str = "mc", interval_level: float = 0.9, held_out: bool = False):
    """(prediction frame, dataset) of one member, or of the mean of several (probabilities or forecasts).

    ``options_for(stats)`` gives the data options a member reads with (its training's reader
    options with the user's overrides); the dataset returned is the first member's. ``interval``
    and ``interval_level``: see :func:`grud.cli.inference.predict_frame`. ``held_out``: of the
    members' training file, only the series training held out (:func:`grud.cli.inference.held_out_part`).
    """
    prepared, overrides = _prepare(members, options_for, task_overrides, need_labels, held_out)
    frame = _predict_chunk(prepared, None, mc_samples, batch_size, overrides, progress, interval, interval_level)
    return frame, prepared[0][1]


def predict_members_in_chunks(members: list, options_for: Callable, mc_samples: int = 0, batch_size: int = 256,
                              task_overrides: dict | None = None, progress: bool = True, interval: str = "mc",
                              interval_level: float = 0.9, chunk_series: int | None = None):
    """(dataset, iterator of frames): :func:`predict_members`' frame for ``chunk_series`` series at a
    time (default :data:`CHUNK_SERIES`), in the dataset's order, so the frames concatenated are its
    frame and a caller writing them as they come holds one chunk's rows at a time (a forecast grid
    over a large export holds hundreds of millions)."""
    prepared, overrides = _prepare(members, options_for, task_overrides, False, False)
    size, n = int(chunk_series or CHUNK_SERIES), len(prepared[0][1])
    if n > size and all(len(ds) == n for _, ds in prepared):  # else one piece, as predict_members
        chunks = [np.arange(a, min(a + size, n)) for a in range(0, n, size)]
    else:
        chunks = [None]

    def frames():
        from grud.data.forecast_batching import whole_file_grid_warning

        grid_warning = {"n": n, "warned": False}  # a large forecast grid: warned once, for the whole file
        for i, chunk in enumerate(chunks):
            bar = progress and (f"predict {i + 1}/{len(chunks)}" if len(chunks) > 1 else True)  # which chunk
            with whole_file_grid_warning(grid_warning):
                frame = _predict_chunk(prepared, chunk, mc_samples, batch_size, overrides, bar, interval,
                                       interval_level)
            yield frame

    return prepared[0][1], frames()


def _prepare(members: list, options_for: Callable, task_overrides, need_labels: bool, held_out: bool):
    """([(member, its dataset)], the task overrides every member follows)."""
    from grud.cli.inference import held_out_part, prepare_for_model, read_raw

    forecast = members[0].task != "classification"
    if forecast and len(members) > 1:  # every member forecasts the first one's window (as grud-evaluate scores)
        from grud.cli.inference import forecast_window

        history, horizon = forecast_window(members[0], task_overrides)
        others = {forecast_window(m, task_overrides) for m in members[1:]} - {(history, horizon)}
        if others:
            log.info("the ensemble forecasts its first member's window (%g h, horizon %s h); members trained on %s "
                     "follow it", history, horizon, ", ".join(f"{h:g} / {z} h" for h, z in sorted(others, key=str)))
        task_overrides = {**(task_overrides or {}), "history_hours": history, "horizon_hours": horizon}
    prepared, files = [], {}
    for m in members:
        opts = options_for(m.stats)
        key = repr(sorted((k, repr(v)) for k, v in opts.items() if k != "grid"))
        if key not in files:  # members trained on the same kind of file read it once
            files[key] = read_raw(opts, need_labels=need_labels)
            if held_out:
                files[key] = held_out_part(files[key], members, opts["path"])
        prepared.append((m, prepare_for_model(files[key], opts, m.stats)))
    return prepared, task_overrides


def _predict_chunk(prepared: list, chunk, mc_samples, batch_size, task_overrides, progress, interval,
                   interval_level) -> pd.DataFrame:
    """The (averaged) frame of the series at positions ``chunk`` (None: all) of every member's dataset."""
    from grud.cli.inference import predict_frame

    forecast = prepared[0][0].task != "classification"
    keep_draws = forecast and len(prepared) > 1 and int(mc_samples) > 0  # pooled below
    frames = []
    for m, ds in prepared:
        part = ds if chunk is None else ds.subset(chunk)
        frames.append(predict_frame(m, part, mc_samples=mc_samples, batch_size=batch_size,
                                    task_overrides=task_overrides, progress=progress, keep_draws=keep_draws,
                                    interval=interval, interval_level=interval_level))
    if len(frames) == 1:
        return frames[0]
    if forecast:
        return average_forecast_frames(frames, mc_samples=mc_samples)
    return average_probability_frames(frames, mc_samples=mc_samples)
