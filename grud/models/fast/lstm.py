"""Fused LSTM recurrence (optionally with peepholes): graph-free forward, hand-written backward.

Same scheme as :mod:`grud.models.fast.gru`: the forward runs with autograd off over preallocated
batch-major buffers and saves, per step, the gates and the products the backward needs; the
backward walks back through time with a few elementwise ops and one ``addmm`` per step; the
recurrent weight gradient is one matrix multiply at the end. Gates stay in torch's order
``[i | f | g | o]``; the input-side terms and both biases enter a single ``addmm`` per step;
``tanh`` is computed as ``2 sigmoid(2a) - 1`` (cheaper on CPU), so without peepholes one sigmoid
covers all four gates.

Shape:
    B batch, T time steps, H hidden units; gi (B, T, 4H), weight_hh (4H, H), bias_hh (4H,),
    h0 (B, H), c0 (B, H), valid (B, T), peephole (3, H) or None, hidden_dropout (B, H) or None
    -> outputs (B, T, H), h_last (B, H), c_last (B, H).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from grud.models.fast.gru import _steps

__all__ = ["LSTMRecurrence", "lstm_forward"]


def lstm_forward(gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout, save: bool):
    """Run the recurrence with autograd off; returns ``(outputs, h_last, c_last, saved)``."""
    B, T, _ = gi.shape
    H = h0.shape[1]
    kw = dict(dtype=gi.dtype, device=gi.device)
    all_valid = bool((valid == 1).all())
    S = T if save else 1

    scale = torch.ones(4 * H, **kw)
    scale[2 * H : 3 * H] = 2  # the g pre-activation x 2: tanh(a) = 2 sigmoid(2a) - 1
    gib = torch.addcmul(bias_hh * scale, gi, scale)  # (B, T, 4H) input terms + b_hh, scaled
    w_t = (weight_hh * scale[:, None]).t().contiguous()  # (H, 4H)

    hs = torch.empty(B, T, H, **kw)  # h_t (carried over padded steps)
    cs = torch.empty(B, T, H, **kw)  # c_t (carried over padded steps)
    acts = torch.empty(B, S, 4 * H, **kw)  # i, f, g, o after activation
    cn = torch.empty(B, S, H, **kw) if not all_valid else cs  # c' before the padding carry
    hd = torch.empty(B, S, H, **kw) if hidden_dropout is not None else None
    tc = torch.empty(B, H, **kw)  # scratch: tanh(c')
    h_new = None if all_valid else torch.empty(B, H, **kw)
    minus_one = torch.full((B, H), -1.0, **kw)
    if save:  # per-step factors of the backward (see LSTMRecurrence.backward)
        ones = torch.ones(B, H, **kw)
        fo, fc = torch.empty(B, T, H, **kw), torch.empty(B, T, H, **kw)
        fifg = torch.empty(B, T, 3 * H, **kw)
        fcc = torch.empty(B, T, H, **kw) if peephole is not None else acts[..., H : 2 * H]
        sig = torch.empty(B, 4 * H, **kw)  # scratch: sigmoid derivatives (i, f, -, o)
        q = torch.empty(B, H, **kw)  # scratch
        fo_v, fc_v = fo.unbind(1), fc.unbind(1)
        fi_v, ff_v, fg_v = fifg[..., :H].unbind(1), fifg[..., H : 2 * H].unbind(1), fifg[..., 2 * H :].unbind(1)
        fcc_v = fcc.unbind(1) if peephole is not None else None

    hs_v, cs_v, gib_v = hs.unbind(1), cs.unbind(1), gib.unbind(1)
    acts_v = _steps(acts, T, save)
    i_v, f_v = _steps(acts[..., :H], T, save), _steps(acts[..., H : 2 * H], T, save)
    g_v, o_v = _steps(acts[..., 2 * H : 3 * H], T, save), _steps(acts[..., 3 * H :], T, save)
    ifg_v = _steps(acts[..., : 3 * H], T, save)
    cn_v = cs_v if all_valid else _steps(cn, T, save)
    hd_v = None if hd is None else _steps(hd, T, save)
    v_v = None if all_valid else valid[:, :, None].expand(B, T, H).unbind(1)
    if peephole is not None:
        w_ci, w_cf, w_co = peephole.unbind(0)

    h, c = h0, c0
    for t in range(T):
        hdt = h if hd_v is None else torch.mul(h, hidden_dropout, out=hd_v[t])
        a = torch.addmm(gib_v[t], hdt, w_t, out=acts_v[t])
        it, ft, gt, ot, ct = i_v[t], f_v[t], g_v[t], o_v[t], cn_v[t]
        if peephole is None:
            a.sigmoid_()
        else:
            it.addcmul_(w_ci, c)
            ft.addcmul_(w_cf, c)
            ifg_v[t].sigmoid_()
        torch.add(minus_one, gt, alpha=2, out=gt)  # g = tanh
        torch.mul(ft, c, out=ct).addcmul_(it, gt)  # c' = f c + i g
        if peephole is not None:
            ot.addcmul_(w_co, ct).sigmoid_()
        torch.mul(ct, 2, out=tc).sigmoid_()
        torch.add(minus_one, tc, alpha=2, out=tc)  # tanh(c')
        if save:
            # d pre_o / d h' = tanh(c') o (1 - o);  d c' / d h' = o (1 - tanh(c')^2) [+ w_co fo];
            # d pre_{i,f,g} / d c' = g i(1-i), c_{t-1} f(1-f), i (1 - g^2);
            # d c_{t-1} / d c' = f [+ w_ci fi + w_cf ff]
            torch.addcmul(a, a, a, value=-1, out=sig)
            fot = torch.mul(tc, sig[:, 3 * H :], out=fo_v[t])
            torch.addcmul(ones, tc, tc, value=-1, out=q)
            fct = torch.mul(q, ot, out=fc_v[t])
            if peephole is not None:
                fct.addcmul_(w_co, fot)
            fit = torch.mul(gt, sig[:, :H], out=fi_v[t])
            fft = torch.mul(c, sig[:, H : 2 * H], out=ff_v[t])
            torch.addcmul(ones, gt, gt, value=-1, out=q)
            torch.mul(q, it, out=fg_v[t])
            if peephole is not None:
                torch.addcmul(ft, w_ci, fit, out=fcc_v[t]).addcmul_(w_cf, fft)
        if all_valid:
            h, c = torch.mul(ot, tc, out=hs_v[t]), ct
        else:
            torch.mul(ot, tc, out=h_new)
            h = torch.lerp(h, h_new, v_v[t], out=hs_v[t])
            c = torch.lerp(c, ct, v_v[t], out=cs_v[t])

    outputs = hs if all_valid else hs * valid[:, :, None]
    h_last = h.clone() if T else h0.clone()
    c_last = c.clone() if T else c0.clone()
    saved = None
    if save:
        saved = dict(acts=acts, cn=cn, hd=hd, fo=fo, fc=fc, fifg=fifg, fcc=fcc, all_valid=all_valid)
    return outputs, h_last, c_last, saved, hs, cs


class LSTMRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.lstm_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout)``; ``valid`` is a
    constant (no gradient). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout):
        outputs, h_last, c_last, saved, hs, cs = lstm_forward(
            gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout, True
        )
        ctx.saved = saved
        ctx.set_materialize_grads(False)  # an unused output gets no zero-filled gradient
        ctx.save_for_backward(weight_hh, h0, c0, valid, peephole, hidden_dropout, hs, cs)
        return outputs, h_last, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last, d_c_last):
        weight_hh, h0, c0, valid, peep, drop, hs, cs = ctx.saved_tensors
        sv = ctx.saved
        fo, fc, fifg, fcc, all_valid = sv["fo"], sv["fc"], sv["fifg"], sv["fcc"], sv["all_valid"]
        B, T, H = hs.shape
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad

        da = torch.empty(B, T, 4 * H, **kw)  # d pre-activations [i|f|g|o] = d gi = d(W_hh hd + b_hh)
        dhd = torch.empty(B, H, **kw) if drop is not None else None
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dc_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dcn = torch.empty(B, H, **kw)  # dL/dc'
        dhp = None if all_valid else torch.empty(B, H, **kw)
        dcp = None if all_valid else torch.empty(B, H, **kw)
        d_drop = torch.zeros(B, H, **kw) if drop is not None and need[7] else None
        if d_h_last is None:
            d_h_last = torch.zeros(B, H, **kw)
        if d_c_last is None:
            d_c_last = torch.zeros(B, H, **kw)
        vd = None
        if d_outputs is not None:
            vd = d_outputs if all_valid else d_outputs * valid[:, :, None]
        omv_v = None if all_valid else (1 - valid)[:, :, None].expand(B, T, H).unbind(1)
        v_v = None if all_valid else valid[:, :, None].expand(B, T, H).unbind(1)

        fo_v, fc_v, fcc_v = fo.unbind(1), fc.unbind(1), fcc.unbind(1)
        vd_v = None if vd is None else vd.unbind(1)
        fi_v, ff_v, fg_v = fifg[..., :H].unbind(1), fifg[..., H : 2 * H].unbind(1), fifg[..., 2 * H :].unbind(1)
        da_v = da.unbind(1)
        di_v, df_v = da[..., :H].unbind(1), da[..., H : 2 * H].unbind(1)
        dg_v, do_v = da[..., 2 * H : 3 * H].unbind(1), da[..., 3 * H :].unbind(1)
        hprev_v = [h0] + list(hs[:, :-1].unbind(1)) if d_drop is not None else None

        if T:
            dh = dh_bufs[0].copy_(d_h_last) if vd_v is None else torch.add(vd_v[T - 1], d_h_last, out=dh_bufs[0])
            dc = dc_bufs[0].copy_(d_c_last)
        else:
            dh, dc = d_h_last, d_c_last
        for t in range(T - 1, -1, -1):
            k = (T - t) & 1
            dh_prev, dc_prev = dh_bufs[k], dc_bufs[k]
            if all_valid:
                dhp_t, dcp_t = dh, dc
            else:
                dhp_t = torch.mul(dh, v_v[t], out=dhp)
                dcp_t = torch.mul(dc, v_v[t], out=dcp)
            torch.mul(dhp_t, fo_v[t], out=do_v[t])
            torch.addcmul(dcp_t, dhp_t, fc_v[t], out=dcn)
            torch.mul(dcn, fi_v[t], out=di_v[t])
            torch.mul(dcn, ff_v[t], out=df_v[t])
            torch.mul(dcn, fg_v[t], out=dg_v[t])
            if drop is None:
                if t > 0 and vd_v is not None:
                    torch.addmm(vd_v[t - 1], da_v[t], weight_hh, out=dh_prev)
                else:
                    torch.mm(da_v[t], weight_hh, out=dh_prev)
            else:
                torch.mm(da_v[t], weight_hh, out=dhd)
                if d_drop is not None:
                    d_drop.addcmul_(dhd, hprev_v[t])
                if t > 0 and vd_v is not None:
                    torch.addcmul(vd_v[t - 1], dhd, drop, out=dh_prev)
                else:
                    torch.mul(dhd, drop, out=dh_prev)
            torch.mul(dcn, fcc_v[t], out=dc_prev)
            if not all_valid:
                dh_prev.addcmul_(dh, omv_v[t])
                dc_prev.addcmul_(dc, omv_v[t])
            dh, dc = dh_prev, dc_prev

        d_gi = d_w = d_b = d_h0 = d_c0 = d_peep = None
        if need[0]:
            d_gi = da
        if (need[1] or need[2]) and T:
            da_flat = da.view(B * T, 4 * H)
            if need[1]:
                if drop is not None:
                    hd_all = sv["hd"]
                else:
                    hd_all = torch.cat([h0[:, None], hs[:, :-1]], dim=1)
                d_w = da_flat.t() @ hd_all.reshape(B * T, H)  # the recurrent weight gradient, one matmul
            if need[2]:
                d_b = da_flat.sum(0)
        elif need[1] or need[2]:
            d_w, d_b = torch.zeros_like(weight_hh), torch.zeros(4 * H, **kw)
        if need[3]:
            d_h0 = dh.clone()
        if need[4]:
            d_c0 = dc.clone()
        if need[6]:
            cprev = torch.cat([c0[:, None], cs[:, :-1]], dim=1)
            d_peep = torch.stack([
                (da[..., :H] * cprev).sum((0, 1)),
                (da[..., H : 2 * H] * cprev).sum((0, 1)),
                (da[..., 3 * H :] * sv["cn"]).sum((0, 1)),
            ])
        return d_gi, d_w, d_b, d_h0, d_c0, None, d_peep, d_drop
