"""Input strategies: what a model does with missing inputs before its recurrent core.

Every strategy maps the batch to the tensor the first recurrent layer reads, vectorised over all
steps (none depends on the hidden state). The baselines of Che et al. (Sci. Rep. 2018,
"Baselines") and the GRU-D input decay (eq. 3):

* ``mean``    x-tilde: ``m * x + (1 - m) * x_mean`` (GRU-Mean)
* ``forward`` last observation carried forward, the training mean before the first (GRU-Forward)
* ``mixed``   ``[m * x + (1 - m) * x_mean ; m ; log1p(delta)]`` concatenated (GRU-Simple); the
  paper feeds delta in hours (``mixed_delta="hours"``), which scored 0.03 lower validation AUROC
  on PhysioNet 2012 (see NOTES.md)
* ``decay``   ``m * x + (1 - m) * (gamma_x * x_last + (1 - gamma_x) * x_mean)``,
  ``gamma_x = exp(-relu(w * delta + b))`` with one weight per variable (GRU-D)

``x_mean`` is the training mean of each variable in the normalised space (the network's buffer).

Shape:
    values (B, T, F) normalised, 0 where unobserved; mask (B, T, F) 1 = observed;
    delta (B, T, F) hours since last observation; x_mean (F,) -> (B, T, F_in) with F_in =
    :attr:`out_features` (F, or 3F for ``mixed``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from grud.data import masking
from grud.models.fast.decay import decay_input

__all__ = ["INPUTS", "MIXED_DELTAS", "MeanInput", "ForwardInput", "MixedInput", "DecayInput", "make_input"]

#: the input strategies, by config name
INPUTS = ("mean", "forward", "mixed", "decay")
#: how the ``mixed`` input feeds delta: in hours (the paper) or as log1p(hours)
MIXED_DELTAS = ("hours", "log1p")


def _mean_imputed(values: Tensor, mask: Tensor, x_mean: Tensor) -> Tensor:
    return mask * values + (1 - mask) * x_mean


def _last_observed(values: Tensor, mask: Tensor, x_mean: Tensor) -> Tensor:
    """x at observed entries, else the last observation before t, else ``x_mean``."""
    return masking.forward_fill(values, mask, fill=x_mean)


class MeanInput(nn.Module):
    """GRU-Mean input (Che et al. 2018): unobserved entries replaced by the training mean.

    No parameters. Shape: see the module docstring; F_in = F.
    """

    kind = "mean"

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = self.out_features = int(n_features)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}"

    def forward(self, values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor) -> Tensor:
        return _mean_imputed(values, mask, x_mean)


class ForwardInput(MeanInput):
    """GRU-Forward input (Che et al. 2018): last observation carried forward; the training mean
    before a variable's first observation.

    No parameters. Shape: see the module docstring; F_in = F.
    """

    kind = "forward"

    def forward(self, values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor) -> Tensor:
        return _last_observed(values, mask, x_mean)


class MixedInput(MeanInput):
    """GRU-Simple input (Che et al. 2018): mean-imputed values, the mask and delta concatenated.

    Values are mean-imputed (x-tilde), which is the authors' released code
    (``x_imputation='zero'`` on normalised data). ``delta="hours"`` feeds delta unscaled, as in the
    paper: tens of hours next to z-scores near 0 and a 0/1 mask. ``delta="log1p"`` feeds
    ``log1p(delta)`` (0 at delta 0, about 3.9 at 48 h), on the scale of the other inputs.
    No parameters. Shape: see the module docstring; F_in = 3F, in the order [x ; m ; delta].
    """

    kind = "mixed"

    def __init__(self, n_features: int, delta: str = "log1p"):
        super().__init__(n_features)
        if delta not in MIXED_DELTAS:
            raise ValueError(f"mixed delta: expected one of {', '.join(MIXED_DELTAS)}, got {delta!r}")
        self.delta = delta
        self.out_features = 3 * self.n_features

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, delta={self.delta!r}"

    def forward(self, values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor) -> Tensor:
        d = torch.log1p(delta) if self.delta == "log1p" else delta
        return torch.cat([_mean_imputed(values, mask, x_mean), mask, d], dim=-1)


class DecayInput(MeanInput):
    """GRU-D input decay (Che et al. 2018, eq. 3 and the definition of gamma in eq. 1).

    ::

        gamma_x = exp(-relu(w * delta + b))                 (w, b: one per variable)
        x_hat   = m * x + (1 - m) * (gamma_x * x_last + (1 - gamma_x) * x_mean)

    An unobserved variable starts at its last observation and decays toward the training mean as
    the time since that observation grows. With ``input_decay=False``, ``gamma_x = 1`` (no
    parameters): the last observation is carried forward unchanged (as :class:`ForwardInput`).

    Args:
        n_features: F.
        input_decay: learn the decay (else ``gamma_x = 1``).

    Shape: see the module docstring; F_in = F; :meth:`decay_factor` delta (..., F) -> (..., F).
    """

    kind = "decay"

    def __init__(self, n_features: int, input_decay: bool = True):
        super().__init__(n_features)
        self.input_decay = bool(input_decay)
        if self.input_decay:
            self.weight = nn.Parameter(torch.empty(self.n_features))
            self.bias = nn.Parameter(torch.empty(self.n_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``w`` ~ U(0, 0.1) per hour and ``b = 0``: ``gamma_x = 1`` at ``delta = 0``, and every
        variable starts decaying (relu active, so it receives a gradient) by at most ``exp(-0.1)``
        per hour. A negative ``w`` with ``b = 0`` would never learn, hence the non-negative start."""
        if self.weight is not None:
            nn.init.uniform_(self.weight, 0.0, 0.1)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, input_decay={self.input_decay}"

    def decay_factor(self, delta: Tensor) -> Tensor:
        """``gamma_x`` (..., F) for ``delta`` (..., F) hours; all ones with ``input_decay=False``."""
        if self.weight is None:
            return torch.ones_like(delta)
        # exp(-relu(a)) = exp(min(-a, 0)): one fewer pass over (..., F) than the literal form. Same
        # values; only at a = 0 exactly does the subgradient differ (clamp passes it, relu does not)
        return torch.exp(torch.clamp(torch.addcmul(-self.bias, delta, -self.weight), max=0.0))

    def forward(self, values: Tensor, mask: Tensor, delta: Tensor, x_mean: Tensor) -> Tensor:
        if self.weight is not None:
            fused = decay_input(values, mask, delta, x_mean, self.weight, self.bias)  # one pass each way
            if fused is not None:
                return fused
        x_last = _last_observed(values, mask, x_mean)
        if self.weight is None:
            return x_last
        gamma = self.decay_factor(delta)
        # the same x_hat, regrouped so that only one product involves gamma:
        # x_hat = [m x + (1 - m) x_mean] + gamma * (1 - m) (x_last - x_mean)
        observed = mask != 0
        base = torch.where(observed, values, x_mean)
        gap = torch.where(observed, 0.0, x_last - x_mean)
        return torch.addcmul(base, gamma, gap)


def make_input(kind: str, n_features: int, input_decay: bool = True, mixed_delta: str = "log1p") -> MeanInput:
    """The input strategy called ``kind`` (one of :data:`INPUTS`) for ``n_features`` variables;
    ``input_decay`` concerns ``decay`` only, ``mixed_delta`` (one of :data:`MIXED_DELTAS`) ``mixed`` only."""
    if kind == "mean":
        return MeanInput(n_features)
    if kind == "forward":
        return ForwardInput(n_features)
    if kind == "mixed":
        return MixedInput(n_features, delta=mixed_delta)
    if kind == "decay":
        return DecayInput(n_features, input_decay=input_decay)
    raise ValueError(f"input: expected one of {', '.join(INPUTS)}, got {kind!r}")
