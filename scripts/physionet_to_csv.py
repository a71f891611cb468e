#!/usr/bin/env python
"""Convert raw PhysioNet 2012 stay files into grud's long CSV format.

    python scripts/physionet_to_csv.py data/physionet2012/set-a.tar.gz set-a.csv \\
        --outcomes data/physionet2012/Outcomes-a.txt --labels-out set-a-labels.csv

writes ``id,time,variable,value`` rows: ``id`` = RecordID as written, ``time`` = hours since ICU
admission (``HH:MM`` / 60, full precision), one row per measurement in file order, the static
descriptors (Age, Gender, Height, ICUType) as rows at their time. ``-1`` ("unknown") is written
as an empty value, so the rows still mark time 0. The RecordID rows are not repeated as
measurements. With ``--outcomes``, ``--labels-out`` gets ``id,label`` from ``In-hospital_death``
only. Read the result back with::

    read_long_csv("set-a.csv", static_variables=["Age", "Gender", "Height", "ICUType"],
                  labels="set-a-labels.csv", value_ranges="physionet2012")

which gives the same dataset as ``read_physionet2012``. ``grud-train data=csv_long ...
data.static_variables=[Age,Gender,Height,ICUType]`` on it equals the embedded default run only
with the PhysioNet group's other two settings, ``data.value_ranges=physionet2012
data.categorical_static=[ICUType]`` (session 18: the same test AUROC and epochs on seeds 0-2).
Files are written to a temporary name in the target folder and then renamed.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import grud  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from grud.atomic_files import atomic_write
from grud.data.physionet_files import RECORD_ID, StaySource, parse_stays
from grud.data.readers import PHYSIONET_LABEL, read_label_table
from grud.errors import DataError


def _write_atomically(path: Path, frame: pd.DataFrame) -> None:
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            frame.to_csv(f, index=False, lineterminator="\n")

    atomic_write(path, write)


def _number_text(v: float) -> str:
    t = repr(v)
    return t[:-2] if t.endswith(".0") else t


def stays_to_long(src) -> pd.DataFrame:
    """The long ``id,time,variable,value`` table of a PhysioNet folder / archive."""
    rows = parse_stays(StaySource(src).files())
    keep = np.array([rows.parameters[c] != RECORD_ID for c in range(len(rows.parameters))], dtype=bool)
    keep = keep[rows.codes] if len(rows.codes) else np.zeros(0, dtype=bool)
    values = rows.values[keep]
    text = [("" if v != v or v == -1 else _number_text(v)) for v in values.tolist()]
    return pd.DataFrame(
        {
            "id": np.asarray(rows.record_ids, dtype=object)[rows.row_file[keep]],
            "time": rows.hours[keep],
            "variable": np.asarray(rows.parameters, dtype=object)[rows.codes[keep]],
            "value": text,
        }
    )


def outcomes_to_labels(outcomes) -> pd.DataFrame:
    """``id,label`` from an Outcomes file (``In-hospital_death`` only)."""
    ids, labels = read_label_table(outcomes, RECORD_ID, PHYSIONET_LABEL)
    return pd.DataFrame({"id": ids.astype(str), "label": labels.astype(np.int64) if np.all(labels % 1 == 0) else labels})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert PhysioNet 2012 Time,Parameter,Value stay files (folder or .tar.gz) "
        "into a long CSV (id,time,variable,value; time in hours since ICU admission).",
    )
    parser.add_argument("src", help="folder or .tar.gz of stay files (e.g. data/physionet2012/set-a.tar.gz)")
    parser.add_argument("out", help="output CSV path")
    parser.add_argument("--outcomes", help="Outcomes file (e.g. Outcomes-a.txt); requires --labels-out")
    parser.add_argument("--labels-out", help="where to write id,label (In-hospital_death); requires --outcomes")
    args = parser.parse_args(argv)
    if (args.outcomes is None) != (args.labels_out is None):
        parser.error("--outcomes and --labels-out go together")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        long = stays_to_long(args.src)
        labels = outcomes_to_labels(args.outcomes) if args.outcomes else None
        if labels is not None:
            matched = labels["id"].astype(str).isin(set(long["id"].astype(str))).sum()
            if matched == 0:
                raise DataError(f"no RecordID of {args.outcomes} is a stay of {args.src} (another set's "
                                f"outcomes? set-a goes with Outcomes-a.txt)")
            if matched < len(labels):
                logging.warning("%d of %d outcome rows match no stay of %s", len(labels) - matched, len(labels),
                                args.src)
        _write_atomically(Path(args.out), long)
        if labels is not None:
            _write_atomically(Path(args.labels_out), labels)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = long["id"].nunique()
    print(f"wrote {len(long)} rows of {n} stays to {args.out}" + (f"; {len(labels)} labels to {args.labels_out}" if labels is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
