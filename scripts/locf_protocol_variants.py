#!/usr/bin/env python
"""LOCF's forecasting MSE on PhysioNet 2012 under nearby readings of the t-PatchGNN protocol.

    python scripts/locf_protocol_variants.py

Observe the first 24 h, forecast every observation until 48 h, min-max scale from set-a. Prints,
for set-a and set-b, with and without the value-range table: the per-variable average that
``grud-train task=forecast`` reports (``test/locf_mse``) and the pooled average over all queries,
each with the three ways a variable never seen in a stay's first 24 h can be treated: forecast
the training mean (grud's choice), drop those queries, or forecast the training minimum (0 on
the min-max scale). It explains why LOCF's absolute MSE differs between implementations of the
"same" protocol, and why only ratios to LOCF on one test set are compared.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "data" / "physionet2012"


def locf_errors(fd, stats, unseen: str) -> tuple[float, float]:
    """(per-variable mean, pooled mean) of LOCF's squared error on the min-max scale."""
    from grud.tasks.forecasting import VariableErrors

    s = fd.query_series()
    mask = fd.query_mask > 0
    seen = fd.last_mask[s] > 0
    if unseen == "drop":
        mask = mask & seen
    fallback = stats.value_min if unseen == "minimum" else stats.value_mean
    pred = np.where(seen, fd.last_raw[s], np.asarray(fallback, np.float64)[None, :])
    errors = VariableErrors(stats.n_features)  # what test/locf_mse averages, per variable then over variables
    errors.add(stats.minmax_scale(pred), stats.minmax_scale(fd.query_raw.astype(np.float64)), mask)
    return errors.mse(), float(errors.sq.sum() / errors.count.sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT, help="folder with set-a.tar.gz and set-b.tar.gz")
    args = ap.parse_args(argv)
    from grud.data.forecast_batching import ForecastDataset
    from grud.data.readers import read_physionet2012
    from grud.data.transforms import fit_stats

    print("| value ranges | test set | unseen variable | per-variable MSE (x 1e-3) | pooled MSE (x 1e-3) |")
    print("|---|---|---|---:|---:|")
    for ranges in ("physionet2012", None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = read_physionet2012(args.data / "set-a.tar.gz", max_hours=48, value_ranges=ranges)
            b = read_physionet2012(args.data / "set-b.tar.gz", max_hours=48, value_ranges=ranges)
            stats = fit_stats(a)
        for name, ds in (("set-a", a), ("set-b", b)):
            fd = ForecastDataset(ds, stats, 24.0, 24.0)
            for unseen in ("mean", "drop", "minimum"):
                per_variable, pooled = locf_errors(fd, stats, unseen)
                print(f"| {ranges or 'off'} | {name} | {unseen} | {per_variable * 1e3:.2f} | {pooled * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    from grud.errors import DataError

    try:
        raise SystemExit(main())
    except DataError as exc:  # a missing or unreadable --data folder: one line, as the CLIs do
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
