"""Plots of training histories, classifier curves, forecasts, GRU-D's input decay and sweeps.

Every function takes plain arrays, DataFrames or paths, writes one PNG (atomically: a
temporary file in the same folder, then a rename) and returns the written path. matplotlib
runs with the non-interactive Agg backend; nothing here imports Hydra or torch.
"""
from grud.viz.plots import (
    plot_forecasts,
    plot_group_bars,
    plot_history,
    plot_input_decay,
    plot_roc_pr_calibration,
)

__all__ = [
    "plot_history",
    "plot_roc_pr_calibration",
    "plot_forecasts",
    "plot_input_decay",
    "plot_group_bars",
]
