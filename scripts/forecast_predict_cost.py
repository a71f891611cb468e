#!/usr/bin/env python
"""What decoding only the output rows saves a forecast prediction, measured side by side.

    python scripts/forecast_predict_cost.py                 # set-b, 10 MC draws, 3 alternated rounds
    python scripts/forecast_predict_cost.py --mc-samples 0  # the deterministic forecast

Builds the forecaster of ``grud-train experiment=forecast_physionet`` (untrained, with a random
decoder output layer: the cost does not depend on the weights), encodes the stays once and times
prediction over the same batches of 256 (what ``grud-predict`` uses), alternating two variants in
every round:

- ``decode every entry``: the decoder runs on every (query, variable) of the padded batch, as
  ``ForecastTask.predict_step`` did before it passed ``only``;
- ``decode output rows``: ``ForecastTask.predict_step`` as it is, decoding the entries the
  output frame keeps (observed queries; every variable on a grid).

With ``--mc-samples N`` both draw N Monte-Carlo dropout forecasts and take the 5th / 95th
percentiles. Prints the median time of each, the median over rounds of its ratio to ``decode
every entry``, and the largest difference between the two deterministic forecasts on the rows
the frame keeps (they must agree).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet2012"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds of the two variants")
    ap.add_argument("--mc-samples", type=int, default=10, help="Monte-Carlo dropout draws (0 = deterministic)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--series", type=int, default=None, help="use only the first N stays of set-b")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds: expected >= 1, got {args.rounds}")
    if args.mc_samples < 0:
        ap.error(f"--mc-samples: expected >= 0, got {args.mc_samples}")

    import torch

    from grud.api import _compose
    from grud.cli.config import plain
    from grud.cli.pipeline import build_module
    from grud.data.batching import BucketBatchSampler
    from grud.data.categorical import fit_static_categories, one_hot_static
    from grud.data.readers import read_physionet2012
    from grud.data.transforms import fit_stats
    from grud.tasks.forecasting import MC_QUANTILES

    torch.set_num_threads(args.threads)
    ds = read_physionet2012(DATA / "set-b.tar.gz", None, max_hours=48, value_ranges="physionet2012")
    if args.series:
        ds = ds.subset(np.arange(min(args.series, len(ds))))
    ds = one_hot_static(ds, fit_static_categories(ds, ["ICUType"]))
    stats = fit_stats(ds)
    torch.manual_seed(0)
    task = build_module(plain(_compose("train", ["experiment=forecast_physionet"])), stats, ds).eval()
    with torch.no_grad():
        task.decoder.out.weight.normal_(0, 0.1)
    enc = task.encode_dataset(ds, stats)
    batches = [enc.collate(b) for b in BucketBatchSampler(enc.lengths, 256, shuffle=False)]
    n = args.mc_samples

    def every_entry(batch):
        """The forecast and bounds with the decoder on every entry (predict_step without ``only``)."""
        if n == 0:
            return stats.denormalise_values(task(batch)[0])
        with task.mc_dropout(True):
            draws = stats.denormalise_values(torch.stack([task(batch)[0] for _ in range(n)]))
        return draws.mean(0), torch.quantile(draws, torch.tensor(MC_QUANTILES, dtype=draws.dtype), dim=0)

    variants = {"decode every entry": lambda b: every_entry(b),
                "decode output rows": lambda b: task.predict_step(b, 0, mc_samples=n)}

    def prediction_pass(fn, data) -> float:
        t = time.perf_counter()
        with torch.no_grad():
            for b in data:
                fn(b)
        return time.perf_counter() - t

    with torch.no_grad():  # the two agree on the rows the frame keeps
        diff = 0.0
        for b in batches:
            keep = (b["query_mask"] > 0) | (b["query_on_grid"] > 0)[..., None]
            full = stats.denormalise_values(task(b)[0])
            part = task.predict_step(b, 0)["prediction"]
            diff = max(diff, float((full - part)[keep].abs().max()) if keep.any() else 0.0)
    for fn in variants.values():  # warm-up: first-call costs stay out of the rounds
        prediction_pass(fn, batches[:1])
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(prediction_pass(fn, batches))
    base = np.asarray(times["decode every entry"])
    kept = sum(int(((b["query_mask"] > 0) | (b["query_on_grid"] > 0)[..., None]).sum()) for b in batches)
    total = sum(b["query_mask"].numel() for b in batches)
    print(f"{len(ds)} stays, {len(batches)} batches of 256, mc_samples={n}, {args.threads} thread(s), "
          f"{args.rounds} rounds; the frame keeps {kept} of {total} (query, variable) entries")
    for name, t in times.items():
        t = np.asarray(t)
        print(f"{name:20s} median {np.median(t):.3f} s   ratio to decode every entry (median of rounds) "
              f"{np.median(t / base):.3f}")
    print(f"largest |difference| of the deterministic forecasts on the kept rows: {diff:.3g} (raw units)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
