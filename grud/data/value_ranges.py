"""Physiologically possible value ranges: measurements outside them become unobserved.

Clinical exports hold impossible entries (a pH of 735 typed for 7.35, a weight of 0 kg, a
temperature of -17.8 degC). A *value-range table* names, per variable, the interval of values
that can be real; the readers turn every measurement outside it into "not observed" (NaN)
and log per variable how many they dropped.

A table is a CSV file, one row per variable, editable by hand::

    variable,min,max,min_inclusive,max_inclusive
    pH,6,8.5,true,true
    Weight,0,700,false,true      # weight must be > 0 and <= 700

An empty ``min``/``max`` means no bound on that side; an empty ``*_inclusive`` means
``true``. Further columns (the built-in tables carry ``unit`` and ``why``) are ignored.
Variables not in the table are not checked; table rows for variables the data does not
have are ignored.

``value_ranges`` arguments of the readers accept: ``None`` (no check), the name of a
built-in table (``"physionet2012"``: ``grud/data/resources/physionet2012_ranges.csv``), a
path to such a CSV file, or a dict ``{variable: (min, max)}`` (``None`` for an open side;
a 4-tuple ``(min, max, min_inclusive, max_inclusive)`` or a :class:`ValueRange` also work).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

from grud.errors import ConfigError, DataError
from grud.data.text_tables import load_text_table, parse_numbers, read_source_bytes

log = logging.getLogger(__name__)

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
REQUIRED_COLUMNS = ("variable", "min", "max")


@dataclass(frozen=True)
class ValueRange:
    """The possible values of one variable: ``min``..``max`` (``None`` = unbounded side)."""

    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def describe(self) -> str:
        lo = "(-inf" if self.min is None else ("[" if self.min_inclusive else "(") + f"{self.min:g}"
        hi = "inf)" if self.max is None else f"{self.max:g}" + ("]" if self.max_inclusive else ")")
        return f"{lo}, {hi}"


def builtin_tables() -> list[str]:
    """Names of the tables shipped in ``grud/data/resources`` (``<name>_ranges.csv``)."""
    folder = resources.files("grud.data").joinpath("resources")
    return sorted(p.name[: -len("_ranges.csv")] for p in folder.iterdir() if p.name.endswith("_ranges.csv"))


def load_value_ranges(spec) -> dict[str, ValueRange] | None:
    """Resolve a ``value_ranges`` argument (see the module docstring) into ``{variable: ValueRange}``."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {str(k): _range_from_python(k, v) for k, v in spec.items()}
    if isinstance(spec, str) and spec in builtin_tables():
        res = resources.files("grud.data").joinpath("resources", f"{spec}_ranges.csv")
        return read_value_range_table(res.read_bytes(), f"grud/data/resources/{spec}_ranges.csv")
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if not p.exists():
            raise ConfigError(
                f"value_ranges: {str(spec)!r} is neither a built-in table "
                f"({', '.join(builtin_tables())}) nor an existing CSV file"
            )
        return read_value_range_table(read_source_bytes(p, "value-range table"), p)
    raise ConfigError(
        "value_ranges: expected None, a built-in table name, a CSV path or a dict "
        f"{{variable: (min, max)}}, got {type(spec).__name__}"
    )


def _range_from_python(name, v) -> ValueRange:
    if isinstance(v, ValueRange):
        return v
    try:
        parts = tuple(v)
    except TypeError:
        parts = ()
    if len(parts) not in (2, 4):
        raise ConfigError(f"value_ranges[{name!r}]: expected (min, max) or (min, max, min_inclusive, max_inclusive), got {v!r}")
    lo, hi = (None if x is None or (isinstance(x, float) and math.isnan(x)) else x for x in parts[:2])
    try:
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
    except (TypeError, ValueError):
        raise ConfigError(f"value_ranges[{name!r}]: min and max must be numbers or None, got {v!r}") from None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"value_ranges[{name!r}]: min {lo:g} is above max {hi:g}")
    incl = (bool(parts[2]), bool(parts[3])) if len(parts) == 4 else (True, True)
    return ValueRange(lo, hi, *incl)


def read_value_range_table(raw: bytes, path) -> dict[str, ValueRange]:
    """Parse a value-range CSV (``variable,min,max[,min_inclusive,max_inclusive]``)."""
    table = load_text_table(raw, path)
    table.require(REQUIRED_COLUMNS, what="value-range column")
    cols = list(REQUIRED_COLUMNS) + [c for c in ("min_inclusive", "max_inclusive") if c in table.columns]
    frame = table.read_columns(cols)
    keep = np.flatnonzero(~frame.apply(lambda c: c.str.strip() == "").all(axis=1).to_numpy())
    frame = frame.iloc[keep].reset_index(drop=True)
    lines = table.line_of(keep)
    lo = parse_numbers(frame["min"], table.path, "min", lines)
    hi = parse_numbers(frame["max"], table.path, "max", lines)
    flags = {}
    for c in ("min_inclusive", "max_inclusive"):
        if c not in frame:
            flags[c] = np.ones(len(frame), dtype=bool)
            continue
        words = frame[c].str.strip().str.lower()
        out = np.ones(len(frame), dtype=bool)
        for i, w in enumerate(words):
            if w in _FALSE:
                out[i] = False
            elif w not in _TRUE and w != "":
                raise DataError(f"expected true or false, got {w!r}", path=table.path, line=int(lines[i]), column=c)
        flags[c] = out
    ranges: dict[str, ValueRange] = {}
    names = frame["variable"].str.strip()
    for i, name in enumerate(names):
        line = int(lines[i])
        if not name:
            raise DataError("empty variable name", path=table.path, line=line, column="variable")
        if name in ranges:
            raise DataError(f"variable {name!r} has a second row", path=table.path, line=line, column="variable")
        a = None if np.isnan(lo[i]) else float(lo[i])
        b = None if np.isnan(hi[i]) else float(hi[i])
        if a is not None and b is not None and a > b:
            raise DataError(f"min {a:g} is above max {b:g}", path=table.path, line=line, column="min")
        ranges[name] = ValueRange(a, b, bool(flags["min_inclusive"][i]), bool(flags["max_inclusive"][i]))
    return ranges


def fingerprint(ranges: dict[str, ValueRange] | None) -> str | None:
    """Canonical text of a resolved table (part of the reader cache key)."""
    if ranges is None:
        return None
    return json.dumps(
        {k: [r.min, r.max, r.min_inclusive, r.max_inclusive] for k, r in sorted(ranges.items())},
        sort_keys=True,
    )


def drop_out_of_range(
    codes: np.ndarray,
    values: np.ndarray,
    names: list[str],
    ranges: dict[str, ValueRange] | None,
    source: str = "",
) -> dict[str, int]:
    """Set ``values`` outside their variable's range to NaN, in place; log and return counts.

    Args:
        codes: (M,) index into ``names`` of each measurement's variable.
        values: (M,) float measurements (NaN = unobserved; left alone).
        names: variable names.
        ranges: resolved table (``None``: nothing to do).
        source: shown in the log lines (usually the file).

    Returns:
        ``{variable: number of measurements dropped}`` for variables that lost any.
    """
    if not ranges or len(values) == 0:
        return {}
    _report_unmatched(ranges, names, source)
    V = len(names)
    lo = np.full(V, -np.inf)
    hi = np.full(V, np.inf)
    lo_in = np.ones(V, dtype=bool)
    hi_in = np.ones(V, dtype=bool)
    for j, name in enumerate(names):
        r = ranges.get(name)
        if r is None:
            continue
        if r.min is not None:
            lo[j], lo_in[j] = r.min, r.min_inclusive
        if r.max is not None:
            hi[j], hi_in[j] = r.max, r.max_inclusive
    with np.errstate(invalid="ignore"):
        vlo, vhi = lo[codes], hi[codes]
        out = (values < vlo) | (values > vhi) | ((values == vlo) & ~lo_in[codes]) | ((values == vhi) & ~hi_in[codes])
    counts = np.bincount(codes[out], minlength=V)
    totals = np.bincount(codes[~np.isnan(values)], minlength=V)
    values[out] = np.nan
    dropped = {names[j]: int(counts[j]) for j in np.flatnonzero(counts)}
    where = f"{source}: " if source else ""
    for name, n in dropped.items():
        log.info(
            "%svalue ranges: %d of %d %r value(s) outside %s became unobserved",
            where, n, int(totals[names.index(name)]), name, ranges[name].describe(),
        )
    return dropped


def _report_unmatched(ranges: dict, names: list[str], source: str) -> None:
    """Warn when the table matches no variable of the file (another naming, e.g. the PhysioNet table on
    a MIMIC export: nothing is checked), and when a row's name is close to a variable's but not it
    (a typo: that variable is not checked)."""
    import difflib

    where = f"{source}: " if source else ""
    unmatched = [r for r in ranges if r not in set(names)]
    if len(unmatched) == len(ranges):
        log.warning("%svalue ranges: none of the table's %d variable names (e.g. %s) is a variable of this data: "
                    "no value is checked (its names are matched exactly)", where, len(ranges),
                    ", ".join(map(repr, list(ranges)[:3])))
        return
    free = [n for n in names if n not in ranges]
    near = {r: c[0] for r in unmatched if (c := difflib.get_close_matches(r, free, n=1, cutoff=0.85))}
    if near:
        log.warning("%svalue ranges: table row(s) %s match no variable; did you mean %s? (names are matched exactly)",
                    where, ", ".join(map(repr, near)), ", ".join(map(repr, near.values())))


def log_dropped(dropped: Mapping[str, int], source: str = "") -> None:
    """Repeat the per-variable log lines of :func:`drop_out_of_range` (for cached reads)."""
    where = f"{source}: " if source else ""
    for name, n in dropped.items():
        log.info("%svalue ranges: %d %r value(s) outside their range became unobserved (cached)", where, n, name)
