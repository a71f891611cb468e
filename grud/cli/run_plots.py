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
        written += plots.plot_roc_pr_calibration(y, prob, out)
    if task_name == "forecast" and dm.encoded("test") is not None:
        import torch

        enc = dm.encoded("test")
        idx = list(range(min(len(enc), 16)))
        module.eval()
        with torch.no_grad():
            part = module.predict_step(enc.collate(idx), 0)
        frame = module.predictions_frame([part], enc.ds)
        written.append(plots.plot_forecasts(frame, out / "forecasts.png"))
    decay = getattr(module.network, "input_layer", None)
    if decay is not None and hasattr(decay, "weight") and hasattr(decay, "bias"):
        written.append(plots.plot_input_decay(decay.weight.detach().cpu().numpy(), decay.bias.detach().cpu().numpy(),
                                              module.stats.variables, out / "input_decay.png"))
    log.info("plots: %s", ", ".join(p.name for p in written))
    return written
