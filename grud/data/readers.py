"""Readers: clinical exports (long or wide CSV) and PhysioNet 2012 files -> :class:`IrregularDataset`.

Three entry points, one set of rules:

* :func:`read_long_csv` - one measurement per row: ``id, time, variable, value``.
* :func:`read_wide_csv` - one time per row: ``id, time, <variable 1>, <variable 2>, ...``.
* :func:`read_physionet2012` - the challenge's ``Time,Parameter,Value`` stay files (a folder or
  ``.tar.gz``) with an optional ``Outcomes`` file (label: ``In-hospital_death``; no other
  Outcomes column is ever read).

Semantics (all readers):

* **Time 0** of a series is its earliest row in the input, whatever that row holds (an empty
  value or a static variable counts; PhysioNet: ICU admission, ``00:00``), unless ``time_zero``
  says otherwise (below). Times become
  hours since time 0. Rows may come in any order.
* **Steps**: each step of a series is one distinct time at which any time-varying variable was
  observed; times are strictly ascending. Several measurements of one variable at the same
  time are averaged.
* **Empty cells** (and ``nan``, ``NA``, ``N/A``, ``null``, ``none``) are unobserved. A value that
  is not a number, or ``inf``, is a :class:`~grud.errors.DataError` naming file, line (header
  = line 1) and column. See :mod:`grud.data.text_tables` for encodings (UTF-8 with or without
  BOM, UTF-16 with BOM, else Latin-1) and delimiter sniffing (``,`` ``;`` tab ``|``).
* **time_unit**: ``h`` (default), ``min``, ``s``, ``d`` for numeric times, or ``datetime`` for
  date-time text. With ``h``, a text column is also accepted when every entry is a date-time
  (e.g. ``2021-03-04 13:45``) or an elapsed ``H:MM[:SS]`` (hours may exceed 24).
* **static_variables** (per-series constants such as Age): their earliest observed value
  (averaged if several at that time) goes to ``static`` (NaN if never observed); they are not
  among the time-varying ``variables``. ``variables`` is sorted by name, ``static_names``
  keeps the order given; series are sorted by id (numerically when every id is an integer).
* **categorical_static** (static variables that are codes, such as an ICU type): the earliest
  row's code is kept, never a mean of codes (several at that time: the first row's, logged).
  Their values may be text (a sex of ``F`` / ``M``, a unit's name): a variable with any value that
  is not a number is read as text codes, ``static`` holding each value's index among its sorted
  distinct texts and ``meta["static_text"][name]`` those texts (value ranges are not applied to
  the indices). Only usable one-hot encoded (:mod:`grud.data.categorical`). Text in any other
  variable is an error.
* **time_zero**: a series' time 0 is its ``earliest`` row (default), or ``zero``, the time
  column's own 0 (offsets from an event such as unit admission; numbers or ``H:MM``, negative
  too, not date-times): then time-varying measurements before it are dropped (counted in the log
  and ``meta["before_time_zero"]``; all of them is an error) and static variables' rows are kept
  wherever they lie.
* **max_hours** drops every row after that many hours since time 0 (static rows included).
* **Span**: a series may span at most :data:`MAX_SPAN_HOURS` (10^6 hours, 114 years) from its
  time 0 (after ``max_hours``); a later row is a :class:`~grud.errors.DataError` naming it (a
  wrong ``time_unit`` or a corrupt date, never a real stay; float32 times keep minutes there).
* **Magnitude**: measurements are stored as float32, so one beyond ±3.4e38 is refused like
  ``inf``; ``TRUE``/``FALSE`` read as 1/0 (see :mod:`grud.data.text_tables`).
* **value_ranges** (:mod:`grud.data.value_ranges`): measurements outside a variable's possible
  range become unobserved; dropped counts are logged (INFO) per variable and kept in
  ``meta["out_of_range"]``.
* **labels**: a CSV path or a DataFrame with an id column (``label_id_column``, default the data's
  ``id_column``) and ``label_column``; numeric. Series without a label row get NaN; label ids
  that match no series are counted in the log; one id with two different labels is an error.
* **cache** (:mod:`grud.data.cache`): the parsed dataset is stored keyed on the input's bytes,
  the labels' bytes/content and every option; ``cache=False`` neither reads nor writes it.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from os import PathLike
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from grud.data import cache as _cache
from grud.data.dataset import IrregularDataset
from grud.data.physionet_files import RECORD_ID, StaySource, parse_stays
from grud.data.text_tables import (
    CAPPED_HINT,
    FLOAT32_MAX,
    TextTable,
    check_delimiter,
    closest_name,
    check_finite,
    check_float32_range,
    is_empty_cell,
    load_text_table,
    parse_numbers,
    read_numbers,
    read_source_bytes,
    release_unused_memory,
)
from grud.data.value_ranges import drop_out_of_range, fingerprint, load_value_ranges, log_dropped
from grud.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["read_long_csv", "read_wide_csv", "read_physionet2012", "read_label_table", "TIME_UNITS", "PHYSIONET_STATIC"]

#: Hours per unit of a numeric time column; ``datetime`` parses date-time text.
TIME_UNITS = {"h": 1.0, "min": 1.0 / 60.0, "s": 1.0 / 3600.0, "d": 24.0}
_ALLOWED_UNITS = tuple(TIME_UNITS) + ("datetime",)
_UNIT_WORDS = {"h": "hours", "min": "minutes", "s": "seconds", "d": "days"}
#: PhysioNet 2012 descriptors recorded once per stay (-1 = unknown).
PHYSIONET_STATIC = ("Age", "Gender", "Height", "ICUType")
PHYSIONET_LABEL = "In-hospital_death"
_DURATION = re.compile(r"^(-?)(\d+):([0-5]?\d)(?::([0-5]?\d(?:\.\d*)?))?$")  # -H:MM: before time 0
_INTEGER = re.compile(r"^[+-]?\d+$")
#: said of a static variable's text value that is not read as a code
STATIC_TEXT_RULE = ("static variable {name!r}: a number, unless it is a code; codes held as text such as 'F' / 'M' "
                    "are read for the variables listed in categorical_static (data.categorical_static; at prediction "
                    "the checkpoint's)")
#: The longest a series may last from its time 0, in hours (114 years; see the module docstring).
MAX_SPAN_HOURS = 1e6


# ====================================================================== public readers
def read_long_csv(
    path,
    id_column: str = "id",
    time_column: str = "time",
    variable_column: str = "variable",
    value_column: str = "value",
    time_unit: str = "h",
    labels=None,
    label_column: str = "label",
    static_variables: Sequence[str] | None = None,
    max_hours: float | None = None,
    *,
    label_id_column: str | None = None,
    label_map: dict | None = None,
    time_zero: str = "earliest",
    categorical_static: Sequence[str] | None = None,
    value_ranges=None,
    delimiter: str | None = None,
    allow_missing_variables: bool = False,
    known_variables: Sequence[str] | None = None,
    cache: bool = True,
) -> IrregularDataset:
    """Read a long ("one measurement per row") CSV file.

    Args:
        path: the CSV/TSV file.
        id_column, time_column, variable_column, value_column: its column names.
        time_unit: ``h``, ``min``, ``s``, ``d`` or ``datetime`` (see the module docstring).
        labels: ``None``, a CSV path or a DataFrame with ``label_id_column`` and ``label_column``.
        label_column: the label column of ``labels``.
        static_variables: variable names that are per-series constants (numbers).
        categorical_static: those of ``static_variables`` that are codes, not quantities: their
            values may be text (``F`` / ``M``; see the module docstring), and a series' earliest
            row's code is kept rather than a mean.
        max_hours: keep only rows at most this many hours after each series' time 0.
        label_id_column: id column of ``labels`` (default: ``id_column``).
        label_map: ``{text: class code}`` for text outcomes in ``label_column`` (``{"Expired": 1,
            "Alive": 0}``); numbers there are read as they are. None: every label is a number.
        time_zero: ``earliest`` (a series' time 0 is its earliest row) or ``zero`` (the time
            column's own 0, for offsets from an event such as eICU's minutes from unit admission:
            time-varying measurements before it are dropped, static variables' rows kept; numbers
            or ``H:MM`` (``-1:30`` is before it), a date-time column is an error).
        value_ranges: ``None``, a built-in table name, a CSV path or ``{variable: (min, max)}``.
        delimiter: ``None`` (sniff), or one of ``,`` ``;`` ``\\t`` ``|``.
        allow_missing_variables: a static variable that never appears in ``variable_column`` is
            left unobserved (logged) instead of an error (prediction with training's list).
        known_variables: at prediction, the model's variables and static variables: a value of
            another variable that is not a number reads as unobserved (counted in the log)
            instead of an error, since the model drops that variable anyway; its row still
            counts for the series' time 0. None: every value must be a number.
        cache: use the on-disk dataset cache.

    Returns:
        The dataset; ``values`` is NaN where unobserved, ``static`` NaN where never observed,
        ``labels`` NaN for a series without a label (``None`` when ``labels`` is ``None``).

    Raises:
        DataError: input that does not have this form (message names file, line, column).

    Shape:
        times (N,); values (N, F), F = time-varying variables; offsets (n + 1,); static (n, S),
        S = len(static_variables); labels (n,)
    """
    columns = dict(id_column=id_column, time_column=time_column, variable_column=variable_column,
                   value_column=value_column)
    opts = _check_options(columns, time_unit, label_column, static_variables, max_hours, label_id_column,
                          delimiter, cache, label_map, time_zero, categorical_static)
    opts["allow_missing_variables"] = _check_allow_missing(allow_missing_variables)
    opts["known_variables"] = None if known_variables is None else _name_list(known_variables, "known_variables")
    return _read_table("long", _build_long, path, opts, value_ranges, labels, label_column, cache)


def read_wide_csv(
    path,
    id_column: str = "id",
    time_column: str = "time",
    variables: Sequence[str] | None = None,
    time_unit: str = "h",
    labels=None,
    label_column: str = "label",
    static_variables: Sequence[str] | None = None,
    max_hours: float | None = None,
    *,
    label_id_column: str | None = None,
    label_map: dict | None = None,
    time_zero: str = "earliest",
    categorical_static: Sequence[str] | None = None,
    value_ranges=None,
    delimiter: str | None = None,
    allow_missing_variables: bool = False,
    cache: bool = True,
) -> IrregularDataset:
    """Read a wide ("one time per row, one column per variable") CSV file.

    ``variables=None`` makes every column except ``id_column``, ``time_column`` and
    ``label_column`` a variable (drop free-text columns from the file, or list ``variables``;
    the label column is an input only when listed). Columns named
    in ``static_variables`` are read as per-series constants. ``allow_missing_variables``: a
    listed variable or static column absent from the file is left out (logged) instead of an
    error (prediction with training's list: the model sees it unobserved). Other arguments as in
    :func:`read_long_csv`.

    Shape:
        times (N,); values (N, F), F = variable columns not in ``static_variables``;
        offsets (n + 1,); static (n, S), S = static columns read; labels (n,)
    """
    columns = dict(id_column=id_column, time_column=time_column)
    opts = _check_options(columns, time_unit, label_column, static_variables, max_hours, label_id_column,
                          delimiter, cache, label_map, time_zero, categorical_static)
    if variables is not None:
        variables = _name_list(variables, "variables")
        for v in variables:
            if v in (id_column, time_column):
                raise ConfigError(f"variables: {v!r} is the id or time column, not a variable")
    opts["variables"] = variables
    opts["allow_missing_variables"] = _check_allow_missing(allow_missing_variables)
    return _read_table("wide", _build_wide, path, opts, value_ranges, labels, label_column, cache)


def _check_allow_missing(allow: bool) -> bool:
    if not isinstance(allow, bool):
        raise ConfigError(f"allow_missing_variables: expected true or false, got {allow!r}")
    return allow


def _read_table(kind: str, build, path, opts: dict, value_ranges, labels, label_column: str, cache: bool):
    """Shared tail of the CSV readers: read the bytes, key the cache on them and every option, build."""
    path = Path(path)
    raw = read_source_bytes(path, "data file")
    ranges = load_value_ranges(value_ranges)
    lab = _LabelSource(labels, opts["label_id_column"], label_column, "labels", opts["label_map"])
    options = dict(opts, kind=kind, value_ranges=fingerprint(ranges))
    key_parts = dict(input=_cache.hash_bytes(raw), labels=lab.fingerprint, options=options)
    meta = _meta(kind, path, opts, value_ranges)
    held = [raw]  # handed to the builder, which frees the bytes once parsed (big files)
    del raw
    return _read_cached(kind, key_parts, cache, path, lambda: build(held.pop(), path, opts, ranges, lab, meta),
                        lab.label)


def read_physionet2012(
    path,
    outcomes=None,
    max_hours: float | None = None,
    *,
    value_ranges="physionet2012",
    cache: bool = True,
) -> IrregularDataset:
    """Read the PhysioNet/CinC Challenge 2012 data (Silva et al., CinC 2012).

    Args:
        path: a folder or a ``.tar.gz`` of ``Time,Parameter,Value`` files, one per ICU stay
            (or a single stay file).
        outcomes: the ``Outcomes-*.txt`` file (or a DataFrame with ``RecordID`` and
            ``In-hospital_death``); ``None`` reads no labels. Only ``In-hospital_death`` is read.
        max_hours: keep only the first ``max_hours`` hours after ICU admission.
        value_ranges: default ``"physionet2012"`` (the built-in table of impossible values);
            ``None`` keeps every value.
        cache: use the on-disk dataset cache.

    Returns:
        One series per stay, id = ``RecordID`` as written. ``static_names`` = Age, Gender, Height,
        ICUType (``-1`` -> NaN); every other parameter, Weight included, is time-varying with
        ``-1`` -> unobserved. Time 0 is ICU admission (``00:00``). Stays without any
        time-varying measurement are kept with zero steps.

    Shape:
        times (N,); values (N, F), F = time-varying parameters seen; offsets (n + 1,), n = stays;
        static (n, 4); labels (n,) (``None`` without ``outcomes``)
    """
    if max_hours is not None:
        max_hours = _check_max_hours(max_hours)
    _check_cache_flag(cache)
    source = StaySource(path)
    ranges = load_value_ranges(value_ranges)
    lab = _LabelSource(outcomes, RECORD_ID, PHYSIONET_LABEL, "outcomes")
    opts = dict(max_hours=max_hours)
    options = dict(opts, kind="physionet2012", value_ranges=fingerprint(ranges))
    key_parts = dict(input=source.fingerprint, labels=lab.fingerprint, options=options)
    path = Path(path)
    meta = dict(
        kind="physionet2012", path=str(path), id_column=RECORD_ID, time_column="Time",
        variable_column="Parameter", value_column="Value", label_column=PHYSIONET_LABEL, time_unit="HH:MM",
        static_variables=list(PHYSIONET_STATIC), max_hours=max_hours,
        value_ranges=_ranges_label(value_ranges), labels=lab.label,
    )
    return _read_cached(
        "physionet2012", key_parts, cache, path, lambda: _build_physionet(source, ranges, lab, max_hours, meta),
        lab.label,
    )


def read_label_table(labels, id_column: str = "id", label_column: str = "label",
                     label_map: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The labels of a CSV path or DataFrame: (ids as str (L,), numeric labels (L,)).

    Rows without a label are left out; an id given twice with different labels is a
    :class:`DataError` (same rules as the ``labels`` argument of the readers, ``label_map``
    included).
    """
    return _LabelSource(labels, id_column, label_column, "labels", check_label_map(label_map)).read()


# ====================================================================== options
def _name_list(x, what: str) -> list[str]:
    if isinstance(x, str):
        return [x]
    try:
        names = [str(v) for v in x]
    except TypeError:
        raise ConfigError(f"{what}: expected a list of names, got {type(x).__name__}") from None
    seen: list[str] = []
    for v in names:
        if v not in seen:
            seen.append(v)
    return seen


def _check_max_hours(max_hours) -> float:
    try:
        v = float(max_hours)
    except (TypeError, ValueError):
        raise ConfigError(f"max_hours: expected a number of hours >= 0 or None, got {max_hours!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ConfigError(f"max_hours: expected a number of hours >= 0 or None, got {max_hours!r}")
    return v


def _check_cache_flag(cache) -> None:
    if not isinstance(cache, (bool, np.bool_)):
        raise ConfigError(f"cache: expected True or False, got {cache!r}")


def check_label_map(label_map) -> dict | None:
    """``label_map`` as ``{text: number}`` (keys stripped), or None; ConfigError otherwise."""
    if label_map is None:
        return None
    if not isinstance(label_map, Mapping) or not label_map:
        raise ConfigError(f"label_map: expected {{text: class code, ...}} (e.g. data.label_map={{Expired:1,Alive:0}}) "
                          f"or null, got {label_map!r}")
    out = {}
    for k, v in label_map.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"label_map: {k!r} maps to {v!r}; expected a number (a class code)")
        key = str(k).strip()
        if not key:
            raise ConfigError("label_map: an empty text cannot be mapped (an empty label cell means no label)")
        out[key] = int(v) if float(v).is_integer() else float(v)
    return out


def _check_options(columns, time_unit, label_column, static_variables, max_hours, label_id_column,
                   delimiter, cache, label_map=None, time_zero="earliest", categorical_static=None) -> dict:
    for k, v in columns.items():
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{k}: expected a column name, got {v!r}")
    names = list(columns.values())
    if len(set(names)) != len(names):
        raise ConfigError(f"column names must differ, got {columns}")
    if time_unit not in _ALLOWED_UNITS:
        raise ConfigError(f"time_unit: expected one of {', '.join(_ALLOWED_UNITS)}, got {time_unit!r}")
    if time_zero not in TIME_ZERO_CHOICES:
        raise ConfigError(f"time_zero: expected one of {', '.join(TIME_ZERO_CHOICES)} (time 0 of a series: its "
                          f"earliest row, or the time column's own 0, e.g. offsets from admission), got {time_zero!r}")
    if not isinstance(label_column, str) or not label_column:
        raise ConfigError(f"label_column: expected a column name, got {label_column!r}")
    if label_id_column is not None and (not isinstance(label_id_column, str) or not label_id_column):
        raise ConfigError(f"label_id_column: expected a column name or None, got {label_id_column!r}")
    static = [] if static_variables is None else _name_list(static_variables, "static_variables")
    categorical = [] if categorical_static is None else _name_list(categorical_static, "categorical_static")
    unknown = [c for c in categorical if c not in static]
    if unknown:
        raise ConfigError(f"categorical_static: {', '.join(map(repr, unknown))} not among the static variables "
                          f"({', '.join(static) or 'none'}); list them in static_variables too")
    _check_cache_flag(cache)
    return dict(
        columns,
        time_unit=time_unit,
        time_zero=time_zero,
        label_column=label_column,
        label_id_column=label_id_column or columns["id_column"],
        static_variables=static,
        categorical_static=list(dict.fromkeys(categorical)),
        max_hours=None if max_hours is None else _check_max_hours(max_hours),
        delimiter=check_delimiter(delimiter),
        label_map=check_label_map(label_map),
    )


def _ranges_label(spec):
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, PathLike):
        return str(spec)
    return "custom"


def _meta(kind: str, path: Path, opts: dict, value_ranges) -> dict:
    meta = dict(kind=kind, path=str(path))
    meta.update({k: v for k, v in opts.items() if k != "delimiter"})
    meta.setdefault("variable_column", None)
    meta.setdefault("value_column", None)
    meta["value_ranges"] = _ranges_label(value_ranges)
    return meta


# ====================================================================== cache glue
def _read_cached(kind: str, key_parts: dict, use_cache: bool, path: Path,
                 build: Callable[[], IrregularDataset], labels_name: str | None = None) -> IrregularDataset:
    """``build()`` unless the cache holds the result; the key does not include file names,
    so a hit gets the current ``path`` (and labels name) written into its ``meta``."""
    key = _cache.dataset_key(dict(key_parts, reader=kind)) if use_cache else None
    if key is not None:
        ds = _cache.load_dataset(key, kind)
        if ds is not None:
            ds.meta["path"] = str(path)
            if labels_name is not None:
                ds.meta["labels"] = labels_name
            log_dropped(ds.meta.get("out_of_range") or {}, str(path))
            if ds.meta.get("before_time_zero"):
                log_before_time_zero(str(path), **ds.meta["before_time_zero"], cached=True)
            log_label_match(ds.meta)
            log.info("%s: %r (from cache)", path, ds)
            return ds
    ds = build()
    log.info("%s: %r", path, ds)
    if key is not None:
        _cache.save_dataset(key, ds, kind)
    return ds


# ====================================================================== labels
#: said with a label that is not a number
_LABEL_CODES = ("(labels are numbers: for classification, class codes; map text outcomes to codes with "
                "data.label_map, e.g. data.label_map={Expired:1,Alive:0})")


class _LabelSource:
    """A labels argument (None, path or DataFrame), checked and fingerprinted up front."""

    def __init__(self, labels, id_column: str, label_column: str, what: str, label_map: dict | None = None):
        self.id_column, self.label_column, self.what = id_column, label_column, what
        self.label_map = label_map
        self.frame = self.raw = None
        self.fingerprint = None
        self.label = None
        if labels is None:
            return
        if isinstance(labels, pd.DataFrame):
            missing = [c for c in (id_column, label_column) if c not in labels.columns]
            if missing:
                raise DataError(
                    f"missing column {missing[0]!r}; the {what} DataFrame has: "
                    f"{', '.join(map(repr, map(str, labels.columns)))}",
                    path=f"{what} DataFrame", column=missing[0],
                )
            self.frame = labels[[id_column, label_column]]
            self.fingerprint = "frame:" + _cache.hash_frame(self.frame)  # label_map: in the key's options
            self.label = f"{what} DataFrame"
        elif isinstance(labels, (str, PathLike)):
            self.path = Path(labels)
            self.raw = read_source_bytes(self.path, f"{what} file")
            self.fingerprint = "file:" + _cache.hash_bytes(self.raw)
            self.label = str(self.path)
        else:
            raise ConfigError(f"{what}: expected None, a CSV path or a DataFrame, got {type(labels).__name__}")

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids as str, numeric labels) with rows without a label removed and duplicates checked."""
        if self.frame is not None:
            return self._from_frame()
        table = load_text_table(self.raw, self.path)
        table.require([self.id_column, self.label_column], what=f"{self.what} column")
        frame = table.read_columns([self.id_column, self.label_column])
        ids = frame[self.id_column].str.strip()
        empty_id = (ids == "").to_numpy()
        lab_empty = is_empty_cell(frame[self.label_column])
        keep = np.flatnonzero(~(empty_id & lab_empty))
        lines = table.line_of(keep)
        ids, frame = ids.iloc[keep], frame.iloc[keep]
        bad = np.flatnonzero((ids == "").to_numpy())
        if len(bad):
            raise DataError("empty id", path=table.path, line=int(lines[bad[0]]), column=self.id_column)
        try:
            values = parse_numbers(self._mapped(frame[self.label_column]), table.path, self.label_column, lines)
        except DataError as exc:
            raise DataError(f"{exc.reason} {_LABEL_CODES}", path=exc.path, line=exc.line, column=exc.column) from None
        return self._dedupe(ids.to_numpy(dtype=object), values, lines, table.path)

    def _from_frame(self) -> tuple[np.ndarray, np.ndarray]:
        col = self.frame[self.id_column]
        if pd.api.types.is_float_dtype(col) and np.all(np.isfinite(col.to_numpy()) & (col.to_numpy() % 1 == 0)):
            col = col.astype(np.int64)
        ids = col.astype(str).str.strip().to_numpy(dtype=object)
        raw = self.frame[self.label_column]
        if self.label_map and (pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)):
            raw = self._mapped(raw.astype(object).where(raw.isna(), raw.astype(str)))
        if pd.api.types.is_bool_dtype(raw):
            raw = raw.astype(np.float64)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        given = ~raw.isna().to_numpy()
        if pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw):
            given &= ~is_empty_cell(raw.astype(str))
        bad = np.flatnonzero(np.isnan(values) & given)
        where = f"{self.what} DataFrame"
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"row {self.frame.index[i]!r}: expected a number, got {raw.iloc[i]!r} {_LABEL_CODES}", path=where,
                column=self.label_column)
        inf = np.flatnonzero(np.isinf(values))
        if len(inf):
            raise DataError(f"row {self.frame.index[inf[0]]!r}: infinite label", path=where, column=self.label_column)
        return self._dedupe(ids, values, None, where)

    def _mapped(self, cells: pd.Series) -> pd.Series:
        """Text cells that ``label_map`` names replaced by their codes (as text; other cells as they are)."""
        if not self.label_map:
            return cells
        text = cells.astype(str).str.strip()
        hit = text.isin(list(self.label_map)) & cells.notna()
        if not hit.any():
            return cells
        out = cells.astype(object).copy()
        out[hit] = text[hit].map(lambda k: str(self.label_map[k]))
        return out

    def _dedupe(self, ids, values, lines, where) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isnan(values)
        self.blank_ids = set(ids[~keep]) - set(ids[keep])  # in the file, but with an empty label cell
        ids, values = ids[keep], values[keep]
        rows = np.flatnonzero(keep)
        if len(ids) == 0:
            return ids, values
        codes, uniq = pd.factorize(ids)
        order = np.argsort(codes, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
        first = np.empty(len(uniq), dtype=np.int64)
        first[codes[order[starts]]] = order[starts]
        conflict = np.flatnonzero(values != values[first[codes]])
        if len(conflict):
            i = int(conflict[0])
            j = int(first[codes[i]])
            line = None if lines is None else int(lines[rows[i]])
            prev = f"line {int(lines[rows[j]])}" if lines is not None else f"row {self.frame.index[rows[j]]!r}"
            here = "" if lines is not None else f"row {self.frame.index[rows[i]]!r}: "
            raise DataError(
                f"{here}id {ids[i]!r} has label {values[i]:g} here but {values[j]:g} on {prev}",
                path=where, line=line, column=self.label_column,
            )
        return np.asarray(uniq, dtype=object), values[first]

    def attach(self, ids: list[str], meta: dict) -> np.ndarray | None:
        """(n,) labels aligned to ``ids`` (NaN where missing), or ``None`` without labels."""
        if self.fingerprint is None:
            return None
        lab_ids, lab_values = self.read()
        index = pd.Index(lab_ids.astype(str) if len(lab_ids) else [], dtype=object)
        pos = index.get_indexer(pd.Index(ids, dtype=object))
        labels = np.where(pos >= 0, lab_values[np.maximum(pos, 0)] if len(lab_values) else np.nan, np.nan)
        matched = int((pos >= 0).sum())
        meta["labels"] = self.label
        seen = set(np.asarray(ids, dtype=object)[pos >= 0]) if matched else set()
        blank = getattr(self, "blank_ids", set())
        meta["label_match"] = {
            "what": self.what, "column": self.label_column, "matched": matched, "series": len(ids), "label_rows": len(lab_ids),
            "blank": sum(1 for i, q in zip(ids, pos) if q < 0 and i in blank),
            "series_example": next((str(i) for i, q in zip(ids, pos) if q < 0 and i not in blank),
                                   ids[0] if ids else None),
            "label_example": next((str(i) for i in lab_ids if str(i) not in seen), None),
        }
        log_label_match(meta)
        return labels.astype(np.float64)


def log_label_match(meta: dict) -> None:
    """Log how a read's labels matched its series (at the read, and again when it comes from the cache)."""
    m = meta.get("label_match")
    if not m:
        return
    name, what = meta.get("labels"), m["what"]
    unmatched_rows = m["label_rows"] - m["matched"]
    blank = m.get("blank", 0)  # series whose id is in the file with an empty label cell
    blank_note = f"; {blank} series with an empty label cell" if blank else ""
    if m["matched"] == 0 and m["series"] > blank:
        log.warning("%s: no %s id matches a series id (series ids look like %r, %s ids like %r): check the id columns",
                    name, what, m["series_example"], what, m["label_example"])
    elif unmatched_rows and m["matched"] + blank < m["series"]:
        log.warning("%s: %d of %d series labelled%s; %d %s row(s) match no series (an unlabelled series id: %r, an "
                    "unmatched %s id: %r): check that the ids are written alike", name, m["matched"], m["series"],
                    blank_note, unmatched_rows, what, m["series_example"], what, m["label_example"])
    else:
        log.info("%s: %d of %d series labelled%s; %d %s row(s) match no series",
                 name, m["matched"], m["series"], blank_note, unmatched_rows, what)


def missing_labels_reason(ds) -> str:
    """Why ``ds`` holds no label, for an error: no labels file, or one whose ids match no series."""
    m = (ds.meta or {}).get("label_match")
    if not m or ds.labels is None:
        return "no labels were given: set data.labels=FILE (the id column and data.label_column)"
    if m["matched"] == 0:
        return (f"none of the {m['label_rows']} rows of {ds.meta.get('labels')} matches a series id (series ids "
                f"look like {m['series_example']!r}, label ids like {m['label_example']!r}): check data.id_column "
                f"and data.label_id_column, and that the ids are written alike")
    return f"its series have no finite label in {ds.meta.get('labels')} (data.label_column), though ids match"


# ====================================================================== parsing helpers
def _series_codes(id_strings) -> tuple[np.ndarray, list[str]]:
    """(codes into the sorted ids, sorted ids); integer-looking ids sort numerically.

    ``id_strings`` may be a pandas string Series (factorised as is: no Python object per row).
    """
    codes, uniq = pd.factorize(id_strings if isinstance(id_strings, pd.Series) else pd.Series(id_strings, dtype=object))
    uniq = [str(u) for u in uniq]
    if all(_INTEGER.match(u) for u in uniq):
        order = sorted(range(len(uniq)), key=lambda i: (int(uniq[i]), uniq[i]))
    else:
        order = sorted(range(len(uniq)), key=lambda i: uniq[i])
    remap = np.empty(len(uniq), dtype=np.int64)
    remap[order] = np.arange(len(uniq))
    return remap[codes], [uniq[i] for i in order]


#: formats tried when pandas cannot guess one from the first value (two-digit years: 12/03/23)
_DATE_PARTS = ("%m{s}%d{s}%y", "%d{s}%m{s}%y", "%m{s}%d{s}%Y", "%d{s}%m{s}%Y")
_FALLBACK_DATE_FORMATS = tuple(d.format(s=sep) + t for sep in "/-." for d in _DATE_PARTS
                               for t in ("", " %H:%M", " %H:%M:%S"))
#: distinct values a format is chosen on (then every value is parsed with it)
_FORMAT_SAMPLE = 2000


def _parse_datetimes(strings: np.ndarray, where=None) -> np.ndarray:
    """(N,) hours since 1970 of date-time text in one format for the whole column; NaN where a
    value does not fit it. Parses distinct values once.

    Candidate formats: pandas' guess from the first value (month-first, then day-first for
    non-ISO dates), ISO 8601 (any mix of its forms), and for what pandas cannot guess (two-digit
    years) the usual day/month orders. The first candidate that reads every value of a sample
    wins, else the one that reads most (the odd value is then reported, never read in another
    order: ``format="mixed"`` would read 12/03 month-first and 13/03 day-first in one column).
    When month-first and day-first both read every value differently, month-first is taken, as
    pandas does, with a warning naming ``where``.
    """
    from pandas.tseries.api import guess_datetime_format

    codes, uniq = pd.factorize(pd.Series(strings, dtype=object))
    uniq = pd.Series(np.asarray(uniq, dtype=object))
    if not len(uniq):
        return np.full(len(codes), np.nan)
    first = str(uniq.iloc[0]).strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        month_first = guess_datetime_format(first)
        day_first = guess_datetime_format(first, dayfirst=True)
        candidates = [f for f in (month_first, day_first if day_first and not day_first.startswith("%Y") else None)
                      if f]
        candidates = list(dict.fromkeys(candidates + ["ISO8601"] + ([] if month_first else list(_FALLBACK_DATE_FORMATS))))
        sample = uniq.iloc[:_FORMAT_SAMPLE]

        def parse(values, fmt):
            try:
                return pd.to_datetime(values, errors="coerce", utc=True, format=fmt)
            except (ValueError, TypeError, OverflowError):
                return None

        def choose(values):
            """(format, its reading, every candidate's reading that read all of ``values``)."""
            reads = [(f, g) for f, g in ((f, parse(values, f)) for f in candidates) if g is not None]
            if not reads:
                return None, None, []
            full = [(f, g) for f, g in reads if g.notna().all()]
            best = full[0] if full else max(reads, key=lambda r: int(r[1].notna().sum()))
            return best[0], best[1], full

        fmt, dt, full = choose(sample)
        if fmt is None:
            return np.full(len(codes), np.nan)
        if len(uniq) > len(sample):
            dt = parse(uniq, fmt)
            if dt.isna().any():  # the sample did not show every value's form (13/03 after 12/03): all of them
                fmt, dt, full = choose(uniq)
        other = next(((f, g) for f, g in full if f not in (fmt, "ISO8601") and not f.startswith("%Y")), None)
        if other is not None and len(other[1]) < len(uniq):  # chosen on the sample: does it read them all?
            whole = parse(uniq, other[0])
            other = (other[0], whole) if whole is not None and whole.notna().all() else None
        if other is not None and not fmt.startswith("%Y") and fmt != "ISO8601" and not other[1].equals(dt):
            log.warning("%s: dates like %r read as %s (%s); they read in another day/month order too: write "
                        "ISO 8601 dates (2023-03-12) to be sure", where or "date-times", first, fmt,
                        dt.iloc[0].strftime("%Y-%m-%d"))
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    hours = ((dt - epoch) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    return hours[codes]


def _parse_durations(strings: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(hours of ``H:MM[:SS]`` elapsed-time text, or ``None`` unless every entry has that form;
    (N,) bool: the entries that have it)."""
    parts = pd.Series(strings, dtype=object).astype(str).str.extract(_DURATION)
    elapsed = parts[1].notna().to_numpy(dtype=bool)
    if not elapsed.all():
        return None, elapsed
    sign = np.where((parts[0] == "-").to_numpy(dtype=bool), -1.0, 1.0)
    h = parts[1].astype(np.float64).to_numpy()
    m = parts[2].astype(np.float64).to_numpy()
    s = pd.to_numeric(parts[3], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    return sign * (h + m / 60.0 + s / 3600.0), elapsed


def _times_to_hours(col: pd.Series, time_unit: str, table: TextTable, lines: np.ndarray, column: str,
                    time_zero: str = "earliest") -> np.ndarray:
    """(N,) absolute hours of a time column (numbers in ``time_unit``, or date-time text).
    ``time_zero="zero"`` refuses date-times: their 0 is 1970, not an event of the series."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        nums = col.to_numpy(dtype=np.float64, na_value=np.nan)
        empty = np.flatnonzero(np.isnan(nums))
        if len(empty):
            raise DataError("empty time: every row needs a time", path=table.path, line=int(lines[empty[0]]), column=column)
        if time_unit == "datetime":
            raise DataError(
                "time_unit 'datetime' expects date-time text, but the column holds numbers; "
                "use time_unit 'h', 'min', 's' or 'd'",
                path=table.path, line=int(lines[0]), column=column,
            )
        check_finite(nums, table.path, column, lines)
        return nums * TIME_UNITS[time_unit]
    strings = col.astype(str).str.strip()
    empty = np.flatnonzero(is_empty_cell(col))
    if len(empty):
        raise DataError("empty time: every row needs a time", path=table.path, line=int(lines[empty[0]]), column=column)
    arr = strings.to_numpy(dtype=object)
    if time_unit == "datetime":
        _refuse_datetime_zero(time_zero, arr, table, lines, column)
        hours = _parse_datetimes(arr, f"{table.path}, column {column!r}")
        bad = np.flatnonzero(np.isnan(hours))
        if len(bad):
            raise DataError(f"expected a date-time such as 2021-03-04 13:45, got {arr[bad[0]]!r}",
                            path=table.path, line=int(lines[bad[0]]), column=column)
        return hours
    nums = pd.to_numeric(strings, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad_num = np.flatnonzero(np.isnan(nums))
    if not len(bad_num):
        check_finite(nums, table.path, column, lines)
        return nums * TIME_UNITS[time_unit]
    if time_unit != "h":
        hint = ""
        if not np.isnan(_parse_datetimes(arr[bad_num[:1]])[0]):
            hint = " (date-times need time_unit 'h' or 'datetime')"
        raise DataError(f"expected a number of {_UNIT_WORDS[time_unit]}, got {arr[bad_num[0]]!r}{hint}",
                        path=table.path, line=int(lines[bad_num[0]]), column=column)
    durations, elapsed = _parse_durations(arr)
    if durations is not None:
        return durations
    if elapsed.sum() * 2 > len(arr):  # mostly H:MM: the odd one out is the fault, not the first non-number
        i = int(np.flatnonzero(~elapsed)[0])
        raise DataError(f"expected an elapsed time H:MM (minutes 00-59) like the other rows, got {arr[i]!r}",
                        path=table.path, line=int(lines[i]), column=column)
    hours = _parse_datetimes(arr, f"{table.path}, column {column!r}")
    bad_dt = np.flatnonzero(np.isnan(hours))
    if not len(bad_dt):
        _refuse_datetime_zero(time_zero, arr, table, lines, column)
        return hours
    if len(bad_dt) < len(bad_num):  # mostly date-times: report the odd one out
        i = int(bad_dt[0])
        raise DataError(f"expected a date-time like the other rows (e.g. 2021-03-04 13:45), got {arr[i]!r}",
                        path=table.path, line=int(lines[i]), column=column)
    i = int(bad_num[0])
    raise DataError(f"expected a number of hours (or a date-time, or H:MM), got {arr[i]!r}",
                    path=table.path, line=int(lines[i]), column=column)


def _refuse_datetime_zero(time_zero: str, arr: np.ndarray, table: TextTable, lines: np.ndarray, column: str) -> None:
    if time_zero == "zero":
        raise DataError(f"time_zero 'zero' counts from the time column's own 0, which date-times such as {arr[0]!r} "
                        "do not have: use time_zero 'earliest', or give times as hours (minutes, ...) since the event",
                        path=table.path, line=int(lines[0]), column=column)


def _read_value_columns(table: TextTable, fixed: list[str], value_columns: list[str], fixed_types: dict,
                        variable_column: str | None = None, static: tuple = (), categorical: tuple = (),
                        known: list | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """Read ``fixed`` columns (strings / given types) and ``value_columns`` as float64.

    Tries pandas' typed parser first; if a value does not parse, re-reads the value columns
    as text to name the first bad line (and, in a long file, its ``variable_column`` entry).
    A ``categorical`` static variable (a long file's rows of it, or a wide file's column) whose
    values are not all numbers is read as text codes (:func:`_text_codes`: the index of each
    value among the variable's sorted distinct texts). With ``known`` (a long file at prediction), values of
    variables not in it are read leniently: text there is unobserved, counted in the log.
    Returns the frame, ``{column: float64 array}`` and ``{static variable: its sorted texts}``
    for the variables read as text codes.
    """
    dtypes = dict(fixed_types)
    dtypes.update({c: "float64" for c in value_columns})
    try:
        frame = table.read_columns(fixed + value_columns, dtypes)
        nums = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in value_columns}
        return frame, nums, {}
    except (ValueError, OverflowError):
        pass
    frame = table.read_columns(fixed + value_columns, dict(fixed_types))
    lines = table.line_of(np.arange(len(frame)))
    texts_of, positions = {}, {}  # categorical name -> its texts; value column -> [(rows, text positions)]
    for c in value_columns:
        for name in categorical:
            if variable_column is not None:  # long: the rows of the variable
                rows = _rows_named(frame[variable_column], name)
            elif c == name:  # wide: its column
                rows = np.arange(len(frame))
            else:
                continue
            if len(rows) and read_numbers(frame[c].iloc[rows])[1].any():
                at, texts_of[name] = _text_codes(frame[c].iloc[rows])
                positions.setdefault(c, []).append((rows, at))
    for c, cells in positions.items():  # parsed apart from the numbers (the column stays pandas' text)
        blank = np.zeros(len(frame), dtype=bool)
        blank[np.concatenate([rows for rows, _ in cells])] = True
        frame[c] = frame[c].mask(blank, "")
    if known is not None and variable_column is not None:
        names = frame[variable_column].astype(str).str.strip()
        other = ~names.isin(set(known)).to_numpy()
        for c in value_columns:
            text = frame[c]
            bad = other & read_numbers(text)[1]
            if bad.any():
                log.warning("%s: %d value(s) of variables the model was not trained on are not numbers (e.g. %r for "
                            "%r, line %d): read as unobserved", table.path, int(bad.sum()),
                            str(text[bad].iloc[0]), str(names[bad].iloc[0]), int(lines[np.flatnonzero(bad)[0]]))
                frame[c] = text.where(~bad, "")
    nums, errors = {}, []
    for c in value_columns:
        try:
            nums[c] = parse_numbers(frame[c], table.path, c, lines)
        except DataError as exc:
            errors.append(exc)
    if errors:  # the first bad cell of the file, by line (then by column), not of the first bad column
        exc = min(errors, key=lambda e: (e.line if e.line is not None else np.inf))
        if variable_column is None or exc.line is None:
            raise exc
        row = int(np.searchsorted(lines, exc.line))
        name = str(frame[variable_column].iloc[row]).strip()
        if CAPPED_HINT in exc.reason:  # a capped number: the reason says what to do
            what = f"static variable {name!r}" if name in static else f"variable {name!r}"
        elif name in static:
            what = STATIC_TEXT_RULE.format(name=name)
        else:
            what = f"variable {name!r}" + _text_code_hint(name, frame[exc.column], frame[variable_column], static)
        raise DataError(f"{exc.reason} ({what})", path=exc.path, line=exc.line, column=exc.column) from None
    for c, cells in positions.items():
        for rows, at in cells:
            nums[c][rows] = at
    return frame, nums, texts_of


def _rows_named(names: pd.Series, name: str) -> np.ndarray:
    """Row indices of a long file's variable column equal to ``name`` once stripped (a category
    column is compared through its distinct texts, not row by row)."""
    if isinstance(names.dtype, pd.CategoricalDtype):
        cats = pd.Index(np.asarray(names.cat.categories.astype(str), dtype=object)).str.strip()
        return np.flatnonzero(np.isin(names.cat.codes.to_numpy(), np.flatnonzero(cats == name)))
    return np.flatnonzero((names.astype(str).str.strip() == name).to_numpy())


def _text_code_hint(name: str, values: pd.Series, names: pd.Series, static) -> str:
    """For a long file's time-varying variable whose every value is text (a code, not a stray
    word): the static name it may have been meant as, or how to read it as a code; else ``""``."""
    rows = _rows_named(names, name)
    _, text = read_numbers(values.iloc[rows])
    if text.sum() < 2 or not text[~is_empty_cell(values.iloc[rows])].all():
        return ""
    present = set(str(v).strip() for v in (names.cat.categories if isinstance(names.dtype, pd.CategoricalDtype)
                                            else names.unique()))
    listed = closest_name(name, [s for s in static if s not in present])
    if listed:
        return f"; static_variables lists {listed!r}, which the file never holds: did you mean {name!r}?"
    return ("; a per-series code held as text may be read as a static variable: list it in static_variables "
            "and categorical_static")


def _text_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A static variable's values as text codes: (N,) float64 index of each (stripped) value
    among the sorted distinct texts, NaN for an empty cell, and those texts. A number is its text
    as written (``1`` and ``1.0`` are two codes)."""
    empty = is_empty_cell(col)
    text = col.astype(str).str.strip().to_numpy(dtype=object)
    texts = sorted(set(text[~empty]))
    codes = np.full(len(text), np.nan)
    codes[~empty] = pd.Index(texts).get_indexer(text[~empty])
    return codes, texts


def _drop_blank_rows(frame: pd.DataFrame, text_columns: list[str], other_empty: np.ndarray) -> np.ndarray:
    """Indices of rows that are not blank (a blank line, or only delimiters).

    Only rows whose value cells are all empty (``other_empty``) are looked at, so a big file
    with values everywhere costs no string work here.
    """
    candidates = np.flatnonzero(other_empty)
    if not len(candidates):
        return np.arange(len(frame))
    blank = np.ones(len(candidates), dtype=bool)
    for c in text_columns:
        col = frame[c].iloc[candidates]
        blank &= is_empty_cell(col) if not pd.api.types.is_numeric_dtype(col) else col.isna().to_numpy()
    keep = np.ones(len(frame), dtype=bool)
    keep[candidates[blank]] = False
    return np.flatnonzero(keep)


def _require_text(frame_col: pd.Series, table: TextTable, lines: np.ndarray, column: str, what: str) -> pd.Series:
    """The column with blanks stripped; an empty cell is a :class:`DataError` naming its line."""
    if isinstance(frame_col.dtype, pd.CategoricalDtype):  # strip the distinct texts, not every row
        cats = pd.Index(np.asarray(frame_col.cat.categories.astype(str), dtype=object)).str.strip()
        codes = frame_col.cat.codes.to_numpy()
        bad = np.flatnonzero((codes < 0) | np.asarray(cats == "")[codes])
        if len(bad):
            raise DataError(f"empty {what}", path=table.path, line=int(lines[bad[0]]), column=column)
        merged, uniq = pd.factorize(cats)  # "a" and " a" are the same text once stripped
        return pd.Series(pd.Categorical.from_codes(merged[codes], categories=pd.Index(uniq, dtype=object)),
                         index=frame_col.index)
    s = frame_col.astype(str).str.strip()
    bad = np.flatnonzero((s == "").to_numpy() | frame_col.isna().to_numpy())
    if len(bad):
        raise DataError(f"empty {what}", path=table.path, line=int(lines[bad[0]]), column=column)
    return s


# ====================================================================== builders
def _build_long(raw: bytes, path: Path, opts: dict, ranges, lab: _LabelSource, meta: dict) -> IrregularDataset:
    table = load_text_table(raw, path, opts["delimiter"])
    del raw
    idc, tc, vc, valc = opts["id_column"], opts["time_column"], opts["variable_column"], opts["value_column"]
    table.require([idc, tc, vc, valc])
    frame, nums, texts_of = _read_value_columns(
        table, [idc, tc, vc], [valc], {tc: None, idc: "category", vc: "category"}, variable_column=vc,
        static=tuple(opts["static_variables"]), categorical=tuple(opts["categorical_static"]),
        known=opts.get("known_variables"))
    table.data = b""  # parsed: free the file's bytes
    if texts_of:
        meta["static_text"] = texts_of
    value = nums[valc]
    keep = _drop_blank_rows(frame, [idc, tc, vc], np.isnan(value))
    if not len(keep):
        raise DataError("no rows: the file holds only a header and blank lines", path=table.path)
    frame, value = frame.iloc[keep], value[keep]
    lines = table.line_of(keep)
    check_finite(value, table.path, valc, lines)
    check_float32_range(value, table.path, valc, lines)
    ids = _require_text(frame[idc], table, lines, idc, "id")
    var = _require_text(frame[vc], table, lines, vc, "variable name")
    hours = _times_to_hours(frame[tc], opts["time_unit"], table, lines, tc, opts["time_zero"])
    series, id_list = _series_codes(ids)
    t0 = _time_zero(series, hours, len(id_list), opts["time_zero"])
    _check_span(series, hours, t0, id_list, opts, table, lines, tc)
    _warn_long_numeric_hours(frame[tc], series, hours, t0, opts, table.path, tc)
    vcodes, vnames = pd.factorize(var)
    vnames = [str(v) for v in vnames]
    source = table.path
    del frame, ids, var, lines, table  # the text columns are done with: free them before assembling
    release_unused_memory()
    static = opts["static_variables"]
    absent = [s for s in static if s not in vnames]
    if absent and opts.get("allow_missing_variables"):
        log.warning("%s: static variable(s) %s never appear in column %r: left unobserved in every series",
                    source, ", ".join(map(repr, absent)), vc)
    elif absent:
        close = {a: closest_name(a, vnames) for a in absent}
        hints = "; ".join(f"{a!r} (did you mean {c!r}?)" if c else repr(a) for a, c in close.items())
        raise DataError(f"static variable(s) {hints} never appear in column {vc!r} (data.static_variables); "
                        f"it holds {len(vnames)} variable names, e.g. {', '.join(map(repr, sorted(vnames)[:8]))}",
                        path=source, column=vc)
    return _finish(
        id_list, series, hours, t0, np.asarray(vcodes, dtype=np.int64), value, vnames, static, opts["max_hours"],
        ranges, lab, meta, source, before_zero=opts["time_zero"] == "zero", categorical=opts["categorical_static"],
    )


def _build_wide(raw: bytes, path: Path, opts: dict, ranges, lab: _LabelSource, meta: dict) -> IrregularDataset:
    table = load_text_table(raw, path, opts["delimiter"])
    del raw
    idc, tc = opts["id_column"], opts["time_column"]
    table.require([idc, tc])
    static = opts["static_variables"]
    if opts["variables"] is None:
        label = opts["label_column"]  # the outcome is never an input unless listed in variables
        names = [c for c in table.columns if c not in (idc, tc, label)]
        empty_names = [i for i, c in enumerate(table.columns) if c == ""]
        if empty_names:
            raise DataError(f"column {empty_names[0] + 1} has no name in the header", path=table.path, line=1)
        if label in table.columns and label not in static:
            log.info("%s: column %r is the label column (data.label_column), not a variable; list data.variables "
                     "to read it as one", table.path, label)
    else:
        names = list(opts["variables"])
        if opts.get("allow_missing_variables"):  # at prediction: the model's columns; the rest are not parsed
            unread = [c for c in table.columns if c not in names and c not in static
                      and c not in (idc, tc, opts["label_column"]) and c != ""]
            if unread:
                log.warning("%s: %d column(s) the model was not trained on, not read: %s", table.path, len(unread),
                            ", ".join(map(repr, unread[:20])) + (" ..." if len(unread) > 20 else ""))
    for s in static:
        if s in (idc, tc):
            raise ConfigError(f"static_variables: {s!r} is the id or time column")
        if s not in names:
            names.append(s)
    if opts.get("allow_missing_variables"):
        absent = [n for n in names if n not in table.columns]
        if absent:
            log.warning("%s: no column for %s: left unobserved in every series", table.path,
                        ", ".join(map(repr, absent)))
        names = [n for n in names if n in table.columns]
        static = [s for s in static if s in table.columns]
    table.require([n for n in names if n not in static], what="variable column")
    table.require(static, what="static column (data.static_variables)")
    if not [n for n in names if n not in static] and not static:
        raise DataError("no variable columns besides the id and time columns", path=table.path, line=1)
    try:
        frame, nums, texts_of = _read_value_columns(table, [idc, tc], names, {tc: None, idc: "category"},
                                                    static=tuple(static),
                                                    categorical=tuple(c for c in opts["categorical_static"] if c in static))
    except DataError as exc:
        if CAPPED_HINT in exc.reason:  # a capped number: the reason says what to do
            raise
        if exc.column is not None and exc.column in static:
            raise DataError(f"{exc.reason} ({STATIC_TEXT_RULE.format(name=exc.column)})", path=exc.path,
                            line=exc.line, column=exc.column) from None
        if opts["variables"] is not None or exc.column is None:
            raise
        raise DataError(f"{exc.reason} (every column but the id, time and label columns is read as a variable: "
                        f"a text column such as comments is not one; list the variable columns with "
                        f"data.variables=[...], or leave it out of the file; a per-series code held as text, such "
                        f"as a unit's name, is a static variable: list it in data.static_variables and "
                        f"data.categorical_static)",
                        path=exc.path, line=exc.line, column=exc.column) from None
    table.data = b""  # parsed: free the file's bytes
    if texts_of:
        meta["static_text"] = texts_of
    V = np.stack([nums[c] for c in names], axis=1) if names else np.zeros((len(frame), 0))
    keep = _drop_blank_rows(frame, [idc, tc], np.isnan(V).all(axis=1))
    if not len(keep):
        raise DataError("no rows: the file holds only a header and blank lines", path=table.path)
    frame, V = frame.iloc[keep], V[keep]
    lines = table.line_of(keep)
    for j, c in enumerate(names):
        check_finite(V[:, j], table.path, c, lines)
        check_float32_range(V[:, j], table.path, c, lines)
    ids = _require_text(frame[idc], table, lines, idc, "id")
    hours = _times_to_hours(frame[tc], opts["time_unit"], table, lines, tc, opts["time_zero"])
    series, id_list = _series_codes(ids)
    t0 = _time_zero(series, hours, len(id_list), opts["time_zero"])
    _check_span(series, hours, t0, id_list, opts, table, lines, tc)
    _warn_long_numeric_hours(frame[tc], series, hours, t0, opts, table.path, tc)
    del frame, ids, lines
    R, K = V.shape
    return _finish(
        id_list, np.repeat(series, K), np.repeat(hours, K), t0, np.tile(np.arange(K, dtype=np.int64), R),
        V.reshape(-1).astype(np.float64), names, static, opts["max_hours"], ranges, lab, meta, table.path,
        before_zero=opts["time_zero"] == "zero", categorical=opts["categorical_static"],
    )


def _build_physionet(source: StaySource, ranges, lab: _LabelSource, max_hours, meta: dict) -> IrregularDataset:
    # a row this late is a corrupt time, named by its file and line (unless max_hours drops it anyway)
    latest = MAX_SPAN_HOURS if max_hours is None or max_hours > MAX_SPAN_HOURS else math.inf
    rows = parse_stays(source.files(), latest_hours=latest)
    seen: dict[str, str] = {}
    for name, rid in zip(rows.files, rows.record_ids):
        if rid in seen:
            raise DataError(f"RecordID {rid!r} also appears in {seen[rid]}", path=name)
        seen[rid] = name
    file_series, id_list = _series_codes(rows.record_ids)
    params = rows.parameters
    keep = rows.codes != (params.index(RECORD_ID) if RECORD_ID in params else -1)
    values = rows.values[keep].copy()
    values[values == -1] = np.nan  # PhysioNet 2012: -1 = unknown / missing
    series = file_series[rows.row_file[keep]]
    t0 = np.zeros(len(id_list))  # ICU admission, 00:00
    return _finish(
        id_list, series, rows.hours[keep], t0, rows.codes[keep], values, params, list(PHYSIONET_STATIC),
        max_hours, ranges, lab, meta, str(source.path), exclude=(RECORD_ID,),
    )


def _check_span(series: np.ndarray, hours: np.ndarray, t0: np.ndarray, ids: list, opts: dict, table: TextTable,
                lines: np.ndarray, column: str) -> None:
    """Raise on the first row more than :data:`MAX_SPAN_HOURS` after its series' time 0."""
    max_hours = opts.get("max_hours")
    if max_hours is not None and max_hours <= MAX_SPAN_HOURS:
        return  # such rows are dropped by the window anyway
    rel = hours - t0[series]  # t0: each series' time 0 (_time_zero)
    late = np.flatnonzero(rel > MAX_SPAN_HOURS)
    if len(late):
        i = int(late[0])
        if opts.get("time_zero") == "zero":
            after = "its time 0 (the time column's 0, time_zero zero)"
        else:
            first = int(lines[np.flatnonzero(series == series[i])[np.argmin(hours[series == series[i]])]])
            after = f"its first row (line {first})"
        raise DataError(
            f"this row of series {ids[series[i]]!r} is {rel[i]:.4g} hours after {after}; "
            f"a series may span at most {MAX_SPAN_HOURS:.0e} hours (114 years): check time_unit "
            f"(now {opts.get('time_unit')!r}) or set max_hours",
            path=table.path, line=int(lines[i]), column=column,
        )


#: a median series span above this many hours, from plain numbers read as hours, is warned about
LONG_SPAN_HOURS = 1000.0


def _warn_long_numeric_hours(col: pd.Series, series: np.ndarray, hours: np.ndarray, t0: np.ndarray, opts: dict,
                             path, column: str) -> None:
    """Warn when plain numbers read as hours (``time_unit`` h) make the median series span more
    than :data:`LONG_SPAN_HOURS` hours (six weeks): minute or second offsets (eICU's
    ``*offset`` columns) given without ``time_unit`` look like that, and would train on a time axis
    60 or 3,600 times too long."""
    if opts.get("time_unit") != "h" or not len(hours):
        return
    if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
        if np.isnan(pd.to_numeric(col.iloc[:1].astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)).any():
            return  # date-time or H:MM text: its hours are real
    hi = np.full(len(t0), -np.inf)
    np.maximum.at(hi, series, hours)
    seen = np.isfinite(t0)
    span = float(np.median(hi[seen] - t0[seen])) if seen.any() else 0.0
    if span > LONG_SPAN_HOURS:
        log.warning("%s, column %r: its numbers, read as hours (time_unit h), make the median series span %.0f hours "
                    "(%.0f days); if they are minutes or seconds, set data.time_unit=min or s", path, column, span,
                    span / 24)


def _earliest(series: np.ndarray, hours: np.ndarray, n: int) -> np.ndarray:
    t0 = np.full(n, np.inf)
    np.minimum.at(t0, series, hours)
    return t0


#: where a CSV series' time 0 lies (the ``time_zero`` reader option)
TIME_ZERO_CHOICES = ("earliest", "zero")


def _time_zero(series: np.ndarray, hours: np.ndarray, n: int, time_zero: str) -> np.ndarray:
    """(n,) each series' time 0 in absolute hours: its earliest row, or the time column's own 0."""
    return _earliest(series, hours, n) if time_zero == "earliest" else np.zeros(n)


def _drop_before_zero(series, hours, codes, values, names, static, source, meta: dict):
    """Drop the time-varying measurements before time 0 (``time_zero="zero"``: pre-admission labs
    at negative offsets); static variables' rows are kept wherever they lie. The count goes to the
    log and to ``meta["before_time_zero"]``; more than half of them dropped is warned about, all of
    them is a :class:`DataError` (offsets of the wrong sign or unit). Shape: series, hours, codes,
    values (N,) -> (N',)."""
    is_static = np.isin(np.asarray(names, dtype=object), list(static)) if static else np.zeros(len(names), bool)
    measured = ~is_static[codes] & ~np.isnan(values)
    early = measured & (hours < 0)
    n, total = int(early.sum()), int(measured.sum())
    n_series = len(np.unique(series[early])) if n else 0
    meta["before_time_zero"] = dict(dropped=n, series=n_series, measurements=total)
    if not n:
        return series, hours, codes, values
    if n == total:
        raise DataError(f"time_zero zero: every one of the {n} time-varying measurements is before time 0 (the time "
                        f"column's 0): are the times offsets from the event, in time_unit {meta.get('time_unit')!r}, "
                        f"with later times positive? (time_zero earliest counts from each series' first row)",
                        path=source, column=meta.get("time_column"))
    log_before_time_zero(source, **meta["before_time_zero"])
    keep = ~early
    return series[keep], hours[keep], codes[keep], values[keep]


def log_before_time_zero(source, dropped: int, series: int, measurements: int, cached: bool = False) -> None:
    """Say how many measurements ``time_zero="zero"`` dropped (INFO; a warning above half of them)."""
    if not dropped:
        return
    level = logging.WARNING if 2 * dropped > measurements else logging.INFO
    log.log(level, "%s: %d of %d time-varying measurement(s), of %d series, before time 0 dropped (time_zero zero: "
            "the time column's 0 is time 0; static variables' rows kept)%s", source, dropped, measurements, series,
            " (cached)" if cached else "")


def _finish(ids, series, hours, t0, codes, values, names, static_names, max_hours, ranges, lab, meta, source,
            exclude=(), before_zero: bool = False, categorical=()) -> IrregularDataset:
    """The dataset of the readers' flat rows; ``before_zero`` (``time_zero="zero"``): time-varying
    measurements before time 0 dropped first (:func:`_drop_before_zero`, which records them in ``meta``);
    ``categorical``: static variables that are codes (``meta["static_text"]`` those held as text,
    whose positions no value range applies to)."""
    if before_zero:
        series, hours, codes, values = _drop_before_zero(series, hours, codes, values, names, static_names, source,
                                                         meta)
    text_coded = meta.get("static_text") or {}
    if ranges and text_coded:
        ranges = {name: r for name, r in ranges.items() if name not in text_coded}
    times, vals, offsets, static, variables, dropped = assemble(
        len(ids), series, hours, t0, codes, values, names, static_names, max_hours, ranges, source, exclude, ids,
        categorical=categorical,
    )
    if not variables:
        raise DataError(
            f"no time-varying variables: every variable seen ({', '.join(map(repr, names))}) is static", path=source
        )
    meta = dict(meta, out_of_range=dropped)
    labels = lab.attach(ids, meta)
    return IrregularDataset(ids, variables, static_names, times, vals, offsets, static, labels, meta)


def _series_name(ids, k) -> str:
    return repr(str(ids[int(k)])) if ids is not None else f"#{int(k)}"


def assemble(
    n: int,
    series: np.ndarray,
    hours: np.ndarray,
    t0: np.ndarray,
    codes: np.ndarray,
    values: np.ndarray,
    names: list[str],
    static_names: list[str],
    max_hours: float | None = None,
    ranges=None,
    source: str = "",
    exclude: Sequence[str] = (),
    ids: Sequence | None = None,
    categorical: Sequence[str] = (),
):
    """Flat measurements -> the ragged arrays of :class:`IrregularDataset` (shared by all readers).

    Args:
        n: number of series.
        series: (M,) series index of each measurement (0..n-1).
        hours: (M,) absolute time of each measurement in hours.
        t0: (n,) time 0 of each series in the same clock.
        codes: (M,) index into ``names`` of each measurement's variable.
        values: (M,) float values; NaN = unobserved (modified in place by the range check).
        names: every variable name seen; those in ``static_names`` are static, those in
            ``exclude`` are dropped, the rest are the time-varying variables (sorted).
        static_names: names of the S static variables (absent ones stay NaN).
        max_hours: drop measurements later than this many hours after time 0.
        ranges: resolved value-range table or ``None``.
        ids: (n,) the series' ids, named in the errors (default: their index).
        categorical: static variables that are codes: the earliest row's code is kept (the first
            in file order at that time, not a mean; disagreeing codes are logged).

    Returns:
        ``times`` (N,), ``values`` (N, F) float32, ``offsets`` (n+1,), ``static`` (n, S) float32,
        ``variables`` (F names), ``dropped`` {variable: count out of range}.
    """
    # Memory: the inputs may hold tens of millions of rows, so intermediates are int32 where the
    # range allows and are dropped as soon as they are used (peak ~ a few row-length arrays).
    rel = hours - t0[series]
    if max_hours is not None:
        keep = rel <= max_hours
        series, rel, codes, values = series[keep], rel[keep], codes[keep], values[keep]
        del keep
    values = np.array(values, dtype=np.float64)
    dropped = drop_out_of_range(codes, values, names, ranges, source)
    obs = ~np.isnan(values)
    series, rel, codes, values = series[obs], rel[obs], codes[obs], values[obs]
    del obs
    idx = np.int32 if n < 2**31 - 1 else np.int64
    series = series.astype(idx, copy=False)
    codes = codes.astype(np.int32, copy=False)
    # the builders of text files check these with file lines; this covers the other callers
    if len(values) and not np.all(np.abs(values) <= FLOAT32_MAX):
        i = int(np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))[0])
        raise DataError(f"value {values[i]:g} of variable {names[codes[i]]!r} in series {_series_name(ids, series[i])} is not a "
                        f"finite number within ±{FLOAT32_MAX:.1e} (measurements are stored as float32)",
                        path=source or None)
    if len(rel) and rel.max() > MAX_SPAN_HOURS:
        i = int(np.argmax(rel))
        raise DataError(f"a {names[codes[i]]!r} row of series {_series_name(ids, series[i])} is {rel[i]:.4g} hours after the "
                        f"series' time 0; a series may span at most {MAX_SPAN_HOURS:.0e} hours (114 years)",
                        path=source or None)

    static_set, excluded = set(static_names), set(exclude)
    variables = sorted(v for v in set(names) if v not in static_set and v not in excluded)
    col = np.full(len(names), -1, dtype=np.int32)
    scol = np.full(len(names), -1, dtype=np.int32)
    vpos = {v: j for j, v in enumerate(variables)}
    spos = {v: j for j, v in enumerate(static_names)}
    for i, v in enumerate(names):
        col[i] = vpos.get(v, -1)
        scol[i] = spos.get(v, -1)

    # ---- static: earliest observed value (mean of those at that earliest time); few rows
    S = len(static_names)
    static = np.full((n, S), np.nan, dtype=np.float32)
    st = np.flatnonzero(scol[codes] >= 0) if len(codes) else np.zeros(0, dtype=np.int64)
    if len(st):
        s, t, c, v = series[st], rel[st], scol[codes[st]], values[st]
        order = np.lexsort((t, c, s))
        s, t, c, v = s[order], t[order], c[order], v[order]
        new_group = np.ones(len(s), dtype=bool)
        new_group[1:] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
        gid = np.cumsum(new_group) - 1
        first_t = t[new_group][gid]
        at_first = t == first_t
        s, c, v, gid = s[at_first], c[at_first], v[at_first], gid[at_first]
        sums = np.bincount(gid, weights=v)
        cnt = np.bincount(gid)
        head = np.r_[True, gid[1:] != gid[:-1]]
        earliest = sums[gid[head]] / cnt[gid[head]]  # the mean of the rows at the earliest time
        is_code = np.isin(np.arange(S), [spos[n] for n in categorical if n in spos])
        if is_code.any():  # a code: the first row's (file order: lexsort is stable), never a mean of codes
            earliest = np.where(is_code[c[head]], v[head], earliest)
            differ = is_code[c] & (v != v[head][gid])
            if differ.any():
                log.warning("%s: %d series have different codes of a static variable (%s) at its earliest time: "
                            "the first row's is kept", source or "data", len(np.unique(s[differ])),
                            ", ".join(sorted({static_names[j] for j in c[differ]})))
        static[s[head], c[head]] = earliest.astype(np.float32)
    del st

    # ---- time-varying: one step per distinct (series, time); mean per (step, variable)
    tv = np.flatnonzero(col[codes] >= 0) if len(codes) else np.zeros(0, dtype=np.int64)
    s, t, c, v = series[tv], rel[tv], col[codes[tv]], values[tv]
    del tv, series, rel, codes, values
    F = len(variables)
    if len(s):
        ds = np.diff(s)
        if not np.all((ds > 0) | ((ds == 0) & (t[1:] >= t[:-1]))):  # inputs are often sorted already
            del ds
            order = np.lexsort((t, s))
            s = s[order]
            t = t[order]
            c = c[order]
            v = v[order]
            del order
        else:
            del ds
        new_step = np.ones(len(s), dtype=bool)
        new_step[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
        cell = np.cumsum(new_step, dtype=np.int64)  # step index + 1
        n_steps = int(cell[-1])
        cell -= 1
        cell *= F
        cell += c
        del c
        counts = np.bincount(cell, minlength=n_steps * F)
        sums = np.bincount(cell, weights=v, minlength=n_steps * F)
        del cell, v
        out_values = np.full(n_steps * F, np.nan, dtype=np.float32)  # NaN: unobserved
        filled = np.flatnonzero(counts)
        out_values[filled] = sums[filled] / counts[filled]
        out_values = out_values.reshape(n_steps, F)
        del counts, sums, filled
        out_times = t[new_step]
        steps_per_series = np.bincount(s[new_step], minlength=n)
    else:
        out_values = np.zeros((0, F), dtype=np.float32)
        out_times = np.zeros(0)
        steps_per_series = np.zeros(n, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(steps_per_series)]).astype(np.int64)
    return out_times, out_values, offsets, static, variables, dropped
