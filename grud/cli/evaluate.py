"""grud-evaluate: score a checkpoint on labelled data (the test/ keys of metrics.json).

    grud-evaluate checkpoint=OUT/checkpoints/best.ckpt data.path=TEST.csv data.labels=LABELS.csv
    grud-evaluate checkpoint=... data.path=... task.name=impute     # imputation vs mean / LOCF
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from grud.cli.entry import hydra_entry
from grud.cli.predict import data_options, task_overrides

log = logging.getLogger("grud")


def run_evaluate(cfg: dict) -> dict:
    from grud.cli.files import atomic_write_json
    from grud.cli.inference import evaluate, load_model, read_for_prediction

    model = load_model(cfg["checkpoint"])
    impute = (cfg.get("task") or {}).get("name") == "impute"
    ds = read_for_prediction(data_options(cfg, model.stats), model.stats,
                             need_labels=model.task == "classification" and not impute)
    if impute:
        from grud.tasks.imputation import imputation_report

        metrics = imputation_report(model, ds, rate=float(cfg["task"].get("impute_rate", 0.1)),
                                    seed=int(cfg.get("seed", 0) or 0))
    else:
        metrics = evaluate(model, ds, task_overrides(cfg))
    out = Path(cfg.get("output") or "evaluation.json")
    atomic_write_json(out, metrics)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


main = hydra_entry("evaluate", run_evaluate)


if __name__ == "__main__":
    main()
