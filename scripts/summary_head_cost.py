#!/usr/bin/env python
"""What the classification head's summary input costs a training pass, measured side by side.

    python scripts/summary_head_cost.py            # set-a, 7 alternated rounds, 1 thread

Builds GRU-D from ``grud-train``'s default config (static first state, last + max pooling, the
imputation loss, log1p labs) twice, with ``task.head.summary`` true and false, encodes set-a once and
times full training passes (forward, backward, Adam step; no Lightning) over the same batches,
alternating three variants in every round:

- ``no summary``: the head on the pooled states and the static features only;
- ``summary precomputed``: the batches carry ``summary``, computed once per series at encoding
  (:func:`grud.data.series_summary.ragged_summary`, what ``grud-train`` does);
- ``summary per batch``: the same batches without it, so the head computes
  :func:`grud.tasks.summary_features.batch_summary` on every batch (what grud did before).

Prints the median time of each and the median over rounds of its ratio to ``no summary``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet2012"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="alternated rounds of the three variants")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--series", type=int, default=None, help="use only the first N stays of set-a")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds: expected >= 1, got {args.rounds}")
    if args.threads < 1:
        ap.error(f"--threads: expected >= 1, got {args.threads}")
    if args.series is not None and args.series < 1:
        ap.error(f"--series: expected >= 1 (or leave it out for all of set-a), got {args.series}")

    import torch

    from grud.api import _compose
    from grud.cli.config import plain
    from grud.cli.pipeline import build_module
    from grud.data.batching import BucketBatchSampler
    from grud.data.categorical import fit_static_categories, one_hot_static
    from grud.data.readers import read_physionet2012
    from grud.data.transforms import fit_stats

    torch.set_num_threads(args.threads)
    ds = read_physionet2012(DATA / "set-a.tar.gz", DATA / "Outcomes-a.txt", max_hours=48, value_ranges="physionet2012")
    if args.series:
        ds = ds.subset(np.arange(min(args.series, len(ds))))
    ds = one_hot_static(ds, fit_static_categories(ds, ["ICUType"]))
    stats = fit_stats(ds)

    def build(summary: bool):
        torch.manual_seed(0)
        task = build_module(plain(_compose("train", [f"task.head.summary={str(summary).lower()}"])), stats, ds)
        task.log_running = lambda *a, **k: None  # no trainer here: nothing to log to
        return task, torch.optim.Adam(task.parameters(), 1e-3)

    with_summary, without_summary = build(True), build(False)
    t0 = time.perf_counter()
    enc = with_summary[0].encode_dataset(ds, stats)
    enc.summary  # noqa: B018 - computed on first use; time it with the encoding
    t_encode = time.perf_counter() - t0
    batches = [enc.collate(b) for b in BucketBatchSampler(enc.lengths, 64, shuffle=True, seed=0)]
    bare = [{k: v for k, v in b.items() if k != "summary"} for b in batches]

    def training_pass(model, data) -> float:
        task, opt = model
        task.train()
        t = time.perf_counter()
        for b in data:
            opt.zero_grad()
            task.training_step(b, 0).backward()
            opt.step()
        return time.perf_counter() - t

    variants = {"no summary": (without_summary, bare), "summary precomputed": (with_summary, batches),
                "summary per batch": (with_summary, bare)}
    for model, data in variants.values():  # warm-up: first-call costs stay out of the rounds
        training_pass(model, data[:2])
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (model, data) in variants.items():
            times[name].append(training_pass(model, data))
    base = np.asarray(times["no summary"])
    print(f"{len(ds)} stays, {len(batches)} batches of 64, {args.threads} thread(s), {args.rounds} rounds; "
          f"encoding with the summary {t_encode:.2f} s")
    for name, t in times.items():
        t = np.asarray(t)
        print(f"{name:20s} median {np.median(t):.3f} s   ratio to no summary (median of rounds) "
              f"{np.median(t / base):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
