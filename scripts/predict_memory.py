#!/usr/bin/env python
"""What grud-predict's chunks save in memory, measured side by side.

    python scripts/predict_memory.py FC/checkpoints/best.ckpt task.forecast_grid_hours=1
    python scripts/predict_memory.py CKPT data.path=EXPORT.csv --chunks 1024 500

Runs ``grud-predict CKPT data.path=... [overrides] output=...`` once per chunk size, each in a
process of its own (``grud.cli.checkpoint_ensemble.CHUNK_SERIES`` set there), plus once in one
piece (a chunk larger than any file), and prints each run's peak resident memory (``getrusage``),
its wall time, the ratio of its peak to the one-piece run's, and whether its output file is
byte-identical to the one-piece run's (the output may differ in the last printed decimal:
other batches round float32 otherwise, as another ``batch_size`` does). The data defaults to
the embedded set-b.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet2012" / "set-b.tar.gz"
ONE_PIECE = 10 ** 9

CHILD = """
import json, resource, sys, time
import grud.cli.checkpoint_ensemble as ensemble
ensemble.CHUNK_SERIES = int(sys.argv[1])
sys.argv = ["grud-predict", *sys.argv[2:]]
from grud.cli.predict import main
start = time.perf_counter()
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - start}))
"""


def run(chunk: int, args: list[str], out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(chunk), *args, f"output={out}"],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"grud-predict failed with chunks of {chunk}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("overrides", nargs="*", help="grud-predict overrides, e.g. task.forecast_grid_hours=1")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1024, 500], help="series per chunk to measure")
    a = ap.parse_args()
    args = [f"checkpoint={a.checkpoint}", *a.overrides]
    if not any(o.startswith("data.path=") for o in a.overrides):
        args.append(f"data.path={DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "one_piece.csv"
        base = run(ONE_PIECE, args, whole)
        print(f"{'chunk':>10} {'peak MB':>9} {'seconds':>8} {'peak ratio':>10}  identical output")
        print(f"{'one piece':>10} {base['peak_mb']:9.0f} {base['seconds']:8.1f} {1.0:10.2f}  -")
        for chunk in a.chunks:
            out = Path(tmp) / f"chunk_{chunk}.csv"
            r = run(chunk, args, out)
            same = filecmp.cmp(out, whole, shallow=False)
            print(f"{chunk:>10} {r['peak_mb']:9.0f} {r['seconds']:8.1f} {r['peak_mb'] / base['peak_mb']:10.2f}  {same}")


if __name__ == "__main__":
    main()
