"""Native time loops for the fused GRU(-D) recurrence (a small C kernel called through ctypes).

The fused PyTorch path of :mod:`grud.models.fast.gru` already runs the recurrence without
recording a graph, but each time step still costs about ten ATen operations, and at grud's
sizes (B = 64, H = 64) each one is dominated by its dispatch, not its arithmetic. Here a step
is one BLAS matrix multiply plus one fused, vectorised pass over the B x H state, forward and
backward (``gru_kernel.c``; the same equations and saved factors as the PyTorch path).

The kernel is compiled on first use with the system C compiler and cached (see
:mod:`grud.models.fast.native.build`); its matrix multiplies are PyTorch's own BLAS, so thread
settings (``torch.set_num_threads``) apply to them. Before first use it is checked against the
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

__all__ = ["available", "status", "disabled", "usable", "gru_forward", "gru_backward"]

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


def usable(*tensors: Tensor | None) -> bool:
    """True when the kernel is available and takes these tensors (CPU, float32 or float64)."""
    ref = tensors[0]
    if ref.device.type != "cpu" or ref.dtype not in _DTYPES:
        return False
    return available()


def _ptr(x: Tensor | None):
    return None if x is None else ctypes.c_void_p(x.data_ptr())


def _call(name: str, dtype: torch.dtype, *args) -> None:
    fn = getattr(_state["lib"], name + _DTYPES[dtype])
    rc = fn(*args)
    if rc != 0:
        raise RuntimeError(f"native {name} failed with code {rc} ({'no BLAS' if rc == -1 else 'out of memory'})")


def gru_forward(gi: Tensor, weight_hh: Tensor, bias_hh: Tensor, h0: Tensor, valid: Tensor | None,
                gamma_h: Tensor | None, hidden_dropout: Tensor | None, save: bool):
    """The recurrence with the kernel: ``(hs, h_last, saved)``.

    ``hs`` (B, T, H) holds the state after every step (carried over padded steps, not zeroed);
    ``valid`` is None when every step is valid. ``saved`` (None unless ``save``) holds the factors
    :func:`gru_backward` needs: ``r``, ``z``, ``n``, ``ghn``, ``hh`` (h_hat) and ``hd`` (h_hat *
    dropout, or None without dropout), each (B, T, H).
    """
    B, T, _ = gi.shape
    H = h0.shape[1]
    kw = dict(dtype=gi.dtype, device=gi.device)
    gi, weight_hh, bias_hh, h0 = gi.contiguous(), weight_hh.contiguous(), bias_hh.contiguous(), h0.contiguous()
    valid = None if valid is None else valid.contiguous()
    gamma_h = None if gamma_h is None else gamma_h.contiguous()
    hidden_dropout = None if hidden_dropout is None else hidden_dropout.contiguous()
    hs = torch.empty(B, T, H, **kw)
    h_last = torch.empty(B, H, **kw)
    saved = None
    if save:
        saved = {k: torch.empty(B, T, H, **kw) for k in ("r", "z", "n", "ghn", "hh")}
        saved["hd"] = torch.empty(B, T, H, **kw) if hidden_dropout is not None else None
    s = saved or {}
    _call("grud_gru_forward", gi.dtype, B, T, H, _ptr(gi), _ptr(weight_hh), _ptr(bias_hh), _ptr(h0), _ptr(valid),
          _ptr(gamma_h), _ptr(hidden_dropout), _ptr(hs), _ptr(h_last), _ptr(s.get("r")), _ptr(s.get("z")),
          _ptr(s.get("n")), _ptr(s.get("ghn")), _ptr(s.get("hh")), _ptr(s.get("hd")))
    return hs, h_last, saved


def gru_backward(w_perm: Tensor, h0: Tensor, hs: Tensor, valid: Tensor | None, gamma_h: Tensor | None,
                 hidden_dropout: Tensor | None, saved: dict, d_outputs: Tensor | None, d_h_last: Tensor | None,
                 need_gamma: bool, need_dropout: bool):
    """Back through time with the kernel: ``(dpre (B, T, 4H), d_h0, d_gamma or None, d_dropout or None)``.

    ``w_perm`` is W_hh with its rows in the order n, r, z; ``dpre`` is laid out
    ``[d ghn | d pre_r | d pre_z | d pre_n]`` as in :class:`grud.models.fast.gru.GRURecurrence`.
    """
    B, T, H = hs.shape
    kw = dict(dtype=hs.dtype, device=hs.device)
    d_outputs = None if d_outputs is None else d_outputs.contiguous()
    d_h_last = None if d_h_last is None else d_h_last.contiguous()
    dpre = torch.empty(B, T, 4 * H, **kw)
    d_h0 = torch.empty(B, H, **kw)
    d_gamma = torch.empty(B, T, H, **kw) if need_gamma and gamma_h is not None else None
    d_drop = torch.empty(B, H, **kw) if need_dropout and hidden_dropout is not None else None
    _call("grud_gru_backward", hs.dtype, B, T, H, _ptr(w_perm.contiguous()), _ptr(h0.contiguous()), _ptr(hs),
          _ptr(valid), _ptr(gamma_h), _ptr(hidden_dropout), _ptr(saved["r"]), _ptr(saved["z"]), _ptr(saved["n"]),
          _ptr(saved["ghn"]), _ptr(saved["hh"]), _ptr(d_outputs), _ptr(d_h_last), _ptr(dpre), _ptr(d_gamma),
          _ptr(d_drop), _ptr(d_h0))
    return dpre, d_h0, d_gamma, d_drop


def _self_check() -> str | None:
    """Compare the kernel with the autograd-recorded reference loop on a small problem (padding,
    hidden decay, dropout; float32 and float64); None if they agree, else the reason."""
    from grud.models.fast.reference import gru_recurrence_reference

    try:
        with torch.inference_mode(False), torch.enable_grad():  # first use may be under no_grad or in a Function
            return _compare_with_reference(gru_recurrence_reference)
    except Exception as e:  # noqa: BLE001 - any failure means: do not use the kernel
        return f"self-check raised {type(e).__name__}: {e}"


def _compare_with_reference(gru_recurrence_reference) -> str | None:
    """The body of :func:`_self_check` (autograd on)."""
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
            w_perm = torch.cat([w[2 * H:], w[:H], w[H: 2 * H]])
            dpre, d_h0, d_gamma, _ = gru_backward(w_perm, h0, hs, valid, gamma, drop, saved, d_out, None,
                                                  True, False)
        if not torch.allclose(hs * valid[:, :, None], out, atol=tol, rtol=0):
            return f"self-check failed: {dtype} forward differs from the reference loop"
        got = (dpre[..., H:], d_h0, d_gamma)
        if not all(torch.allclose(x, y, atol=tol * 10, rtol=0) for x, y in zip(got, want)):
            return f"self-check failed: {dtype} backward differs from autograd through the reference loop"
    return None
