"""Write a small, imbalanced wide CSV export: 400 series, 12 positives (3 %), HR, SBP and a static Age.

The data behind the README's `task.head.prior_bias` row (made by a user pass in session 15):

    python scripts/imbalanced_example.py OUT_DIR
    for S in 0 1 2; do
      OMP_NUM_THREADS=1 grud-train data=csv_wide data.path=OUT_DIR/train_w.csv data.labels=OUT_DIR/labels.csv \
        'data.static_variables=[Age]' trainer.max_epochs=15 seed=$S hydra.run.dir=runs/prior_$S
      # and the same with task.head.prior_bias=false into runs/noprior_$S
    done

then compare `test/brier` in each run's metrics.json (always predicting the prevalence scores about 0.024).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def write_example(out_dir, seed: int = 3, n: int = 400, positives: int = 12) -> tuple[Path, Path]:
    """Write ``train_w.csv`` (id, time, HR, SBP, Age; most cells empty) and ``labels.csv`` into
    ``out_dir``; positives have a higher HR and Age and a lower SBP. Returns both paths."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    pos = set(rng.choice(n, positives, replace=False))
    for i in range(n):
        y = int(i in pos)
        times = np.sort(rng.uniform(0, 48, rng.integers(5, 25)))
        for k, t in enumerate(times):
            row = {"id": i, "time": round(t, 3)}
            if rng.random() < 0.6:
                row["HR"] = round(rng.normal(80 + 6 * y, 8), 1)
            if rng.random() < 0.3:
                row["SBP"] = round(rng.normal(120 - 5 * y, 10), 1)
            if k == 0:
                row["Age"] = round(rng.normal(60 + 4 * y, 10))
            rows.append(row)
        labels.append({"id": i, "label": y})
    data, labs = out_dir / "train_w.csv", out_dir / "labels.csv"
    pd.DataFrame(rows)[["id", "time", "HR", "SBP", "Age"]].to_csv(data, index=False)
    pd.DataFrame(labels).to_csv(labs, index=False)
    return data, labs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder for train_w.csv and labels.csv")
    args = parser.parse_args(argv)
    data, labs = write_example(args.out_dir)
    print(f"wrote {data} and {labs}")


if __name__ == "__main__":
    main()
