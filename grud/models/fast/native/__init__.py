"""Native time loops for the fused GRU(-D) recurrence (a small C kernel called through ctypes).

The fused PyTorch path of :mod:`grud.models.fast.gru` already runs the recurrence without
recording a graph, but each time step still costs about ten ATen operations, and at grud's
sizes (B = 64, H = 64) each one is dominated by its dispatch, not its arithmetic. Here a step
is one BLAS matrix multiply plus one fused, vectorised pass over the B x H state, forward and
backward (``gru_kernel.c``; the same equations and saved factors as the PyTorch path).

The kernel is compiled on first use with the system C compiler and cached (see
:mod:`grud.models.fast.native.build`); its matrix multiplies are PyTorch's own BLAS. With
``torch.get_num_threads()`` > 1 the rows of a batch are split over that many threads (the rows of
a recurrence never interact), each with a single-threaded BLAS; that needs MKL's thread-local
setting, so with another BLAS the kernel runs on one thread. Before first use it is checked against the
PyTorch path on a small problem (float32 and float64, padding, decay and dropout); any failure,
or no compiler, leaves it off and grud runs the PyTorch path, with the reason in
:func:`status`. ``GRUD_NATIVE=0`` turns it off; :func:`disabled` does so inside a ``with`` block.

Shape:
    B batch, T time steps, H hidden units; as :func:`grud.models.fast.gru.gru_forward`.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading

import torch
from torch import Tensor

from grud.models.fast.checks import check_shape

__all__ = ["available", "status", "disabled", "usable", "any_nonfinite", "gru_forward", "gru_backward",
           "decay_input_forward", "decay_input_backward"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict = {"lib": None, "reason": None, "tried": False}
_off = threading.local()
_DTYPES = {torch.float32: "_f32", torch.float64: "_f64"}


def _env_off() -> bool:
    return os.environ.get("GRUD_NATIVE", "1").strip().lower() in ("0", "false", "off", "no")


def _library():
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            from grud.models.fast.native.build import load

            lib, reason = load()
            _state["lib"] = lib  # visible to the self-check below
            if lib is not None:
                reason = _self_check()
                if reason is not None:
                    lib = None
            if lib is None:
                log.info("native GRU kernel off (%s); using the PyTorch path", reason)
            _state.update(lib=lib, reason=reason, tried=True)
    return _state["lib"]


def available() -> bool:
    """True when the native kernel is built, loaded, checked and not turned off."""
    return not _env_off() and not getattr(_off, "on", False) and _library() is not None


def status() -> str:
    """``"on"`` or ``"off: <reason>"`` (for logs and the benchmark)."""
    if _env_off():
        return "off: GRUD_NATIVE=0"
    if getattr(_off, "on", False):
        return "off: disabled() block"
    return "on" if _library() is not None else f"off: {_state['reason']}"


@contextlib.contextmanager
def disabled():
    """Inside the block (this thread), the fused recurrence runs its PyTorch path."""
    before = getattr(_off, "on", False)
    _off.on = True
    try:
        yield
    finally:
        _off.on = before


def usable(x: Tensor) -> bool:
    """True when the kernel is available and takes tensors like ``x`` (CPU, float32 or float64)."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES:
        return False
    return available()


def _ptr(x: Tensor | None):
    return None if x is None else ctypes.c_void_p(x.data_ptr())


def _strided(x: Tensor | None) -> tuple[Tensor | None, int, int]:
    """``x`` (B, T, K) with a contiguous last dimension, and its (batch, time) element strides."""
    if x is None:
        return None, 0, 0
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x, x.stride(0), x.stride(1)


def any_nonfinite(x: Tensor) -> bool | None:
    """Whether ``x`` holds a NaN or an infinity, in one pass without allocating; None when the
    kernel cannot look (unavailable, not a contiguous float32/float64 CPU tensor): the caller
    checks itself."""
    if not x.is_contiguous() or not usable(x):
        return None
    fn = getattr(_state["lib"], "grud_any_nonfinite" + _DTYPES[x.dtype])
    return bool(fn(_ptr(x), x.numel()))


def _call(name: str, dtype: torch.dtype, *args) -> None:
    fn = getattr(_state["lib"], name + _DTYPES[dtype])
    rc = fn(*args)
    if rc != 0:
        raise RuntimeError(f"native {name} failed with code {rc} ({'no BLAS' if rc == -1 else 'out of memory'})")


def gru_forward(gi: Tensor, weight_hh: Tensor, bias_hh: Tensor, h0: Tensor, valid: Tensor | None,
                gamma_h: Tensor | None, hidden_dropout: Tensor | None, save: bool, gamma_exp: bool = False):
    """The recurrence with the kernel: ``(hs, h_last, saved)``.

    ``hs`` (B, T, H) holds the state after every step (carried over padded steps, not zeroed); it
    is a view of a time-major (T, B, H) buffer, as are the saved factors. ``gi`` and ``gamma_h``
    may be batch-major or views of time-major tensors (read through their strides, no copy).
    ``valid`` is None when every step is valid. ``saved`` (None unless ``save``) holds the factors
    :func:`gru_backward` needs, each (T, B, H): ``r``, ``z``, ``n``, ``ghn``, ``hh`` (h_hat) and
    ``hd`` (h_hat * dropout, or None without dropout). With ``gamma_exp``, ``gamma_h`` holds the
    decay's exponent e and the kernel applies ``exp(min(e, 0))``.
    """
    B, T, _ = gi.shape
    H = h0.shape[1]
    for name, x, shape in (("gi", gi, (B, T, 3 * H)), ("weight_hh", weight_hh, (3 * H, H)), ("bias_hh", bias_hh, (3 * H,)),
                           ("h0", h0, (B, H)), ("valid", valid, (B, T)), ("gamma_h", gamma_h, (B, T, H)),
                           ("hidden_dropout", hidden_dropout, (B, H))):
        check_shape(name, x, shape)  # the kernel reads raw memory: never out of bounds
    kw = dict(dtype=gi.dtype, device=gi.device)
    gi, gi_sb, gi_st = _strided(gi)
    gamma_h, g_sb, g_st = _strided(gamma_h)
    weight_hh, bias_hh, h0 = weight_hh.contiguous(), bias_hh.contiguous(), h0.contiguous()
    valid = None if valid is None else valid.contiguous()
    hidden_dropout = None if hidden_dropout is None else hidden_dropout.contiguous()
    hs = torch.empty(T, B, H, **kw)
    h_last = torch.empty(B, H, **kw)
    saved = None
    if save:
        saved = {k: torch.empty(T, B, H, **kw) for k in ("r", "z", "n", "ghn", "hh")}
        saved["hd"] = torch.empty(T, B, H, **kw) if hidden_dropout is not None else None
    s = saved or {}
    _call("grud_gru_forward", gi.dtype, B, T, H, _ptr(gi), gi_sb, gi_st, _ptr(weight_hh), _ptr(bias_hh), _ptr(h0),
          _ptr(valid), _ptr(gamma_h), g_sb, g_st, int(gamma_exp), _ptr(hidden_dropout), _ptr(hs), _ptr(h_last),
          _ptr(s.get("r")),
          _ptr(s.get("z")), _ptr(s.get("n")), _ptr(s.get("ghn")), _ptr(s.get("hh")), _ptr(s.get("hd")),
          torch.get_num_threads())
    return hs.transpose(0, 1), h_last, saved


def gru_backward(w_perm: Tensor, h0: Tensor, hs: Tensor, valid: Tensor | None, gamma_h: Tensor | None,
                 hidden_dropout: Tensor | None, saved: dict, d_outputs: Tensor | None, d_h_last: Tensor | None,
                 need_gamma: bool, need_dropout: bool, gamma_exp: bool = False):
    """Back through time with the kernel: ``(dpre (T, B, 4H), d_h0, d_gamma (B, T, H) or None, d_dropout or None)``.

    ``hs`` is the (B, T, H) view :func:`gru_forward` returned; ``w_perm`` is W_hh with its rows in
    the order n, r, z; ``dpre`` (time-major) is laid out ``[d ghn | d pre_r | d pre_z | d pre_n]``
    as in :class:`grud.models.fast.gru.GRURecurrence`. With ``gamma_exp``, ``d_gamma`` is the
    gradient of the exponent.
    """
    B, T, H = hs.shape
    for name, x, shape in (("w_perm", w_perm, (3 * H, H)), ("h0", h0, (B, H)), ("valid", valid, (B, T)),
                           ("gamma_h", gamma_h, (B, T, H)), ("hidden_dropout", hidden_dropout, (B, H)),
                           ("d_outputs", d_outputs, (B, T, H)), ("d_h_last", d_h_last, (B, H))):
        check_shape(name, x, shape)  # the kernel reads raw memory: never out of bounds
    kw = dict(dtype=hs.dtype, device=hs.device)
    hs_tm = hs.transpose(0, 1)
    if not hs_tm.is_contiguous():
        raise ValueError("hs: expected the (B, T, H) view of a time-major buffer that gru_forward returns")
    gamma_h, g_sb, g_st = _strided(gamma_h)
    d_outputs, o_sb, o_st = _strided(d_outputs)
    valid = None if valid is None else valid.contiguous()
    d_h_last = None if d_h_last is None else d_h_last.contiguous()
    # contiguous copies are bound to names: a temporary passed as _ptr(x.contiguous()) is freed as
    # soon as _ptr returns, and the kernel would read released memory (a sliced h0 did, see NOTES)
    w_perm, h0 = w_perm.contiguous(), h0.contiguous()
    dpre = torch.empty(T, B, 4 * H, **kw)
    d_h0 = torch.empty(B, H, **kw)
    d_gamma = torch.empty(T, B, H, **kw) if need_gamma and gamma_h is not None else None
    d_drop = torch.empty(B, H, **kw) if need_dropout and hidden_dropout is not None else None
    _call("grud_gru_backward", hs.dtype, B, T, H, _ptr(w_perm), _ptr(h0), _ptr(hs_tm),
          _ptr(valid), _ptr(gamma_h), g_sb, g_st, int(gamma_exp), _ptr(hidden_dropout), _ptr(saved["r"]),
          _ptr(saved["z"]),
          _ptr(saved["n"]), _ptr(saved["ghn"]), _ptr(saved["hh"]), _ptr(d_outputs), o_sb, o_st, _ptr(d_h_last),
          _ptr(dpre), _ptr(d_gamma), _ptr(d_drop), _ptr(d_h0), torch.get_num_threads())
    return dpre, d_h0, None if d_gamma is None else d_gamma.transpose(0, 1), d_drop


def _same_strides(*tensors: Tensor) -> tuple[list[Tensor], int, int]:
    """The (B, T, F) tensors with one shared set of strides (contiguous copies if they differ)."""
    if any(t.stride() != tensors[0].stride() or t.stride(-1) != 1 for t in tensors):
        tensors = tuple(t.contiguous() for t in tensors)
    return list(tensors), tensors[0].stride(0), tensors[0].stride(1)


def decay_input_forward(values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor, weight: Tensor,
                        bias: Tensor) -> Tensor:
    """GRU-D's decayed input x_hat (B, T, F), forward fill included (see ``gru_kernel_body.h``)."""
    B, T, F = values.shape
    for name, x, shape in (("mask", mask, (B, T, F)), ("delta", delta, (B, T, F)), ("x_mean", x_mean, (F,)),
                           ("weight", weight, (F,)), ("bias", bias, (F,))):
        check_shape(name, x, shape)  # the kernel reads raw memory: never out of bounds
    (values, mask, delta), sb, st = _same_strides(values, mask, delta)
    x_mean, weight, bias = x_mean.contiguous(), weight.contiguous(), bias.contiguous()  # alive through the call
    out = torch.empty(B, T, F, dtype=values.dtype, device=values.device)
    _call("grud_decay_input_forward", values.dtype, B, T, F, _ptr(values), _ptr(mask), _ptr(delta), sb, st,
          _ptr(x_mean), _ptr(weight), _ptr(bias), _ptr(out),
          torch.get_num_threads())
    return out


def decay_input_backward(values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor, weight: Tensor, bias: Tensor,
                         d_out: Tensor) -> tuple[Tensor, Tensor]:
    """``(d_weight, d_bias)`` (F,) of the input decay from ``d_out`` = dL/d x_hat (B, T, F)."""
    B, T, F = values.shape
    check_shape("d_out", d_out, (B, T, F))
    (values, mask, delta), sb, st = _same_strides(values, mask, delta)
    d_out, o_sb, o_st = _strided(d_out)
    x_mean, weight, bias = x_mean.contiguous(), weight.contiguous(), bias.contiguous()  # alive through the call
    d_w = torch.empty(F, dtype=values.dtype, device=values.device)
    d_b = torch.empty(F, dtype=values.dtype, device=values.device)
    _call("grud_decay_input_backward", values.dtype, B, T, F, _ptr(values), _ptr(mask), _ptr(delta), sb, st,
          _ptr(x_mean), _ptr(weight), _ptr(bias), _ptr(d_out), o_sb, o_st,
          _ptr(d_w), _ptr(d_b), torch.get_num_threads())
    return d_w, d_b


def _self_check() -> str | None:
    """Compare the kernel with the autograd-recorded reference loop on a small problem (padding,
    hidden decay, dropout; float32 and float64); None if they agree, else the reason."""
    try:
        with torch.inference_mode(False), torch.enable_grad():  # first use may be under no_grad or in a Function
            return _compare_with_reference()
    except Exception as e:  # noqa: BLE001 - any failure means: do not use the kernel
        return f"self-check raised {type(e).__name__}: {e}"


def _compare_with_reference() -> str | None:
    """The body of :func:`_self_check` (autograd on)."""
    from grud.models.fast.gru import rows_n_r_z  # imported here: grud.models.fast.gru imports this module
    from grud.models.fast.reference import gru_recurrence_reference

    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-9)):
        g = torch.Generator().manual_seed(0)
        B, T, H = 3, 6, 5
        rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
        gi, w, b, h0 = rnd(B, T, 3 * H).requires_grad_(), rnd(3 * H, H) * 0.5, rnd(3 * H), rnd(B, H)
        h0.requires_grad_()
        valid = (torch.arange(T)[None] < torch.tensor([T, 4, 1])[:, None]).to(dtype)
        gamma = torch.rand(B, T, H, generator=g, dtype=dtype).requires_grad_()
        drop = torch.rand(B, H, generator=g, dtype=dtype) * 2
        d_out = rnd(B, T, H) * valid[:, :, None]
        out, _ = gru_recurrence_reference(gi, w, b, h0, valid, gamma, drop)
        want = torch.autograd.grad(out, (gi, h0, gamma), d_out)
        with torch.no_grad():
            hs, _, saved = gru_forward(gi, w, b, h0, valid, gamma, drop, True)
            w_perm = rows_n_r_z(w)
            dpre, d_h0, d_gamma, _ = gru_backward(w_perm, h0, hs, valid, gamma, drop, saved, d_out, None,
                                                  True, False)
        if not torch.allclose(hs * valid[:, :, None], out, atol=tol, rtol=0):
            return f"self-check failed: {dtype} forward differs from the reference loop"
        got = (dpre[..., H:].transpose(0, 1), d_h0, d_gamma)
        if not all(torch.allclose(x, y, atol=tol * 10, rtol=0) for x, y in zip(got, want)):
            return f"self-check failed: {dtype} backward differs from autograd through the reference loop"
        # the hidden decay given as its exponent (applied inside the kernel)
        e = (rnd(B, T, H) * 2).requires_grad_()
        out, _ = gru_recurrence_reference(gi, w, b, h0, valid, e, drop, gamma_exp=True)
        want_e = torch.autograd.grad(out, e, d_out)[0]
        with torch.no_grad():
            hs, _, saved = gru_forward(gi, w, b, h0, valid, e, drop, True, gamma_exp=True)
            _, _, got_e, _ = gru_backward(w_perm, h0, hs, valid, e, drop, saved, d_out, None, True, False,
                                          gamma_exp=True)
        if not (torch.allclose(hs * valid[:, :, None], out, atol=tol, rtol=0)
                and torch.allclose(got_e, want_e, atol=tol * 10, rtol=0)):
            return f"self-check failed: {dtype} recurrence with the decay exponent differs from the reference loop"
        # the input decay against its PyTorch formula (grud.models.inputs.DecayInput)
        B, T, F = 3, 7, 4
        values = rnd(B, T, F)
        mask = (torch.rand(B, T, F, generator=g) < 0.4).to(dtype)
        values = values * mask
        delta = torch.rand(B, T, F, generator=g, dtype=dtype) * 5
        x_mean = rnd(F)
        wx = (torch.rand(F, generator=g, dtype=dtype) - 0.3).requires_grad_()
        bx = (rnd(F) * 0.5).requires_grad_()
        want = _decay_input_torch(values, mask, delta, x_mean, wx, bx)
        d_out = rnd(B, T, F)
        want_dw, want_db = torch.autograd.grad(want, (wx, bx), d_out)
        with torch.no_grad():
            got = decay_input_forward(values, mask, delta, x_mean, wx, bx)
            got_dw, got_db = decay_input_backward(values, mask, delta, x_mean, wx, bx, d_out)
        if not torch.allclose(got, want, atol=tol, rtol=0):
            return f"self-check failed: {dtype} input decay differs from its PyTorch formula"
        if not (torch.allclose(got_dw, want_dw, atol=tol * 10, rtol=0)
                and torch.allclose(got_db, want_db, atol=tol * 10, rtol=0)):
            return f"self-check failed: {dtype} input decay gradients differ from autograd"
    return None


def _decay_input_torch(values, mask, delta, x_mean, weight, bias):
    """x_hat by the paper's equations, with autograd (for the self-check)."""
    from grud.data.masking import forward_fill

    x_last = forward_fill(values, mask, fill=x_mean)
    gamma = torch.exp(-torch.relu(weight * delta + bias))
    return mask * values + (1 - mask) * (gamma * x_last + (1 - gamma) * x_mean)
