"""Fused Clockwork RNN recurrence (Koutnik et al. 2014): graph-free forward, hand-written backward.

Same scheme as :mod:`grud.models.fast.gru`. Per step the forward is one ``addmm`` (input terms and
bias folded in), one sigmoid (``tanh(a) = 2 sigmoid(2a) - 1``), one affine op and one ``lerp`` with
the update mask; the backward is one multiply, one ``addcmul`` and one ``addmm``.

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
    """Run the recurrence with autograd off; returns ``(outputs, h_last, saved)``."""
    B, T, H = gi.shape
    kw = dict(dtype=gi.dtype, device=gi.device)
    S = T if save else 1
    gib2 = ((gi + bias_hh) * 2).transpose(0, 1).contiguous()  # (T, B, H), scaled: tanh via sigmoid
    w2_t = (weight_hh * 2).t().contiguous()
    u_tm = update.transpose(0, 1).contiguous()
    hs = torch.empty(T + 1, B, H, **kw)
    hs[0] = h0
    hn = torch.empty(S, B, H, **kw)  # h' = tanh(...)
    minus_one = torch.full((B, H), -1.0, **kw)
    hs_v, gib_v, u_v, hn_v = hs.unbind(0), gib2.unbind(0), u_tm.unbind(0), _steps(hn, T, save)
    for t in range(T):
        h = hs_v[t]
        a = torch.addmm(gib_v[t], h, w2_t, out=hn_v[t]).sigmoid_()
        torch.add(minus_one, a, alpha=2, out=a)
        torch.lerp(h, a, u_v[t], out=hs_v[t + 1])
    outputs = hs[1:].transpose(0, 1).contiguous()
    saved = dict(hs=hs, hn=hn, u_tm=u_tm) if save else None
    return outputs, hs[T].clone(), saved


class ClockworkRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.clockwork_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, update)``; ``update`` is a constant (no gradient).
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, update):
        outputs, h_last, saved = clockwork_forward(gi, weight_hh, bias_hh, h0, update, True)
        ctx.saved = saved
        ctx.save_for_backward(weight_hh)
        return outputs, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last):
        (weight_hh,) = ctx.saved_tensors
        hs, hn, u_tm = ctx.saved["hs"], ctx.saved["hn"], ctx.saved["u_tm"]
        T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad
        fa = u_tm * (1 - hn * hn)  # d a / d h_t
        omu = 1 - u_tm
        dout = torch.zeros(T + 1, B, H, **kw)  # dout[t + 1] = dL/d outputs[:, t]
        dout[1:] = d_outputs.transpose(0, 1)
        da = torch.empty(T, B, H, **kw)
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        fa_v, omu_v, dout_v, da_v = fa.unbind(0), omu.unbind(0), dout.unbind(0), da.unbind(0)
        dh = torch.add(dout_v[T], d_h_last, out=dh_bufs[T & 1])
        for t in range(T - 1, -1, -1):
            dh_prev = dh_bufs[t & 1]
            dat = torch.mul(dh, fa_v[t], out=da_v[t])
            torch.addcmul(dout_v[t], dh, omu_v[t], out=dh_prev).addmm_(dat, weight_hh)
            dh = dh_prev
        d_gi = d_w = d_b = d_h0 = None
        if need[0]:
            d_gi = da.transpose(0, 1).contiguous()
        if need[1]:
            d_w = da.view(T * B, H).t() @ hs[:T].reshape(T * B, H)
        if need[2]:
            d_b = da.sum((0, 1))
        if need[3]:
            d_h0 = dh.clone()
        return d_gi, d_w, d_b, d_h0, None
