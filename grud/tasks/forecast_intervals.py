"""Calibrated forecast intervals: split conformal prediction on the validation split.

A forecaster's validation pass leaves one absolute residual ``|prediction - truth|`` per observed
(query, variable), in the model's normalised units. Grouped by variable and by how long ago that
variable was last observed (a "Mondrian" split: errors grow with the gap), their finite-sample
conformal quantiles are the half-widths of intervals ``prediction +- q`` that hold the truth at the
stated rate on new series drawn like the validation ones (Vovk et al., *Algorithmic Learning in a
Random World*, 2005; Lei et al., JASA 2018, "Distribution-free predictive inference for
regression"). Groups with few residuals fall back to the variable's pooled residuals, and
variables with few to all residuals.

The validation split also picks the best epoch, so the half-widths are slightly optimistic; the
test keys of ``metrics.json`` report the coverage reached on the test split
(``test/interval_coverage``).

Shape:
    half-widths: (L, F, K) for the L levels of :data:`INTERVAL_LEVELS`, F variables and the K
    groups of :func:`interval_group`; since_last, last_mask, residuals: (B, Q, F) / (N,).
"""
from __future__ import annotations

import math

import numpy as np
import torch

#: the coverage levels a checkpoint carries half-widths for (``interval_level`` chooses one)
INTERVAL_LEVELS = (0.5, 0.8, 0.9, 0.95)
#: the level ``test/interval_coverage`` is measured at (the 5th-95th percentile MC interval's)
COVERAGE_LEVEL = 0.9
#: group edges on the hours since the variable's last history observation; group 0 = never observed
SINCE_LAST_EDGES_HOURS = (1.0, 3.0, 6.0, 12.0, 24.0)
N_GROUPS = len(SINCE_LAST_EDGES_HOURS) + 2
#: fewer residuals than this in a group (or a variable) and its half-width comes from the wider pool
MIN_GROUP_COUNT = 30


def interval_group(since_last: torch.Tensor, last_mask: torch.Tensor) -> torch.Tensor:
    """Group of every query entry: 0 if the variable was never observed in the history, else
    1 + the index of its ``since_last`` bin on :data:`SINCE_LAST_EDGES_HOURS`.

    Shape: since_last (B, Q, F) hours; last_mask (B, F) -> (B, Q, F) int64.
    """
    edges = torch.tensor(SINCE_LAST_EDGES_HOURS, dtype=since_last.dtype, device=since_last.device)
    g = torch.bucketize(since_last.contiguous(), edges, right=True) + 1
    return torch.where(last_mask[:, None, :].expand_as(g) > 0, g, torch.zeros_like(g))


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) * level)-th smallest of n residuals
    (+inf when that exceeds n, i.e. too few residuals for the level)."""
    n = len(residuals)
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    return float(np.partition(residuals, k - 1)[k - 1])


class ResidualPool:
    """Absolute validation residuals by variable and group, reduced to conformal half-widths."""

    def __init__(self, n_features: int):
        self.n_features = int(n_features)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> None:
        """Keep ``|pred - target|`` where ``mask`` is set. Shape: all (B, Q, F)."""
        b, q, f = torch.nonzero(mask > 0, as_tuple=True)
        res = (pred[b, q, f] - target[b, q, f]).abs()
        self.parts.append((res.detach().cpu().double().numpy(), f.cpu().numpy(), group[b, q, f].cpu().numpy()))

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self.parts)

    def halfwidths(self, levels=INTERVAL_LEVELS) -> torch.Tensor:
        """(L, F, K) conformal half-widths; NaN everywhere when no residual was added."""
        F, K = self.n_features, N_GROUPS
        out = np.full((len(levels), F, K), np.nan)
        if not len(self):
            return torch.tensor(out, dtype=torch.float32)
        res, var, grp = (np.concatenate([p[i] for p in self.parts]) for i in range(3))
        for li, level in enumerate(levels):
            pooled = conformal_quantile(res, level)
            for f in range(F):
                in_f = var == f
                per_var = conformal_quantile(res[in_f], level) if in_f.sum() >= MIN_GROUP_COUNT else pooled
                for g in range(K):
                    cell = in_f & (grp == g)
                    out[li, f, g] = conformal_quantile(res[cell], level) if cell.sum() >= MIN_GROUP_COUNT else per_var
        return torch.tensor(out, dtype=torch.float32)


def level_index(level: float) -> int:
    """Index of ``level`` in :data:`INTERVAL_LEVELS` (ValueError naming the choices otherwise)."""
    for i, x in enumerate(INTERVAL_LEVELS):
        if abs(float(level) - x) < 1e-9:
            return i
    raise ValueError(f"interval_level: expected one of {list(INTERVAL_LEVELS)}, got {level!r}")


def halfwidth_at(halfwidths: torch.Tensor, level: float, group: torch.Tensor) -> torch.Tensor:
    """Half-width of every entry (normalised units). Shape: halfwidths (L, F, K), group (B, Q, F) -> (B, Q, F)."""
    table = halfwidths[level_index(level)]  # (F, K)
    F = table.shape[0]
    f = torch.arange(F, device=group.device).expand_as(group)
    return table.to(group.device)[f, group]


class CoverageCounts:
    """Per-variable share of observed truths inside their interval, averaged over variables
    observed at least once (as the MSE of :class:`grud.tasks.forecasting.VariableErrors`)."""

    def __init__(self, n_features: int):
        self.inside = np.zeros(n_features)
        self.count = np.zeros(n_features)

    def add(self, pred, halfwidth, target, mask) -> None:
        """Shape: all (B, Q, F) in one unit."""
        m = (mask > 0).double()
        inside = ((target - pred).abs() <= halfwidth).double() * m
        self.inside += inside.sum((0, 1)).cpu().numpy()
        self.count += m.sum((0, 1)).cpu().numpy()

    def coverage(self) -> float:
        seen = self.count > 0
        return float(np.mean(self.inside[seen] / self.count[seen])) if seen.any() else math.nan
