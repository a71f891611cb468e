#!/usr/bin/env python
"""What a static code held as text costs the long-CSV reader, measured side by side.

    python scripts/static_text_cost.py                 # 20,000 series x 200 rows (4 M rows)
    python scripts/static_text_cost.py --series 5000 --rows 100

Writes two long files that differ only in one categorical static variable, Gender as ``0`` /
``1`` (numbers: pandas' typed parser reads the value column) or as ``F`` / ``M`` (text: the value
column is re-read as text, the Gender rows coded apart, the rest parsed as numbers), reads each
with ``read_long_csv(..., categorical_static=["Gender"], cache=False)`` in a process of its own,
one-hot encodes it (``fit_static_categories`` + ``one_hot_static``), and prints each read's wall
time, the encoding's, the peak resident memory (``getrusage``) and the text file's ratios to the
numeric one's (of the read and the memory).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from grud.data.readers import read_long_csv
from grud.data.categorical import fit_static_categories, one_hot_static
start = time.perf_counter()
ds = read_long_csv(sys.argv[1], static_variables=["Gender"], categorical_static=["Gender"], cache=False)
read = time.perf_counter() - start
start = time.perf_counter()
one_hot_static(ds, fit_static_categories(ds, ["Gender"]))
print(json.dumps({"seconds": read, "encode_seconds": time.perf_counter() - start, "series": len(ds),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_files(folder: Path, series: int, rows: int) -> dict:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = series * rows
    measurements = pd.DataFrame({"id": np.repeat(np.arange(series), rows), "time": np.tile(np.arange(rows) * 0.25, series),
                                 "variable": rng.choice(["HR", "SysBP", "Temp", "SpO2", "Glucose"], n),
                                 "value": np.round(rng.normal(80, 10, n), 1)})
    sex = rng.choice(["F", "M"], series)
    paths = {}
    for kind, codes in (("numbers", np.where(sex == "F", "0", "1")), ("text", sex)):
        static = pd.DataFrame({"id": np.arange(series), "time": 0.0, "variable": "Gender", "value": codes})
        paths[kind] = folder / f"{kind}.csv"
        pd.concat([measurements, static]).to_csv(paths[kind], index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=200, help="measurement rows per series")
    args = parser.parse_args(argv)
    for key in ("series", "rows"):
        if getattr(args, key) < 1:
            parser.error(f"--{key}: expected >= 1, got {getattr(args, key)}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.series, args.rows)
        got = {}
        for kind, path in paths.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            got[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"Gender as {kind:7s}: read {got[kind]['seconds']:6.2f} s, one-hot {got[kind]['encode_seconds']:.3f} s, "
                  f"peak {got[kind]['peak_mb']:7.0f} MB ({got[kind]['series']} series, "
                  f"{args.series * (args.rows + 1):,} rows)")
    print(f"text / numbers: time {got['text']['seconds'] / got['numbers']['seconds']:.2f}x, "
          f"peak memory {got['text']['peak_mb'] / got['numbers']['peak_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
