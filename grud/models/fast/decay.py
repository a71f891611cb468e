"""GRU-D's input decay as one fused operation (the native kernel), forward fill included.

:class:`grud.models.inputs.DecayInput` computes, per entry (Che et al., Sci. Rep. 2018, eq. 3)::

    gamma_x = exp(-relu(w * delta + b))
    x_hat   = m * x + (1 - m) * (gamma_x * x_last + (1 - gamma_x) * x_mean)

With PyTorch operations that is a forward-fill scan plus about ten passes over the (B, T, F)
batch forward and as many backward. The kernel does it in one pass each way: the last
observation is carried along its time loop, and the backward returns the gradients of ``w`` and
``b`` (the only trainable inputs) directly. The values, mask, delta and training means are data:
when any of them requires a gradient, :func:`decay_input` returns None and the caller runs the
PyTorch formula.

Shape:
    values, mask, delta (B, T, F); x_mean, weight, bias (F,) -> x_hat (B, T, F).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from grud.models.fast import native

__all__ = ["decay_input"]


class _DecayInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, mask, delta, x_mean, weight, bias):
        ctx.save_for_backward(values, mask, delta, x_mean, weight, bias)
        return native.decay_input_forward(values, mask, delta, x_mean, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out):
        values, mask, delta, x_mean, weight, bias = ctx.saved_tensors
        d_w, d_b = native.decay_input_backward(values, mask, delta, x_mean, weight, bias, d_out)
        need = ctx.needs_input_grad
        return None, None, None, None, (d_w if need[4] else None), (d_b if need[5] else None)


def decay_input(values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor, weight: Tensor,
                bias: Tensor) -> Tensor | None:
    """x_hat (B, T, F) with the native kernel, or None when it cannot serve these tensors (kernel
    unavailable, other dtypes or devices, or a gradient wanted for the data)."""
    if not native.usable(values) or values.dim() != 3:
        return None
    F = values.shape[2]
    if mask.shape != values.shape or delta.shape != values.shape or any(t.shape != (F,) for t in (x_mean, weight, bias)):
        return None  # the PyTorch formula broadcasts or says what does not fit
    data = (values, mask, delta, x_mean)
    if any(t.dtype != values.dtype or t.device != values.device for t in data + (weight, bias)):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in data):
        return None
    return _DecayInput.apply(values, mask, delta, x_mean, weight, bias)
