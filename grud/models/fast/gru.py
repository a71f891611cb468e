"""Fused GRU(-D) recurrence: graph-free forward over time, hand-written backward through time.

A per-step loop recorded by autograd spends most of its time building graph nodes and small
temporaries. Here the forward runs with autograd off and writes every step into preallocated
buffers (gates, candidate, recurrent pre-activations); after the loop, the few products the
backward needs are formed for all steps at once (a handful of whole-array operations instead of
several small ones per step); the backward walks back through time with a few elementwise ops
and one small matrix multiply per step; the recurrent weight gradient is one matrix multiply
over all steps at the end. Every per-step view is made before
the loops (``unbind``), since Python-level indexing costs as much as a small elementwise op.
Buffers are batch-major like the inputs and outputs, so nothing is transposed.

``tanh`` is computed as ``2 * sigmoid(2 a) - 1`` (the candidate pre-activation is scaled by 2
through the weights): on CPU ``torch.tanh`` costs several times ``torch.sigmoid``.

Shape:
    B batch, T time steps, H hidden units; gi (B, T, 3H), weight_hh (3H, H), bias_hh (3H,),
    h0 (B, H), valid (B, T), gamma_h (B, T, H) or None, hidden_dropout (B, H) or None
    -> outputs (B, T, H), h_last (B, H).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from grud.models.fast import native

__all__ = ["GRURecurrence", "gru_forward", "gru_forward_torch"]


def _steps(x, T: int, save: bool) -> list:
    """Per-step views ``x[:, t]`` of a (B, S, ...) buffer: S = T when saving, else one reused slot."""
    return list(x.unbind(1)) if save else [x[:, 0]] * T


def decay_from_exponent(e):
    """GRU-D's decay from its exponent: ``exp(min(e, 0))``, i.e. ``exp(-relu(W delta + b))`` for
    ``e = -(W delta + b)`` (Che et al. 2018, eq. 1)."""
    return torch.exp(torch.clamp(e, max=0.0))


def gru_forward(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, save: bool, gamma_exp: bool = False):
    """Run the recurrence with autograd off: the native kernel when it is available
    (:mod:`grud.models.fast.native`), else :func:`gru_forward_torch`. With ``gamma_exp``,
    ``gamma_h`` holds the decay's exponent (see :func:`decay_from_exponent`).

    Returns ``(outputs (B, T, H), h_last (B, H), saved)``; ``saved`` holds what the backward
    needs, or is None when ``save`` is False (inference: per-step buffers are reused).
    """
    if native.usable(gi):
        all_valid = bool((valid == 1).all())
        hs, h_last, saved = native.gru_forward(gi, weight_hh, bias_hh, h0, None if all_valid else valid, gamma_h,
                                               hidden_dropout, save, gamma_exp=gamma_exp)
        outputs = hs if all_valid else hs * valid[:, :, None]
        if save:
            saved.update(hs=hs, all_valid=all_valid, native=True)
        return outputs, h_last, saved
    if gamma_exp and gamma_h is not None:
        e = gamma_h
        gamma_h = decay_from_exponent(e)
        outputs, h_last, saved = gru_forward_torch(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, save)
        if save:
            saved.update(gamma=gamma_h, exponent=e)  # the backward's gamma, and the chain to its exponent
        return outputs, h_last, saved
    return gru_forward_torch(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, save)


def gru_forward_torch(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, save: bool):
    """:func:`gru_forward` with PyTorch operations only (one set of ATen calls per step)."""
    B, T, _ = gi.shape
    H = h0.shape[1]
    kw = dict(dtype=gi.dtype, device=gi.device)
    all_valid = bool((valid == 1).all())
    S = T if save else 1

    gi_n2 = gi[..., 2 * H :] * 2  # (B, T, H) candidate input term, scaled for tanh via sigmoid
    w2 = weight_hh.clone()
    w2[2 * H :] *= 2
    w_t = w2.t().contiguous()  # (H, 3H): hd @ w_t = 2-scaled W_hh hd

    # pre holds, per step, [W_ir x + b_ir + b_hr | W_iz x + b_iz + b_hz | 2 b_hn] before the loop;
    # each step adds W_hh hd to it in place (one matrix multiply, no separate bias or input add),
    # then turns its r, z part into the gates: afterwards pre = [r | z | 2 (W_hn hd + b_hn)].
    # It always spans all T steps (the prefill is one whole-array operation).
    pre = torch.empty(B, T, 3 * H, **kw)
    torch.add(gi[..., : 2 * H], bias_hh[: 2 * H], out=pre[..., : 2 * H])
    pre[..., 2 * H :].copy_(bias_hh[2 * H :] * 2)  # broadcast over (B, T)
    rz = pre[..., : 2 * H]

    # States: when every step is valid the outputs are the states themselves.
    hs = torch.empty(B, T, H, **kw)  # h_t (carried over padded steps)
    hhat = torch.empty(B, S, H, **kw) if gamma_h is not None else None  # gamma * h_{t-1}
    hd = torch.empty(B, S, H, **kw) if hidden_dropout is not None else None  # h_hat * dropout
    n_all = torch.empty(B, S, H, **kw)  # candidate
    h_new = None if all_valid else torch.empty(B, H, **kw)
    minus_one = torch.full((B, H), -1.0, **kw)

    hs_v = hs.unbind(1)
    gi_n2_v = gi_n2.unbind(1)
    pre_v, rz_v, ghn_v = pre.unbind(1), rz.unbind(1), pre[..., 2 * H :].unbind(1)
    r_v, z_v = pre[..., :H].unbind(1), pre[..., H : 2 * H].unbind(1)
    gamma_v = None if gamma_h is None else gamma_h.unbind(1)
    hhat_v = None if hhat is None else _steps(hhat, T, save)
    hd_v = None if hd is None else _steps(hd, T, save)
    v_v = None if all_valid else valid[:, :, None].expand(B, T, H).unbind(1)
    n_v = _steps(n_all, T, save)

    h = h0
    for t in range(T):
        hh = h if gamma_v is None else torch.mul(h, gamma_v[t], out=hhat_v[t])
        hdt = hh if hd_v is None else torch.mul(hh, hidden_dropout, out=hd_v[t])
        pre_v[t].addmm_(hdt, w_t)
        rz_v[t].sigmoid_()
        zt, rt = z_v[t], r_v[t]
        n = torch.addcmul(gi_n2_v[t], rt, ghn_v[t], out=n_v[t]).sigmoid_()
        torch.add(minus_one, n, alpha=2, out=n)  # tanh(a) = 2 sigmoid(2a) - 1
        if all_valid:
            h = torch.lerp(n, hh, zt, out=hs_v[t])  # h' = (1 - z) n + z h_hat
        else:
            torch.lerp(n, hh, zt, out=h_new)
            h = torch.lerp(h, h_new, v_v[t], out=hs_v[t])

    outputs = hs if all_valid else hs * valid[:, :, None]
    h_last = h.clone() if T else h0.clone()
    saved = None
    if save:  # the backward's per-step factors, for all steps at once (see GRURecurrence.backward)
        sig = torch.addcmul(rz, rz, rz, value=-1)  # sigmoid derivatives [r(1-r) | z(1-z)]
        if hhat is None:  # without hidden decay h_hat_t is h_(t-1); kept for the backward too
            hhat = torch.cat([h0[:, None], hs[:, :-1]], dim=1)
        fz = (hhat - n_all).mul_(sig[..., H:])  # d pre_z / d h' = (h_hat - n) z(1-z)
        fn = torch.addcmul(torch.ones((), **kw), n_all, n_all, value=-1)
        fn.mul_(1 - rz[..., H:])  # d pre_n / d h' = (1 - z)(1 - n^2)
        fr = pre[..., 2 * H :].mul(sig[..., :H]).mul_(0.5)  # d pre_r / d pre_n
        saved = dict(hs=hs, rz=rz, hhat=hhat, hd=hd, fz=fz, fn=fn, fr=fr, all_valid=all_valid)
    return outputs, h_last, saved


def rows_n_r_z(weight_hh):
    """W_hh (3H, H) with its rows in the order n, r, z (torch's is r, z, n): the layout of the
    backward's per-step gradients ``[d ghn | d pre_r | d pre_z]``."""
    H = weight_hh.shape[1]
    return torch.cat([weight_hh[2 * H :], weight_hh[:H], weight_hh[H : 2 * H]])


def _weight_and_bias_grads(dpre, hd_all, need_w: bool, need_b: bool, H: int, like):
    """d W_hh and d b_hh (torch gate order) from the per-step gradients ``dpre[..., :3H]`` (rows
    n, r, z) and what W_hh multiplied at every step: one matrix multiply and one sum over all steps."""
    if not dpre.numel():
        return (torch.zeros_like(like) if need_w else None,
                torch.zeros(3 * H, dtype=like.dtype, device=like.device) if need_b else None)
    dgh = dpre[..., : 3 * H].reshape(-1, 3 * H)  # (B T or T B, 3H): any order, the same as hd_all's
    d_w = d_b = None
    if need_w:
        dw = dgh.t() @ hd_all.reshape(-1, H)
        d_w = torch.cat([dw[H : 2 * H], dw[2 * H :], dw[:H]])
    if need_b:
        db = dgh.sum(0)
        d_b = torch.cat([db[H : 2 * H], db[2 * H :], db[:H]])
    return d_w, d_b


class GRURecurrence(torch.autograd.Function):
    """Autograd function behind :func:`grud.models.fast.recurrence.gru_recurrence`.

    ``apply(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, gamma_exp)``; ``valid`` is a
    constant (no gradient); with ``gamma_exp`` (a bool), ``gamma_h`` is the decay's exponent and
    gets its gradient. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, gamma_exp=False):
        outputs, h_last, saved = gru_forward(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, True,
                                             gamma_exp=bool(gamma_exp))
        saved["gamma_exp"] = bool(gamma_exp)
        ctx.set_materialize_grads(False)  # an unused output (often the sequence) gets no zero-filled gradient
        # hs is saved through autograd, never as a ctx attribute: it may be the outputs tensor
        # itself, and an output held by its own grad_fn is a reference cycle that only the garbage
        # collector frees (memory grew by every step's buffers until it ran); saving it this way
        # also catches an in-place change of the outputs instead of corrupting the gradients
        ctx.save_for_backward(weight_hh, h0, valid, gamma_h, hidden_dropout, saved.pop("hs"))
        ctx.saved = saved
        return outputs, h_last

    @staticmethod
    def _backward_native(ctx, weight_hh, h0, valid, gamma, drop, hs, d_outputs, d_h_last):
        sv = ctx.saved
        H = hs.shape[2]
        need = ctx.needs_input_grad
        v = None if sv["all_valid"] else valid
        w_perm = rows_n_r_z(weight_hh)
        dpre, d_h0, d_gamma, d_drop = native.gru_backward(w_perm, h0, hs, v, gamma, drop, sv, d_outputs, d_h_last,
                                                          need[5], need[6], gamma_exp=sv["gamma_exp"])
        d_w, d_b = _weight_and_bias_grads(dpre, sv["hd"] if drop is not None else sv["hh"], need[1], need[2], H,
                                          weight_hh)
        d_gi = dpre[..., H:].transpose(0, 1) if need[0] else None  # (B, T, 3H) view of the time-major buffer
        return d_gi, d_w, d_b, (d_h0 if need[3] else None), None, d_gamma, d_drop, None

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, d_h_last):
        weight_hh, h0, valid, gamma, drop, hs = ctx.saved_tensors
        sv = ctx.saved
        if sv.get("native"):
            return GRURecurrence._backward_native(ctx, weight_hh, h0, valid, gamma, drop, hs, d_outputs, d_h_last)
        if sv["gamma_exp"] and gamma is not None:  # the loop below needs gamma itself; chain to e at the end
            grads = GRURecurrence._backward_torch(ctx, weight_hh, h0, valid, sv["gamma"], drop, hs, d_outputs,
                                                  d_h_last)
            d_e = None
            if grads[5] is not None:
                d_e = torch.where(sv["exponent"] <= 0, grads[5] * sv["gamma"], 0.0)  # clamp passes e <= 0
            return grads[:5] + (d_e,) + grads[6:]
        return GRURecurrence._backward_torch(ctx, weight_hh, h0, valid, gamma, drop, hs, d_outputs, d_h_last)

    @staticmethod
    def _backward_torch(ctx, weight_hh, h0, valid, gamma, drop, hs, d_outputs, d_h_last):
        sv = ctx.saved
        rz, fz, fn, fr, all_valid = sv["rz"], sv["fz"], sv["fn"], sv["fr"], sv["all_valid"]
        B, T, H = hs.shape
        kw = dict(dtype=hs.dtype, device=hs.device)
        need = ctx.needs_input_grad

        # d pre-activations per step, laid out [d gh_n | d pre_r | d pre_z | d pre_n]: the first
        # three are d(W_hh hd + b_hh) (rows of W_hh in the order n, r, z), the last three are
        # d gi in torch's order [r | z | n].
        dpre = torch.empty(B, T, 4 * H, **kw)
        w_perm = rows_n_r_z(weight_hh)  # (3H, H)
        dhh = torch.empty(B, T, H, **kw) if gamma is not None else None  # dL/d h_hat (for d gamma)
        dhd = torch.empty(B, H, **kw)
        dhdd = torch.empty(B, H, **kw) if drop is not None else None
        dhh_scr = torch.empty(B, H, **kw)
        dh_bufs = (torch.empty(B, H, **kw), torch.empty(B, H, **kw))
        dhp = None if all_valid else torch.empty(B, H, **kw)
        d_drop = torch.zeros(B, H, **kw) if drop is not None and need[6] else None
        if d_h_last is None:
            d_h_last = torch.zeros(B, H, **kw)
        vd = None  # dL/d h_t from the outputs
        if d_outputs is not None:
            vd = d_outputs if all_valid else d_outputs * valid[:, :, None]
        one_minus_v = None if all_valid else (1 - valid)[:, :, None].expand(B, T, H)

        fz_v, fn_v, fr_v = fz.unbind(1), fn.unbind(1), fr.unbind(1)
        r_v, z_v = rz[..., :H].unbind(1), rz[..., H:].unbind(1)
        dgh_v = dpre[..., : 3 * H].unbind(1)
        dnh_v, dr_v = dpre[..., :H].unbind(1), dpre[..., H : 2 * H].unbind(1)
        dz_v, dn_v = dpre[..., 2 * H : 3 * H].unbind(1), dpre[..., 3 * H :].unbind(1)
        vd_v = None if vd is None else vd.unbind(1)
        dhh_v = [dhh_scr] * T if dhh is None else dhh.unbind(1)
        gamma_v = None if gamma is None else gamma.unbind(1)
        v_v = None if all_valid else valid[:, :, None].expand(B, T, H).unbind(1)
        omv_v = None if all_valid else one_minus_v.unbind(1)
        hhat_v = None
        if d_drop is not None:
            hhat_v = sv["hhat"].unbind(1)

        if not T:
            dh = d_h_last
        elif vd_v is None:
            dh = dh_bufs[0].copy_(d_h_last)
        else:
            dh = torch.add(vd_v[T - 1], d_h_last, out=dh_bufs[0])
        for t in range(T - 1, -1, -1):
            dhp_t = dh if all_valid else torch.mul(dh, v_v[t], out=dhp)  # dL/d h'_t
            torch.mul(dhp_t, fz_v[t], out=dz_v[t])
            dnt = torch.mul(dhp_t, fn_v[t], out=dn_v[t])
            torch.mul(dnt, fr_v[t], out=dr_v[t])
            torch.mul(dnt, r_v[t], out=dnh_v[t])
            dhdt = torch.mm(dgh_v[t], w_perm, out=dhd)  # dL/d hd
            if drop is not None:
                if d_drop is not None:
                    d_drop.addcmul_(dhdt, hhat_v[t])
                dhdt = torch.mul(dhdt, drop, out=dhdd)
            dhht = torch.addcmul(dhdt, dhp_t, z_v[t], out=dhh_v[t])  # dL/d h_hat
            dh_prev = dh_bufs[(T - t) & 1]
            if t > 0 and vd_v is not None:
                if gamma_v is None:
                    torch.add(vd_v[t - 1], dhht, out=dh_prev)
                else:
                    torch.addcmul(vd_v[t - 1], dhht, gamma_v[t], out=dh_prev)
            elif gamma_v is None:
                dh_prev.copy_(dhht)
            else:
                torch.mul(dhht, gamma_v[t], out=dh_prev)
            if not all_valid:
                dh_prev.addcmul_(dh, omv_v[t])
            dh = dh_prev

        d_gi = d_h0 = d_gamma = None
        if need[0]:
            d_gi = dpre[..., H:]
        d_w = d_b = None
        if need[1] or need[2]:
            hd_all = sv["hd"] if drop is not None else sv["hhat"]  # what W_hh multiplied
            d_w, d_b = _weight_and_bias_grads(dpre, hd_all, need[1], need[2], H, weight_hh)
        if need[3]:
            d_h0 = dh.clone() if T else d_h_last.clone()
        if need[5]:
            d_gamma = torch.empty(B, T, H, **kw)
            if T:
                torch.mul(dhh[:, 1:], hs[:, :-1], out=d_gamma[:, 1:])
                torch.mul(dhh[:, 0], h0, out=d_gamma[:, 0])
        return d_gi, d_w, d_b, d_h0, None, d_gamma, d_drop, None
