"""Load test: grud-predict on a big shuffled long CSV (not part of CI at full size).

    python scripts/load_test.py                      # 50,000 series, ~20 million rows
    python scripts/load_test.py --scale 0.01         # 1/100 of that (what CI runs, no timing)
    python scripts/load_test.py --checkpoint RUN/checkpoints/best.ckpt --out /tmp/load

Steps: (1) generate a synthetic export shaped like a clinical one - per series about 60 chart
times with 10 variables each observed with some probability (~400 rows per series, plus an
``Age`` row at time 0), rows shuffled over the whole file; (2) unless ``--checkpoint`` is given,
train a GRU-D for ``--train-epochs`` on a sample of ``--train-series`` series; (3) run
``grud-predict`` (with its progress bar) on the big file in a child process under a fresh dataset
cache, and report its wall time and peak memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a
helper process whose only child is grud-predict). Targets: under 5 minutes and under 4 GiB at
full size. Exit status 0 when the predictions are complete and valid (``--strict``: and the
targets are met), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from grud.atomic_files import atomic_write

TARGET_SECONDS = 300.0
TARGET_BYTES = 4 * 1024**3
VARIABLES = ["HR", "MAP", "SysABP", "DiasABP", "RespRate", "SpO2", "Temp", "GCS", "Lactate", "Glucose"]
P_OBSERVED = np.array([0.95, 0.85, 0.85, 0.85, 0.7, 0.7, 0.5, 0.35, 0.15, 0.25])  # ~6.15 per chart time
MEAN = np.array([85.0, 80.0, 120.0, 60.0, 18.0, 96.0, 37.0, 12.0, 2.0, 130.0])
SCALE = np.array([12.0, 10.0, 18.0, 9.0, 4.0, 2.5, 0.6, 3.0, 1.0, 35.0])
SHIFT = np.array([10.0, -8.0, -10.0, -5.0, 3.0, -2.0, 0.3, -3.0, 1.5, 20.0])  # label-1 series
CHUNK_ROWS = 2_000_000


# ====================================================================== data
def generate(path: Path, n_series: int, times_per_series: int, seed: int = 0,
             labels_path: Path | None = None) -> dict:
    """Write the shuffled long CSV (``id,time,variable,value``); returns counts."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_series) < 0.3).astype(np.int8)
    n_times = np.maximum(1, rng.poisson(times_per_series, n_series))
    series = np.repeat(np.arange(n_series, dtype=np.int32), n_times)  # one entry per chart time
    t = rng.uniform(0, 48, len(series)).astype(np.float32)
    observed = rng.random((len(series), len(VARIABLES)), dtype=np.float32) < P_OBSERVED
    step, var = np.nonzero(observed)
    sid = series[step]
    value = (MEAN[var] + SHIFT[var] * y[sid] + SCALE[var] * rng.standard_normal(len(var))).astype(np.float32)
    # one Age row per series at its first chart time (time 0 of the series)
    first = np.r_[0, np.cumsum(n_times)[:-1]]
    sid = np.concatenate([sid, np.arange(n_series, dtype=np.int32)])
    time_col = np.concatenate([t[step], t[first]])
    var = np.concatenate([var, np.full(n_series, len(VARIABLES))]).astype(np.int8)
    value = np.concatenate([value, rng.integers(18, 95, n_series).astype(np.float32)])
    del observed, step, series, t
    order = rng.permutation(len(sid))
    names = np.array([*VARIABLES, "Age"], dtype=object)
    ids = np.array([f"p{i:06d}" for i in range(n_series)], dtype=object)
    def write_rows(tmp):
        with open(tmp, "w", newline="") as f:
            f.write("id,time,variable,value\n")
            for a in range(0, len(order), CHUNK_ROWS):
                o = order[a:a + CHUNK_ROWS]
                pd.DataFrame({"id": ids[sid[o]], "time": time_col[o], "variable": names[var[o]],
                              "value": value[o]}).to_csv(f, header=False, index=False, float_format="%.2f")

    atomic_write(path, write_rows)
    if labels_path is not None:
        atomic_write(labels_path, lambda tmp: pd.DataFrame({"id": ids, "label": y}).to_csv(tmp, index=False))
    return {"series": n_series, "rows": int(len(sid)), "chart_times": int(n_times.sum()),
            "bytes": path.stat().st_size}


# ====================================================================== measuring a child
def measure(cmd: list[str], env: dict, log_path: Path | None = None) -> dict:
    """Run ``cmd`` in a helper process whose only child it is -> wall seconds, peak RSS, exit code."""
    helper = [sys.executable, str(Path(__file__).resolve()), "--_measure", json.dumps(cmd)]
    proc = subprocess.run(helper, env=env, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"measuring helper failed ({proc.returncode}): {proc.stdout[-2000:]}")
    return json.loads(lines[-1])


def _measure_main(cmd_json: str) -> None:
    cmd = json.loads(cmd_json)
    start = time.monotonic()
    proc = subprocess.run(cmd)  # stderr (progress bar) goes straight to the terminal
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"returncode": proc.returncode, "seconds": seconds, "peak_bytes": peak}), flush=True)


# ====================================================================== main
def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=50_000, help="series in the big file at scale 1")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of --series to generate (CI: 0.01)")
    ap.add_argument("--times-per-series", type=int, default=65, help="mean chart times per series (~6 rows each)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="use this checkpoint instead of training one")
    ap.add_argument("--train-series", type=int, default=2000, help="series in the training sample")
    ap.add_argument("--train-epochs", type=int, default=1)
    ap.add_argument("--hidden-size", type=int, default=49, help="GRU-D units (the paper's 49)")
    ap.add_argument("--batch-size", type=int, default=256, help="grud-predict batch_size")
    ap.add_argument("--out", type=Path, default=None, help="folder for the files (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target (5 min, 4 GiB) is missed")
    ap.add_argument("--_measure", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._measure:
        _measure_main(args._measure)
        return 0
    for name in ("series", "times_per_series", "train_series", "train_epochs", "hidden_size", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if not args.scale > 0:
        ap.error(f"--scale: expected a fraction > 0, got {args.scale}")
    n = max(1, int(round(args.series * args.scale)))
    if args.checkpoint is not None and not args.checkpoint.is_file():
        ap.error(f"--checkpoint {args.checkpoint}: file not found")
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="grud-load-")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GRUD_CACHE_DIR=str(out / "cache"))
    try:
        return _run(args, n, out, env)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(args, n: int, out: Path, env: dict) -> int:
    big = out / "events.csv"
    print(f"generating {n:,} series -> {big}", flush=True)
    t0 = time.monotonic()
    counts = generate(big, n, args.times_per_series, seed=args.seed)
    gen_s = time.monotonic() - t0
    print(f"  {counts['rows']:,} rows, {counts['chart_times']:,} chart times, {counts['bytes'] / 1e6:,.0f} MB "
          f"in {gen_s:.1f} s", flush=True)

    ckpt, train_s = args.checkpoint, None
    if ckpt is None:
        m = min(args.train_series, n)
        sample, labels = out / "train.csv", out / "train_labels.csv"
        generate(sample, m, args.times_per_series, seed=args.seed + 1, labels_path=labels)
        run_dir = out / "train_run"
        cmd = ["grud-train", "data=csv_long", f"data.path={sample}", f"data.labels={labels}",
               "data.static_variables=[Age]", f"hydra.run.dir={run_dir}", f"trainer.max_epochs={args.train_epochs}",
               f"model.hidden_size={args.hidden_size}", "trainer.enable_progress_bar=false", "summary=false",
               "plots=false", "data.batch_size=64"]
        print(f"training a GRU-D (hidden {args.hidden_size}, {args.train_epochs} epoch(s)) on {m:,} series", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        train_s = time.monotonic() - t0
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            print("FAILED: grud-train", file=sys.stderr)
            return 1
        ckpt = run_dir / "checkpoints" / "best.ckpt"

    pred = out / "predictions.csv"
    cmd = ["grud-predict", f"checkpoint={ckpt}", f"data.path={big}", f"output={pred}",
           f"batch_size={args.batch_size}"]
    print("running: " + " ".join(cmd), flush=True)
    res = measure(cmd, env)
    if res["returncode"] != 0:
        print(f"FAILED: grud-predict exited {res['returncode']}", file=sys.stderr)
        return 1
    frame = pd.read_csv(pred, dtype={"id": str})
    problems = []
    if len(frame) != n or frame["id"].nunique() != n:
        problems.append(f"{len(frame)} prediction rows ({frame['id'].nunique()} ids) for {n} series")
    if not frame["probability"].between(0, 1).all():
        problems.append("probabilities outside [0, 1]")

    fast = res["seconds"] < TARGET_SECONDS
    small = res["peak_bytes"] < TARGET_BYTES
    print("\n=== load test ===")
    print(f"series                 {n:,}")
    print(f"rows                   {counts['rows']:,} ({counts['bytes'] / 1e6:,.0f} MB, shuffled)")
    print(f"generate               {gen_s:.1f} s")
    if train_s is not None:
        print(f"train (sample)         {train_s:.1f} s")
    print(f"grud-predict wall time {res['seconds']:.1f} s   target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if fast else 'MISSED'}")
    print(f"grud-predict peak RSS  {gib(res['peak_bytes'])}   target < {gib(TARGET_BYTES)}: "
          f"{'met' if small else 'MISSED'}")
    print(f"throughput             {counts['rows'] / res['seconds']:,.0f} rows/s")
    print(f"machine                {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("predictions            complete and valid")
    if args.strict and not (fast and small):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
