"""Recurrent layers: the loop over time around a cell, for one or two directions.

A :class:`RecurrentLayer` owns what the cells of :mod:`grud.models.cells` do not: padding
(steps ``t >= length`` never change the state and output zeros), the backward direction
(which starts at each series' own last real step), variational dropout (one mask per sequence,
reused at every step; Gal & Ghahramani, NeurIPS 2016) on the layer input and on the recurrent
state, and the choice between the readable per-step loop (``fast=False``) and the fused
recurrences of :mod:`grud.models.fast` (``fast=True``), which get everything that does not depend
on the state precomputed for all steps at once.

Shape:
    B batch, T steps, I layer input size, H hidden units, D directions (1 or 2),
    F observed variables (GRU-D mask and delta), g clockwork modules.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from grud.data import masking
from grud.errors import DataError
from grud.models import arguments
from grud.models import fast as fast_paths
from grud.models.cells import ClockworkCell, GRUCell, GRUDCell, LSTMCell, PeepholeLSTMCell

__all__ = [
    "CELLS",
    "RecurrentLayer",
    "clockwork_schedule",
    "make_cell",
    "valid_steps",
    "reverse_padded",
    "variational_mask",
]

#: the recurrent cells, by config name
CELLS = ("gru", "lstm", "peephole_lstm", "clockwork", "grud")


def make_cell(
    kind: str,
    input_size: int,
    hidden_size: int,
    n_features: int,
    forget_bias: float | None = 1.0,
    hidden_decay: bool = True,
    mask_in_gates: bool = True,
    periods=None,
    period_unit: str = "steps",
) -> nn.Module:
    """The cell called ``kind`` (one of :data:`CELLS`). ``forget_bias`` applies to LSTM cells,
    ``hidden_decay``/``mask_in_gates`` to ``grud``, ``periods``/``period_unit`` to ``clockwork``."""
    if kind == "gru":
        return GRUCell(input_size, hidden_size)
    if kind == "grud":
        return GRUDCell(input_size, hidden_size, n_features, hidden_decay, mask_in_gates)
    if kind == "lstm":
        return LSTMCell(input_size, hidden_size, forget_bias)
    if kind == "peephole_lstm":
        return PeepholeLSTMCell(input_size, hidden_size, forget_bias)
    if kind == "clockwork":
        return ClockworkCell(input_size, hidden_size, periods, period_unit)
    raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {kind!r}")


def clockwork_schedule(cell: ClockworkCell, valid: Tensor, times: Tensor | None = None) -> Tensor:
    """Which module of a clockwork ``cell`` ticks at which step (Koutnik et al., ICML 2014).

    With ``period_unit="steps"`` module i ticks at steps t = 0, T_i, 2 T_i, ...; with ``"hours"``
    at the first step and then at the first step whose time is at least its period after its
    previous tick (a loop over time: the layer's job, not the cell's). Padded steps never tick.

    Shape:
        valid (B, T) 1 for t < length; times (B, T) hours, ascending within each series (needed
        for ``"hours"``) -> (B, T, g) float.
    """
    B, T = valid.shape
    periods = cell.period_values.to(valid.device)
    if cell.period_unit == "steps":
        t = torch.arange(T, device=valid.device, dtype=periods.dtype)
        ticks = (torch.remainder(t[:, None], periods[None, :]) == 0).to(valid.dtype)  # (T, g)
        return ticks[None] * valid[:, :, None]
    if times is None:
        raise ValueError("times: period_unit='hours' needs times (B, T)")
    times = times.to(torch.float64)
    last_tick = torch.full((B, len(cell.periods)), -math.inf, dtype=torch.float64, device=valid.device)
    out = []
    tol = 1e-6
    for t in range(T):
        now = times[:, t : t + 1]
        tick = (now - last_tick) >= (periods.to(torch.float64)[None, :] - tol)
        tick = tick & (valid[:, t : t + 1] > 0)
        last_tick = torch.where(tick, now.expand_as(last_tick), last_tick)
        out.append(tick)
    if not out:
        return valid.new_zeros(B, 0, len(cell.periods))
    return torch.stack(out, 1).to(valid.dtype)


def check_lengths(lengths, B: int, T: int) -> None:
    """Raise :class:`grud.DataError` unless ``lengths`` is an integer tensor (B,) with values in [0, T]."""
    if not isinstance(lengths, Tensor) or tuple(lengths.shape) != (B,):
        got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
        raise DataError(f"lengths: expected shape (B,) = ({B},), got {got}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise DataError(f"lengths: expected an integer tensor, got dtype {lengths.dtype}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise DataError(f"lengths: expected values in [0, T = {T}], got min {int(lengths.min())}, "
                        f"max {int(lengths.max())}")


def valid_steps(lengths: Tensor, T: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """1.0 where ``t < lengths[b]`` (a real step), else 0.0 (padding), in ``dtype``.

    Shape:
        lengths (B,) -> (B, T)
    """
    t = torch.arange(T, device=lengths.device)
    return (t[None, :] < lengths[:, None]).to(dtype)


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each series in time within its own length; padded steps stay where they are.

    Step t < L of series b becomes step L - 1 - t. Applying it twice gives ``x`` back.

    Shape:
        x (B, T, ...), lengths (B,) -> (B, T, ...).
    """
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device)[None, :]
    L = lengths.to(x.device)[:, None]
    index = torch.where(t < L, L - 1 - t, t)  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


def variational_mask(batch: int, size: int, p: float, like: Tensor) -> Tensor:
    """Dropout mask, already scaled by 1/(1-p), drawn once per sequence (Gal &
    Ghahramani 2016) with torch's global generator; ``like`` gives only dtype and device.

    Shape:
        -> (B, size), B = ``batch``; ``like`` any shape
    """
    keep = torch.full((batch, size), 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)


class RecurrentLayer(nn.Module):
    """One recurrent layer, one or two directions, owning the loop over time.

    Args:
        cell: one of :data:`CELLS`.
        input_size: I.
        hidden_size: H (per direction).
        n_features: F, width of ``mask``/``delta`` for the GRU-D cell.
        bidirectional: add a backward direction; it reads each series from its last real step to
            its first, and its final state is the state after step 0. Outputs and final states of
            the two directions are concatenated (forward first).
        input_dropout: variational dropout on the layer input x (one mask per sequence).
        recurrent_dropout: variational dropout on the state in front of ``W_hh``.
        forget_bias, hidden_decay, mask_in_gates, periods, period_unit: passed to the cell
            (:func:`make_cell`).
        fast: use :mod:`grud.models.fast` (else the per-step loop over the cell). The clockwork
            cell with active recurrent dropout always uses the loop (the fused path has no
            recurrent dropout).

    Shape:
        x (B, T, I), lengths (B,) int64, mask (B, T, F), delta (B, T, F) hours, times (B, T)
        hours, h0 (B, D*H) or None (the initial state of each direction, forward first; None:
        zeros; LSTM cells start their cell state at zero either way)
        -> outputs (B, T, D*H) zero at padded steps, last (B, D*H).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        n_features: int,
        bidirectional: bool = False,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        forget_bias: float | None = 1.0,
        hidden_decay: bool = True,
        mask_in_gates: bool = True,
        periods=None,
        period_unit: str = "steps",
        fast: bool = True,
    ):
        super().__init__()
        self.kind = arguments.one_of("RecurrentLayer cell", cell, CELLS)
        self.input_size = arguments.integer("RecurrentLayer input_size", input_size, 1)
        self.hidden_size = arguments.integer("RecurrentLayer hidden_size", hidden_size, 1)
        self.n_features = arguments.integer("RecurrentLayer n_features", n_features, 0)
        self.bidirectional = arguments.boolean("RecurrentLayer bidirectional", bidirectional)
        self.input_dropout = arguments.probability("RecurrentLayer input_dropout", input_dropout)
        self.recurrent_dropout = arguments.probability("RecurrentLayer recurrent_dropout", recurrent_dropout)
        self.fast = arguments.boolean("RecurrentLayer fast", fast)
        D = 2 if self.bidirectional else 1
        self.output_size = D * self.hidden_size
        self.cells = nn.ModuleList(
            make_cell(cell, input_size, hidden_size, n_features, forget_bias, hidden_decay, mask_in_gates,
                      periods, period_unit)
            for _ in range(D)
        )

    def extra_repr(self) -> str:
        return (
            f"{self.kind}, {self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
            f"input_dropout={self.input_dropout}, recurrent_dropout={self.recurrent_dropout}, fast={self.fast}"
        )

    def reset_parameters(self) -> None:
        """Each cell's own :meth:`reset_parameters` (see :mod:`grud.models.cells`)."""
        for cell in self.cells:
            cell.reset_parameters()

    # ------------------------------------------------------------------ public
    def forward(
        self,
        x: Tensor,
        lengths: Tensor,
        mask: Tensor | None = None,
        delta: Tensor | None = None,
        times: Tensor | None = None,
        h0: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x: expected shape (B, T, I) with I = {self.input_size}, got {tuple(x.shape)}")
        B, T, _ = x.shape
        if h0 is not None and tuple(h0.shape) != (B, self.output_size):
            raise ValueError(f"h0: expected shape (B, D*H) = {(B, self.output_size)}, got {tuple(h0.shape)}")
        starts = [None] * len(self.cells) if h0 is None else list(h0.to(x.dtype).split(self.hidden_size, dim=1))
        check_lengths(lengths, B, T)
        lengths = lengths.to(x.device)
        valid = valid_steps(lengths, T, x.dtype)
        needs_side = isinstance(self.cells[0], GRUDCell)
        needs_times = isinstance(self.cells[0], ClockworkCell) and self.cells[0].period_unit == "hours"
        for name, tensor, wanted in (("mask", mask, needs_side), ("delta", delta, needs_side)):
            if wanted and (tensor is None or tuple(tensor.shape) != (B, T, self.n_features)):
                got = None if tensor is None else tuple(tensor.shape)
                raise ValueError(f"{name}: expected shape (B, T, F) = {(B, T, self.n_features)}, got {got}")
        if (needs_times or (needs_side and self.bidirectional)) and (times is None or tuple(times.shape) != (B, T)):
            got = None if times is None else tuple(times.shape)
            raise ValueError(f"times: expected shape (B, T) = {(B, T)}, got {got}")

        outputs, lasts = [], []
        for direction, cell in enumerate(self.cells):
            if direction == 0:
                out, last = self._run(cell, x, valid, mask, delta, times, starts[0])
            else:
                x_r = reverse_padded(x, lengths)
                mask_r = None if mask is None else reverse_padded(mask, lengths)
                times_r = delta_r = None
                if times is not None:
                    # time running backward from each series' last real step, 0 at padded steps
                    t_last = torch.gather(times, 1, (lengths - 1).clamp(min=0)[:, None])
                    times_r = (t_last - reverse_padded(times, lengths)) * valid
                    if mask_r is not None:  # hours until the next observation, in reversed time
                        delta_r = masking.time_deltas(times_r, mask_r, lengths=lengths)
                out, last = self._run(cell, x_r, valid, mask_r, delta_r, times_r, starts[direction])
                out = reverse_padded(out, lengths)
            outputs.append(out)
            lasts.append(last)
        if len(outputs) == 1:
            return outputs[0], lasts[0]
        return torch.cat(outputs, dim=-1), torch.cat(lasts, dim=-1)

    # ------------------------------------------------------------------ one direction
    def _dropout_masks(self, B: int, like: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if not self.training:
            return None, None
        x_drop = variational_mask(B, self.input_size, self.input_dropout, like) if self.input_dropout > 0 else None
        h_drop = (
            variational_mask(B, self.hidden_size, self.recurrent_dropout, like) if self.recurrent_dropout > 0 else None
        )
        return x_drop, h_drop

    def _run(self, cell, x, valid, mask, delta, times, h0=None) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        h0 = x.new_zeros(B, self.hidden_size) if h0 is None else h0
        x_drop, h_drop = self._dropout_masks(B, x)
        update = None
        if isinstance(cell, ClockworkCell):
            update = cell.unit_update(clockwork_schedule(cell, valid, times))
        use_fast = self.fast and not (isinstance(cell, ClockworkCell) and h_drop is not None)
        if use_fast and isinstance(cell, GRUDCell) and cell.weight_mh is not None:
            # the input dropout mask is applied inside the masked input projection
            return self._run_fast(cell, x, valid, mask, delta, update, h_drop, h0, x_drop)
        if x_drop is not None:
            x = x * x_drop[:, None, :]
        if use_fast:
            return self._run_fast(cell, x, valid, mask, delta, update, h_drop, h0)
        return self._run_loop(cell, x, valid, mask, delta, update, h_drop, h0)

    def _run_fast(self, cell, x, valid, mask, delta, update, h_drop, h0, x_drop=None) -> tuple[Tensor, Tensor]:
        """Precompute what does not depend on the state for all steps, then one fused recurrence.
        ``h0`` (B, H): the initial state; ``x_drop`` (B, I): the input dropout mask, not yet applied
        (GRU-D cells with ``V m`` only)."""
        if isinstance(cell, GRUDCell):
            if cell.weight_mh is None:
                gi = cell.input_projection(x)
            else:
                gi = fast_paths.masked_input_projection(x, mask, cell.weight_ih, cell.weight_mh, cell.bias_ih,
                                                        x_scale=x_drop)
            e = None  # the hidden decay's exponent, time-major like gi; the recurrence applies exp(min(e, 0))
            if delta is not None:
                e = cell.decay_exponent(delta.transpose(0, 1).contiguous())
                e = None if e is None else e.transpose(0, 1)
            return fast_paths.gru_recurrence(gi, cell.weight_hh, cell.bias_hh, h0, valid, e, h_drop, gamma_exp=True)
        if isinstance(cell, GRUCell):
            gi = cell.input_projection(x)
            return fast_paths.gru_recurrence(gi, cell.weight_hh, cell.bias_hh, h0, valid, None, h_drop)
        if isinstance(cell, LSTMCell):
            gi = cell.input_projection(x)
            outputs, h, _ = fast_paths.lstm_recurrence(
                gi, cell.weight_hh, cell.bias_hh, h0, torch.zeros_like(h0), valid, cell.peephole_weights(), h_drop
            )
            return outputs, h
        gi = cell.input_projection(x)
        outputs, h = fast_paths.clockwork_recurrence(gi, cell.masked_weight_hh(), cell.bias_hh, h0, update)
        return outputs * valid[:, :, None], h

    def _run_loop(self, cell, x, valid, mask, delta, update, h_drop, h0) -> tuple[Tensor, Tensor]:
        """The readable reference: one cell call per step; padded steps keep the state."""
        B, T, _ = x.shape
        h = h0
        c = torch.zeros_like(h0)
        outputs = []
        for t in range(T):
            v = valid[:, t, None]
            if isinstance(cell, GRUDCell):
                h_new = cell(
                    x[:, t], h,
                    None if mask is None else mask[:, t],
                    None if delta is None else delta[:, t],
                    h_drop,
                )
            elif isinstance(cell, GRUCell):
                h_new = cell(x[:, t], h, h_drop)
            elif isinstance(cell, LSTMCell):
                h_new, c_new = cell(x[:, t], (h, c), h_drop)
                c = v * c_new + (1 - v) * c
            else:
                h_new = cell(x[:, t], h, update[:, t], h_drop)
            h = v * h_new + (1 - v) * h
            outputs.append(v * h)
        if not outputs:
            return x.new_zeros(B, 0, self.hidden_size), h
        return torch.stack(outputs, dim=1), h
