"""Fast recurrences for the GRU(-D), LSTM and Clockwork RNN layers.

The layers compute everything that does not depend on the hidden state for all steps at once
(decays, input projections) and hand the rest to these functions. Each one checks its arguments,
then runs the fused path: a :class:`torch.autograd.Function` whose forward loops over time without
recording a graph (saving the gates) and whose backward is a hand-written loop back through time,
with the recurrent weight gradient as one matrix multiply at the end. Without autograd (no input
requires a gradient, or under ``torch.no_grad()``) the same forward runs without saving anything.

``valid`` and ``update`` are masks and get no gradient. The ``*_reference`` versions
(:mod:`grud.models.fast.reference`) are the autograd-recorded loops they must agree with; the
tests in ``tests/unit/test_fast_paths.py`` check values, gradients and ``gradcheck``.

Shape:
    B batch, T time steps, H hidden units; see each function.
"""
from __future__ import annotations

import torch
from torch import Tensor

from grud.models.fast.checks import check_same_dtype_device, check_shape
from grud.models.fast.clockwork import ClockworkRecurrence, clockwork_forward
from grud.models.fast.gru import GRURecurrence, gru_forward
from grud.models.fast.lstm import LSTMRecurrence, lstm_forward
from grud.models.fast.reference import (
    clockwork_recurrence_reference,
    gru_recurrence_reference,
    lstm_recurrence_reference,
)

__all__ = [
    "gru_recurrence",
    "lstm_recurrence",
    "clockwork_recurrence",
    "gru_recurrence_reference",
    "lstm_recurrence_reference",
    "clockwork_recurrence_reference",
]


def _as_float(x: Tensor | None, like: Tensor) -> Tensor | None:
    if x is None or not isinstance(x, Tensor):
        return x
    if x.dtype != like.dtype and (x.dtype == torch.bool or not x.is_floating_point()):
        return x.to(like.dtype)
    return x


def _needs_graph(*tensors: Tensor | None) -> bool:
    """True when autograd is on and any input requires a gradient."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_common(gi: Tensor, k: int, weight_hh: Tensor, bias_hh: Tensor, h0: Tensor) -> tuple[int, int, int]:
    if not isinstance(gi, Tensor) or gi.dim() != 3:
        got = tuple(gi.shape) if isinstance(gi, Tensor) else type(gi).__name__
        raise ValueError(f"gi: expected shape (B, T, {k}H), got {got}")
    if not isinstance(h0, Tensor) or h0.dim() != 2:
        got = tuple(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
        raise ValueError(f"h0: expected shape (B, H), got {got}")
    B, T, G = gi.shape
    H = h0.shape[1]
    if h0.shape[0] != B or G != k * H:
        raise ValueError(
            f"gi (B, T, {k}H) and h0 (B, H) disagree: gi has shape {tuple(gi.shape)}, h0 {tuple(h0.shape)} "
            f"(expected gi.shape[2] = {k} * {H} = {k * H} and h0.shape[0] = {B})"
        )
    check_shape("weight_hh", weight_hh, (k * H, H), f"({k}H, H)")
    check_shape("bias_hh", bias_hh, (k * H,), f"({k}H,)")
    return B, T, H


def gru_recurrence(
    gi: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    h0: Tensor,
    valid: Tensor,
    gamma_h: Tensor | None = None,
    hidden_dropout: Tensor | None = None,
    gamma_exp: bool = False,
) -> tuple[Tensor, Tensor]:
    """GRU(-D) recurrence over a whole sequence (Che et al. 2018, eq. 5 with hidden decay).

    Same result as :func:`gru_recurrence_reference`; see it for the equations.

    Args:
        gi: input-side pre-activations in torch order ``[r | z | n]``, including ``b_ih``
            (and ``V m_t`` for the GRU-D cell).
        weight_hh, bias_hh: recurrent weights and bias in the same gate order.
        h0: initial hidden state.
        valid: 1.0 for ``t < length``, 0.0 at padded steps (bool accepted).
        gamma_h: hidden decay applied to ``h_{t-1}`` before step t, or None.
        hidden_dropout: variational dropout mask already scaled by ``1/(1-p)``, multiplied into
            ``h_hat`` in front of ``W_hh`` only, or None.
        gamma_exp: ``gamma_h`` holds the decay's exponent e; the decay applied is ``exp(min(e, 0))``
            (:func:`grud.models.fast.gru.decay_from_exponent`) and e gets the gradient. The native
            kernel applies it on the fly, saving two passes over (B, T, H) each way.

    Shape:
        gi (B, T, 3H), weight_hh (3H, H), bias_hh (3H,), h0 (B, H), valid (B, T),
        gamma_h (B, T, H), hidden_dropout (B, H) -> outputs (B, T, H), h_last (B, H).
    """
    B, T, H = _check_common(gi, 3, weight_hh, bias_hh, h0)
    valid = _as_float(valid, gi)
    check_shape("valid", valid, (B, T), "(B, T)")
    check_shape("gamma_h", gamma_h, (B, T, H), "(B, T, H)")
    check_shape("hidden_dropout", hidden_dropout, (B, H), "(B, H)")
    check_same_dtype_device(
        "gi", gi, weight_hh=weight_hh, bias_hh=bias_hh, h0=h0, valid=valid, gamma_h=gamma_h,
        hidden_dropout=hidden_dropout,
    )
    if _needs_graph(gi, weight_hh, bias_hh, h0, gamma_h, hidden_dropout):
        return GRURecurrence.apply(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, bool(gamma_exp))
    with torch.no_grad():
        outputs, h_last, _ = gru_forward(gi, weight_hh, bias_hh, h0, valid, gamma_h, hidden_dropout, False,
                                         gamma_exp=bool(gamma_exp))
    return outputs, h_last


def lstm_recurrence(
    gi: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    valid: Tensor,
    peephole: Tensor | None = None,
    hidden_dropout: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM recurrence (optionally with peepholes) over a whole sequence.

    Same result as :func:`lstm_recurrence_reference`; see it for the equations.

    Shape:
        gi (B, T, 4H) torch order ``[i | f | g | o]``, weight_hh (4H, H), bias_hh (4H,),
        h0 (B, H), c0 (B, H), valid (B, T), peephole (3, H) = (w_ci, w_cf, w_co) or None,
        hidden_dropout (B, H) or None -> outputs (B, T, H), h_last (B, H), c_last (B, H).
    """
    B, T, H = _check_common(gi, 4, weight_hh, bias_hh, h0)
    valid = _as_float(valid, gi)
    check_shape("c0", c0, (B, H), "(B, H)")
    check_shape("valid", valid, (B, T), "(B, T)")
    check_shape("peephole", peephole, (3, H), "(3, H)")
    check_shape("hidden_dropout", hidden_dropout, (B, H), "(B, H)")
    check_same_dtype_device(
        "gi", gi, weight_hh=weight_hh, bias_hh=bias_hh, h0=h0, c0=c0, valid=valid, peephole=peephole,
        hidden_dropout=hidden_dropout,
    )
    if _needs_graph(gi, weight_hh, bias_hh, h0, c0, peephole, hidden_dropout):
        return LSTMRecurrence.apply(gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout)
    with torch.no_grad():
        outputs, h_last, c_last, *_ = lstm_forward(
            gi, weight_hh, bias_hh, h0, c0, valid, peephole, hidden_dropout, False
        )
    return outputs, h_last, c_last


def clockwork_recurrence(
    gi: Tensor, weight_hh: Tensor, bias_hh: Tensor, h0: Tensor, update: Tensor
) -> tuple[Tensor, Tensor]:
    """Clockwork RNN recurrence (Koutnik et al. 2014) over a whole sequence.

    Same result as :func:`clockwork_recurrence_reference`. ``weight_hh`` must already be
    multiplied by the block-triangular connectivity mask; ``update`` is 1.0 where the unit's module
    ticks at step t and ``t < length``. Outputs are not zeroed at padded steps.

    Shape:
        gi (B, T, H), weight_hh (H, H), bias_hh (H,), h0 (B, H), update (B, T, H)
        -> outputs (B, T, H), h_last (B, H).
    """
    B, T, H = _check_common(gi, 1, weight_hh, bias_hh, h0)
    update = _as_float(update, gi)
    check_shape("update", update, (B, T, H), "(B, T, H)")
    check_same_dtype_device("gi", gi, weight_hh=weight_hh, bias_hh=bias_hh, h0=h0, update=update)
    if _needs_graph(gi, weight_hh, bias_hh, h0):
        return ClockworkRecurrence.apply(gi, weight_hh, bias_hh, h0, update)
    with torch.no_grad():
        outputs, h_last, _ = clockwork_forward(gi, weight_hh, bias_hh, h0, update, False)
    return outputs, h_last
