"""Calibrated forecast intervals: split conformal prediction on the validation split.

A forecaster's validation pass leaves one absolute residual ``|prediction - truth|`` per observed
(query, variable), in the model's normalised units. Grouped by variable and by how long ago that
variable was last observed (a "Mondrian" split: errors grow with the gap), their finite-sample
conformal quantiles are the half-widths of intervals ``prediction +- q`` that hold the truth at the
stated rate on new series drawn like the validation ones (Vovk et al., *Algorithmic Learning in a
Random World*, 2005; Lei et al., JASA 2018, "Distribution-free predictive inference for
regression"). A group with fewer than :data:`MIN_GROUP_COUNT` residuals joins its variable's
other small groups in one "remainder" group that takes the quantile of its own residuals (small
groups are the rare, wide ones: never observed, long gaps; the variable's pooled residuals would be
dominated by its frequent, narrow groups and under-cover them). Remainders that are themselves small
join one remainder across variables; with too few residuals for even that, its quantile is
widened to at least that of every residual. At each level every residual thus lies in exactly one
group whose half-width covers at least the level of the group's own residuals. Variables forecast
exactly by rule (``held``: constant in the training split, so their residuals are mostly 0) keep
their own groups and stay out of the pools the other variables fall back on, which their zeros
would narrow; their own small groups still fall back on pools that include them.

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
INTERVAL_LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
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


def conformal_rank(n: int, level: float) -> int:
    """ceil((n + 1) * level), robust to the rounding of ``level`` (0.7 * 10 = 7.000000000000001)."""
    return math.ceil((n + 1) * level - 1e-9)


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) * level)-th smallest of n residuals
    (+inf when that exceeds n, i.e. too few residuals for the level)."""
    return float(conformal_quantiles(residuals, (level,))[0])


def conformal_quantiles(residuals: np.ndarray, levels) -> np.ndarray:
    """:func:`conformal_quantile` at every level of ``levels`` from one sort. Shape: (N,) -> (L,)."""
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    n = len(r)
    out = np.full(len(levels), math.inf)
    for i, level in enumerate(levels):
        k = conformal_rank(n, level)
        if 0 < k <= n:
            out[i] = r[k - 1]
    return out


class ResidualPool:
    """Absolute validation residuals by variable and group, reduced to conformal half-widths."""

    def __init__(self, n_features: int, held=None):
        """``held``: (F,) bools or None; variables whose residuals stay out of the shared fallback
        (still their own groups' quantiles, and the fallback's quantile where theirs are too few)."""
        self.n_features = int(n_features)
        self.held = np.zeros(self.n_features, bool) if held is None else np.asarray(held, bool).reshape(-1)
        if self.held.shape != (self.n_features,):
            raise ValueError(f"held: expected {self.n_features} flags (one per variable), got {self.held.shape[0]}")
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> None:
        """Keep ``|pred - target|`` where ``mask`` is set. Shape: all (B, Q, F)."""
        b, q, f = torch.nonzero(mask > 0, as_tuple=True)
        res = (pred[b, q, f] - target[b, q, f]).abs()
        self.parts.append((res.detach().cpu().double().numpy(), f.cpu().numpy(), group[b, q, f].cpu().numpy()))

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self.parts)

    def halfwidths(self, levels=INTERVAL_LEVELS) -> torch.Tensor:
        """(L, F, K) conformal half-widths; NaN everywhere when no residual was added.

        At each level, a (variable, group) cell with at least :func:`min_count` residuals takes its
        own quantile; a variable's smaller cells (empty ones too) share the quantile of their
        residuals pooled, if those reach the count; the rest share the quantile of theirs pooled
        across variables, and with fewer than the count even there, the larger of that and the
        quantile of every residual (+inf when even every residual is too few for the level). The
        ``held`` variables' residuals enter neither of the last two pools of the other variables
        (all residuals when the others' are too few); their own small cells take both pools with
        them, as without ``held``.
        """
        F, K = self.n_features, N_GROUPS
        out = np.full((len(levels), F, K), np.nan)
        if not len(self):
            return torch.tensor(out, dtype=torch.float32)
        res, var, grp = (np.concatenate([p[i] for p in self.parts]) for i in range(3))
        cell = var.astype(np.int64) * K + grp.astype(np.int64)
        order = np.argsort(cell, kind="stable")
        ends = np.cumsum(np.bincount(cell, minlength=F * K))
        by_cell = [np.sort(r) for r in np.split(res[order], ends[:-1])]
        shared = res[~self.held[var]]  # what the other variables' fallback draws on
        for li, level in enumerate(levels):
            need = min_count(level)
            pending, leftover = [], []  # cells whose variable's remainder is small, and its residuals
            for f in range(F):
                small = [g for g in range(K) if len(by_cell[f * K + g]) < need]
                for g in range(K):
                    if g not in small:
                        out[li, f, g] = conformal_quantile(by_cell[f * K + g], level)
                remainder = np.concatenate([by_cell[f * K + g] for g in small]) if small else np.zeros(0)
                if len(remainder) >= need:
                    out[li, f, small] = conformal_quantile(remainder, level)
                elif small:
                    pending.append((f, small))
                    leftover.append(remainder)
            if pending:
                # the variables forecast by rule: their zeros would narrow the others' shared fallback,
                # so it leaves them out; their own small cells take the fallback with them (never
                # narrower than their own residuals, which need not be 0 outside training)
                others = [r for (f, _), r in zip(pending, leftover) if not self.held[f]]
                fill = _fallback(others, shared if len(shared) >= need else res, level, need)
                fill_held = _fallback(leftover, res, level, need)
                for f, small in pending:
                    out[li, f, small] = fill_held if self.held[f] else fill
        # a higher level never gets a narrower interval (a group pooled differently at another level)
        out = np.maximum.accumulate(out, axis=0) if list(levels) == sorted(levels) else out
        return torch.tensor(out, dtype=torch.float32)


def _fallback(remainders: list, everything: np.ndarray, level: float, need: int) -> float:
    """The quantile of small remainders pooled; with fewer than ``need`` residuals, never narrower
    than the quantile of ``everything`` (+inf when even that is too few for the level)."""
    rest = np.concatenate(remainders) if remainders else np.zeros(0)
    fill = conformal_quantile(rest, level)
    if len(rest) < need:
        wide = conformal_quantile(everything, level)
        fill = wide if math.isinf(fill) else max(fill, wide)
    return fill


def min_count(level: float) -> int:
    """Residuals a group needs at ``level``: :data:`MIN_GROUP_COUNT`, and at least the n whose
    conformal quantile is finite (ceil((n + 1) * level) <= n: 39 at 97.5 %, 99 at 99 %)."""
    n = MIN_GROUP_COUNT
    while conformal_rank(n, level) > n:
        n += 1
    return n


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
