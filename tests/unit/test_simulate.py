"""Missingness simulation (grud.data.simulate.simulate_missing, re-exported by grud.data.masking)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data import masking
from grud.data.masking import simulate_missing
from grud.errors import ConfigError

MECHANISMS = ["mcar", "mar", "mnar", "block"]


def kwargs(mechanism):
    return {"driver": 0} if mechanism == "mar" else {}


@pytest.fixture(scope="module")
def data():
    """A realistic shape: 200 series x 48 hourly steps x 10 variables, about 30 % observed."""
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 3.0, (200, 48, 10)).astype(np.float32)
    values[rng.random(values.shape) > 0.3] = np.nan
    return values


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_rate_is_the_fraction_of_observed_entries_hidden(data, mechanism, rate):
    observed = ~np.isnan(data)
    n_obs = int(observed.sum())
    mask, hidden = simulate_missing(data, rate, mechanism, seed=3, **kwargs(mechanism))
    assert mask.shape == hidden.shape == data.shape and mask.dtype == hidden.dtype == np.float32
    n_hidden = int(hidden.sum())
    if mechanism == "block":
        assert abs(n_hidden - round(rate * n_obs)) <= 6  # whole stretches of block_length=6
    else:
        assert n_hidden == round(rate * n_obs)
    # only observed entries are hidden, and the new mask is the old one minus them
    assert not (hidden.astype(bool) & ~observed).any()
    np.testing.assert_array_equal(mask.astype(bool), observed & ~hidden.astype(bool))


def test_rate_zero_hides_nothing(data):
    for mechanism in MECHANISMS:
        mask, hidden = simulate_missing(data, 0.0, mechanism, **kwargs(mechanism))
        assert hidden.sum() == 0
        np.testing.assert_array_equal(mask, masking.observed_mask(data))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_same_seed_same_masks_other_seed_other_masks(data, mechanism):
    a = simulate_missing(data, 0.3, mechanism, seed=7, **kwargs(mechanism))
    b = simulate_missing(data, 0.3, mechanism, seed=7, **kwargs(mechanism))
    c = simulate_missing(data, 0.3, mechanism, seed=8, **kwargs(mechanism))
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[1] != c[1]).any()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_torch_and_numpy_give_identical_masks(data, mechanism):
    m_np, h_np = simulate_missing(data, 0.25, mechanism, seed=1, **kwargs(mechanism))
    m_t, h_t = simulate_missing(torch.from_numpy(data), 0.25, mechanism, seed=1, **kwargs(mechanism))
    assert isinstance(h_t, torch.Tensor) and h_t.dtype == torch.float32
    np.testing.assert_array_equal(h_t.numpy(), h_np)
    np.testing.assert_array_equal(m_t.numpy(), m_np)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_given_mask_is_used_instead_of_nan(data, mechanism):
    observed = masking.observed_mask(data).astype(bool)
    zero_filled = np.nan_to_num(data, nan=0.0)
    from_nan = simulate_missing(data, 0.2, mechanism, seed=2, **kwargs(mechanism))
    from_mask = simulate_missing(zero_filled, 0.2, mechanism, seed=2, mask=observed, **kwargs(mechanism))
    assert from_mask[1].dtype == bool  # the given mask's dtype
    np.testing.assert_array_equal(from_mask[1], from_nan[1].astype(bool))


def test_mar_hides_more_where_the_driver_is_high_and_never_the_driver(data):
    driver = 4
    _, hidden = simulate_missing(data, 0.3, "mar", seed=5, driver=driver)
    hidden = hidden.astype(bool)
    assert not hidden[..., driver].any()
    # steps where the driver is observed high vs low (other variables, observed entries)
    d = data[..., driver]
    high, low = d > np.nanmedian(d), d < np.nanmedian(d)
    others = np.ones(data.shape[-1], bool)
    others[driver] = False
    obs = ~np.isnan(data[..., others])
    hid = hidden[..., others]
    rate_high = hid[high].sum() / obs[high].sum()
    rate_low = hid[low].sum() / obs[low].sum()
    assert rate_high > 1.5 * rate_low


def test_mnar_hides_more_where_the_value_is_high(data):
    _, hidden = simulate_missing(data, 0.3, "mnar", seed=5)
    hidden = hidden.astype(bool)
    med = np.nanmedian(data, axis=(0, 1))
    high, low = data > med, data < med  # NaN compares False
    assert hidden[high].mean() > 2 * hidden[low].mean()


def test_mcar_hides_regardless_of_the_value(data):
    _, hidden = simulate_missing(data, 0.3, "mcar", seed=5)
    hidden = hidden.astype(bool)
    med = np.nanmedian(data, axis=(0, 1))
    assert abs(hidden[data > med].mean() - hidden[data < med].mean()) < 0.03


def test_block_hides_contiguous_stretches():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((50, 48, 5))  # fully observed: hidden runs are whole stretches
    L = 6
    _, hidden = simulate_missing(values, 0.3, "block", seed=0, block_length=L)
    lanes = hidden.astype(bool).transpose(0, 2, 1).reshape(-1, 48)
    padded = np.pad(lanes, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    run_lengths = ends[1] - starts[1]
    interior = (starts[1] > 0) & (ends[1] < 48)
    assert interior.sum() > 100
    assert (run_lengths[interior] % L == 0).all()  # runs away from the lane ends: whole stretches
    assert (run_lengths <= 48).all() and run_lengths.mean() >= L - 1
    # mcar at the same rate makes mostly isolated hidden steps
    _, scattered = simulate_missing(values, 0.3, "mcar", seed=0)
    s_lanes = np.pad(scattered.astype(bool).transpose(0, 2, 1).reshape(-1, 48), ((0, 0), (1, 1))).astype(np.int8)
    assert (np.diff(s_lanes, axis=1) == 1).sum() > 3 * len(run_lengths)


def test_block_with_sparse_observations_hides_all_observed_within_a_stretch(data):
    L = 6
    _, hidden = simulate_missing(data, 0.3, "block", seed=4, block_length=L)
    hidden = hidden.astype(bool).transpose(0, 2, 1)  # (n, F, T)
    observed = ~np.isnan(data).transpose(0, 2, 1)
    # two hidden entries of a lane less than L steps apart share or neighbour a stretch,
    # so every observed entry between them is hidden too
    n, F, t = np.nonzero(hidden)
    same_lane = (n[1:] == n[:-1]) & (F[1:] == F[:-1]) & (t[1:] - t[:-1] < L)
    for i in np.flatnonzero(same_lane)[:500]:
        between = observed[n[i], F[i], t[i] : t[i + 1] + 1]
        assert hidden[n[i], F[i], t[i] : t[i + 1] + 1][between].all()


def test_leading_dimensions_are_allowed(data):
    mask, hidden = simulate_missing(data[0], 0.5, "mcar", seed=0)  # (T, F)
    assert hidden.shape == (48, 10) and hidden.sum() == round(0.5 * (~np.isnan(data[0])).sum())
    _, hidden4 = simulate_missing(data.reshape(2, 100, 48, 10), 0.5, "mnar", seed=0)
    assert hidden4.shape == (2, 100, 48, 10)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(rate=1.0), r"rate: expected a number in \[0, 1\).*got 1.0"),
        (dict(rate=-0.1), r"rate: expected a number in \[0, 1\)"),
        (dict(rate=float("nan")), r"rate: expected a number in \[0, 1\)"),
        (dict(rate="0.2"), r"rate: expected a number"),
        (dict(rate=0.2, mechanism="random"), r"expected one of 'mcar', 'mar', 'mnar', 'block', got 'random'"),
        (dict(rate=0.2, mechanism="mar"), r"driver: mechanism 'mar' needs driver.*got None"),
        (dict(rate=0.2, mechanism="mar", driver=10), r"driver: expected a variable index in \[0, 10\), got 10"),
        (dict(rate=0.2, mechanism="mcar", driver=1), r"driver: only used by mechanism 'mar'"),
        (dict(rate=0.2, mask=np.ones((200, 48))), r"mask: expected shape \(200, 48, 10\).*got \(200, 48\)"),
        (dict(rate=0.2, mechanism="block", block_length=0), r"block_length: expected a positive integer"),
        (dict(rate=0.2, seed=-1), r"seed: expected a non-negative integer"),
    ],
)
def test_bad_arguments_raise_config_error(data, args, message):
    with pytest.raises(ConfigError, match=message):
        simulate_missing(data, **args)


def test_mar_rejects_a_rate_the_other_variables_cannot_supply():
    values = np.ones((4, 6, 2))
    values[..., 1][::2] = np.nan  # the non-driver variable is observed half as often
    with pytest.raises(ConfigError, match=r"only 12 are not the driver variable 0"):
        simulate_missing(values, 0.5, "mar", driver=0)
    values[..., 0] = np.nan
    with pytest.raises(ConfigError, match="variable 0 is never observed"):
        simulate_missing(values, 0.1, "mar", driver=0)
