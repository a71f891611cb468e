"""GRU-D's input projection ``W_ih x + V m + b_ih`` as one matrix multiply with a lean backward.

The reference (:meth:`grud.models.cells.GRUDCell.input_projection`) computes two products, one for
the inputs and one for the mask. Here ``[x ; m]`` is multiplied once by ``[W_ih | V]`` (one
product with twice the inner dimension runs faster than two), and the backward forms the gradient
of the weights as one product too, while the gradient of the inputs is computed from ``W_ih``
alone: the mask is data and gets no gradient (autograd on one product over ``[x ; m]`` would compute
it and throw it away). Che et al., "Recurrent Neural Networks for Multivariate Time Series with
Missing Values", Scientific Reports 8 (2018), eq. 5 (the ``V m`` terms of the gates).

For (B, T, I) inputs the product runs in time-major order and ``gi`` is a (B, T, 3H) view of a
time-major result (see :class:`_TimeMajorMaskedInputProjection`).

Shape:
    x (..., I), mask (..., F), weight_ih (3H, I), weight_mh (3H, F), bias_ih (3H,) -> gi (..., 3H).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from grud.models.fast.checks import check_same_dtype_device, check_shape

__all__ = ["masked_input_projection"]


def _gradients(ctx, d_gi: Tensor) -> tuple:
    """Gradients of ``(x, mask, weight_ih, weight_mh, bias_ih)`` from ``d_gi`` (N, 3H), whose rows
    match those of the saved ``[x ; m]`` (N, I + F)."""
    xm, weight_ih = ctx.saved_tensors
    need = ctx.needs_input_grad
    I = weight_ih.shape[1]
    d_x = d_gi @ weight_ih if need[0] else None
    d_w = d_gi.t() @ xm if (need[2] or need[3]) else None  # (3H, I + F), one product
    d_wih = d_w[:, :I] if need[2] else None
    d_wmh = d_w[:, I:] if need[3] else None
    d_b = d_gi.sum(0) if need[4] else None
    return d_x, None, d_wih, d_wmh, d_b


class _MaskedInputProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, m2, weight_ih, weight_mh, bias_ih):
        xm = torch.cat([x2, m2], dim=1)  # (N, I + F)
        gi = torch.addmm(bias_ih, xm, torch.cat([weight_ih, weight_mh], dim=1).t())
        ctx.save_for_backward(xm, weight_ih)
        return gi

    @staticmethod
    @once_differentiable
    def backward(ctx, d_gi):
        return _gradients(ctx, d_gi)


class _TimeMajorMaskedInputProjection(torch.autograd.Function):
    """The same product for (B, T, .) inputs, computed in time-major order: ``[x * s ; m ; 1]`` is
    written once into a (T, B, I + F + 1) buffer (``s`` an optional per-series scale of ``x``, the
    variational input dropout mask; the column of ones carries ``b_ih``, so the product needs no
    bias pass and its weight gradient holds the bias gradient), and ``gi`` comes back as the
    (B, T, 3H) view of a (T, B, 3H) result. Every time step of ``gi`` is then one contiguous block
    for the recurrence, and the gradient the fused recurrence returns (a view of its time-major
    buffer) needs no copy. (Going from one layout to the other costs more than it seems: at T = 48,
    H = 64 the rows of a step sit a multiple of 4 KiB apart and a copy across layouts ran 25 times
    slower than at T = 47.)"""

    @staticmethod
    def forward(ctx, x, m, weight_ih, weight_mh, bias_ih, x_scale):
        B, T, I = x.shape
        F = m.shape[2]
        xm = torch.empty(T, B, I + F + 1, dtype=x.dtype, device=x.device)
        if x_scale is None:
            xm[..., :I].copy_(x.transpose(0, 1))
        else:
            torch.mul(x.transpose(0, 1), x_scale, out=xm[..., :I])
        xm[..., I : I + F].copy_(m.transpose(0, 1))
        xm[..., I + F].fill_(1.0)
        xm = xm.view(T * B, -1)
        gi = torch.mm(xm, torch.cat([weight_ih, weight_mh, bias_ih[:, None]], dim=1).t())
        ctx.save_for_backward(xm, weight_ih, x_scale)
        ctx.sizes = (I, F)
        return gi.view(T, B, -1).transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_gi):
        xm, weight_ih, x_scale = ctx.saved_tensors
        I, F = ctx.sizes
        need = ctx.needs_input_grad
        B, T, G = d_gi.shape
        d2 = d_gi.transpose(0, 1).reshape(T * B, G)  # a view for the fused recurrence's gradient
        d_x = None
        if need[0]:
            d_x = (d2 @ weight_ih).view(T, B, I)
            if x_scale is not None:
                d_x.mul_(x_scale)
            d_x = d_x.transpose(0, 1)
        d_wih = d_wmh = d_b = None
        if need[2] or need[3] or need[4]:
            d_w = d2.t() @ xm  # (3H, I + F + 1): one product for W_ih, V and b_ih
            d_wih = d_w[:, :I] if need[2] else None
            d_wmh = d_w[:, I : I + F] if need[3] else None
            d_b = d_w[:, I + F] if need[4] else None
        return d_x, None, d_wih, d_wmh, d_b, None


def masked_input_projection(x: Tensor, mask: Tensor, weight_ih: Tensor, weight_mh: Tensor, bias_ih: Tensor,
                            x_scale: Tensor | None = None) -> Tensor:
    """``W_ih (x * s) + V m + b_ih`` for any leading shape; the mask (and ``s``) get no gradient.

    ``x_scale`` (B, I), only for (B, T, I) inputs, multiplies each series' ``x`` (a variational
    dropout mask applied on the way into the product, not as a pass of its own). Agrees with
    :meth:`grud.models.cells.GRUDCell.input_projection` in values and gradients (tested). Shape:
    see the module docstring.
    """
    G, I = weight_ih.shape
    F = weight_mh.shape[1]
    check_shape("weight_mh", weight_mh, (G, F), "(3H, F)")
    check_shape("bias_ih", bias_ih, (G,), "(3H,)")
    if x.shape[-1] != I or mask.shape[:-1] != x.shape[:-1] or mask.shape[-1] != F:
        raise ValueError(
            f"x, mask: expected shapes (..., I) and (..., F) with I = {I}, F = {F} and the same leading "
            f"shape, got {tuple(x.shape)} and {tuple(mask.shape)}"
        )
    check_same_dtype_device("x", x, mask=mask, weight_ih=weight_ih, weight_mh=weight_mh, bias_ih=bias_ih)
    if x.dim() == 3:  # (B, T, I): time-major inside, a (B, T, 3H) view outside
        if x_scale is not None:
            check_shape("x_scale", x_scale, (x.shape[0], I), "(B, I)")
            x_scale = x_scale.detach()
        return _TimeMajorMaskedInputProjection.apply(x, mask.detach(), weight_ih, weight_mh, bias_ih, x_scale)
    if x_scale is not None:
        raise ValueError(f"x_scale: only for (B, T, I) inputs, got x of shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    gi = _MaskedInputProjection.apply(x.reshape(-1, I), mask.reshape(-1, F).detach(), weight_ih, weight_mh, bias_ih)
    return gi.view(*lead, G)
