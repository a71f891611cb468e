"""Batches for forecasting: a history before the horizon and queries after it.

A series is cut at ``history_hours`` (the horizon). Rows with ``time < history_hours`` form
the history, encoded in grud's one vocabulary exactly like :mod:`grud.data.batching`; no row
at or after the horizon ever enters the history tensors. The queries are the times at which
the model must predict every variable:

* observed queries (default): every row with ``history_hours <= time`` (and, with
  ``horizon_hours``, ``time <= history_hours + horizon_hours``) that observes at least one
  variable; its truth is scored where ``query_mask`` is 1 (the protocol of t-PatchGNN,
  Zhang et al. ICML 2024);
* a regular future grid (``grid_hours = g``): queries at ``history_hours + k * g`` for
  ``k = 1 .. floor(horizon_hours / g)`` (the first forecast is ``g`` hours ahead: the origin
  itself is not on the grid, though an observed row exactly at it is a query above; the last
  is the horizon's end when ``g`` divides it). ``query_mask`` is 0 there unless a row of the input falls
  exactly (1e-6 h) on a grid time, in which case its observed variables are the truth.

Everything the decoder gets about the history (last values, their times, means, counts) is
computed from history rows only.

Shape:
    values, mask, delta: (B, T, F) history (normalised, 1 = observed, hours since last observation)
    times: (B, T) hours since the series' time 0; lengths: (B,) history steps (>= 1: a series
        without history rows gets one unobserved step at time 0)
    static: (B, S); index: (B,) int64 position in the dataset
    query_times: (B, Q) float64 absolute hours (0 at padded queries)
    lead_times: (B, Q) hours since the horizon (``query_times - history_hours``)
    query_values: (B, Q, F) normalised truth, 0 where ``query_mask`` is 0
    query_raw_values: (B, Q, F) truth in raw units, 0 where ``query_mask`` is 0 (for outputs)
    query_mask: (B, Q, F) 1 = truth observed (scored); query_lengths: (B,) real queries
    query_on_grid: (B, Q) 1 = the query is a future grid point (every variable is predicted)
    last_values: (B, F) normalised last history observation, 0 (the training mean) where none
    last_mask: (B, F) 1 = the variable was observed in the history
    since_last: (B, Q, F) hours from the variable's last history observation to the query
        (from time 0 when never observed, the GRU-D convention)
    history_means: (B, F) normalised mean over the history, 0 where never observed
    history_counts: (B, F) number of history observations
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import math

import numpy as np
import torch

from grud.data import masking
from grud.data.dataset import IrregularDataset
from grud.data.transforms import FittedStats
from grud.errors import ConfigError

log = logging.getLogger("grud")

GRID_TOLERANCE_HOURS = 1e-6
#: a future grid with more (series, time, variable) entries than this is warned about: each is an
#: output row (a 0.1 h grid over 80 h of 57 variables for 4,000 series is 182 M rows)
LARGE_GRID_ENTRIES = 20_000_000
#: set while the series of one file are encoded in chunks (:func:`whole_file_grid_warning`): the
#: file's series count, and whether the large-grid warning was given for it
_GRID_SCOPE: contextvars.ContextVar = contextvars.ContextVar("grid_scope", default=None)


@contextlib.contextmanager
def whole_file_grid_warning(state: dict):
    """Inside, a :class:`ForecastDataset` built on a chunk of a file warns about a large future grid
    with the whole file's series count, once for the file: ``state`` = ``{"n": series in the file,
    "warned": False}``, one dict shared by every chunk's ``with``."""
    token = _GRID_SCOPE.set(state)
    try:
        yield
    finally:
        _GRID_SCOPE.reset(token)


def _hours(key: str, value, expected: str, positive: bool) -> float:
    """``value`` as a finite float of hours, or a ConfigError naming ``task.<key>``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        hours = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"task.{key}: expected {expected}, got {value!r}") from None
    if not math.isfinite(hours) or hours < 0 or (positive and hours == 0):
        raise ConfigError(f"task.{key}: expected {expected}, got {value!r}")
    return hours


def check_window(history_hours, horizon_hours, grid_hours) -> tuple[float, float | None, float | None]:
    """Validate the forecast window settings; returns them as floats (or None)."""
    h = _hours("history_hours", history_hours, "a finite number of hours >= 0", positive=False)
    hz = None
    if horizon_hours is not None:
        hz = _hours("horizon_hours", horizon_hours, "a positive number of hours or null", positive=True)
    g = None
    if grid_hours is not None:
        g = _hours("forecast_grid_hours", grid_hours,
                   "one positive step in hours (the grid is history_hours + k * step) or null", positive=True)
        if hz is None:
            raise ConfigError("task.forecast_grid_hours needs a finite task.horizon_hours (how far the grid reaches), "
                              "got null or inf (to the end of each series, which a future grid does not have)")
        if g > hz + GRID_TOLERANCE_HOURS:
            raise ConfigError(f"task.forecast_grid_hours: the step {g} h exceeds task.horizon_hours {hz} h: no query left")
    return h, hz, g


def _group_offsets(series_of_row: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(series_of_row, minlength=n) if len(series_of_row) else np.zeros(n, np.int64)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class ForecastDataset(torch.utils.data.Dataset):
    """A dataset cut at the horizon and normalised with training statistics; items are series indices.

    Args:
        ds: the series (aligned to ``stats`` variables by name when they differ).
        stats: :class:`~grud.data.transforms.FittedStats` (or its dict) of the training split.
        history_hours: the horizon; rows before it are history.
        horizon_hours: how far after the horizon queries reach (None = no limit; required with a grid).
        grid_hours: step of a regular future query grid (None = query the observed rows).

    All per-series work happens once here (vectorised); :meth:`collate` only gathers rows.
    """

    def __init__(self, ds: IrregularDataset, stats, history_hours: float = 24.0,
                 horizon_hours: float | None = 24.0, grid_hours: float | None = None):
        stats = stats if isinstance(stats, FittedStats) else FittedStats.from_dict(dict(stats))
        self.history_hours, self.horizon_hours, self.grid_hours = check_window(history_hours, horizon_hours,
                                                                                grid_hours)
        if list(ds.variables) != list(stats.variables) or list(ds.static_names) != list(stats.static_names):
            ds = ds.align(stats.variables, stats.static_names)
        self.ds, self.stats = ds, stats
        n, F = len(ds), len(stats.variables)
        H = self.history_hours
        times = ds.times
        raw, raw_static = stats.inputs_of(ds)
        observed = np.isfinite(raw)
        z = np.where(observed, stats.normalise_values(raw), 0.0).astype(np.float32)
        series_of_row = np.repeat(np.arange(n), ds.lengths)

        # ---------------- history: rows strictly before the horizon
        hist = np.flatnonzero(times < H)
        self.hist_rows = hist
        self.hist_offsets = _group_offsets(series_of_row[hist], n)
        self.hist_counts = np.diff(self.hist_offsets)
        self.lengths = np.maximum(self.hist_counts, 1)  # the encoder always gets >= 1 step
        self.hist_values = z[hist]
        self.hist_mask = observed[hist].astype(np.float32)
        self.hist_times = times[hist]
        self.static = stats.normalise_static(raw_static)

        # per-series summaries of the history (decoder inputs, LOCF and mean baselines)
        hs = series_of_row[hist]
        hm = observed[hist]
        self.history_counts = np.zeros((n, F), np.float32)
        np.add.at(self.history_counts, hs, hm.astype(np.float32))
        sums = np.zeros((n, F), np.float64)
        np.add.at(sums, hs, np.where(hm, z[hist], 0.0))
        self.history_means = np.divide(sums, self.history_counts, out=np.zeros((n, F)),
                                       where=self.history_counts > 0).astype(np.float32)
        sums_raw = np.zeros((n, F), np.float64)
        np.add.at(sums_raw, hs, np.where(hm, raw[hist], 0.0))
        self.history_means_raw = np.divide(sums_raw, self.history_counts, out=np.full((n, F), np.nan),
                                           where=self.history_counts > 0)
        last_row = np.full((n, F), -1, dtype=np.int64)
        r, f = np.nonzero(hm)
        np.maximum.at(last_row, (hs[r], f), hist[r])  # rows ascend with time inside a series
        self.last_mask = (last_row >= 0).astype(np.float32)
        safe = np.where(last_row >= 0, last_row, 0)
        self.last_values = np.where(last_row >= 0, z[safe, np.arange(F)[None, :]], 0.0).astype(np.float32)
        self.last_raw = np.where(last_row >= 0, raw[safe, np.arange(F)[None, :]], np.nan)
        self.last_times = np.where(last_row >= 0, times[safe], np.nan)

        # ---------------- queries
        after = times >= H
        if self.horizon_hours is not None:
            after &= times <= H + self.horizon_hours + GRID_TOLERANCE_HOURS
        if self.grid_hours is None:
            q = np.flatnonzero(after & observed.any(1))
            self.query_offsets = _group_offsets(series_of_row[q], n)
            self.query_times = times[q].astype(np.float64)
            self.query_values = z[q]
            self.query_mask = observed[q].astype(np.float32)
            self.query_raw = np.where(observed[q], raw[q], 0.0).astype(np.float32)
            self.query_on_grid = np.zeros(len(q), np.float32)
        else:
            g = self.grid_hours
            K = int(math.floor(self.horizon_hours / g + 1e-9))
            scope = _GRID_SCOPE.get()
            total = n if scope is None else scope["n"]
            if total * K * F > LARGE_GRID_ENTRIES and not (scope and scope["warned"]):  # each an output row
                log.warning("task.forecast_grid_hours=%g over %g h: %d series x %d times x %d variables = %.3g forecast "
                            "rows (several GB as a frame or a file); a coarser grid or a shorter task.horizon_hours "
                            "makes fewer", g, self.horizon_hours, total, K, F, total * K * F)
                if scope is not None:
                    scope["warned"] = True
            self.query_offsets = (np.arange(n + 1) * K).astype(np.int64)
            self.query_times = (H + np.tile(np.arange(1, K + 1), n) * g).astype(np.float64)
            sums_z = np.zeros((n * K, F), np.float64)
            sums_raw = np.zeros((n * K, F), np.float64)
            counts = np.zeros((n * K, F), np.float64)
            rows = np.flatnonzero(after)
            k = (times[rows] - H) / g
            kr = np.rint(k)
            on = (np.abs(k - kr) * g <= GRID_TOLERANCE_HOURS) & (kr >= 1) & (kr <= K)
            rows, kr = rows[on], kr[on].astype(np.int64)
            target = series_of_row[rows] * K + kr - 1
            np.add.at(sums_z, target, z[rows])
            np.add.at(sums_raw, target, np.where(observed[rows], raw[rows], 0.0))
            np.add.at(counts, target, observed[rows].astype(np.float64))
            has = counts > 0
            self.query_values = np.divide(sums_z, counts, out=np.zeros_like(sums_z), where=has).astype(np.float32)
            self.query_raw = np.divide(sums_raw, counts, out=np.zeros_like(sums_raw), where=has).astype(np.float32)
            self.query_mask = has.astype(np.float32)
            self.query_on_grid = np.ones(n * K, np.float32)
        self.query_counts = np.diff(self.query_offsets)

    # ------------------------------------------------------------------ dataset protocol
    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> int:
        return i

    @staticmethod
    def _gather(flat: np.ndarray, offsets: np.ndarray, counts: np.ndarray, idx: np.ndarray, width: int):
        """Pad the rows ``offsets[i]:offsets[i]+counts[i]`` of each ``i`` in ``idx`` to ``width`` steps."""
        steps = np.arange(width)
        valid = steps[None, :] < counts[idx][:, None]
        rows = np.where(valid, offsets[idx][:, None] + steps[None, :], 0)
        if len(flat) == 0:
            return np.zeros((len(idx), width) + flat.shape[1:], flat.dtype), valid
        out = flat[rows]
        fill = valid.reshape(valid.shape + (1,) * (flat.ndim - 1))
        return np.where(fill, out, 0).astype(flat.dtype), valid

    def collate(self, indices) -> dict:
        """Padded tensors of the series at ``indices`` (see the module's Shape section)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        T = max(int(self.lengths[idx].max()) if len(idx) else 1, 1)
        Q = max(int(self.query_counts[idx].max()) if len(idx) else 1, 1)
        ho = self.hist_offsets[:-1]
        values, valid = self._gather(self.hist_values, ho, self.hist_counts, idx, T)
        mask, _ = self._gather(self.hist_mask, ho, self.hist_counts, idx, T)
        times, _ = self._gather(self.hist_times, ho, self.hist_counts, idx, T)
        delta = masking.time_deltas(times, mask, lengths=self.lengths[idx])  # padding: any time
        step_ok = np.arange(T)[None, :] < self.lengths[idx][:, None]
        delta = np.where(step_ok[..., None], delta, 0.0)
        qo = self.query_offsets[:-1]
        qt, qvalid = self._gather(self.query_times, qo, self.query_counts, idx, Q)
        qv, _ = self._gather(self.query_values, qo, self.query_counts, idx, Q)
        qraw, _ = self._gather(self.query_raw, qo, self.query_counts, idx, Q)
        qm, _ = self._gather(self.query_mask, qo, self.query_counts, idx, Q)
        qg, _ = self._gather(self.query_on_grid, qo, self.query_counts, idx, Q)
        last_t = self.last_times[idx]  # (B, F), NaN where never observed
        since = qt[:, :, None] - np.where(np.isfinite(last_t), last_t, 0.0)[:, None, :]
        since = np.where(qvalid[..., None], since, 0.0)
        lead = np.where(qvalid, qt - self.history_hours, 0.0)
        t = lambda a, dt=np.float32: torch.from_numpy(np.ascontiguousarray(a, dtype=dt))  # noqa: E731
        return {
            "values": t(values),
            "mask": t(mask),
            "delta": t(delta),
            "times": t(times),
            "lengths": torch.from_numpy(self.lengths[idx].astype(np.int64)),
            "static": t(self.static[idx]),
            "index": torch.from_numpy(idx.copy()),
            "query_times": t(qt, np.float64),
            "lead_times": t(lead),
            "query_values": t(qv),
            "query_raw_values": t(qraw),
            "query_mask": t(qm),
            "query_lengths": torch.from_numpy(self.query_counts[idx].astype(np.int64)),
            "query_on_grid": t(qg),
            "last_values": t(self.last_values[idx]),
            "last_mask": t(self.last_mask[idx]),
            "since_last": t(since),
            "history_means": t(self.history_means[idx]),
            "history_counts": t(self.history_counts[idx]),
        }

    # ------------------------------------------------------------------ flat views (baselines, outputs)
    def query_series(self) -> np.ndarray:
        """(N_q,) the series index of every flat query."""
        return np.repeat(np.arange(len(self.ds)), self.query_counts)

    def baseline_raw(self, name: str) -> np.ndarray:
        """(n, F) raw-unit forecast of a non-trainable baseline, constant over each series' queries.

        ``locf``: the last history observation; ``mean_forecast``: the history mean. Variables
        never observed in a series' history fall back to the training mean.
        """
        mean = np.asarray(self.stats.value_mean, np.float64)[None, :]
        seen = self.last_mask > 0
        if name == "locf":
            return np.where(seen, self.last_raw, mean)
        if name == "mean_forecast":
            return np.where(seen, self.history_means_raw, mean)
        raise ConfigError(f"model.name: expected a forecasting baseline locf or mean_forecast, got {name!r}")
