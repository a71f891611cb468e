#!/usr/bin/env python
"""Score several ``grud-predict`` outputs, alone and averaged, against labels.

    python scripts/average_predictions.py --labels data/physionet2012/Outcomes-b.txt \\
        --label-column In-hospital_death run0/pred.csv run1/pred.csv run2/pred.csv

Each prediction file is a binary-classification output of ``grud-predict`` (its first column is
the id, then ``probability``). The labels file has the same id column name (or ``RecordID``,
as in the PhysioNet Outcomes files) and ``--label-column``. Prints the test AUROC of every file,
their mean, and the AUROC of the averaged probability (an ensemble of runs trained on different
splits or seeds, e.g. ``seed=0..4``). Ids missing from a file or from the labels are an error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", nargs="+", type=Path, help="grud-predict CSV files (binary classification)")
    ap.add_argument("--labels", required=True, type=Path, help="CSV with the id column and the label column")
    ap.add_argument("--label-column", default=None,
                    help="label column of --labels (default: In-hospital_death, else label as "
                         "scripts/physionet_to_csv.py writes it)")
    args = ap.parse_args(argv)
    from grud.tasks.metrics import binary_metrics  # the AUROC that metrics.json reports

    def auroc(y, p):
        return binary_metrics(y, np.asarray(p, dtype=np.float64))["auroc"]

    try:
        labels = pd.read_csv(args.labels)
        if args.label_column is None:
            args.label_column = next((c for c in ("In-hospital_death", "label") if c in labels.columns),
                                     "In-hospital_death")
        probs = []
        for path in args.predictions:
            p = pd.read_csv(path)
            if "probability" not in p.columns:
                raise ValueError(f"{path}: expected a 'probability' column (binary grud-predict output), "
                                 f"got columns {list(p.columns)}")
            id_col = p.columns[0]
            lab_id = id_col if id_col in labels.columns else "RecordID"
            if lab_id not in labels.columns or args.label_column not in labels.columns:
                raise ValueError(f"{args.labels}: expected columns {id_col!r} (or RecordID) and "
                                 f"{args.label_column!r}, got {list(labels.columns)}")
            y = labels.set_index(lab_id)[args.label_column]
            missing = set(p[id_col]) - set(y.index)
            if missing:
                raise ValueError(f"{path}: {len(missing)} ids have no label in {args.labels}, "
                                 f"e.g. {sorted(missing)[:3]}")
            probs.append(p.set_index(id_col)["probability"].rename(str(path)))
        table = pd.concat(probs, axis=1, join="outer")
        if table.isna().any().any():
            raise ValueError("the prediction files do not cover the same ids")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    y = y.loc[table.index].to_numpy()
    singles = []
    for col in table.columns:
        singles.append(auroc(y, table[col]))
        print(f"{col}\tAUROC {singles[-1]:.4f}")
    print(f"mean of the {len(singles)} single AUROCs\t{np.mean(singles):.4f} ± {np.std(singles, ddof=1) if len(singles) > 1 else 0:.4f}")
    print(f"AUROC of the averaged probability\t{auroc(y, table.mean(axis=1)):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
