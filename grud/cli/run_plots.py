"""The ``plots/`` folder of a training run."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("grud")


def write_plots(module, run_dir: Path, dm, task_name: str) -> list:
    """Training history; ROC/PR/calibration or forecasts; GRU-D's learned input decay."""
    from grud.viz import plots

    out = Path(run_dir) / "plots"
    written = []
    csv = Path(run_dir) / "metrics.csv"
    if csv.exists():
        written.append(plots.plot_history(csv, out / "history.png"))
    if task_name == "classification" and getattr(module, "last_test", None) is not None:
        y, prob = module.last_test
        classes = list(module.stats.classes)  # multi-class legends name the label codes, not positions
        written += plots.plot_roc_pr_calibration(y, prob, out, class_names=[f"class {c}" for c in classes]
                                                 if len(classes) > 2 else None)
    if task_name == "forecast" and dm.encoded("test") is not None:
        import torch

        enc = dm.encoded("test")
        idx = list(range(min(len(enc), 16)))
        module.eval()
        interval = "conformal" if getattr(module, "calibrated", False) else "mc"  # the 90 % interval
        with torch.no_grad():
            part = module.predict_step(enc.collate(idx), 0, interval=interval)
        frame = module.predictions_frame([part], enc.ds)
        written.append(plots.plot_forecasts(frame, out / "forecasts.png", history=_history_frame(enc.ds, idx,
                                            module.history_hours), origin=float(module.history_hours)))
    decay = getattr(module.network, "input_layer", None)
    if decay is not None and hasattr(decay, "weight") and hasattr(decay, "bias"):
        written.append(plots.plot_input_decay(decay.weight.detach().cpu().numpy(), decay.bias.detach().cpu().numpy(),
                                              module.stats.variables, out / "input_decay.png"))
    log.info("plots: %s", ", ".join(p.name for p in written))
    return written


def _history_frame(ds, idx, history_hours: float):
    """The observed values before ``history_hours`` of series ``idx`` of ``ds`` (raw units), long format."""
    import numpy as np
    import pandas as pd

    rows = []
    for i in idx:
        series = ds[i]
        keep = series.times < history_hours
        t, v = series.times[keep], series.values[keep]
        r, c = np.nonzero(~np.isnan(v))
        rows.append(pd.DataFrame({"id": series.id, "time": t[r], "variable": [ds.variables[j] for j in c],
                                  "value": v[r, c]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["id", "time", "variable", "value"])
