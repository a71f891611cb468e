"""grud-predict: apply a checkpoint to new data.

    grud-predict checkpoint=OUT/checkpoints/best.ckpt data.path=TEST.csv output=PRED.csv
    grud-predict checkpoint='CV/*/checkpoints/best.ckpt' ...   # the mean probability or forecast of several
"""
from __future__ import annotations

import logging
from pathlib import Path

from grud.cli.config import explicit_overrides
from grud.cli.entry import hydra_entry
from grud.errors import ConfigError

log = logging.getLogger("grud")


def data_options(cfg: dict, stats) -> dict:
    from grud.cli.inference import prediction_data_options

    explicit = explicit_overrides("data")
    return prediction_data_options(stats.reader, cfg.get("data") or {}, set(explicit),
                                   group_chosen="__group__" in explicit, trained_variables=stats.variables)


def task_overrides(cfg: dict) -> dict:
    """The ``task.*`` keys given (null = as in training); ``task.horizon_hours=inf`` is kept as
    None: queries to the end of each series."""
    from grud.cli.inference import WINDOW_KEYS, window_value
    from grud.cli.pipeline import check_task_keys

    task = cfg.get("task") or {}
    check_task_keys(task, ("name", "impute_rate", *WINDOW_KEYS), "prediction or evaluation")
    return {k: window_value(k, v) for k, v in task.items() if v is not None and k not in ("name", "impute_rate")}


def whole_number(cfg: dict, key: str) -> int:
    """``cfg[key]`` as an int (0 when null), or a ConfigError naming the key."""
    value = cfg.get(key)
    try:
        number = int(value or 0)
        if float(value or 0) != number:
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None


def batch_size(cfg: dict) -> int:
    """``batch_size`` (series per prediction batch; null = 256), or a ConfigError naming it."""
    if cfg.get("batch_size") is None:
        return 256
    size = whole_number(cfg, "batch_size")
    if size < 1:
        raise ConfigError(f"batch_size: expected a whole number >= 1 (series per prediction batch), "
                          f"got {cfg.get('batch_size')!r}")
    return size


def write_frames(path, frames) -> tuple[int, int]:
    """Write the prediction frames, one after another, as one CSV at ``path`` (atomically: a
    temporary file renamed once every frame is written; an error leaves ``path`` as it was).
    Each frame is written and dropped before the next is made, so a caller holds one chunk's rows.
    Returns (rows, distinct ids): a series' rows never span two frames."""
    from grud.atomic_files import atomic_write

    counts = [0, 0]

    def write(tmp: str) -> None:
        columns = None
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for frame in frames:
                if columns is None:
                    columns = list(frame.columns)
                elif list(frame.columns) != columns:
                    raise RuntimeError(f"prediction chunks with other columns: {list(frame.columns)} after {columns}")
                frame.to_csv(f, index=False, header=f.tell() == 0, float_format="%.6f",
                             lineterminator="\n")
                counts[0] += len(frame)
                counts[1] += frame.iloc[:, 0].nunique() if len(frame) else 0

    atomic_write(path, write)
    return counts[0], counts[1]


def run_predict(cfg: dict) -> Path:
    from grud.cli.checkpoint_ensemble import load_members, predict_members_in_chunks
    from grud.cli.files import output_file

    out = output_file(cfg.get("output"), "predictions.csv")  # before any work
    # one checkpoint, or several checkpoints averaged (probabilities or forecasts) (a list or a glob pattern)
    members = load_members(cfg["checkpoint"])
    ds, frames = predict_members_in_chunks(members, lambda stats: data_options(cfg, stats),
                                           mc_samples=whole_number(cfg, "mc_samples"),
                                           batch_size=batch_size(cfg), task_overrides=task_overrides(cfg),
                                           interval=str(cfg.get("interval") or "mc"),
                                           interval_level=float(cfg.get("interval_level") or 0.9))
    written = write_frames(out, frames)
    log.info("wrote %d rows for %d series to %s", written[0], written[1], out)
    absent = len(ds) - written[1]
    if absent > 0:  # forecasting: a series with no query in the window has no row
        log.info("%d series have no row: nothing observed in the forecast window (task.history_hours / "
                 "task.horizon_hours), or set task.forecast_grid_hours for a future grid", absent)
    return out


main = hydra_entry("predict", run_predict)


if __name__ == "__main__":
    main()
