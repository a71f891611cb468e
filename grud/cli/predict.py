"""grud-predict: apply a checkpoint to new data.

    grud-predict checkpoint=OUT/checkpoints/best.ckpt data.path=TEST.csv output=PRED.csv
    grud-predict checkpoint='CV/*/checkpoints/best.ckpt' ...   # the mean probability or forecast of several
"""
from __future__ import annotations

import logging
from pathlib import Path

from grud.cli.config import explicit_overrides
from grud.cli.entry import hydra_entry

log = logging.getLogger("grud")


def data_options(cfg: dict, stats) -> dict:
    from grud.cli.inference import prediction_data_options

    explicit = explicit_overrides("data")
    return prediction_data_options(stats.reader, cfg.get("data") or {}, set(explicit),
                                   group_chosen="__group__" in explicit)


def task_overrides(cfg: dict) -> dict:
    return {k: v for k, v in (cfg.get("task") or {}).items() if v is not None and k != "name"}


def run_predict(cfg: dict) -> Path:
    from grud.cli.checkpoint_ensemble import load_members, predict_members
    from grud.cli.files import atomic_write_csv, output_file

    out = output_file(cfg.get("output"), "predictions.csv")  # before any work
    # one checkpoint, or several checkpoints averaged (probabilities or forecasts) (a list or a glob pattern)
    members = load_members(cfg["checkpoint"])
    frame, ds = predict_members(members, lambda stats: data_options(cfg, stats),
                                mc_samples=int(cfg.get("mc_samples") or 0),
                                batch_size=int(cfg.get("batch_size") or 256), task_overrides=task_overrides(cfg),
                                interval=str(cfg.get("interval") or "mc"),
                                interval_level=float(cfg.get("interval_level") or 0.9))
    atomic_write_csv(out, frame, float_format="%.6f")
    log.info("wrote %d rows for %d series to %s", len(frame), len(ds), out)
    absent = len(ds) - (frame.iloc[:, 0].nunique() if len(frame) else 0)
    if absent > 0:  # forecasting: a series with no query in the window has no row
        log.info("%d series have no row: nothing observed in the forecast window (task.history_hours / "
                 "task.horizon_hours), or set task.forecast_grid_hours for a future grid", absent)
    return out


main = hydra_entry("predict", run_predict)


if __name__ == "__main__":
    main()
