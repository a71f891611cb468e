"""Fused GRU(-D) recurrence: graph-free forward over time, hand-written backward through time.

A per-step loop recorded by autograd spends most of its time building graph nodes and small
temporaries. Here the forward runs with autograd off and writes every step into preallocated
time-major buffers (the gates are saved); the backward walks back through time with a few
elementwise ops and one small matrix multiply per step, and the recurrent weight gradient is one
matrix multiply over all steps at the end. Everything that depends only on saved forward values
(the sigmoid/tanh derivatives and the products they enter) is computed for all steps at once
before the backward loop, and every per-step view is made before the loops (``unbind``), since
Python-level indexing costs as much as a small elementwise op.

Two details:

* gates are kept internally in the order ``[z | r | n]`` (torch's is ``[r | z | n]``);
* ``tanh`` is computed as ``2 * sigmoid(2 a) - 1`` (the candidate's pre-activation is scaled by 2
  through the weights), because on CPU ``torch.tanh`` costs several times ``torch.sigmoid``.

Shape:
    B batch, T time steps, H hidden units; gi (B, T, 3H), weight_hh (3H, H), bias_hh (3H,),
    h0 (B, H), valid (B, T), gamma_h (B, T, H) or None, hidden_dropout (B, H) or None
    -> outputs (B, T, H), h_last (B, H).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["GRURecurrence", "gru_forward"]


def _steps(x: Tensor, T: int, save: bool) -> list:
    """Per-step views of a (S, ...) buffer: S = T when saving, else one reused slot."""
    return list(x.unbind(0)) if save else [x[0]] * T


def gru_forward(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, save: bool):
    """Run the recurrence with autograd off.

    Returns ``(outputs (B, T, H), h_last (B, H), saved)``; ``saved`` holds the time-major
    buffers the backward needs, or None when ``save`` is False (inference).
    """
    B, T, _ = gi.shape
    H = h0.shape[1]
    kw = dict(dtype=gi.dtype, device=gi.device)
    all_valid = bool((valid == 1).all())
    S = T if save else 1

    # Input side, time-major, internal gate order; the candidate's pre-activation scaled by 2.
    gi_tm = gi.transpose(0, 1)
    gi_zr = torch.cat([gi_tm[..., H : 2 * H], gi_tm[..., :H]], dim=-1)  # (T, B, 2H)
    gi_n2 = gi_tm[..., 2 * H :] * 2  # (T, B, H)
    w = torch.cat([weight_hh[H : 2 * H], weight_hh[:H], weight_hh[2 * H :] * 2])  # (3H, H) [z|r|2n]
    w_t = w.t().contiguous()  # (H, 3H): hd @ w_t
    b = torch.cat([bias_hh[H : 2 * H], bias_hh[:H], bias_hh[2 * H :] * 2])
    gamma_tm = None if gamma_h is None else gamma_h.transpose(0, 1).contiguous()
    v_tm = None if all_valid else valid.t().unsqueeze(-1).expand(T, B, H).contiguous()

    hs = torch.empty(T + 1, B, H, **kw)  # hs[t + 1] = h_t
    hs[0] = h0
    gh = torch.empty(S, B, 3 * H, **kw)  # W_hh hd + b_hh (candidate part x 2)
    zr = torch.empty(S, B, 2 * H, **kw)  # z, r after sigmoid
    n = torch.empty(S, B, H, **kw)  # candidate after tanh
    hhat = torch.empty(S, B, H, **kw) if gamma_tm is not None else None
    hd = torch.empty(S, B, H, **kw) if hidden_dropout is not None else None
    minus_one = torch.full((B, H), -1.0, **kw)
    h_new = None if all_valid else torch.empty(B, H, **kw)

    hs_v = hs.unbind(0)
    gi_zr_v, gi_n2_v = gi_zr.unbind(0), gi_n2.unbind(0)
    gh_v, gh_zr_v, gh_n_v = _steps(gh, T, save), _steps(gh[..., : 2 * H], T, save), _steps(gh[..., 2 * H :], T, save)
    zr_v, z_v, r_v = _steps(zr, T, save), _steps(zr[..., :H], T, save), _steps(zr[..., H:], T, save)
    n_v = _steps(n, T, save)
    gamma_v = None if gamma_tm is None else gamma_tm.unbind(0)
    hhat_v = None if hhat is None else _steps(hhat, T, save)
    hd_v = None if hd is None else _steps(hd, T, save)
    v_v = None if all_valid else v_tm.unbind(0)

    for t in range(T):
        h = hs_v[t]
        hh = h if gamma_v is None else torch.mul(h, gamma_v[t], out=hhat_v[t])
        hdt = hh if hd_v is None else torch.mul(hh, hidden_dropout, out=hd_v[t])
        torch.addmm(b, hdt, w_t, out=gh_v[t])
        torch.add(gi_zr_v[t], gh_zr_v[t], out=zr_v[t]).sigmoid_()
        nt = n_v[t]
        torch.addcmul(gi_n2_v[t], r_v[t], gh_n_v[t], out=nt).sigmoid_()
        torch.add(minus_one, nt, alpha=2, out=nt)  # tanh(a) = 2 sigmoid(2a) - 1
        if all_valid:
            torch.lerp(nt, hh, z_v[t], out=hs_v[t + 1])  # (1 - z) n + z h_hat
        else:
            torch.lerp(nt, hh, z_v[t], out=h_new)
            torch.lerp(h, h_new, v_v[t], out=hs_v[t + 1])

    out_tm = hs[1:] if all_valid else hs[1:] * v_tm
    outputs = out_tm.transpose(0, 1).contiguous()
    h_last = hs[T].clone()
    saved = None
    if save:
        saved = dict(hs=hs, gh=gh, zr=zr, n=n, hhat=hhat, hd=hd, gamma_tm=gamma_tm, v_tm=v_tm,
                     all_valid=all_valid)
    return outputs, h_last, saved


class GRURecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.gru_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout)``; ``valid`` is a constant
    (no gradient). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout):
        outputs, h_last, saved = gru_forward(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, True)
        ctx.saved = saved
        ctx.save_for_backward(weight_hh, hidden_dropout)
        return outputs, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last):
        weight_hh, drop = ctx.saved_tensors
        sv = ctx.saved
        hs, gh, zr, n = sv["hs"], sv["gh"], sv["zr"], sv["n"]
        gamma_tm, v_tm, all_valid = sv["gamma_tm"], sv["v_tm"], sv["all_valid"]
        T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad

        hprev = hs[:T]
        hhat = sv["hhat"] if gamma_tm is not None else hprev
        hd = sv["hd"] if drop is not None else hhat
        z, r = zr[..., :H], zr[..., H:]

        # Factors depending only on the forward pass, for all steps at once (pre = pre-activation):
        # d pre_z = dh' * fz,  d pre_n = dh' * fn,  d pre_r = d pre_n * fr,  d gh_n = d pre_n * r.
        one_minus_z = 1 - z
        fz = (hhat - n) * z * one_minus_z
        fn = one_minus_z * (1 - n * n)
        fr = gh[..., 2 * H :] * 0.5 * r * (1 - r)  # gh holds 2 (W_hn hd + b_hn)
        vd = torch.zeros(T + 1, B, H, **kw)  # vd[t + 1] = dL/d outputs[:, t], masked
        d_out_tm = d_outputs.transpose(0, 1)
        torch.mul(d_out_tm, 1 if all_valid else v_tm, out=vd[1:])
        w_int = torch.cat([weight_hh[H : 2 * H], weight_hh[:H], weight_hh[2 * H :]])  # (3H, H) [z|r|n]
        one_minus_v = None if all_valid else 1 - v_tm

        dgh = torch.empty(T, B, 3 * H, **kw)  # d(W_hh hd + b_hh), internal order [z|r|n]
        dn = torch.empty(T, B, H, **kw)  # d pre_n = d gi_n
        dhd = torch.empty(T, B, H, **kw)  # d hd
        dhh = torch.empty(T, B, H, **kw)  # d h_hat
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dhp = None if all_valid else torch.empty(B, H, **kw)
        dhdd = None if drop is None else torch.empty(B, H, **kw)

        fz_v, fn_v, fr_v, r_v, z_v = fz.unbind(0), fn.unbind(0), fr.unbind(0), r.unbind(0), z.unbind(0)
        dgh_v, dz_v, dr_v, dnh_v = dgh.unbind(0), dgh[..., :H].unbind(0), dgh[..., H : 2 * H].unbind(0), dgh[..., 2 * H :].unbind(0)
        dn_v, dhd_v, dhh_v, vd_v = dn.unbind(0), dhd.unbind(0), dhh.unbind(0), vd.unbind(0)
        gamma_v = None if gamma_tm is None else gamma_tm.unbind(0)
        v_v = None if all_valid else v_tm.unbind(0)
        omv_v = None if all_valid else one_minus_v.unbind(0)

        dh = torch.add(vd_v[T], d_h_last, out=dh_bufs[T & 1])  # dL/d h_{T-1}
        for t in range(T - 1, -1, -1):
            dh_prev = dh_bufs[t & 1]
            dhp_t = dh if all_valid else torch.mul(dh, v_v[t], out=dhp)  # dL/d h'_t
            torch.mul(dhp_t, fz_v[t], out=dz_v[t])
            dnt = torch.mul(dhp_t, fn_v[t], out=dn_v[t])
            torch.mul(dnt, fr_v[t], out=dr_v[t])
            torch.mul(dnt, r_v[t], out=dnh_v[t])
            dhdt = torch.mm(dgh_v[t], w_int, out=dhd_v[t])
            if drop is not None:
                dhdt = torch.mul(dhdt, drop, out=dhdd)
            dhht = torch.addcmul(dhdt, dhp_t, z_v[t], out=dhh_v[t])
            if gamma_v is None:
                torch.add(vd_v[t], dhht, out=dh_prev)
            else:
                torch.addcmul(vd_v[t], dhht, gamma_v[t], out=dh_prev)
            if not all_valid:
                dh_prev.addcmul_(dh, omv_v[t])
            dh = dh_prev

        d_gi = d_w = d_b = d_h0 = d_gamma = d_drop = None
        if need[0]:
            d_gi = torch.empty(B, T, 3 * H, **kw)
            d_gi[..., :H] = dgh[..., H : 2 * H].transpose(0, 1)
            d_gi[..., H : 2 * H] = dgh[..., :H].transpose(0, 1)
            d_gi[..., 2 * H :] = dn.transpose(0, 1)
        if need[1] or need[2]:
            dgh_flat = dgh.view(T * B, 3 * H)
            if need[1]:
                dw = dgh_flat.t() @ hd.reshape(T * B, H)  # the recurrent weight gradient, one matmul
                d_w = torch.cat([dw[H : 2 * H], dw[:H], dw[2 * H :]])
            if need[2]:
                db = dgh_flat.sum(0)
                d_b = torch.cat([db[H : 2 * H], db[:H], db[2 * H :]])
        if need[3]:
            d_h0 = dh.clone()
        if need[5]:
            d_gamma = (dhh * hprev).transpose(0, 1).contiguous()
        if need[6]:
            d_drop = (dhd * hhat).sum(0)
        return d_gi, d_w, d_b, d_h0, None, d_gamma, d_drop
