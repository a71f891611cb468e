"""grud-evaluate: score a checkpoint on labelled data (the test/ keys of metrics.json).

    grud-evaluate checkpoint=OUT/checkpoints/best.ckpt data.path=TEST.csv data.labels=LABELS.csv
    grud-evaluate checkpoint=... data.path=... task.name=impute     # imputation vs mean / LOCF
    grud-evaluate checkpoint='CV/*/checkpoints/best.ckpt' data...   # the mean probability (or forecast) of several
"""
from __future__ import annotations

import logging
from pathlib import Path

from grud.cli.config import explicit_overrides
from grud.cli.entry import hydra_entry
from grud.cli.predict import data_options, task_overrides
from grud.errors import ConfigError

log = logging.getLogger("grud")


def run_evaluate(cfg: dict) -> dict:
    from grud.cli.checkpoint_ensemble import load_members, predict_members
    from grud.cli.files import output_file
    from grud.cli.inference import (WINDOW_KEYS, classification_metrics, evaluate, held_out_part,
                                     prepare_for_model, read_raw)

    check_scoring_options(cfg)
    out = output_file(cfg.get("output"), "evaluation.json")  # before any work
    members = load_members(cfg["checkpoint"])
    impute = (cfg.get("task") or {}).get("name") == "impute"
    if len(members) > 1 and impute:
        raise ConfigError("task.name=impute scores one checkpoint at a time: give checkpoint a single file")
    model = members[0]
    if (model.task != "classification" or impute) and "labels" in explicit_overrides("data") \
            and (cfg.get("data") or {}).get("labels") is not None:
        log.warning("data.labels=%s is not read: %s scores the observed values, not labels", cfg["data"]["labels"],
                    "imputation" if impute else "a forecaster")
        cfg = {**cfg, "data": {**cfg["data"], "labels": None}}
    if model.task == "classification" and not impute:
        # one checkpoint, or the mean probability of several (grud.cli.checkpoint_ensemble)
        window = {k: v for k, v in task_overrides(cfg).items() if k in WINDOW_KEYS}
        frame, ds = predict_members(members, lambda stats: data_options(cfg, stats), need_labels=True,
                                    progress=False, task_overrides=window, held_out=True)  # a window key is an error there
        metrics = classification_metrics(frame, ds, model.stats.classes, class_weights=shared_class_weights(members))
        if len(members) > 1:
            metrics["members"] = len(members)  # checkpoints averaged
        return _write(out, metrics)
    if len(members) > 1 or (model.baseline is not None and not impute):  # a forecast baseline: scored as a frame
        metrics = forecast_ensemble_metrics(cfg, members)
        if len(members) == 1:
            metrics.pop("members", None)
        return _write(out, metrics)
    if impute:
        from grud.tasks.imputation import check_imputer

        check_imputer(model)  # before the data is read
    opts = data_options(cfg, model.stats)
    ds = prepare_for_model(held_out_part(read_raw(opts), [model], opts["path"]), opts, model.stats)
    if impute:
        from grud.tasks.imputation import imputation_report

        metrics = imputation_report(model, ds, rate=float(cfg["task"].get("impute_rate", 0.1)),
                                    seed=int(cfg.get("seed", 0) or 0))
    else:
        metrics = evaluate(model, ds, task_overrides(cfg))
    return _write(out, metrics)


def shared_class_weights(members: list):
    """The (C,) class weights of the members' loss, when they are networks that share them (``test/loss``
    is then theirs); None for a baseline (it reports no loss) or members weighted differently."""
    import torch

    weights = [getattr(m.module, "class_weights", None) for m in members]
    if any(w is None for w in weights) or any(not torch.equal(w, weights[0]) for w in weights[1:]):
        if len(members) > 1 and all(w is not None for w in weights):
            log.info("no test/loss: the checkpoints weigh their classes differently (task.class_weight)")
        return None
    return weights[0].detach().cpu().double().numpy()


def check_scoring_options(cfg: dict) -> None:
    """grud-evaluate inherits grud-predict's keys; those that change what is predicted, not what is
    scored, are errors here rather than silently ignored."""
    from grud.cli.predict import whole_number

    task = cfg.get("task") or {}
    given = []
    level = cfg.get("interval_level")
    if str(cfg.get("interval") or "mc") != "mc" or not (level is None or (isinstance(level, (int, float))
                                                                          and abs(float(level) - 0.9) < 1e-9)):
        given.append("interval / interval_level (test/interval_coverage is always of the conformal 90 % interval)")
    if whole_number(cfg, "mc_samples") != 0:
        given.append("mc_samples (the metrics score the deterministic prediction)")
    if task.get("forecast_grid_hours") is not None:
        given.append("task.forecast_grid_hours (a future grid has no truth to score)")
    if given:
        raise ConfigError(f"grud-evaluate does not use {'; '.join(given)}: they are grud-predict's keys")
    name = task.get("name")
    if name not in (None, "impute"):
        raise ConfigError(f"task.name: expected null (the checkpoint's own task) or impute, got {name!r}")
    rate = task.get("impute_rate", 0.1)
    if name == "impute":
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < float(rate) < 1.0:
            raise ConfigError(f"task.impute_rate: expected a share of the observed values in (0, 1), got {rate!r}")
        seed = cfg.get("seed", 0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed: expected a whole number (which values are hidden), got {seed!r}")
    elif rate != 0.1:
        raise ConfigError(f"task.impute_rate={rate}: used only with task.name=impute")


def forecast_ensemble_metrics(cfg: dict, members: list) -> dict:
    """Several forecast checkpoints scored as one model (their mean forecast) on the observed rows
    after the horizon; the min-max scale and LOCF are the first member's, as one checkpoint's are its own.
    With every member calibrated, ``test/interval_coverage`` is that of their averaged conformal 90 % bounds."""
    from grud.cli.checkpoint_ensemble import predict_members
    from grud.cli.inference import empty_window_error, forecast_window
    from grud.tasks.forecasting import forecast_frame_metrics

    first = members[0]
    history, horizon = forecast_window(first, task_overrides(cfg))  # every member predicts the first one's window
    overrides = {**task_overrides(cfg), "history_hours": history, "horizon_hours": horizon,
                 "forecast_grid_hours": None}  # score the observed rows
    # conformal bounds (their coverage is scored) when every member carries half-widths
    calibrated = all(m.baseline is None and m.module.calibrated for m in members)
    frame, ds = predict_members(members, lambda stats: data_options(cfg, stats), task_overrides=overrides,
                                progress=False, interval="conformal" if calibrated else "mc", held_out=True)
    if not frame["value"].notna().any():
        raise empty_window_error(history, horizon, ds)
    metrics = forecast_frame_metrics(frame, ds, first.stats, history, horizon)
    metrics["members"] = len(members)  # checkpoints averaged
    return metrics


def _write(out: Path, metrics: dict) -> dict:
    from grud.cli.files import atomic_write_json, json_text

    atomic_write_json(out, metrics)
    print(json_text(metrics), end="")  # what the file holds (NaN as null: valid JSON)
    return metrics


#: the issue's spelling of the imputation report, ``grud-evaluate ... task=impute``: there is no ``task``
#: group here (the checkpoint names its task), so it is read as ``task.name=impute``
ALIASES = {"task=impute": "task.name=impute"}

main = hydra_entry("evaluate", run_evaluate, aliases=ALIASES)


if __name__ == "__main__":
    main()
