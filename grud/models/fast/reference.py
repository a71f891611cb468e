"""Reference recurrences: plain per-step loops recorded by autograd.

These are the definitions the fast paths in :mod:`grud.models.fast.gru`,
:mod:`grud.models.fast.lstm` and :mod:`grud.models.fast.clockwork` must reproduce (values and
gradients); tests compare against them. They are slow (autograd records every step) but obviously
correct, and they accept any dtype and device.

Gate orders are torch's (``torch.nn.GRU``: ``[r | z | n]``; ``torch.nn.LSTM``: ``[i | f | g | o]``).

Shape:
    B batch, T time steps, H hidden units.
    ``gi`` (B, T, kH) input-side pre-activations (k = 3 GRU, 4 LSTM, 1 Clockwork),
    ``weight_hh`` (kH, H), ``bias_hh`` (kH,), ``h0``/``c0`` (B, H), ``valid`` (B, T) 1 for t < length,
    ``gamma_h`` (B, T, H), ``hidden_dropout`` (B, H), ``update`` (B, T, H),
    outputs (B, T, H), last states (B, H).
"""
from __future__ import annotations

import torch
from torch import Tensor

from grud.models.fast.gru import decay_from_exponent

__all__ = ["gru_recurrence_reference", "lstm_recurrence_reference", "clockwork_recurrence_reference"]


def gru_recurrence_reference(
    gi: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    h0: Tensor,
    valid: Tensor,
    gamma_h: Tensor | None = None,
    hidden_dropout: Tensor | None = None,
    gamma_exp: bool = False,
) -> tuple[Tensor, Tensor]:
    """GRU(-D) recurrence, one autograd-recorded step at a time (Che et al. 2018, eq. 5).

    At step t, with ``h_hat = gamma_h[:, t] * h_{t-1}`` (GRU-D hidden decay; ``h_{t-1}`` if no
    ``gamma_h``) and ``hd = h_hat * hidden_dropout``::

        r  = sigmoid(gi_r + W_hr hd + b_hr)
        z  = sigmoid(gi_z + W_hz hd + b_hz)
        n  = tanh(gi_n + r * (W_hn hd + b_hn))
        h' = (1 - z) * n + z * h_hat
        h_t = valid_t * h' + (1 - valid_t) * h_{t-1};   outputs[:, t] = valid_t * h_t

    With ``gamma_exp``, ``gamma_h`` is the exponent e and the decay is ``exp(min(e, 0))``.

    Shape:
        gi (B, T, 3H), weight_hh (3H, H), bias_hh (3H,), h0 (B, H), valid (B, T),
        gamma_h (B, T, H) or None, hidden_dropout (B, H) or None -> outputs (B, T, H), h_last (B, H).
    """
    T = gi.shape[1]
    H = h0.shape[1]
    if gamma_exp and gamma_h is not None:  # gamma_h is the exponent e: the decay is exp(min(e, 0))
        gamma_h = decay_from_exponent(gamma_h)
    h = h0
    outs = []
    for t in range(T):
        h_hat = h if gamma_h is None else gamma_h[:, t] * h
        hd = h_hat if hidden_dropout is None else h_hat * hidden_dropout
        gh = torch.nn.functional.linear(hd, weight_hh, bias_hh)
        g = gi[:, t]
        r = torch.sigmoid(g[:, :H] + gh[:, :H])
        z = torch.sigmoid(g[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(g[:, 2 * H :] + r * gh[:, 2 * H :])
        h_new = (1 - z) * n + z * h_hat
        v = valid[:, t : t + 1]
        h = v * h_new + (1 - v) * h
        outs.append(v * h)
    outputs = torch.stack(outs, 1) if outs else gi.new_zeros(gi.shape[0], 0, H)
    return outputs, h


def lstm_recurrence_reference(
    gi: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    valid: Tensor,
    peephole: Tensor | None = None,
    hidden_dropout: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM recurrence with optional peephole connections (Gers & Schmidhuber 2000), step by step.

    With ``hd = h_{t-1} * hidden_dropout`` and ``peephole = (w_ci, w_cf, w_co)``::

        i  = sigmoid(gi_i + W_hi hd + b_hi + w_ci * c_{t-1})
        f  = sigmoid(gi_f + W_hf hd + b_hf + w_cf * c_{t-1})
        g  = tanh(gi_g + W_hg hd + b_hg)
        c' = f * c_{t-1} + i * g
        o  = sigmoid(gi_o + W_ho hd + b_ho + w_co * c')
        h' = o * tanh(c')

    Padded steps (valid = 0) carry h and c unchanged and output zeros.

    Shape:
        gi (B, T, 4H), weight_hh (4H, H), bias_hh (4H,), h0 (B, H), c0 (B, H), valid (B, T),
        peephole (3, H) or None, hidden_dropout (B, H) or None
        -> outputs (B, T, H), h_last (B, H), c_last (B, H).
    """
    T = gi.shape[1]
    H = h0.shape[1]
    h, c = h0, c0
    outs = []
    for t in range(T):
        hd = h if hidden_dropout is None else h * hidden_dropout
        a = gi[:, t] + torch.nn.functional.linear(hd, weight_hh, bias_hh)
        a_i, a_f, a_g, a_o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        if peephole is not None:
            a_i = a_i + peephole[0] * c
            a_f = a_f + peephole[1] * c
        i = torch.sigmoid(a_i)
        f = torch.sigmoid(a_f)
        g = torch.tanh(a_g)
        c_new = f * c + i * g
        if peephole is not None:
            a_o = a_o + peephole[2] * c_new
        o = torch.sigmoid(a_o)
        h_new = o * torch.tanh(c_new)
        v = valid[:, t : t + 1]
        h = v * h_new + (1 - v) * h
        c = v * c_new + (1 - v) * c
        outs.append(v * h)
    outputs = torch.stack(outs, 1) if outs else gi.new_zeros(gi.shape[0], 0, H)
    return outputs, h, c


def clockwork_recurrence_reference(
    gi: Tensor, weight_hh: Tensor, bias_hh: Tensor, h0: Tensor, update: Tensor
) -> tuple[Tensor, Tensor]:
    """Clockwork RNN recurrence (Koutnik et al. 2014), step by step.

    ``h' = tanh(gi_t + W_hh h_{t-1} + b_hh)`` with ``weight_hh`` already masked to the
    block-triangular connectivity by the caller; ``h_t = update_t * h' + (1 - update_t) * h_{t-1}``;
    ``outputs[:, t] = h_t`` (the caller zeroes padded steps).

    Shape:
        gi (B, T, H), weight_hh (H, H), bias_hh (H,), h0 (B, H), update (B, T, H)
        -> outputs (B, T, H), h_last (B, H).
    """
    T = gi.shape[1]
    H = h0.shape[1]
    h = h0
    outs = []
    for t in range(T):
        h_new = torch.tanh(gi[:, t] + torch.nn.functional.linear(h, weight_hh, bias_hh))
        u = update[:, t]
        h = u * h_new + (1 - u) * h
        outs.append(h)
    outputs = torch.stack(outs, 1) if outs else gi.new_zeros(gi.shape[0], 0, H)
    return outputs, h
