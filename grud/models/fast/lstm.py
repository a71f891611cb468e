"""Fused LSTM recurrence (optionally with peepholes): graph-free forward, hand-written backward.

Same scheme as :mod:`grud.models.fast.gru`: the forward runs with autograd off over preallocated
time-major buffers and saves the gates and cell states; the backward walks back through time with
a few elementwise ops and one small matrix multiply per step; factors that depend only on the
forward pass are computed for all steps at once; the recurrent weight gradient is one matrix
multiply at the end. Gates stay in torch's order ``[i | f | g | o]``; all input-side terms and
biases enter a single ``addmm`` per step; ``tanh`` is computed as ``2 sigmoid(2a) - 1`` (cheaper on
CPU), so without peepholes one sigmoid covers all four gates.

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

    # gib = gi + b_hh, time-major, the g pre-activation scaled by 2 (tanh via sigmoid).
    gib = (gi + bias_hh).transpose(0, 1).contiguous()  # (T, B, 4H)
    gib[..., 2 * H : 3 * H] *= 2
    w2 = weight_hh.clone()
    w2[2 * H : 3 * H] *= 2
    w_t = w2.t().contiguous()  # (H, 4H)
    v_tm = None if all_valid else valid.t().unsqueeze(-1).expand(T, B, H).contiguous()

    hs = torch.empty(T + 1, B, H, **kw)
    cs = torch.empty(T + 1, B, H, **kw)
    hs[0], cs[0] = h0, c0
    acts = torch.empty(S, B, 4 * H, **kw)  # i, f, g, o after activation
    tc = torch.empty(S, B, H, **kw)  # tanh(c')
    cnew = cs[1:] if all_valid or not save else torch.empty(T, B, H, **kw)  # c' (before the padding carry)
    hd = torch.empty(S, B, H, **kw) if hidden_dropout is not None else None
    minus_one = torch.full((B, H), -1.0, **kw)
    h_new = None if all_valid else torch.empty(B, H, **kw)
    c_tmp = None if all_valid or save else torch.empty(B, H, **kw)

    hs_v, cs_v, gib_v = hs.unbind(0), cs.unbind(0), gib.unbind(0)
    acts_v = _steps(acts, T, save)
    i_v, f_v = _steps(acts[..., :H], T, save), _steps(acts[..., H : 2 * H], T, save)
    g_v, o_v = _steps(acts[..., 2 * H : 3 * H], T, save), _steps(acts[..., 3 * H :], T, save)
    ifg_v = _steps(acts[..., : 3 * H], T, save)
    tc_v = _steps(tc, T, save)
    cnew_v = cnew.unbind(0) if c_tmp is None else [c_tmp] * T
    hd_v = None if hd is None else _steps(hd, T, save)
    v_v = None if all_valid else v_tm.unbind(0)
    if peephole is not None:
        w_ci, w_cf, w_co = peephole.unbind(0)

    for t in range(T):
        h, c = hs_v[t], cs_v[t]
        hdt = h if hd_v is None else torch.mul(h, hidden_dropout, out=hd_v[t])
        a = torch.addmm(gib_v[t], hdt, w_t, out=acts_v[t])
        gt, ot, ct = g_v[t], o_v[t], cnew_v[t]
        if peephole is None:
            a.sigmoid_()
        else:
            i_v[t].addcmul_(w_ci, c)
            f_v[t].addcmul_(w_cf, c)
            ifg_v[t].sigmoid_()
        torch.add(minus_one, gt, alpha=2, out=gt)  # g = tanh
        torch.mul(f_v[t], c, out=ct).addcmul_(i_v[t], gt)  # c' = f c + i g
        if peephole is not None:
            ot.addcmul_(w_co, ct).sigmoid_()
        tct = torch.mul(ct, 2, out=tc_v[t]).sigmoid_()
        torch.add(minus_one, tct, alpha=2, out=tct)  # tanh(c')
        if all_valid:
            torch.mul(ot, tct, out=hs_v[t + 1])
        else:
            torch.mul(ot, tct, out=h_new)
            torch.lerp(h, h_new, v_v[t], out=hs_v[t + 1])
            torch.lerp(c, ct, v_v[t], out=cs_v[t + 1])

    out_tm = hs[1:] if all_valid else hs[1:] * v_tm
    outputs = out_tm.transpose(0, 1).contiguous()
    saved = None
    if save:
        saved = dict(hs=hs, cs=cs, acts=acts, tc=tc, cnew=cnew, hd=hd, v_tm=v_tm, all_valid=all_valid)
    return outputs, hs[T].clone(), cs[T].clone(), saved


class LSTMRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.lstm_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout)``; ``valid`` is a
    constant (no gradient). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout):
        outputs, h_last, c_last, saved = lstm_forward(
            gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout, True
        )
        ctx.saved = saved
        ctx.save_for_backward(weight_hh, peephole, hidden_dropout)
        return outputs, h_last, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last, d_c_last):
        weight_hh, peep, drop = ctx.saved_tensors
        sv = ctx.saved
        hs, cs, acts, tc, cnew = sv["hs"], sv["cs"], sv["acts"], sv["tc"], sv["cnew"]
        v_tm, all_valid = sv["v_tm"], sv["all_valid"]
        T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad

        hprev, cprev = hs[:T], cs[:T]
        hd = sv["hd"] if drop is not None else hprev
        i, f, g, o = acts[..., :H], acts[..., H : 2 * H], acts[..., 2 * H : 3 * H], acts[..., 3 * H :]

        # Factors from the forward pass, for all steps at once (d a_x = d pre-activation of gate x):
        # d a_o = dh' fo;  dc' = dc + dh' fc;  d a_{i,f,g} = dc' f{i,f,g};  dc_{t-1} = dc' fcc.
        sig_o = o * (1 - o)
        fo = tc * sig_o
        fc = o * (1 - tc * tc)
        fi = g * i * (1 - i)
        ff = cprev * f * (1 - f)
        fg = i * (1 - g * g)
        fcc = f
        if peep is not None:
            fc = fc + peep[2] * fo
            fcc = f + peep[0] * fi + peep[1] * ff
        vd = torch.zeros(T + 1, B, H, **kw)
        torch.mul(d_outputs.transpose(0, 1), 1 if all_valid else v_tm, out=vd[1:])
        one_minus_v = None if all_valid else 1 - v_tm

        da = torch.empty(T, B, 4 * H, **kw)  # d pre-activations [i|f|g|o] = d gi
        dhd = torch.empty(T, B, H, **kw) if drop is not None else None
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dc_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dcn = torch.empty(B, H, **kw)  # dL/dc'
        dhp = None if all_valid else torch.empty(B, H, **kw)
        dcp = None if all_valid else torch.empty(B, H, **kw)

        fo_v, fc_v, fi_v, ff_v, fg_v = fo.unbind(0), fc.unbind(0), fi.unbind(0), ff.unbind(0), fg.unbind(0)
        fcc_v, vd_v = fcc.unbind(0), vd.unbind(0)
        da_v = da.unbind(0)
        di_v, df_v = da[..., :H].unbind(0), da[..., H : 2 * H].unbind(0)
        dg_v, do_v = da[..., 2 * H : 3 * H].unbind(0), da[..., 3 * H :].unbind(0)
        dhd_v = None if dhd is None else dhd.unbind(0)
        v_v = None if all_valid else v_tm.unbind(0)
        omv_v = None if all_valid else one_minus_v.unbind(0)

        dh = torch.add(vd_v[T], d_h_last, out=dh_bufs[T & 1])
        dc = dc_bufs[T & 1]
        dc.copy_(d_c_last)
        for t in range(T - 1, -1, -1):
            dh_prev, dc_prev = dh_bufs[t & 1], dc_bufs[t & 1]
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
                torch.addmm(vd_v[t], da_v[t], weight_hh, out=dh_prev)
            else:
                torch.addcmul(vd_v[t], torch.mm(da_v[t], weight_hh, out=dhd_v[t]), drop, out=dh_prev)
            torch.mul(dcn, fcc_v[t], out=dc_prev)
            if not all_valid:
                dh_prev.addcmul_(dh, omv_v[t])
                dc_prev.addcmul_(dc, omv_v[t])
            dh, dc = dh_prev, dc_prev

        d_gi = d_w = d_b = d_h0 = d_c0 = d_peep = d_drop = None
        if need[0]:
            d_gi = da.transpose(0, 1).contiguous()
        da_flat = da.view(T * B, 4 * H)
        if need[1]:
            d_w = da_flat.t() @ hd.reshape(T * B, H)
        if need[2]:
            d_b = da_flat.sum(0)
        if need[3]:
            d_h0 = dh.clone()
        if need[4]:
            d_c0 = dc.clone()
        if need[6]:
            d_peep = torch.stack([
                (da[..., :H] * cprev).sum((0, 1)),
                (da[..., H : 2 * H] * cprev).sum((0, 1)),
                (da[..., 3 * H :] * cnew).sum((0, 1)),
            ])
        if need[7]:
            d_drop = (dhd * hprev).sum(0)
        return d_gi, d_w, d_b, d_h0, d_c0, None, d_peep, d_drop
