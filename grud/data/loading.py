"""Read the train (and optional separate test) data of a run from plain options.

The entry points pass the ``data`` config group here as plain keyword arguments; nothing in
this module knows about Hydra.
"""
from __future__ import annotations

import os
from pathlib import Path

from grud.data.dataset import IrregularDataset
from grud.data.readers import read_long_csv, read_physionet2012, read_wide_csv
from grud.errors import ConfigError, DataError

KINDS = ("physionet2012", "csv_long", "csv_wide")

# reader keyword arguments each kind accepts (beyond path and labels)
_READER_KEYS = {
    "physionet2012": ("max_hours", "value_ranges"),
    "csv_long": ("id_column", "time_column", "variable_column", "value_column", "time_unit", "label_column",
                 "label_id_column", "label_map", "time_zero", "static_variables", "categorical_static", "max_hours",
                 "value_ranges", "delimiter", "allow_missing_variables", "known_variables"),
    "csv_wide": ("id_column", "time_column", "variables", "time_unit", "label_column", "label_id_column",
                 "label_map", "time_zero", "static_variables", "categorical_static", "max_hours", "value_ranges",
                 "delimiter", "allow_missing_variables"),
}


def prediction_reader_keys(kind: str) -> tuple:
    """The reader options of ``kind`` a user may set at prediction (``allow_missing_variables`` and
    ``known_variables`` are set by prediction itself, ``categorical_static`` comes from the checkpoint)."""
    return tuple(k for k in _READER_KEYS.get(kind, ())
                 if k not in ("allow_missing_variables", "known_variables", "categorical_static"))


def source_root() -> Path:
    """The folder holding grud's source checkout (where ``data/`` lives in a clone)."""
    return Path(__file__).resolve().parents[2]


def resolve_path(path, key: str) -> Path:
    """Find ``path`` as given, else under ``$GRUD_DATA_ROOT``, else under the source checkout."""
    if path is None or str(path) == "":
        raise ConfigError(f"{key}: a file path is required (e.g. {key}=PATH)")
    if isinstance(path, (list, tuple)):
        raise ConfigError(f"{key}: expected one file, got a list of {len(path)} ({', '.join(map(str, path))}); "
                          "measurements from several tables go into one long file (id, time, variable, value)")
    p = Path(os.path.expanduser(str(path)))
    if p.exists() or p.is_absolute():
        if not p.exists():
            raise DataError(f"{key}: file not found", path=p)
        return p
    tried = [p.resolve()]
    roots = [Path(os.environ["GRUD_DATA_ROOT"])] if os.environ.get("GRUD_DATA_ROOT") else []
    roots.append(source_root())
    for root in roots:
        q = root / p
        if q.exists():
            return q
        tried.append(q)
    raise DataError(f"{key}: file not found (looked at {', '.join(str(t) for t in tried)})", path=p)


def reader_options(kind: str, options: dict) -> dict:
    """The subset of ``options`` that the reader of ``kind`` takes (None values dropped, except an
    explicit ``value_ranges: null``, which means none)."""
    if kind not in KINDS:
        raise ConfigError(f"data.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    out = {k: options[k] for k in _READER_KEYS[kind] if options.get(k) is not None}
    if "value_ranges" in options and options["value_ranges"] is None:
        out["value_ranges"] = None  # null switches ranges off (the PhysioNet reader's default is its table)
    return out


def read_dataset(kind: str, path, labels=None, *, key: str = "data.path", **options) -> IrregularDataset:
    """Read one file of ``kind`` with the reader options in ``options``."""
    opts = reader_options(kind, options)
    path = resolve_path(path, key)
    if labels is not None and not hasattr(labels, "columns"):
        labels = resolve_path(labels, key.replace("path", "labels"))
    if "static_variables" in opts and opts["static_variables"] is not None:
        opts["static_variables"] = [str(v) for v in opts["static_variables"]]
    if "variables" in opts and opts["variables"] is not None:
        opts["variables"] = [str(v) for v in opts["variables"]]
    reader = {"physionet2012": read_physionet2012, "csv_long": read_long_csv, "csv_wide": read_wide_csv}[kind]
    label_arg = {"outcomes": labels} if kind == "physionet2012" else {"labels": labels}
    try:
        return reader(path, **label_arg, **opts)
    except ConfigError as exc:  # a reader option's message names it as the group's key (data.time_unit)
        group = key.rsplit(".", 1)[0] + "." if "." in key else ""
        said = str(exc)
        named = next((k for k in opts if said.startswith(f"{k}:")), None)
        if not group or named is None or exc.path is not None:
            raise
        raise ConfigError(group + said) from exc
