"""Fitting and evaluating the non-neural baselines inside a grud-train run.

Baselines keep the run-directory contract of the neural models: ``checkpoints/best.ckpt`` (and
``last.ckpt``) hold their fitted state as plain containers (``torch.load(weights_only=True)``),
``metrics.json`` the same keys.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from grud.cli.checkpoint import atomic_torch_save
from grud.cli.metric_values import metric_values
from grud.data.transforms import FittedStats, check_value_transform
from grud.errors import ConfigError
from grud.tasks import metrics as M

log = logging.getLogger("grud")


def run_baseline(cfg: dict, run_dir: Path, train, val, test, stats: FittedStats,
                 held_out: dict | None = None) -> dict:
    name = cfg["model"]["name"]
    task = cfg.get("task", {})
    task_name = task.get("name", "classification")
    metrics: dict = {}
    state: dict = {"task": task_name, "baseline": name}
    if task_name == "classification":
        from grud.tasks.baselines import SummaryClassifier

        # task.value_transform=log: the training split's heavy-tailed variables through log1p, as for the networks
        transform = check_value_transform(task.get("value_transform", "affine"))
        log_variables = stats.log_variables if transform == "log" else ()
        try:  # task.class_weight weighs the baseline's fit as it weighs the networks' loss
            clf = SummaryClassifier(kind=name, seed=int(cfg.get("seed", 0)), log_variables=log_variables,
                                    class_weight=task.get("class_weight"))
            clf.fit(train, val)
        except ConfigError as exc:
            if str(exc).startswith("class_weight:"):
                raise ConfigError(f"task.{exc}") from None
            raise
        state["state"] = clf.state_dict()
        for stage, ds in (("val", val), ("test", test)):
            if ds is None or len(ds) == 0 or not ds.has_labels:
                continue
            prob = clf.predict_proba(ds)
            y = ds.labels
            keep = np.isfinite(y)
            classes = stats.classes
            y_idx = np.searchsorted(classes, y[keep])  # class index: 0/1 also for labels coded 1/2
            p = prob[keep]
            scores = M.binary_metrics(y_idx, p) if len(classes) == 2 else M.multiclass_metrics(y_idx, p)
            if stage == "test" and len(classes) == 2:
                scores["auroc_ci_low"], scores["auroc_ci_high"] = M.bootstrap_ci(y_idx, p, "auroc")
            if stage == "test" and cfg.get("plots", True):  # one-vs-rest curves with several classes, as a network's
                from grud.viz.plots import plot_roc_pr_calibration

                plot_roc_pr_calibration(y_idx, p, run_dir / "plots", class_names=[f"class {c:g}" for c in classes]
                                        if len(classes) > 2 else None)
            metrics.update(metric_values({f"{stage}/{k}": v for k, v in scores.items()}))
    else:
        from grud.tasks.forecasting import forecast_baseline_metrics

        hist = float(task.get("history_hours", 24.0))
        state.update(history_hours=hist, horizon_hours=task.get("horizon_hours"))
        for stage, ds in (("val", val), ("test", test)):
            if ds is None or len(ds) == 0:
                continue
            res = forecast_baseline_metrics(name, train, ds, stats, hist, task.get("horizon_hours"))
            metrics.update(metric_values({k.replace("test/", f"{stage}/"): v for k, v in res.items()}))
    ckpt = {"grud": {**state, "stats": stats.to_dict()}, "epoch": 0}
    if held_out is not None:  # the training file's test ids (grud.cli.pipeline.held_out_record)
        ckpt["grud"]["held_out"] = held_out
    for fname in ("best.ckpt", "last.ckpt"):
        atomic_torch_save(ckpt, run_dir / "checkpoints" / fname)
    log.info("baseline %s: %s", name, {k: round(v, 4) for k, v in metrics.items()})
    return metrics
