"""Output heads on top of a recurrent network's last state (plus static features)."""
from __future__ import annotations

import math

import torch
from torch import nn

from grud.errors import ConfigError


class ClassificationHead(nn.Module):
    """MLP head with the regulariser of Che et al. (2018): batch norm + dropout on the top layer.

    Args:
        in_features: H_out of the recurrent network.
        n_static: S, static features concatenated to the last state.
        n_outputs: 1 for binary (a logit), C for multi-class.
        hidden: width of the hidden layer (0 = a single linear layer).
        batch_norm: apply BatchNorm1d to the concatenated input.
        dropout: dropout probability before each linear layer.
        prior: the output bias at initialisation, one logit per output (None: the Linear layer's
            own rule). Set to the training split's class log-odds, the first predictions match
            the class frequencies instead of one half (the prior initialisation of Lin et al.,
            ICCV 2017), so training does not first spend its steps on the base rate.

    Shape:
        last: (B, H_out); static: (B, S) -> logits (B,) for binary, (B, C) otherwise.
    """

    def __init__(self, in_features: int, n_static: int, n_outputs: int, hidden: int = 64,
                 batch_norm: bool = True, dropout: float = 0.3, prior=None):
        super().__init__()
        if n_outputs < 1:
            raise ValueError(f"n_outputs: expected >= 1, got {n_outputs}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"head dropout: expected a probability in [0, 1), got {dropout}")
        if int(hidden) < 0:
            raise ValueError(f"head hidden: expected a width >= 0 (0 = a linear head), got {hidden}")
        if int(in_features) < 1 or int(n_static) < 0:
            raise ValueError(f"in_features: expected >= 1 and n_static >= 0, got {in_features} and {n_static}")
        self.in_features = int(in_features)
        d = in_features + n_static
        layers: list[nn.Module] = []
        if batch_norm:
            layers.append(nn.BatchNorm1d(d))
        layers.append(nn.Dropout(dropout))
        if hidden > 0:
            layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
            d = hidden
        layers.append(nn.Linear(d, n_outputs))
        self.net = nn.Sequential(*layers)
        self.n_static = n_static
        self.n_outputs = n_outputs
        self.prior = None
        if prior is not None:
            self.prior = [float(v) for v in prior]
            if len(self.prior) != n_outputs or not all(math.isfinite(v) for v in self.prior):
                raise ValueError(f"prior: expected {n_outputs} finite logit(s), got {prior}")
            self._set_prior()

    def _set_prior(self) -> None:
        with torch.no_grad():
            self.net[-1].bias.copy_(torch.tensor(self.prior, dtype=self.net[-1].bias.dtype))

    def reset_parameters(self) -> None:
        """Initialise as the constructor does (the layers' own rules, so building draws nothing more):
        each Linear weight Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        its bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), except the output bias, which is ``prior``
        when given; batch norm weight 1, bias 0, running mean 0, running variance 1."""
        for layer in self.net:
            if isinstance(layer, (nn.Linear, nn.BatchNorm1d)):
                layer.reset_parameters()
        if self.prior is not None:
            self._set_prior()

    def forward(self, last: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        if last.dim() != 2 or last.shape[-1] != self.in_features:
            raise ValueError(f"last: expected (B, {self.in_features}), got {tuple(last.shape)}")
        if self.n_static:
            if static is None or static.dim() != 2 or tuple(static.shape) != (last.shape[0], self.n_static):
                got = None if static is None else tuple(static.shape)
                raise ValueError(f"static: expected (B, S) = ({last.shape[0]}, {self.n_static}), got {got}")
            last = torch.cat([last, static], dim=-1)
        if last.shape[0] == 1 and isinstance(self.net[0], nn.BatchNorm1d) and self.net[0].training:
            # (MC dropout at prediction keeps the batch norm in eval mode: a single series is fine)
            raise ConfigError("task.head.batch_norm: a training batch of one series cannot be batch-normalised "
                              "(its variance is undefined): use data.batch_size >= 2, or task.head.batch_norm=false")
        out = self.net(last)
        return out.squeeze(-1) if self.n_outputs == 1 else out


class NextStepImputer(nn.Module):
    """Predicts the next step's inputs from each hidden state (imputation as an auxiliary loss).

    Reads the first ``reads`` features of each step's output: all of them for a forward network;
    for a bidirectional one only the forward direction (the first H), because the backward state
    at step t has already read step t+1, and a target it has seen teaches the network to copy it.

    Shape:
        outputs: (B, T, H_out) with H_out >= reads -> predictions (B, T, F) of values at step t+1
        (normalised space).
    """

    def __init__(self, reads: int, n_features: int):
        super().__init__()
        self.reads = int(reads)
        self.proj = nn.Linear(self.reads, n_features)

    def reset_parameters(self) -> None:
        """Initialise as the constructor does: the projection's weight Kaiming-uniform with a = sqrt(5),
        i.e. U(-1/sqrt(reads), 1/sqrt(reads)), its bias U(-1/sqrt(reads), 1/sqrt(reads))."""
        self.proj.reset_parameters()

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.shape[-1] < self.reads:
            raise ValueError(f"outputs: expected at least {self.reads} features per step, got {tuple(outputs.shape)}")
        return self.proj(outputs[..., : self.reads])
