"""The one dataset type of grud: irregular multivariate series, stored ragged.

All series are kept concatenated in a few flat arrays (fast to slice, cache and batch):

* ``times``   (N,)      float64, hours since the series' time 0 (its earliest row, or
              the time column's 0 with the readers' ``time_zero``)
* ``values``  (N, F)    float32, NaN where a variable was not observed at that time
* ``offsets`` (n+1,)    int64, series ``i`` owns rows ``offsets[i]:offsets[i+1]``
* ``static``  (n, S)    float32, NaN where unknown
* ``labels``  (n,)      float64, NaN where a series has no label (or ``None``: no labels at all)

``ds[i]`` gives a :class:`Series` view with ``id``, ``times`` (T_i,), ``values`` (T_i, F),
``static`` (S,) and ``label``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from grud.errors import DataError


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Series:
    """One series: ``times`` in hours, ``values`` with NaN = unobserved, ``static`` and ``label``.

    Shape:
        times (T,); values (T, F); static (S,); label scalar (int or float) or ``None``
    """

    id: str
    times: np.ndarray
    values: np.ndarray
    static: np.ndarray
    label: Any = None

    def __len__(self) -> int:
        return int(self.times.shape[0])


class IrregularDataset:
    """Ragged collection of irregularly sampled multivariate series.

    Args:
        ids: one string per series, as written in the input.
        variables: names of the F time-varying variables (column order of ``values``).
        static_names: names of the S static variables.
        times: hours since each series' time 0, ascending within a series.
        values: variable values, NaN where unobserved.
        offsets: row offsets of each series into ``times``/``values``.
        static: static features, NaN where unknown; ``None``: zeros (with no static names, S = 0).
        labels: numeric labels, NaN where missing; ``None`` means no labels.
        meta: plain dict describing the source (column names, time unit, ...).

    Shape:
        times (N,); values (N, F); offsets (n + 1,) ascending from 0 to N; static (n, S);
        labels (n,); lengths (n,)
    """

    def __init__(
        self,
        ids: Sequence[str],
        variables: Sequence[str],
        static_names: Sequence[str],
        times: np.ndarray,
        values: np.ndarray,
        offsets: np.ndarray,
        static: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        meta: dict | None = None,
    ):
        self.ids = [str(i) for i in ids]
        self.variables = [str(v) for v in variables]
        self.static_names = [str(s) for s in static_names]
        n, F, S = len(self.ids), len(self.variables), len(self.static_names)
        self.times = np.ascontiguousarray(times, dtype=np.float64)
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        if self.times.ndim != 1:
            raise ValueError(f"times: expected shape (N,), got {self.times.shape}")
        if self.values.shape != (self.times.shape[0], F) and not (self.values.size == 0 and self.times.size == 0):
            raise ValueError(f"values: expected shape (N, F) = ({self.times.shape[0]}, {F}) (a row per time, a column "
                             f"per variable), got {self.values.shape}")
        self.values = self.values.reshape(-1, F)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.offsets.shape != (n + 1,):
            raise ValueError(f"offsets: expected shape ({n + 1},), got {self.offsets.shape}")
        if self.offsets[0] != 0 or self.offsets[-1] != self.times.shape[0] or np.any(np.diff(self.offsets) < 0):
            raise ValueError(f"offsets: expected ascending from 0 to the {self.times.shape[0]} rows of times, got "
                             f"{self.offsets[0]} .. {self.offsets[-1]}")
        if static is None:
            static = np.zeros((n, S), dtype=np.float32)
        self.static = np.ascontiguousarray(static, dtype=np.float32)
        if self.static.shape != (n, S) and not (self.static.size == 0 and n * S == 0):
            raise ValueError(f"static: expected shape (n, S) = ({n}, {S}), got {self.static.shape}")
        self.static = self.static.reshape(n, S)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float64)
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels: expected shape (n,) = ({n},), got {self.labels.shape}")
        self.meta = dict(meta or {})
        self._check_content()

    def _check_content(self) -> None:
        """Times finite and ascending within each series (an unsorted series would decay by negative
        deltas; the readers also merge equal times into one step), values and static finite or NaN
        (missing)."""
        if not np.isfinite(self.times).all():
            row = int(np.flatnonzero(~np.isfinite(self.times))[0])
            i = int(np.searchsorted(self.offsets, row, side="right")) - 1
            raise DataError(f"times: expected finite hours, got {self.times[row]} at row {row} (series {self.ids[i]!r})")
        series = np.repeat(np.arange(len(self.ids)), np.diff(self.offsets))
        bad = np.flatnonzero((series[1:] == series[:-1]) & (np.diff(self.times) < 0))
        if len(bad):
            row = int(bad[0]) + 1
            i = int(series[row])
            raise DataError(f"times: expected ascending times within each series (sort each series' rows by time), "
                            f"got {self.times[row - 1]:g} then {self.times[row]:g} in series {self.ids[i]!r}")
        for name, arr in (("values", self.values), ("static", self.static)):
            if np.isinf(arr).any():
                raise DataError(f"{name}: expected finite numbers or NaN (missing), got an infinite value")

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        """(n,) number of time steps of each series."""
        return np.diff(self.offsets)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and bool(np.isfinite(self.labels).any())

    def label(self, i: int):
        if self.labels is None or not np.isfinite(self.labels[i]):
            return None
        v = float(self.labels[i])
        return int(v) if v.is_integer() else v

    def __getitem__(self, i: int) -> Series:
        if not -len(self) <= i < len(self):
            raise IndexError(f"series index {i} out of range for {len(self)} series")
        i = i % len(self)
        a, b = self.offsets[i], self.offsets[i + 1]
        return Series(self.ids[i], self.times[a:b], self.values[a:b], self.static[i], self.label(i))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"IrregularDataset({len(self)} series, {len(self.variables)} variables, "
            f"{len(self.static_names)} static, {self.times.shape[0]} time steps, "
            f"labels={'yes' if self.has_labels else 'no'})"
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_series(
        cls,
        series: Sequence[Series],
        variables: Sequence[str],
        static_names: Sequence[str] = (),
        meta: dict | None = None,
    ) -> "IrregularDataset":
        """Build from a list of :class:`Series` (each ``values`` with len(variables) columns)."""
        F, S = len(variables), len(static_names)
        lengths = np.array([len(s.times) for s in series], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        times = np.concatenate([np.asarray(s.times, np.float64) for s in series]) if series else np.zeros(0)
        for s in series:
            shape = np.shape(s.values)
            if shape != (len(s.times), F) and not (len(s.times) == 0 and np.size(s.values) == 0):
                raise ValueError(f"series {s.id!r}: values: expected shape (T, F) = ({len(s.times)}, {F}), got {shape}")
        values = (
            np.concatenate([np.asarray(s.values, np.float32).reshape(-1, F) for s in series])
            if series
            else np.zeros((0, F), np.float32)
        )
        static = np.stack([np.asarray(s.static, np.float32).reshape(S) for s in series]) if series else None
        has_label = any(s.label is not None for s in series)
        labels = (
            np.array([np.nan if s.label is None else float(s.label) for s in series]) if has_label else None
        )
        return cls([s.id for s in series], variables, static_names, times, values, offsets, static, labels, meta)

    def subset(self, indices) -> "IrregularDataset":
        """A new dataset holding the series at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths[idx]
        starts = self.offsets[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = (
            np.concatenate([np.arange(a, a + n) for a, n in zip(starts, lengths)])
            if len(idx) and lengths.sum()
            else np.zeros(0, dtype=np.int64)
        )
        return IrregularDataset(
            [self.ids[i] for i in idx],
            self.variables,
            self.static_names,
            self.times[rows],
            self.values[rows],
            offsets,
            self.static[idx],
            None if self.labels is None else self.labels[idx],
            self.meta,
        )

    def with_labels(self, labels: np.ndarray | None) -> "IrregularDataset":
        return IrregularDataset(
            self.ids, self.variables, self.static_names, self.times, self.values, self.offsets,
            self.static, labels, self.meta,
        )

    def with_values(self, values: np.ndarray) -> "IrregularDataset":
        """The same series with ``values`` (rows, F) in place of :attr:`values` (shape checked)."""
        values = np.asarray(values, dtype=np.float32)
        if values.shape != self.values.shape:
            raise ValueError(f"values: expected shape {self.values.shape}, got {values.shape}")
        return IrregularDataset(
            self.ids, self.variables, self.static_names, self.times, values, self.offsets,
            self.static, self.labels, self.meta,
        )

    def align(self, variables: Sequence[str], static_names: Sequence[str]) -> "IrregularDataset":
        """Reorder columns to the training ``variables`` / ``static_names``.

        Variables unknown to training are reported (logged) and dropped, with the time steps that
        held only them; training variables missing here become all-unobserved (NaN). Used at
        prediction time.
        """
        variables, static_names = list(variables), list(static_names)
        if variables == self.variables and static_names == self.static_names:
            return self
        unknown = [v for v in self.variables if v not in variables]
        unknown_static = [v for v in self.static_names if v not in static_names]
        missing = [v for v in variables if v not in self.variables]
        missing_static = [v for v in static_names if v not in self.static_names]
        if unknown or unknown_static:
            log.warning(
                "dropping %d variable(s) unknown to training: %s",
                len(unknown) + len(unknown_static),
                ", ".join(unknown + unknown_static),
            )
        if missing or missing_static:
            parts = ([f"{len(missing)} variable(s): {', '.join(missing)}"] if missing else []) + (
                [f"{len(missing_static)} static variable(s): {', '.join(missing_static)}"] if missing_static else [])
            log.warning("absent from this data and read as unobserved: training's %s", "; ".join(parts))
        values = np.full((self.values.shape[0], len(variables)), np.nan, dtype=np.float32)
        for j, v in enumerate(variables):
            if v in self.variables:
                values[:, j] = self.values[:, self.variables.index(v)]
        static = np.full((len(self), len(static_names)), np.nan, dtype=np.float32)
        for j, v in enumerate(static_names):
            if v in self.static_names:
                static[:, j] = self.static[:, self.static_names.index(v)]
        times, offsets = self.times, self.offsets
        if unknown and len(values):
            # a step is a time with an observed variable (as the readers build them): steps that held
            # only dropped variables go, or they would add decay steps training never saw
            keep = ~np.isnan(values).all(axis=1)
            offsets = self._offsets_keeping(keep)
            times, values = times[keep], values[keep]
        return IrregularDataset(
            self.ids, variables, static_names, times, values, offsets, static, self.labels, self.meta,
        )

    def _offsets_keeping(self, keep: np.ndarray) -> np.ndarray:
        """(n + 1,) offsets of the steps left when only ``keep`` (N,) bool survive."""
        owner = np.repeat(np.arange(len(self)), self.lengths)
        counts = np.bincount(owner[keep], minlength=len(self))
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def window(self, max_hours: float | None) -> "IrregularDataset":
        """Drop every row after ``max_hours`` hours (a classification window)."""
        if max_hours is None:
            return self
        keep = self.times <= float(max_hours)
        offsets = self._offsets_keeping(keep)
        return IrregularDataset(
            self.ids, self.variables, self.static_names, self.times[keep], self.values[keep], offsets,
            self.static, self.labels, self.meta,
        )

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict:
        """Plain numpy arrays (for the cache; :meth:`from_arrays` reverses it)."""
        out = dict(
            ids=np.array(self.ids, dtype=object).astype(str),
            variables=np.array(self.variables, dtype=str),
            static_names=np.array(self.static_names, dtype=str),
            times=self.times,
            values=self.values,
            offsets=self.offsets,
            static=self.static,
        )
        if self.labels is not None:
            out["labels"] = self.labels
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict | None = None) -> "IrregularDataset":
        return cls(
            [str(x) for x in arrays["ids"]],
            [str(x) for x in arrays["variables"]],
            [str(x) for x in arrays["static_names"]],
            arrays["times"],
            arrays["values"],
            arrays["offsets"],
            arrays["static"],
            arrays["labels"] if "labels" in arrays else None,
            meta,
        )

