"""Hide observed entries on purpose: missingness simulation for imputation and robustness studies.

:func:`simulate_missing` takes observed data and returns a new observed ``mask`` plus the
``indicating_mask`` of what it hid (1 = hidden on purpose), the PyPOTS convention. The
mechanisms follow Rubin's taxonomy (Rubin, "Inference and missing data", Biometrika 1976):

* ``mcar``  missing completely at random: exactly ``round(rate * n_observed)`` observed
  entries, chosen uniformly without replacement.
* ``mar``   missing at random: the chance of hiding an entry rises with the value of an
  observed *driver* variable at the same step (its latest observation at or before that step,
  carried forward; neutral before its first observation). Driver entries are never hidden, so
  the hiding depends on observed data only.
* ``mnar``  missing not at random: the chance of hiding an entry rises with its own value
  (standardised per variable).
* ``block`` each (series, variable) lane is cut into consecutive stretches of
  ``block_length`` steps at a random offset (the first and last stretch of a lane may be
  shorter); stretches are drawn in random order and all their observed entries hidden, until
  the total is as close to ``round(rate * n_observed)`` as whole stretches allow.

``mar`` and ``mnar`` hide exactly ``round(rate * n_observed)`` entries by Gumbel-top-k
sampling: entries are drawn without replacement with weights ``exp(2 * z)``, ``z`` the
standardised driver (mar) or own value (mnar); one standard deviation higher is about e^2 = 7.4
times the weight.

Random numbers come from a ``torch.Generator`` seeded with ``seed`` on the device of
``values`` (the CPU for numpy input): the same seed gives the same masks, and numpy and CPU
torch inputs give identical masks.

Shape:
    values, mask, indicating_mask: (..., T, F), e.g. (B, T, F)
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from grud.errors import ConfigError

__all__ = ["MECHANISMS", "simulate_missing"]

#: the mechanisms :func:`simulate_missing` knows
MECHANISMS = ("mcar", "mar", "mnar", "block")

#: log-weight per standard deviation of the driving value (mar / mnar)
_STRENGTH = 2.0


def _check_arguments(values, rate, mechanism, seed, mask, driver, block_length):
    fn = "simulate_missing"
    if not isinstance(values, torch.Tensor):
        try:
            values = np.asarray(values)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{fn}: values: expected an array, got {type(values).__name__} ({e})") from None
        if values.dtype == object:
            raise ConfigError(f"{fn}: values: expected a numeric array, got dtype object")
    if values.ndim < 2:
        raise ConfigError(
            f"{fn}: values: expected shape (..., T, F) with at least 2 dimensions, got {tuple(values.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(values.shape):
        raise ConfigError(f"{fn}: mask: expected shape {tuple(values.shape)} like values, got {tuple(mask.shape)}")
    if not isinstance(mechanism, str) or mechanism not in MECHANISMS:
        raise ConfigError(
            f"{fn}: mechanism: expected one of {', '.join(repr(m) for m in MECHANISMS)}, got {mechanism!r}"
        )
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (numbers.Real, torch.Tensor, np.ndarray)):
        raise ConfigError(f"{fn}: rate: expected a number in [0, 1), got {rate!r}")
    try:
        rate = float(rate)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{fn}: rate: expected a number in [0, 1), got {rate!r}") from None
    if not 0.0 <= rate < 1.0:  # also rejects NaN
        raise ConfigError(f"{fn}: rate: expected a number in [0, 1) (fraction of observed entries hidden), got {rate}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"{fn}: seed: expected a non-negative integer, got {seed!r}")
    F = values.shape[-1]
    if mechanism == "mar":
        if driver is None:
            raise ConfigError(
                f"{fn}: driver: mechanism 'mar' needs driver, the index (0..{F - 1}) of the variable "
                "whose value drives the hiding of the others; got None"
            )
        if isinstance(driver, (bool, np.bool_)) or not isinstance(driver, numbers.Integral) or not 0 <= driver < F:
            raise ConfigError(f"{fn}: driver: expected a variable index in [0, {F}), got {driver!r}")
        if F < 2:
            raise ConfigError(f"{fn}: mechanism 'mar' needs at least 2 variables (a driver and another), got F = {F}")
    elif driver is not None:
        raise ConfigError(f"{fn}: driver: only used by mechanism 'mar', got driver={driver!r} with {mechanism!r}")
    if (
        isinstance(block_length, (bool, np.bool_))
        or not isinstance(block_length, numbers.Integral)
        or block_length < 1
    ):
        raise ConfigError(f"{fn}: block_length: expected a positive integer (steps), got {block_length!r}")
    return values, rate, int(seed), None if driver is None else int(driver), int(block_length)


def simulate_missing(values, rate, mechanism="mcar", seed=0, mask=None, driver=None, block_length=6):
    """Hide a fraction ``rate`` of the observed entries; return the new mask and what was hidden.

    Args:
        values: the data; NaN marks unobserved entries when ``mask`` is None. Read only for
            ``mar`` (the driver column) and ``mnar``.
        rate: fraction of the OBSERVED entries to hide, in [0, 1).
        mechanism: one of ``"mcar"``, ``"mar"``, ``"mnar"``, ``"block"`` (see the module docstring).
        seed: non-negative integer; the same seed gives the same result.
        mask: optional observed mask (nonzero = observed); when given, NaN in ``values`` is not
            looked at and entries with mask 0 are never hidden.
        driver: ``mar`` only: index of the variable whose (standardised, carried-forward) value
            at a step raises the chance of hiding the OTHER variables at that step. Its own
            entries are never hidden, but ``rate`` still counts them among the observed, so the
            other variables lose more than ``rate`` of theirs (with a driver holding a third of
            the observed entries, ``rate=0.3`` hides 45 % of the rest).
        block_length: ``block`` only: length in steps of the hidden stretches.

    Returns:
        ``(mask, indicating_mask)``: ``mask`` is the original observed mask minus the hidden
        entries, ``indicating_mask`` is 1 exactly where an observed entry was hidden. Both have
        the shape of ``values``, the dtype of the given ``mask`` (else of
        ``observed_mask(values)``), and are numpy or torch (same device) like ``values``.
        ``mcar``, ``mar`` and ``mnar`` hide exactly ``round(rate * n_observed)`` entries;
        ``block`` is within about ``block_length / 2`` entries of it. Entries are drawn over the
        whole array, not per series: a series' only observation of a variable (or of anything)
        may be hidden, leaving nothing to impute from there.

    Raises:
        ConfigError: bad rate, mechanism, seed, driver or block_length, mask of another shape,
            a ``mar`` rate that needs more entries than the non-driver variables have, a driver
            never observed, or non-finite values at observed entries used for the weights.

    Shape:
        values (..., T, F); mask (..., T, F) -> mask (..., T, F), indicating_mask (..., T, F)
    """
    from grud.data.masking import forward_fill, observed_mask  # lazy: masking re-exports us

    fn = "simulate_missing"
    is_torch = isinstance(values, torch.Tensor)
    if mask is not None and is_torch and not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(np.asarray(mask), device=values.device)
    elif mask is not None and not is_torch:
        mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    values, rate, seed, driver, L = _check_arguments(values, rate, mechanism, seed, mask, driver, block_length)
    if mask is None:
        mask = observed_mask(values)
    out_dtype = mask.dtype

    # everything below runs in torch on values' device (numpy: CPU, without copying values)
    if is_torch:
        device = values.device
        obs = mask != 0
    else:
        device = torch.device("cpu")
        obs = torch.from_numpy(np.asarray(mask != 0))
    shape = tuple(values.shape)
    T, F = shape[-2], shape[-1]
    n = int(np.prod(shape[:-2], dtype=np.int64))
    obs = obs.reshape(n, T, F)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    n_obs = int(obs.sum())
    k = int(round(rate * n_obs))

    if mechanism == "mcar":
        where = obs.reshape(-1).nonzero()[:, 0]
        pick = torch.randperm(n_obs, generator=g, device=device)[:k]
        hidden = torch.zeros(n * T * F, dtype=torch.bool, device=device)
        hidden[where[pick]] = True
        hidden = hidden.reshape(n, T, F)
    elif mechanism in ("mar", "mnar"):
        vals = values.detach() if is_torch else torch.from_numpy(np.array(values, copy=True))
        vals = vals.reshape(n, T, F)
        if not vals.dtype.is_floating_point:
            vals = vals.to(torch.float64 if device.type == "cpu" else torch.float32)
        if mechanism == "mnar":
            eligible = obs
            z = _standardised(vals, obs, fn, "values")
        else:
            eligible = obs.clone()
            eligible[..., driver] = False
            d_obs = obs[..., driver : driver + 1]
            if not bool(d_obs.any()):
                raise ConfigError(f"{fn}: driver: variable {driver} is never observed; 'mar' needs observed driver values")
            zd = _standardised(vals[..., driver : driver + 1], d_obs, fn, f"values of driver {driver}")
            zd = forward_fill(zd, d_obs, fill=torch.zeros(1, dtype=zd.dtype, device=device))
            z = zd.expand(n, T, F)
        n_eligible = int(eligible.sum())
        if k > n_eligible:
            raise ConfigError(
                f"{fn}: rate {rate} asks to hide {k} of {n_obs} observed entries, but only {n_eligible} "
                f"are not the driver variable {driver}; expected rate <= {n_eligible / max(n_obs, 1):.3f}"
            )
        where = eligible.reshape(-1).nonzero()[:, 0]
        u = torch.rand(n_eligible, generator=g, device=device, dtype=z.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(z.dtype).tiny)))
        keys = _STRENGTH * z.reshape(-1)[where] + gumbel
        pick = torch.topk(keys, k, sorted=False).indices if k else where[:0]
        hidden = torch.zeros(n * T * F, dtype=torch.bool, device=device)
        hidden[where[pick]] = True
        hidden = hidden.reshape(n, T, F)
    else:  # block
        hidden = _blocks(obs, k, L, g, device)

    hidden = hidden.reshape(shape)
    kept = obs.reshape(shape) & ~hidden
    if is_torch:
        return kept.to(out_dtype), hidden.to(out_dtype)
    return kept.numpy().astype(out_dtype), hidden.numpy().astype(out_dtype)


def _standardised(vals: torch.Tensor, obs: torch.Tensor, fn: str, what: str) -> torch.Tensor:
    """(vals - mean) / std per variable over observed entries; 0 where unobserved or std is 0."""
    x = torch.where(obs, vals, torch.zeros((), dtype=vals.dtype, device=vals.device))
    bad = obs & ~torch.isfinite(x)
    if bool(bad.any()):
        raise ConfigError(
            f"{fn}: {what}: expected finite numbers where the mask marks entries observed, "
            f"got {int(bad.sum())} NaN/inf"
        )
    count = obs.sum(dim=(0, 1)).to(vals.dtype)
    mean = x.sum(dim=(0, 1)) / count.clamp_min(1)
    var = torch.where(obs, (x - mean) ** 2, torch.zeros((), dtype=vals.dtype, device=vals.device)).sum(dim=(0, 1))
    std = (var / count.clamp_min(1)).sqrt()
    scale = torch.where(std > 0, 1 / std.clamp_min(torch.finfo(vals.dtype).tiny), torch.zeros_like(std))
    return torch.where(obs, (x - mean) * scale, torch.zeros((), dtype=vals.dtype, device=vals.device))


def _blocks(obs: torch.Tensor, k: int, L: int, g: torch.Generator, device) -> torch.Tensor:
    """Hide whole stretches of L steps of one variable, in random order, until about k entries."""
    n, T, F = obs.shape
    lanes = obs.transpose(1, 2)  # (n, F, T)
    phase = torch.randint(0, L, (n, F, 1), generator=g, device=device)
    # stretch of step t in its lane: 0 before the offset, then 1, 2, ... every L steps
    stretch = (torch.arange(T, device=device) - phase + L) // L  # (n, F, T)
    W = (T - 1 + L) // L + 1
    counts = torch.zeros((n, F, W), dtype=torch.int64, device=device)
    counts.scatter_add_(-1, stretch, lanes.to(torch.int64))
    counts = counts.reshape(-1)
    order = torch.randperm(counts.numel(), generator=g, device=device)
    order = order[counts[order] > 0]  # stretches without observed entries change nothing
    total = counts[order].cumsum(0)
    # the number of stretches whose total is closest to k (ties: fewer hidden)
    p = int(torch.searchsorted(total, torch.tensor([k], device=device))[0])  # total[p-1] < k <= total[p]
    if p < len(total):
        below = int(total[p - 1]) if p > 0 else 0
        take = p + 1 if int(total[p]) - k < k - below else p
    else:
        take = p
    chosen = torch.zeros(counts.numel(), dtype=torch.bool, device=device)
    chosen[order[:take]] = True
    hidden_lanes = lanes & chosen.reshape(n, F, W).gather(-1, stretch)
    return hidden_lanes.transpose(1, 2)
