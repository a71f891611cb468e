"""Fused Clockwork RNN recurrence (Koutnik et al. 2014): graph-free forward, hand-written backward.

Same scheme as :mod:`grud.models.fast.gru`. Per step the forward is one ``addmm`` (input terms and
bias folded in), one sigmoid (``tanh(a) = 2 sigmoid(2a) - 1``), one affine op and one ``lerp`` with
the update mask; the backward is one multiply, one ``addcmul`` and one in-place ``addmm``.

Shape:
    B batch, T time steps, H hidden units; gi (B, T, H), weight_hh (H, H) already masked to the
    block-triangular connectivity, bias_hh (H,), h0 (B, H), update (B, T, H)
    -> outputs (B, T, H), h_last (B, H).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from grud.models.fast.gru import _steps

__all__ = ["ClockworkRecurrence", "clockwork_forward"]


def clockwork_forward(gi, weight_hh, bias_hh, h0, update, save: bool):
    """Run the recurrence with autograd off; returns ``(outputs, h_last, hn)`` (hn: h' per step if saved)."""
    B, T, H = gi.shape
    kw = dict(dtype=gi.dtype, device=gi.device)
    S = T if save else 1
    gib2 = (gi + bias_hh) * 2  # (B, T, H), scaled: tanh via sigmoid
    w2_t = (weight_hh * 2).t().contiguous()
    hs = torch.empty(B, T, H, **kw)  # h_t = outputs
    hn = torch.empty(B, S, H, **kw)  # h' = tanh(...)
    minus_one = torch.full((B, H), -1.0, **kw)
    hs_v, gib_v, u_v, hn_v = hs.unbind(1), gib2.unbind(1), update.unbind(1), _steps(hn, T, save)
    h = h0
    for t in range(T):
        a = torch.addmm(gib_v[t], h, w2_t, out=hn_v[t]).sigmoid_()
        torch.add(minus_one, a, alpha=2, out=a)
        h = torch.lerp(h, a, u_v[t], out=hs_v[t])
    return hs, (h.clone() if T else h0.clone()), hn if save else None


class ClockworkRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.clockwork_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, update)``; ``update`` is a constant (no gradient).
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, update):
        outputs, h_last, hn = clockwork_forward(gi, weight_hh, bias_hh, h0, update, True)
        ctx.set_materialize_grads(False)  # an unused output gets no zero-filled gradient
        ctx.save_for_backward(weight_hh, h0, update, outputs, hn)
        return outputs, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last):
        weight_hh, h0, update, hs, hn = ctx.saved_tensors
        B, T, H = hs.shape
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad
        fa = update * (1 - hn * hn)  # d pre / d h_t
        omu = 1 - update
        da = torch.empty(B, T, H, **kw)
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        if d_h_last is None:
            d_h_last = torch.zeros(B, H, **kw)
        fa_v, omu_v, da_v = fa.unbind(1), omu.unbind(1), da.unbind(1)
        dout_v = None if d_outputs is None else d_outputs.unbind(1)
        if not T:
            dh = d_h_last
        elif dout_v is None:
            dh = dh_bufs[0].copy_(d_h_last)
        else:
            dh = torch.add(dout_v[T - 1], d_h_last, out=dh_bufs[0])
        for t in range(T - 1, -1, -1):
            dh_prev = dh_bufs[(T - t) & 1]
            dat = torch.mul(dh, fa_v[t], out=da_v[t])
            if t > 0 and dout_v is not None:
                torch.addcmul(dout_v[t - 1], dh, omu_v[t], out=dh_prev)
            else:
                torch.mul(dh, omu_v[t], out=dh_prev)
            dh = dh_prev.addmm_(dat, weight_hh)
        d_gi = d_w = d_b = d_h0 = None
        if need[0]:
            d_gi = da
        if need[1] and T == 0:
            d_w = torch.zeros_like(weight_hh)
        elif need[1]:
            hprev = torch.cat([h0[:, None], hs[:, :-1]], dim=1)
            d_w = da.reshape(B * T, H).t() @ hprev.reshape(B * T, H)
        if need[2]:
            d_b = da.sum((0, 1))
        if need[3]:
            d_h0 = dh.clone()
        return d_gi, d_w, d_b, d_h0, None
