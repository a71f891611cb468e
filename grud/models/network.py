"""The assembled recurrent network: an input strategy, then stacked recurrent layers.

:class:`RecurrentNetwork` is the one module every recurrent model of grud is an instance of;
the presets of :mod:`grud.models.presets` (GRU-D and the baselines of Che et al., Sci. Rep.
2018; the LSTM family; the Clockwork RNN) only choose its arguments. It takes the batch in
grud's vocabulary and returns per-step states and each series' last state; a task head
(:mod:`grud.models.heads`) turns those into predictions.

Shape:
    B batch, T steps, F observed variables, S static variables, H hidden units per direction,
    H_out = H * (2 if bidirectional else 1).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from grud.errors import ConfigError, DataError
from grud.models import arguments
from grud.models.inputs import INPUTS, MIXED_DELTAS, make_input
from grud.models.fast import native
from grud.models.layers import CELLS, RecurrentLayer, check_lengths

__all__ = ["RecurrentNetwork", "HPARAM_NAMES", "PERIOD_UNITS", "check_hparams"]

PERIOD_UNITS = ("steps", "hours")

#: constructor arguments (besides n_features, n_static) and their defaults
HPARAM_DEFAULTS = dict(
    input="decay",
    cell="grud",
    hidden_size=64,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    input_dropout=0.0,
    recurrent_dropout=0.0,
    forget_bias=1.0,
    input_decay=True,
    hidden_decay=True,
    mask_in_gates=True,
    n_modules=None,
    periods=None,
    period_unit="steps",
    fast=True,
    static_input=False,
    static_state=False,
    mixed_delta="log1p",
)
HPARAM_NAMES = ("n_features", "n_static") + tuple(HPARAM_DEFAULTS)


def _key(name: str) -> str:
    return f"model.{name}"


def _int(name: str, value, minimum: int) -> int:
    return arguments.integer(_key(name), value, minimum)


def _prob(name: str, value) -> float:
    return arguments.probability(_key(name), value)


def _bool(name: str, value) -> bool:
    return arguments.boolean(_key(name), value)


def _choice(name: str, value, allowed: Sequence[str]) -> str:
    return arguments.one_of(_key(name), value, allowed)


def check_hparams(**hp) -> dict:
    """Validate and normalise constructor arguments; return the plain dict (ints, floats, bools,
    strings, lists, None). Unknown names or values raise :class:`grud.ConfigError` listing the
    allowed ones."""
    unknown = sorted(set(hp) - set(HPARAM_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown model argument(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(HPARAM_NAMES)}"
        )
    out = dict(HPARAM_DEFAULTS)
    out.update(hp)
    out["n_features"] = _int("n_features", out.get("n_features"), 1)
    out["n_static"] = _int("n_static", out.get("n_static", 0), 0)
    out["input"] = _choice("input", out["input"], INPUTS)
    out["cell"] = _choice("cell", out["cell"], CELLS)
    out["hidden_size"] = _int("hidden_size", out["hidden_size"], 1)
    out["num_layers"] = _int("num_layers", out["num_layers"], 1)
    for name in ("dropout", "input_dropout", "recurrent_dropout"):
        out[name] = _prob(name, out[name])
    out["forget_bias"] = arguments.finite_or_none(_key("forget_bias"), out["forget_bias"])
    for name in ("bidirectional", "input_decay", "hidden_decay", "mask_in_gates", "fast", "static_input",
                 "static_state"):
        out[name] = _bool(name, out[name])
    out["period_unit"] = _choice("period_unit", out["period_unit"], PERIOD_UNITS)
    out["mixed_delta"] = _choice("mixed_delta", out["mixed_delta"], MIXED_DELTAS)

    n_modules, periods = out["n_modules"], out["periods"]
    if n_modules is not None:
        n_modules = _int("n_modules", n_modules, 1)
    if periods is not None:
        periods = arguments.periods_list(_key("periods"), periods, out["period_unit"] == "steps")
        if n_modules is not None and n_modules != len(periods):
            raise ConfigError(
                f"{_key('n_modules')}: expected {len(periods)} (the number of periods {periods}), got {n_modules}"
            )
    out["n_modules"], out["periods"] = n_modules, periods
    if out["cell"] == "clockwork":
        g = len(periods) if periods is not None else (n_modules if n_modules is not None else 4)
        if g > out["hidden_size"]:
            raise ConfigError(
                f"{_key('n_modules')}: expected at most hidden_size = {out['hidden_size']} clockwork modules, got {g}"
            )
    return {k: out[k] for k in HPARAM_NAMES}


def _holds_nonfinite(tensors: list) -> bool:
    """Whether any of ``tensors`` holds a NaN or an infinity. The native kernel reads each it can
    in one pass; the others are summed in float64, one reduction each and a single sync (a NaN or
    an infinity makes the sum non-finite; float32 values cannot overflow a float64 sum)."""
    rest = []
    for x in tensors:
        found = native.any_nonfinite(x)
        if found:
            return True
        if found is None:
            rest.append(x)
    return bool(rest) and not bool(torch.isfinite(torch.stack([x.sum(dtype=torch.float64) for x in rest]).sum()))


class RecurrentNetwork(nn.Module):
    """Input strategy + ``num_layers`` recurrent layers: GRU-D, its baselines, LSTMs, Clockwork RNN.

    The input strategy (``input``) decides what the network does with unobserved entries
    (:mod:`grud.models.inputs`); the cell (``cell``) is the recurrent core
    (:mod:`grud.models.cells`); the layers (:mod:`grud.models.layers`) own the loop over time.
    Any input crosses with any cell.

    Args:
        n_features: F.
        n_static: S (read only with ``static_input`` or ``static_state``; the task head
            concatenates them anyway).
        input: ``mean`` | ``forward`` | ``mixed`` | ``decay`` (Che et al. 2018).
        cell: ``gru`` | ``lstm`` | ``peephole_lstm`` | ``clockwork`` | ``grud``.
        hidden_size: H, units per direction and layer.
        num_layers: stacked layers; layer l > 0 reads layer l - 1's outputs.
        bidirectional: add a backward direction per layer (starts at each series' last real step).
        dropout: ordinary dropout on the outputs of every layer but the last (as ``torch.nn.LSTM``).
        input_dropout: variational dropout on each layer's input x (one mask per sequence).
        recurrent_dropout: variational dropout on the state in front of the recurrent weights.
        forget_bias: initial LSTM forget-gate bias (Jozefowicz et al. 2015); LSTM cells only;
            None keeps torch's uniform initialisation.
        input_decay: ``decay`` input only: learn gamma_x (False: gamma_x = 1, forward filling).
        hidden_decay: ``grud`` cell only: decay the previous state by gamma_h.
        mask_in_gates: ``grud`` cell only: feed the mask to every gate (V m).
        n_modules: ``clockwork`` only: number of modules g (default: len(periods), else 4).
        periods: ``clockwork`` only: strictly increasing periods (default 1, 2, 4, ..., 2^(g-1)).
        period_unit: ``clockwork`` only: ``steps`` (tick when t mod T_i = 0) or ``hours`` (tick
            when real time has advanced by T_i hours since the module's last tick).
        fast: use the fused recurrences of :mod:`grud.models.fast` (False: per-step cell loop).
        static_input: append the S static features to the first layer's input at every step
            (so the recurrence is conditioned on them from the first step on).
        static_state: start every direction of the first layer from ``h0 = tanh(W_s s + b_s)``
            instead of zeros (W_s, b_s zero-initialised, so training starts from the zero state);
            a series with no step (T = 0) is then its static features' state.
        mixed_delta: ``mixed`` input only: feed delta as ``log1p`` of the hours (default; raw hours span
            0-48 and swamp the other inputs) or in ``hours``, unscaled, as in the paper.

    With the ``grud`` cell every layer receives the mask and delta (deeper layers too); the
    backward direction uses the time to the next observation as its delta. The input strategy
    runs once, forward in time, for both directions.

    Shape:
        values (B, T, F) normalised, 0 where unobserved; mask (B, T, F) 1 = observed;
        delta (B, T, F) hours; times (B, T) hours; lengths (B,) int64; static (B, S) or None
        -> outputs (B, T, H_out) zero where t >= length, last (B, H_out).
    """

    def __init__(
        self,
        n_features: int,
        n_static: int = 0,
        input: str = "decay",
        cell: str = "grud",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        forget_bias: float | None = 1.0,
        input_decay: bool = True,
        hidden_decay: bool = True,
        mask_in_gates: bool = True,
        n_modules: int | None = None,
        periods: list | None = None,
        period_unit: str = "steps",
        fast: bool = True,
        static_input: bool = False,
        static_state: bool = False,
        mixed_delta: str = "log1p",
    ):
        super().__init__()
        hp = check_hparams(
            n_features=n_features, n_static=n_static, input=input, cell=cell, hidden_size=hidden_size,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout, forget_bias=forget_bias, input_decay=input_decay,
            hidden_decay=hidden_decay, mask_in_gates=mask_in_gates, n_modules=n_modules, periods=periods,
            period_unit=period_unit, fast=fast, static_input=static_input,
            static_state=static_state, mixed_delta=mixed_delta,
        )
        self._hparams = hp
        F, H = hp["n_features"], hp["hidden_size"]
        self.n_features, self.n_static = F, hp["n_static"]
        self.hidden_size, self.num_layers = H, hp["num_layers"]
        self.bidirectional = hp["bidirectional"]
        self.output_size = H * (2 if self.bidirectional else 1)

        cell_periods = hp["periods"]
        if hp["cell"] == "clockwork" and cell_periods is None:
            g = hp["n_modules"] if hp["n_modules"] is not None else 4
            cell_periods = [2**i for i in range(g)] if hp["period_unit"] == "steps" else [float(2**i) for i in range(g)]
        self.periods = cell_periods

        self.register_buffer("x_mean", torch.zeros(F))
        self.input_layer = make_input(hp["input"], F, hp["input_decay"], hp["mixed_delta"])
        self.static_input = hp["static_input"] and self.n_static > 0
        layers = []
        size = self.input_layer.out_features + (self.n_static if self.static_input else 0)
        for _ in range(self.num_layers):
            layers.append(
                RecurrentLayer(
                    hp["cell"], size, H, F,
                    bidirectional=self.bidirectional,
                    input_dropout=hp["input_dropout"],
                    recurrent_dropout=hp["recurrent_dropout"],
                    forget_bias=hp["forget_bias"],
                    hidden_decay=hp["hidden_decay"],
                    mask_in_gates=hp["mask_in_gates"],
                    periods=cell_periods,
                    period_unit=hp["period_unit"],
                    fast=hp["fast"],
                )
            )
            size = layers[-1].output_size
        self.layers = nn.ModuleList(layers)
        self.between_layers = nn.Dropout(hp["dropout"])
        self.initial_state = None  # static_state: W_s, b_s of the first layer's h0 (both directions)
        if hp["static_state"] and self.n_static > 0:
            self.initial_state = nn.Linear(self.n_static, layers[0].output_size)
            self._reset_initial_state()

    # ------------------------------------------------------------------ configuration
    @property
    def static_state(self) -> bool:
        """Whether the first layer starts from the static features (``static_state`` and S > 0)."""
        return self.initial_state is not None

    @property
    def hparams(self) -> dict:
        """The plain constructor arguments: ``RecurrentNetwork(**net.hparams)`` rebuilds it."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._hparams.items()}

    def extra_repr(self) -> str:
        hp = self._hparams
        return f"input={hp['input']!r}, cell={hp['cell']!r}, output_size={self.output_size}"

    def _reset_initial_state(self) -> None:
        nn.init.zeros_(self.initial_state.weight)
        nn.init.zeros_(self.initial_state.bias)

    def reset_parameters(self) -> None:
        """The input strategy's and every layer's own ``reset_parameters`` (see those modules);
        ``static_state``'s W_s and b_s to zeros (the first state starts as the zero state)."""
        if hasattr(self.input_layer, "reset_parameters"):
            self.input_layer.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        if self.initial_state is not None:
            self._reset_initial_state()

    def set_input_means(self, means) -> None:
        """Store the training mean of each variable (normalised space) in the ``x_mean`` buffer.

        Accepts a tensor, array or list of F finite numbers. The buffer is in ``state_dict``.
        """
        t = torch.as_tensor(np.asarray(means, dtype=np.float32) if not isinstance(means, Tensor) else means)
        t = t.detach().to(dtype=self.x_mean.dtype, device=self.x_mean.device).reshape(-1)
        if t.shape != (self.n_features,):
            raise DataError(f"input means: expected {self.n_features} values (one per variable), got {t.numel()}")
        if not torch.isfinite(t).all():
            raise DataError("input means: expected finite numbers, got NaN or infinity")
        self.x_mean.copy_(t)

    # ------------------------------------------------------------------ forward
    def _check_batch(self, values, mask, delta, times, lengths, static) -> None:
        if not isinstance(values, Tensor) or values.dim() != 3 or values.shape[2] != self.n_features:
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise DataError(f"values: expected shape (B, T, F) with F = {self.n_features}, got {got}")
        B, T, F = values.shape
        for name, x in (("mask", mask), ("delta", delta)):
            if not isinstance(x, Tensor) or tuple(x.shape) != (B, T, F):
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise DataError(f"{name}: expected shape (B, T, F) = {(B, T, F)}, got {got}")
        if not isinstance(times, Tensor) or tuple(times.shape) != (B, T):
            got = tuple(times.shape) if isinstance(times, Tensor) else type(times).__name__
            raise DataError(f"times: expected shape (B, T) = {(B, T)}, got {got}")
        check_lengths(lengths, B, T)
        if static is not None:
            if not isinstance(static, Tensor) or static.dim() != 2 or static.shape[0] != B:
                got = tuple(static.shape) if isinstance(static, Tensor) else type(static).__name__
                raise DataError(f"static: expected shape (B, S) with B = {B}, got {got}")
        def real_steps(x: Tensor) -> Tensor:  # (B, T, 1): padding (steps >= lengths) may hold any finite value
            return (torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None])[..., None]

        if mask.numel():
            other = (mask != 0) & (mask != 1)  # also NaN: NaN != 0 and NaN != 1
            if other.any():  # only real steps count
                other &= real_steps(mask)
            if other.any():
                first = tuple(int(i) for i in other.nonzero()[0])
                raise DataError(f"mask: expected 0 (unobserved) or 1 (observed) everywhere, got {mask[first].item()} "
                                f"at index {first} ({int(other.sum())} entries are neither)")
        if delta.numel() and bool(delta.amin() < 0):  # a step back in time (NaN is reported below); amin: one
            # reduction, about 30 us at B=64, T=50, F=37 on one CPU thread ((delta < 0).any() took 180)
            back = (delta < 0) & real_steps(delta)
            if back.any():
                first = tuple(int(i) for i in back.nonzero()[0])
                raise DataError(f"delta: expected hours since the last observation (>= 0), got {delta[first].item()} "
                                f"at index {first} ({int(back.sum())} negative entries): are the times ascending "
                                "within each series?")
        checked = [(n, x) for n, x in (("values", values), ("mask", mask), ("delta", delta), ("times", times),
                                        ("static", static)) if x is not None and x.is_floating_point()]
        if _holds_nonfinite([x for _, x in checked]):
            for name, x in checked:
                for what, bad in (("NaN", torch.isnan(x)), ("infinite value(s)", torch.isinf(x))):
                    if bad.any():
                        first = tuple(int(i) for i in bad.nonzero()[0])
                        raise DataError(
                            f"{name}: contains {int(bad.sum())} {what} (first at index {first}); expected "
                            f"{'NaN replaced before the network (0 where unobserved, with mask 0)' if name == 'values' and what == 'NaN' else 'finite numbers'}"
                        )

    def forward(
        self,
        values: Tensor,
        mask: Tensor,
        delta: Tensor,
        times: Tensor,
        lengths: Tensor,
        static: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the network; see the class docstring for shapes. ``static`` is read only with
        ``static_input`` or ``static_state`` (then required)."""
        self._check_batch(values, mask, delta, times, lengths, static)
        for flag, on in (("static_input", self.static_input), ("static_state", self.static_state)):
            if on and (static is None or static.shape[1] != self.n_static):
                got = None if static is None else tuple(static.shape)
                raise DataError(f"static: expected shape (B, S) with S = {self.n_static} ({flag}), got {got}")
        dtype = self.x_mean.dtype  # the module's floating dtype (follows .double() / .half())
        B, T = values.shape[:2]
        if B == 0:
            return values.new_zeros(0, T, self.output_size, dtype=dtype), values.new_zeros(0, self.output_size, dtype=dtype)
        if T == 0:  # no step: the final state is the initial one; one padded step gives it on every path
            step = [x.new_zeros(B, 1, *x.shape[2:]) for x in (values, mask, delta, times)]
            outputs, last = self(*step, torch.zeros_like(lengths), static)
            return outputs[:, :0], last
        values = values.to(dtype)
        mask = mask.to(dtype)
        delta = delta.to(dtype)
        times = times.to(dtype)
        x_mean = self.x_mean.to(dtype)
        x = self.input_layer(values, mask, delta, x_mean)
        if self.static_input:
            x = torch.cat([x, static.to(dtype)[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        h0 = torch.tanh(self.initial_state(static.to(dtype))) if self.static_state else None
        last = None
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.between_layers(x)
            x, last = layer(x, lengths, mask, delta, times, h0 if i == 0 else None)
        return x, last
