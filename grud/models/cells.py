"""Recurrent cells: one time step each, the readable reference.

Each cell computes one step from the inputs at step t and the previous state. The layers in
:mod:`grud.models.layers` own the loop over time; in their fast mode they hand the same
equations, vectorised over all steps where possible, to :mod:`grud.models.fast` and the tests
compare the two. Parameter names and gate orders follow ``torch.nn.GRUCell`` / ``LSTMCell``
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``; GRU ``[r | z | n]``, LSTM
``[i | f | g | o]``), so a torch cell's ``state_dict`` loads into the matching cell here.

Shape:
    B batch, I input size of the cell, H hidden units, F observed variables (GRU-D mask and
    delta), g clockwork modules.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from grud.errors import ConfigError
from grud.models import arguments
from grud.models.fast.gru import decay_from_exponent

__all__ = ["GRUCell", "GRUDCell", "LSTMCell", "PeepholeLSTMCell", "ClockworkCell", "split_modules"]


def _check_step(name: str, x: Tensor, width: int, batch: int | None, symbol: str) -> None:
    if x.dim() != 2 or x.shape[1] != width or (batch is not None and x.shape[0] != batch):
        b = "B" if batch is None else str(batch)
        raise ValueError(f"{name}: expected shape (B, {symbol}) = ({b}, {width}), got {tuple(x.shape)}")


class _GatedCell(nn.Module):
    """Parameters shared by the gated cells: ``weight_ih`` (G, I), ``weight_hh`` (G, H) and PyTorch's
    two bias vectors ``bias_ih``, ``bias_hh`` (G,), with G = ``n_gates`` * H."""

    n_gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        name = type(self).__name__
        self.input_size = arguments.integer(f"{name} input_size", input_size, 1)
        self.hidden_size = arguments.integer(f"{name} hidden_size", hidden_size, 1)
        G, H = self.n_gates * self.hidden_size, self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, H))
        self.bias_ih = nn.Parameter(torch.empty(G))
        self.bias_hh = nn.Parameter(torch.empty(G))
        self._init_extra()
        self.reset_parameters()

    def _init_extra(self) -> None:
        """Subclasses add their own parameters here (before :meth:`reset_parameters`)."""

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.GRUCell`` / ``LSTMCell``."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -k, k)

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for any leading shape: (..., I) -> (..., G)."""
        return nnf.linear(x, self.weight_ih, self.bias_ih)


class GRUCell(_GatedCell):
    """Gated recurrent unit, one step, in PyTorch's formulation (Cho et al. 2014).

    ::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    The reset gate multiplies ``W_hn h + b_hn`` (torch / cuDNN), not ``h`` before the matrix
    product as in Cho et al.; ``z`` is the gate that keeps the old state.

    Args:
        input_size: I.
        hidden_size: H.

    Shape:
        x (B, I), h (B, H), hidden_dropout (B, H) or None -> h' (B, H).
    """

    n_gates = 3

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for any leading shape: (..., I) -> (..., 3H)."""
        return nnf.linear(x, self.weight_ih, self.bias_ih)

    def recurrent_step(self, gi: Tensor, h_hat: Tensor, hidden_dropout: Tensor | None = None) -> Tensor:
        """The part that needs the state: gates from ``gi`` (B, 3H) and ``h_hat`` (B, H).

        ``hidden_dropout`` (variational, already scaled by 1/(1-p)) multiplies ``h_hat`` in front
        of ``W_hh`` only; the carried term ``z * h_hat`` is not dropped.
        """
        H = self.hidden_size
        hd = h_hat if hidden_dropout is None else h_hat * hidden_dropout
        gh = nnf.linear(hd, self.weight_hh, self.bias_hh)
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1 - z) * n + z * h_hat

    def forward(self, x: Tensor, h: Tensor, hidden_dropout: Tensor | None = None) -> Tensor:
        _check_step("x", x, self.input_size, None, "I")
        _check_step("h", h, self.hidden_size, x.shape[0], "H")
        return self.recurrent_step(self.input_projection(x), h, hidden_dropout)


class GRUDCell(GRUCell):
    """GRU-D cell (Che et al., Sci. Rep. 2018, eqs. 4-5): the GRU above with hidden decay and
    the mask in its gates.

    ::

        gamma_h = exp(-relu(W_gamma_h delta + b_gamma_h))          (full matrix, H x F)
        h_hat   = gamma_h * h
        r  = sigmoid(W_ir x + V_r m + b_ir + W_hr h_hat + b_hr)
        z  = sigmoid(W_iz x + V_z m + b_iz + W_hz h_hat + b_hz)
        n  = tanh(W_in x + V_n m + b_in + r * (W_hn h_hat + b_hn))
        h' = (1 - z) * n + z * h_hat

    Differences from the paper's equations, all reparametrisations of the same family except the
    first: (1) the reset gate multiplies ``W_hn h_hat + b_hn`` (torch's GRU) where the paper has
    ``U (r * h_hat)``; (2) two bias vectors per gate (``b_ih``, ``b_hh``) as ``torch.nn.GRUCell``
    where the paper has one; (3) ``z`` keeps the old state (the paper's ``z`` is ``1 - z`` here).
    ``x`` is the decayed input x-hat from :class:`grud.models.inputs.DecayInput` (or any other input
    strategy). With ``hidden_decay=False`` and ``mask_in_gates=False`` it is exactly
    :class:`GRUCell` / ``torch.nn.GRUCell``.

    Args:
        input_size: I (F for x-hat in the first layer).
        hidden_size: H.
        n_features: F, width of ``mask`` and ``delta``.
        hidden_decay: decay the previous state by ``gamma_h`` (else ``h_hat = h``).
        mask_in_gates: add ``V m`` to every gate (else the mask is not seen).

    Shape:
        x (B, I), h (B, H), mask (B, F), delta (B, F) hours, hidden_dropout (B, H) or None
        -> h' (B, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        n_features: int,
        hidden_decay: bool = True,
        mask_in_gates: bool = True,
    ):
        # plain attributes may be set before nn.Module.__init__; _init_extra reads them
        self.n_features = arguments.integer("GRUDCell n_features", n_features, 1)
        self.hidden_decay = bool(hidden_decay)
        self.mask_in_gates = bool(mask_in_gates)
        super().__init__(input_size, hidden_size)

    def _init_extra(self) -> None:
        G, H, F = 3 * self.hidden_size, self.hidden_size, self.n_features
        if self.mask_in_gates:
            self.weight_mh = nn.Parameter(torch.empty(G, F))
        else:
            self.register_parameter("weight_mh", None)
        if self.hidden_decay:
            self.decay_weight = nn.Parameter(torch.empty(H, F))
            self.decay_bias = nn.Parameter(torch.empty(H))
        else:
            self.register_parameter("decay_weight", None)
            self.register_parameter("decay_bias", None)

    def reset_parameters(self) -> None:
        """GRU weights and biases and the mask weights ``V`` ~ U(-1/sqrt(H), 1/sqrt(H)) (torch's GRU
        rule); hidden-decay weights ``W_gamma_h`` ~ U(0, 0.1 / F) and bias 0.

        The decay starts non-negative so that ``relu`` is active for every ``delta > 0`` (a
        negative weight with a zero bias would never receive a gradient) and ``gamma_h = 1`` at
        ``delta = 0``; each unit starts decaying by at most ``exp(-0.1)`` per hour of mean delta.
        """
        super().reset_parameters()
        k = 1.0 / math.sqrt(self.hidden_size)
        if self.weight_mh is not None:
            nn.init.uniform_(self.weight_mh, -k, k)
        if self.decay_weight is not None:
            nn.init.uniform_(self.decay_weight, 0.0, 0.1 / max(self.n_features, 1))
            nn.init.zeros_(self.decay_bias)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, n_features={self.n_features}, "
            f"hidden_decay={self.hidden_decay}, mask_in_gates={self.mask_in_gates}"
        )

    def input_projection(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``W_ih x + V m + b_ih`` for any leading shape: -> (..., 3H).

        ``V m`` is added in place by a second product rather than one product over ``[x ; m]``:
        the mask needs no gradient, so the backward computes the gradient of ``x`` only (one
        product over ``[x ; m]`` would also compute a discarded gradient for the mask). Both
        products run on 2-D tensors so that the in-place sum is on a base tensor: on a view of
        ``gi``, autograd would clone and copy the whole gradient of ``gi`` in the backward.
        """
        lead = x.shape[:-1]
        gi = nnf.linear(x.reshape(-1, x.shape[-1]), self.weight_ih, self.bias_ih)
        if self.weight_mh is not None:
            if mask is None:
                raise ValueError("mask: the GRU-D cell with mask_in_gates=True needs the mask (B, F)")
            gi.addmm_(mask.reshape(-1, mask.shape[-1]), self.weight_mh.t())
        return gi.view(*lead, gi.shape[-1])

    def decay_exponent(self, delta: Tensor) -> Tensor | None:
        """``e = -(W_gamma_h delta + b)``, so that ``gamma_h = exp(min(e, 0))``, for any leading
        shape: (..., F) -> (..., H); None when hidden decay is off."""
        if self.decay_weight is None:
            return None
        return nnf.linear(delta, -self.decay_weight, -self.decay_bias)

    def decay_factor(self, delta: Tensor) -> Tensor | None:
        """``gamma_h = exp(-relu(W_gamma_h delta + b))`` for any leading shape: (..., F) -> (..., H);
        None when hidden decay is off."""
        e = self.decay_exponent(delta)
        # exp(-relu(a)) = exp(min(-a, 0)); the negation goes into the (small) weights. Same values;
        # only at a = 0 exactly does the subgradient differ (clamp passes it, relu does not)
        return None if e is None else decay_from_exponent(e)

    def forward(
        self,
        x: Tensor,
        h: Tensor,
        mask: Tensor | None = None,
        delta: Tensor | None = None,
        hidden_dropout: Tensor | None = None,
    ) -> Tensor:
        B = x.shape[0]
        _check_step("x", x, self.input_size, None, "I")
        _check_step("h", h, self.hidden_size, B, "H")
        if self.weight_mh is not None:
            if mask is None:
                raise ValueError("mask: the GRU-D cell with mask_in_gates=True needs the mask (B, F)")
            _check_step("mask", mask, self.n_features, B, "F")
        h_hat = h
        if self.decay_weight is not None:
            if delta is None:
                raise ValueError("delta: the GRU-D cell with hidden_decay=True needs delta (B, F)")
            _check_step("delta", delta, self.n_features, B, "F")
            h_hat = self.decay_factor(delta) * h
        return self.recurrent_step(self.input_projection(x, mask), h_hat, hidden_dropout)


class LSTMCell(_GatedCell):
    """Long short-term memory, one step, in PyTorch's formulation (gate order ``[i | f | g | o]``).

    ::

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f likewise, o likewise
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f * c + i * g;   h' = o * tanh(c')

    Two bias vectors as ``torch.nn.LSTMCell``: 4H(I + H) + 8H parameters.

    Args:
        input_size: I.
        hidden_size: H.
        forget_bias: initial value of the forget-gate bias (``b_if``; ``b_hf`` starts at 0), 1.0
            by default (Jozefowicz et al. 2015); None keeps torch's uniform initialisation.

    Shape:
        x (B, I), state (h, c) each (B, H), hidden_dropout (B, H) or None -> (h', c') each (B, H).
    """

    n_gates = 4

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float | None = 1.0):
        self.forget_bias = arguments.finite_or_none(f"{type(self).__name__} forget_bias", forget_bias)
        super().__init__(input_size, hidden_size)

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)) (as ``torch.nn.LSTMCell``); then, unless
        ``forget_bias`` is None, ``b_if = forget_bias`` and ``b_hf = 0`` so the forget gate starts
        open (Jozefowicz et al., ICML 2015)."""
        super().reset_parameters()
        if self.forget_bias is not None:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, forget_bias={self.forget_bias}"

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for any leading shape: (..., I) -> (..., 4H)."""
        return nnf.linear(x, self.weight_ih, self.bias_ih)

    def peephole_weights(self) -> Tensor | None:
        """(3, H) = (w_ci, w_cf, w_co), or None for the plain LSTM."""
        return None

    def recurrent_step(
        self, gi: Tensor, state: tuple[Tensor, Tensor], hidden_dropout: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Gates from ``gi`` (B, 4H) and the previous ``(h, c)``; dropout on h in front of W_hh."""
        h, c = state
        H = self.hidden_size
        hd = h if hidden_dropout is None else h * hidden_dropout
        a = gi + nnf.linear(hd, self.weight_hh, self.bias_hh)
        a_i, a_f, a_g, a_o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        peep = self.peephole_weights()
        if peep is not None:
            a_i = a_i + peep[0] * c
            a_f = a_f + peep[1] * c
        c_new = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        if peep is not None:
            a_o = a_o + peep[2] * c_new
        h_new = torch.sigmoid(a_o) * torch.tanh(c_new)
        return h_new, c_new

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor], hidden_dropout: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_step("x", x, self.input_size, None, "I")
        _check_step("h", state[0], self.hidden_size, x.shape[0], "H")
        _check_step("c", state[1], self.hidden_size, x.shape[0], "H")
        return self.recurrent_step(self.input_projection(x), state, hidden_dropout)


class PeepholeLSTMCell(LSTMCell):
    """LSTM with diagonal peephole connections (Gers & Schmidhuber 2000; Graves 2013, eq. 7-11).

    ::

        i  = sigmoid(W_ii x + W_hi h + b_i + w_ci * c)       (c = c_{t-1})
        f  = sigmoid(W_if x + W_hf h + b_f + w_cf * c)
        c' = f * c + i * tanh(W_ig x + W_hg h + b_g)
        o  = sigmoid(W_io x + W_ho h + b_o + w_co * c')       (the output gate sees c_t)
        h' = o * tanh(c')

    Parameters: those of :class:`LSTMCell` plus ``peephole`` (3, H) = (w_ci, w_cf, w_co).

    Shape:
        x (B, I), state (h, c) each (B, H), hidden_dropout (B, H) or None -> (h', c') each (B, H).
    """

    def _init_extra(self) -> None:
        self.peephole = nn.Parameter(torch.empty(3, self.hidden_size))

    def reset_parameters(self) -> None:
        """As :meth:`LSTMCell.reset_parameters`; peephole weights ~ U(-1/sqrt(H), 1/sqrt(H))."""
        super().reset_parameters()
        k = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.peephole, -k, k)

    def peephole_weights(self) -> Tensor:
        return self.peephole


def split_modules(hidden_size: int, n_modules: int) -> list[int]:
    """Sizes of ``n_modules`` clockwork modules sharing ``hidden_size`` units as evenly as possible
    (the first ``hidden_size mod n_modules`` modules get one unit more)."""
    base, extra = divmod(int(hidden_size), int(n_modules))
    return [base + (1 if i < extra else 0) for i in range(int(n_modules))]


class ClockworkCell(nn.Module):
    """Clockwork RNN, one step (Koutnik, Greff, Gomez & Schmidhuber, ICML 2014).

    The H hidden units are split into g modules with strictly increasing periods T_1 < ... < T_g.
    At a step where module i ticks, its units become::

        h'_i = tanh(W_ih,i x + b_ih,i + sum_{j >= i} W_hh,ij h_j + b_hh,i)

    and otherwise keep their value. Connections run from slower modules to faster ones (and fully
    within a module): ``weight_hh`` is multiplied by the block upper-triangular ``connectivity``
    mask (unit k receives from unit l only when module(l) >= module(k)). When a module ticks is
    decided by the layer (:func:`grud.models.layers.clockwork_schedule`): with ``period_unit="steps"`` at steps
    t = 0, T_i, 2 T_i, ...; with ``period_unit="hours"`` at the first step and then whenever real
    time has advanced by at least T_i hours since the module last ticked.

    Args:
        input_size: I.
        hidden_size: H.
        periods: g strictly increasing positive periods (steps or hours).
        period_unit: ``"steps"`` or ``"hours"``.

    Shape:
        x (B, I), h (B, H), update (B, H) float 1 where the unit's module ticks,
        hidden_dropout (B, H) or None -> h' (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, periods, period_unit: str = "steps"):
        super().__init__()
        self.input_size = arguments.integer("ClockworkCell input_size", input_size, 1)
        self.hidden_size = H = arguments.integer("ClockworkCell hidden_size", hidden_size, 1)
        self.period_unit = arguments.one_of("ClockworkCell period_unit", period_unit, ("steps", "hours"))
        self.periods = arguments.periods_list("ClockworkCell periods", periods, self.period_unit == "steps")
        if len(self.periods) > H:
            raise ConfigError(f"ClockworkCell periods: expected at most hidden_size = {H} modules (one unit each "
                              f"at least), got {len(self.periods)} periods")
        sizes = split_modules(H, len(self.periods))
        module_of_unit = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self.module_sizes = sizes
        self.register_buffer("module_of_unit", module_of_unit, persistent=False)
        connectivity = (module_of_unit[None, :] >= module_of_unit[:, None]).float()
        self.register_buffer("connectivity", connectivity, persistent=False)
        self.register_buffer(
            "period_values", torch.tensor([float(p) for p in self.periods]), persistent=False
        )
        self.weight_ih = nn.Parameter(torch.empty(H, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(H, H))
        self.bias_ih = nn.Parameter(torch.empty(H))
        self.bias_hh = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)) (torch's ``RNNCell`` rule); entries of
        ``weight_hh`` outside the connectivity mask exist but never act and get zero gradient."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -k, k)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, periods={self.periods}, period_unit={self.period_unit!r}"

    def masked_weight_hh(self) -> Tensor:
        """(H, H) recurrent weights times the block-triangular connectivity."""
        return self.weight_hh * self.connectivity

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for any leading shape: (..., I) -> (..., H)."""
        return nnf.linear(x, self.weight_ih, self.bias_ih)

    def unit_update(self, module_ticks: Tensor) -> Tensor:
        """Module ticks (..., g) -> unit ticks (..., H)."""
        return module_ticks.index_select(-1, self.module_of_unit.to(module_ticks.device))

    def forward(
        self, x: Tensor, h: Tensor, update: Tensor, hidden_dropout: Tensor | None = None
    ) -> Tensor:
        B = x.shape[0]
        _check_step("x", x, self.input_size, None, "I")
        _check_step("h", h, self.hidden_size, B, "H")
        _check_step("update", update, self.hidden_size, B, "H")
        hd = h if hidden_dropout is None else h * hidden_dropout
        h_new = torch.tanh(self.input_projection(x) + nnf.linear(hd, self.masked_weight_hh(), self.bias_hh))
        return update * h_new + (1 - update) * h
