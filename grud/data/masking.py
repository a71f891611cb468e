"""Masks, time gaps and simple imputations for partially observed series.

The vocabulary of GRU-D (Che et al., "Recurrent Neural Networks for Multivariate Time Series
with Missing Values", Scientific Reports 8, 6085, 2018, section "GRU-D"):

* ``mask`` m_t^d = 1 where variable d was observed at step t, else 0;
* ``delta`` delta_t^d, the time (hours) since variable d was last observed *before* step t:
  ``delta_1 = 0``; ``delta_t = s_t - s_{t-1} + delta_{t-1}`` if ``m_{t-1} = 0``, else
  ``s_t - s_{t-1}`` (eq. 2), i.e. ``s_t - s_{last observed step < t}``, and ``s_t - s_1`` while
  the variable has not yet been observed;
* forward filling (last observation carried forward, the "GRU-Forward" baseline) and mean
  imputation (the "GRU-Mean" baseline, ``m * x + (1 - m) * x_mean``).

Every function works on numpy arrays and on torch tensors (except :func:`ragged_time_deltas`,
numpy only, for series stored flat): numpy in gives numpy out, torch in
gives torch out on the same device with the same dtype, differentiable where that makes sense
(:func:`forward_fill` with respect to ``values`` and ``fill``, :func:`time_deltas` with respect to
``times``, :func:`mean_impute` and :func:`empirical_mean`). Any number of leading batch
dimensions is allowed. Only :func:`observed_mask` (and :func:`simulate_missing` without a
``mask``) look at NaN; every function that is given a ``mask`` uses it and never reads
``values`` where it is 0, so zero-filled values work as well as NaN-filled ones.

All scans along time are vectorised: the "last observed step" is a running maximum of
``where(mask, step, 0)``, computed with log2(T) whole-array passes (a Hillis-Steele scan)
rather than a Python loop over series or steps. numpy inputs, and CPU tensors that need no
gradient (zero-copy), go through a numpy kernel that works on blocks of series small enough to
stay in the CPU cache; other tensors go through a torch kernel on their own device.

Shape:
    values, mask, delta, indicating_mask: (..., T, F), e.g. (T, F) or (B, T, F)
    times: (..., T) (or (T,), shared by every series)
    lengths: (...,), e.g. (B,)
    fill, means: (F,)
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from grud.errors import ConfigError

__all__ = [
    "observed_mask",
    "time_deltas",
    "ragged_time_deltas",
    "forward_fill",
    "forward_fill_and_deltas",
    "mean_impute",
    "empirical_mean",
    "simulate_missing",
]

#: numpy inputs are scanned in blocks of about this many entries (fits the L2 cache).
_BLOCK_ENTRIES = 1 << 16


# ---------------------------------------------------------------------------- argument checks
def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _as_numpy(x, name: str, fn: str) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    try:
        out = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise ConfigError(f"{fn}: {name}: expected an array, got {type(x).__name__} ({e})") from None
    if out.dtype == object:
        raise ConfigError(f"{fn}: {name}: expected a numeric array, got dtype object")
    return out


def _like(x, ref, name: str, fn: str):
    """``x`` as the same kind (numpy / torch on ref's device) as ``ref``."""
    if _is_torch(ref):
        if _is_torch(x):
            return x.to(ref.device)
        return torch.as_tensor(_as_numpy(x, name, fn), device=ref.device)
    return _as_numpy(x, name, fn)


def _check_series(values, fn: str, name: str = "values"):
    if not _is_torch(values):
        values = _as_numpy(values, name, fn)
    if values.ndim < 2:
        raise ConfigError(
            f"{fn}: {name}: expected shape (..., T, F) with at least 2 dimensions, "
            f"got {tuple(values.shape)}"
        )
    return values


def _check_mask(mask, values, fn: str):
    mask = _like(mask, values, "mask", fn)
    if tuple(mask.shape) != tuple(values.shape):
        raise ConfigError(
            f"{fn}: mask: expected shape {tuple(values.shape)} like values, got {tuple(mask.shape)}"
        )
    return mask


def _is_float(x) -> bool:
    return x.dtype.is_floating_point if _is_torch(x) else np.issubdtype(x.dtype, np.floating)


def _is_integer(x) -> bool:
    if _is_torch(x):
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)
    return np.issubdtype(x.dtype, np.integer)


def _check_float(values, fn: str, name: str = "values"):
    if not _is_float(values):
        raise ConfigError(f"{fn}: {name}: expected a floating dtype, got {values.dtype}")


def _check_row(row, F: int, ref, name: str, fn: str):
    """A per-variable row (F,) as ref's kind, dtype and device."""
    row = _like(row, ref, name, fn)
    if tuple(row.shape) != (F,):
        raise ConfigError(f"{fn}: {name}: expected shape ({F},) (one per variable), got {tuple(row.shape)}")
    return row.to(ref.dtype) if _is_torch(ref) else row.astype(ref.dtype, copy=False)


def _leading(shape) -> int:
    return int(math.prod(shape))


def _step_dtype(n: int):
    """Smallest unsigned numpy dtype holding the step numbers 0..n."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max:
            return dt
    return np.uint64


def _index_dtype(n: int):
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


_NUMPY_TORCH_DTYPES = (torch.float16, torch.float32, torch.float64, torch.bool, torch.uint8, torch.int8,
                       torch.int16, torch.int32, torch.int64)


def _numpy_kernel_fits(*tensors) -> bool:
    """CPU tensors that need no gradient run through the (much faster) numpy kernel, zero-copy."""
    tensors = [t for t in tensors if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.device.type == "cpu" and t.dtype in _NUMPY_TORCH_DTYPES for t in tensors)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().resolve_conj().resolve_neg().numpy()


# ---------------------------------------------------------------------------- running maximum
def _running_max_numpy(a: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Running maximum along axis -2, in log2(T) vectorised passes; returns the buffer holding it.

    Equivalent to ``np.maximum.accumulate(a, axis=-2)`` (which is a scalar loop per lane in
    numpy and about twice slower here); ``a`` and ``tmp`` are overwritten.
    """
    T = a.shape[-2]
    k = 1
    while k < T:
        tmp[..., :k, :] = a[..., :k, :]
        np.maximum(a[..., k:, :], a[..., :-k, :], out=tmp[..., k:, :])
        a, tmp = tmp, a
        k *= 2
    return a


def _running_max_torch(a: torch.Tensor) -> torch.Tensor:
    """Running maximum along dim -2 (differentiable), in log2(T) whole-tensor passes."""
    T = a.shape[-2]
    k = 1
    while k < T:
        a = torch.cat([a[..., :k, :], torch.maximum(a[..., k:, :], a[..., :-k, :])], dim=-2)
        k *= 2
    return a


# ---------------------------------------------------------------------------- public functions
def observed_mask(values):
    """1.0 where ``values`` is observed (not NaN), 0.0 where it is NaN.

    Args:
        values: array or tensor of any shape; NaN marks an unobserved entry.

    Returns:
        The mask, same shape; same float dtype (and device) as ``values``. Integer and bool
        values cannot hold NaN: the mask is then all True (bool).

    Shape:
        values (..., T, F) -> mask (..., T, F)
    """
    if _is_torch(values):
        if values.dtype.is_floating_point:
            return (~torch.isnan(values)).to(values.dtype)
        if values.dtype.is_complex:
            return (~torch.isnan(values)).to(values.real.dtype)
        return torch.ones_like(values, dtype=torch.bool)
    values = _as_numpy(values, "values", "observed_mask")
    if np.issubdtype(values.dtype, np.floating):
        return (~np.isnan(values)).astype(values.dtype)
    if np.issubdtype(values.dtype, np.complexfloating):
        return (~np.isnan(values)).astype(values.real.dtype)
    return np.ones(values.shape, dtype=bool)


def _check_times(times, lengths, mask, fn: str):
    """``times`` (float, mask's kind) and ``lengths`` (or None) checked against ``mask`` (..., T, F)."""
    times = _like(times, mask, "times", fn)
    lead, T = tuple(mask.shape[:-2]), mask.shape[-2]
    if tuple(times.shape) not in ((T,), lead + (T,)):
        raise ConfigError(
            f"{fn}: times: expected shape {lead + (T,)} (or ({T},) shared) for mask of shape "
            f"{tuple(mask.shape)}, got {tuple(times.shape)}"
        )
    if not _is_float(times):
        times = times.to(torch.get_default_dtype()) if _is_torch(times) else times.astype(np.float64)
    if lengths is not None:
        lengths = _like(lengths, mask, "lengths", fn)
        if tuple(lengths.shape) != lead:
            raise ConfigError(f"{fn}: lengths: expected shape {lead} (one per series), got {tuple(lengths.shape)}")
        if not _is_integer(lengths):
            raise ConfigError(f"{fn}: lengths: expected integers, got dtype {lengths.dtype}")
        flat = lengths.reshape(-1).tolist()
        bad = [(i, v) for i, v in enumerate(flat) if not 0 <= v <= T]
        if bad:
            raise ConfigError(
                f"{fn}: lengths: expected values in [0, {T}] (the padded length), got {bad[0][1]} "
                f"for series {bad[0][0]}"
            )
    t = _np(times.detach()) if _is_torch(times) else np.asarray(times)
    real = np.ones(t.shape, dtype=bool)  # padding after a series' length may hold anything
    if lengths is not None:
        real = np.arange(T) < np.asarray(_np(lengths) if _is_torch(lengths) else lengths)[..., None]
    t = np.broadcast_to(t, np.broadcast_shapes(t.shape, real.shape))  # shared (T,) times: per series
    bad = np.argwhere(~np.isfinite(t) & np.broadcast_to(real, t.shape))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise ConfigError(f"{fn}: times: expected finite hours at every real step, got {t[where]} at index {where}")
    if t.shape[-1] > 1:  # ascending within each series' real steps (a step back gives a negative delta)
        back = np.argwhere((np.diff(t, axis=-1) < 0) & np.broadcast_to(real, t.shape)[..., 1:])
        if len(back):
            where = tuple(int(i) for i in back[0])
            later = where[:-1] + (where[-1] + 1,)
            raise ConfigError(f"{fn}: times: expected ascending times within each series, got {t[later]} after "
                              f"{t[where]} at index {later}")
    return times, lengths


def time_deltas(times, mask, *, lengths=None):
    """Hours since each variable was last observed before each step (GRU-D's delta, eq. 2).

    ``delta_1 = 0``; ``delta_t = s_t - s_{t-1} + delta_{t-1}`` where the variable was missing at
    t-1, else ``s_t - s_{t-1}``. Computed in closed form as ``s_t - s_l`` with ``l`` the last
    step before ``t`` where the variable was observed (``l = 1`` if there is none), so no loop
    over steps is needed. With the paper's example, times 0, 0.1, 0.6, 1.6, 2.2, 2.5, 3.1 and
    mask 1101011 give 0, 0.1, 0.5, 1.5, 0.6, 0.9, 0.6.

    Args:
        times: step times in hours, ascending within each series (equal times give delta 0) and
            finite at every real step (both checked: a step back or a NaN time is a ConfigError
            naming its index; padding after a series' length may hold anything).
        mask: 1 (or True) where observed; any nonzero counts as observed.
        lengths: optional number of real steps of each series; steps at or after a series'
            length get delta 0.

    Returns:
        ``delta`` with the shape of ``mask`` and the floating dtype of ``times`` (float64 for
        integer numpy times, torch's default dtype for integer tensors). Differentiable with
        respect to torch ``times``.

    Shape:
        times (..., T) or (T,); mask (..., T, F); lengths (...,) -> delta (..., T, F)
    """
    fn = "time_deltas"
    mask = _check_series(mask, fn, "mask")
    times, lengths = _check_times(times, lengths, mask, fn)
    if _is_torch(mask):
        if _numpy_kernel_fits(times, mask, lengths):
            lengths_np = None if lengths is None else _np(lengths)
            return torch.from_numpy(_scan_numpy(_np(mask), times=_np(times), lengths=lengths_np)[1])
        return _time_deltas_torch(times, mask, lengths)
    return _scan_numpy(mask, times=times, lengths=lengths)[1]


def ragged_time_deltas(times, mask, offsets) -> np.ndarray:
    """:func:`time_deltas` for series stored flat, one after another (numpy only).

    Series i owns rows ``offsets[i]:offsets[i + 1]`` (the layout of
    :class:`grud.data.dataset.IrregularDataset`). Equals padding every series, calling
    :func:`time_deltas` and taking the real steps back out, without the padding: one running
    maximum over all rows, where each series' first row acts as an observation of every variable
    (so a series never looks into the one before it, and ``delta = s_t - s_1`` until a variable's
    first observation).

    Shape:
        times (N,); mask (N, F); offsets (n + 1,) ascending from 0 to N -> delta (N, F)
    """
    fn = "ragged_time_deltas"
    times = _as_numpy(times, "times", fn)
    mask = _as_numpy(mask, "mask", fn)
    offsets = _as_numpy(offsets, "offsets", fn).astype(np.int64, copy=False)
    if mask.ndim != 2 or times.shape != mask.shape[:1]:
        raise ConfigError(
            f"{fn}: expected times (N,) and mask (N, F), got {tuple(times.shape)} and {tuple(mask.shape)}"
        )
    N = mask.shape[0]
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != N or (np.diff(offsets) < 0).any():
        raise ConfigError(f"{fn}: offsets: expected an ascending array from 0 to N = {N}, got {offsets[:5]}...")
    if not _is_float(times):
        times = times.astype(np.float64)
    if N == 0:
        return np.zeros(mask.shape, times.dtype)
    dt = _index_dtype(N)
    last = np.empty(mask.shape, dt)  # row of the last observation before each row, or the series' first row
    rows = np.arange(N - 1, dtype=dt)[:, None]
    np.multiply(mask[:-1] != 0, rows, out=last[1:])  # 0 where unobserved: below every series' first row
    last[0] = 0
    starts = offsets[:-1][np.diff(offsets) > 0]
    last[starts] = starts[:, None]
    np.maximum.accumulate(last, axis=0, out=last)
    return (times[:, None] - times[last]).astype(times.dtype, copy=False)


def _time_deltas_torch(times: torch.Tensor, mask: torch.Tensor, lengths) -> torch.Tensor:
    T = mask.shape[-2]
    out_shape = tuple(mask.shape)
    if mask.numel() == 0:
        return torch.zeros(out_shape, dtype=times.dtype, device=mask.device)
    steps = torch.arange(1, T, device=mask.device, dtype=torch.int32)[:, None]
    last = _running_max_torch(torch.where(mask[..., :-1, :] != 0, steps, 0)).long()  # 0 = none, k = step k-1
    # table[..., k] = time of step k-1, and the first time for k = 0
    table = torch.cat([times[..., :1], times], dim=-1)
    lead = tuple(last.shape[:-2])
    table = table.expand(lead + (T + 1,)) if table.dim() == 1 else table
    since = torch.gather(table[..., None].expand(lead + (T + 1, mask.shape[-1])), -2, last)
    gaps = times[..., 1:, None] - since
    delta = torch.cat([gaps.new_zeros(tuple(gaps.shape[:-2]) + (1, gaps.shape[-1])), gaps], dim=-2)
    if lengths is not None:
        valid = torch.arange(T, device=mask.device) < lengths[..., None]
        delta = torch.where(valid[..., None], delta, torch.zeros((), dtype=delta.dtype, device=delta.device))
    return delta


def forward_fill(values, mask, fill=None):
    """Last observation carried forward along time (the "GRU-Forward" input of Che et al. 2018).

    Each entry becomes the value of the same variable at the latest step ``<= t`` where
    ``mask`` is nonzero. Never fills backward: an output at step t depends only on steps <= t.
    Entries before a variable's first observation get ``fill`` (e.g. the training means) or
    stay NaN when ``fill`` is None.

    Args:
        values: floating values; read only where ``mask`` is nonzero (zero-filled is fine).
        mask: 1 (or True) where observed.
        fill: optional per-variable values used before the first observation.

    Returns:
        The filled values, same shape, dtype (and device) as ``values``; differentiable with
        respect to torch ``values`` and ``fill``.

    Shape:
        values (..., T, F); mask (..., T, F); fill (F,) -> (..., T, F)
    """
    fn = "forward_fill"
    values = _check_series(values, fn)
    _check_float(values, fn)
    mask = _check_mask(mask, values, fn)
    F = values.shape[-1]
    if fill is not None:
        fill = _check_row(fill, F, values, "fill", fn)
    if _is_torch(values):
        if _numpy_kernel_fits(values, mask, fill):
            fill_np = None if fill is None else _np(fill)
            return torch.from_numpy(_scan_numpy(_np(mask), values=_np(values), fill=fill_np)[0])
        return _forward_fill_torch(values, mask, fill)
    return _scan_numpy(mask, values=values, fill=fill)[0]


def _forward_fill_torch(values: torch.Tensor, mask: torch.Tensor, fill) -> torch.Tensor:
    T = values.shape[-2]
    if values.numel() == 0:
        return values.clone()
    steps = torch.arange(1, T + 1, device=values.device, dtype=torch.int32)[:, None]
    last = _running_max_torch(torch.where(mask != 0, steps, 0)).long()  # 0 = none, k = step k-1
    out = torch.gather(values, -2, (last - 1).clamp_min(0))
    if fill is None:
        fill = torch.full((), float("nan"), dtype=values.dtype, device=values.device)
    return torch.where(last == 0, fill, out)


def forward_fill_and_deltas(values, mask, times, fill=None, *, lengths=None):
    """:func:`forward_fill` and :func:`time_deltas` together, from one scan of the mask.

    GRU-D needs both the last observation ``x_last`` and ``delta`` (Che et al. 2018, eqs. 2-4);
    they share the "last observed step" scan, so computing them together costs little more
    than one of them. The results equal ``forward_fill(values, mask, fill)`` and
    ``time_deltas(times, mask, lengths=lengths)`` exactly (the filled values are not zeroed
    past ``lengths``, as with :func:`forward_fill`).

    Shape:
        values (..., T, F); mask (..., T, F); times (..., T) or (T,); fill (F,); lengths (...,)
        -> (filled (..., T, F), delta (..., T, F))
    """
    fn = "forward_fill_and_deltas"
    values = _check_series(values, fn)
    _check_float(values, fn)
    mask = _check_mask(mask, values, fn)
    if fill is not None:
        fill = _check_row(fill, values.shape[-1], values, "fill", fn)
    times, lengths = _check_times(times, lengths, mask, fn)
    if _is_torch(values):
        if _numpy_kernel_fits(values, mask, fill, times, lengths):
            filled, delta = _scan_numpy(
                _np(mask), values=_np(values), fill=None if fill is None else _np(fill), times=_np(times),
                lengths=None if lengths is None else _np(lengths))
            return torch.from_numpy(filled), torch.from_numpy(delta)
        return _forward_fill_torch(values, mask, fill), _time_deltas_torch(times, mask, lengths)
    return _scan_numpy(mask, values=values, fill=fill, times=times, lengths=lengths)


def _scan_numpy(mask, values=None, fill=None, times=None, lengths=None) -> tuple:
    """The numpy kernel behind forward filling (given ``values``) and delta (given ``times``).

    One running maximum of ``where(mask, step, 0)`` per block of series gives the last observed
    step ``<= t``; the forward fill gathers ``values`` there, and delta at step t is ``s_t`` minus
    the time of the last observed step ``<= t - 1`` (the first time when there is none).
    Returns ``(filled or None, delta or None)``, each shaped like ``mask``.
    """
    lead, T, F = tuple(mask.shape[:-2]), mask.shape[-2], mask.shape[-1]
    n = _leading(lead)
    filled = None if values is None else np.empty((n, T, F), values.dtype)
    delta = None if times is None else np.zeros((n, T, F), times.dtype)
    reshaped = lambda x: None if x is None else x.reshape(mask.shape)  # noqa: E731
    if n * T * F == 0 or (values is None and T <= 1):
        return reshaped(filled), reshaped(delta)
    m = np.ascontiguousarray(mask).reshape(n, T, F)
    nb = max(1, min(n, _BLOCK_ENTRIES // (T * F)))
    step_dt = _step_dtype(T)
    steps = np.arange(1, T + 1, dtype=step_dt)[:, None]
    scan, tmp = np.empty((nb, T, F), step_dt), np.empty((nb, T, F), step_dt)
    idx = np.empty((nb, T, F), _index_dtype(nb * (T + 1) * F))
    if values is not None:
        v = np.ascontiguousarray(values).reshape(n, T, F)
        fill_row = np.full(F, np.nan, values.dtype) if fill is None else fill
        # flat index of (series b, step k-1, variable f) inside a block = b*T*F + (k-1)*F + f
        base = (np.arange(nb, dtype=idx.dtype)[:, None, None] * (T * F) - F) + np.arange(F, dtype=idx.dtype)
        F_ = idx.dtype.type(F)
    if times is not None:
        s = np.broadcast_to(times, lead + (T,)).reshape(n, T)
        table = np.empty((nb, T + 1), times.dtype)  # [s_1, s_1, ..., s_T]: entry k = time of step k-1, s_1 for 0
        base_t = (np.arange(nb, dtype=idx.dtype) * (T + 1))[:, None, None]
        valid = None if lengths is None else np.arange(T) < np.reshape(lengths, (n, 1))
    for i in range(0, n, nb):  # blocks of series, each fully vectorised
        j = min(i + nb, n)
        k = j - i
        w = scan[:k]
        np.multiply(m[i:j] != 0, steps, out=w)
        last = _running_max_numpy(w, tmp[:k])  # last observed step <= t: 0 = none, k = step k-1
        ix = idx[:k]
        if values is not None:
            np.multiply(last, F_, out=ix)
            ix += base[:k]
            np.take(v[i:j].reshape(-1), ix, out=filled[i:j], mode="clip")  # none -> clipped, then filled
            np.copyto(filled[i:j], fill_row, where=last == 0)
        if times is not None and T > 1:  # delta_t = s_t - table[last[t-1]]
            tb = table[:k]
            tb[:, 0] = s[i:j, 0]
            tb[:, 1:] = s[i:j]
            ixd = ix[:, : T - 1]
            np.add(last[:, : T - 1], base_t[:k], out=ixd)
            np.subtract(s[i:j, 1:, None], np.take(tb.reshape(-1), ixd), out=delta[i:j, 1:])
            if valid is not None:
                np.copyto(delta[i:j], 0, where=~valid[i:j, :, None])
    return reshaped(filled), reshaped(delta)


def mean_impute(values, mask, means):
    """Observed entries kept, the others replaced by the per-variable ``means`` ("GRU-Mean").

    ``where(mask, values, means)``: unlike ``mask * values + (1 - mask) * means`` this also
    works when unobserved entries hold NaN.

    Args:
        values: floating values, read only where ``mask`` is nonzero.
        mask: 1 (or True) where observed.
        means: per-variable values, finite (e.g. :func:`empirical_mean` of the training data
            with never-observed variables replaced).

    Returns:
        Same shape, dtype (and device) as ``values``; differentiable in torch.

    Shape:
        values (..., T, F); mask (..., T, F); means (F,) -> (..., T, F)
    """
    fn = "mean_impute"
    values = _check_series(values, fn)
    _check_float(values, fn)
    mask = _check_mask(mask, values, fn)
    means = _check_row(means, values.shape[-1], values, "means", fn)
    finite = torch.isfinite(means) if _is_torch(means) else np.isfinite(means)
    if not bool(finite.all()):
        bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
        raise ConfigError(
            f"{fn}: means: expected finite values, got non-finite for variable index(es) {bad}; "
            "replace them (e.g. by 0) so that no NaN reaches a network"
        )
    if _is_torch(values):
        return torch.where(mask != 0, values, means)
    return np.where(mask != 0, values, means).astype(values.dtype, copy=False)


def empirical_mean(values, mask):
    """Mean of each variable over its observed entries, across every series and step.

    Reduces every axis but the last. A variable never observed gets NaN, with a
    ``RuntimeWarning`` naming its index.

    Args:
        values: values, read only where ``mask`` is nonzero (zero-filled is fine).
        mask: 1 (or True) where observed.

    Returns:
        (F,) means, floating dtype of ``values`` (float64 for integer numpy values);
        differentiable in torch. numpy sums are accumulated in float64.

    Shape:
        values (..., T, F) (any shape (..., F) works); mask like values -> (F,)
    """
    fn = "empirical_mean"
    if not _is_torch(values):
        values = _as_numpy(values, "values", fn)
    if values.ndim < 1:
        raise ConfigError(f"{fn}: values: expected shape (..., F), got {tuple(values.shape)}")
    mask = _check_mask(mask, values, fn)
    F = values.shape[-1]
    if _is_torch(values):
        dtype = values.dtype if values.dtype.is_floating_point else torch.get_default_dtype()
        rows = _leading(values.shape[:-1])
        obs = (mask != 0).reshape(rows, F)
        x = values.reshape(rows, F).to(dtype)
        total = torch.where(obs, x, torch.zeros((), dtype=dtype, device=x.device)).sum(0)
        count = obs.sum(0)
        means = total / count.to(dtype)  # 0 / 0 = NaN for a never-observed variable
        never = (count == 0).nonzero()[:, 0].tolist()
    else:
        dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
        rows = _leading(values.shape[:-1])
        obs = (mask != 0).reshape(rows, F)
        total = np.where(obs, values.reshape(rows, F), 0).sum(0, dtype=np.float64)
        count = obs.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (total / count).astype(dtype)
        never = [int(i) for i in np.flatnonzero(count == 0)]
    if never:
        warnings.warn(
            f"{fn}: variable index(es) {never} never observed; their mean is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return means


from grud.data.simulate import simulate_missing  # noqa: E402  (re-export; simulate imports lazily)
