"""Masks, GRU-D time gaps, forward fill and mean imputation (grud.data.masking)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grud.data import masking
from grud.errors import ConfigError

# Che et al. 2018, section "GRU-D", the worked example of delta
PAPER_TIMES = np.array([0.0, 0.1, 0.6, 1.6, 2.2, 2.5, 3.1])
PAPER_MASK = np.array([[1, 1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 0, 0, 1]], dtype=np.float64).T  # (T, F)
PAPER_DELTA = np.array([[0, 0.1, 0.5, 1.5, 0.6, 0.9, 0.6], [0, 0.1, 0.5, 1.0, 1.6, 1.9, 2.5]]).T


def delta_reference(times, mask):
    """The paper's recursion, one step and variable at a time (reference only)."""
    T, F = mask.shape
    d = np.zeros((T, F))
    for t in range(1, T):
        for f in range(F):
            d[t, f] = times[t] - times[t - 1] + (d[t - 1, f] if mask[t - 1, f] == 0 else 0.0)
    return d


def ffill_reference(values, mask, fill):
    T, F = mask.shape
    out = np.empty((T, F))
    for f in range(F):
        last = fill[f]
        for t in range(T):
            if mask[t, f]:
                last = values[t, f]
            out[t, f] = last
    return out


def random_series(rng, B, T, F, p=0.3):
    times = np.sort(rng.uniform(0, 48, (B, T)), axis=1)
    mask = (rng.random((B, T, F)) < p).astype(np.float32)
    values = np.where(mask > 0, rng.standard_normal((B, T, F)), np.nan).astype(np.float32)
    return times, mask, values


# ---------------------------------------------------------------------------- observed_mask
def test_observed_mask_marks_nan_as_unobserved_in_values_dtype():
    x = np.array([[1.0, np.nan], [np.nan, 0.0]], dtype=np.float32)
    m = masking.observed_mask(x)
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, [[1, 0], [0, 1]])
    mt = masking.observed_mask(torch.from_numpy(x).double())
    assert mt.dtype == torch.float64
    assert torch.equal(mt, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert masking.observed_mask(np.array([[1, 2]])).all()


# ---------------------------------------------------------------------------- time_deltas
def test_time_deltas_paper_example_numpy():
    np.testing.assert_allclose(masking.time_deltas(PAPER_TIMES, PAPER_MASK), PAPER_DELTA, atol=1e-12)


def test_time_deltas_paper_example_torch_with_gradient():
    times = torch.tensor(PAPER_TIMES, requires_grad=True)
    delta = masking.time_deltas(times, torch.tensor(PAPER_MASK, dtype=torch.float32))
    assert delta.dtype == torch.float64
    np.testing.assert_allclose(delta.detach().numpy(), PAPER_DELTA, atol=1e-12)
    delta[3, 0].backward()  # = s_4 - s_2
    np.testing.assert_allclose(times.grad.numpy(), [0, -1, 0, 1, 0, 0, 0])


# torch tensors that need a gradient take the torch kernel, the others the numpy one
@pytest.mark.parametrize("kind", ["numpy", "torch", "torch-grad"])
def test_time_deltas_paper_example_batched_with_padding(kind):
    # series 0: the paper example padded to 9 steps with junk; series 1: its first 4 steps
    T = 9
    times = np.zeros((2, T))
    times[0, :7] = PAPER_TIMES
    times[0, 7:] = [-5.0, 100.0]
    times[1, :4] = PAPER_TIMES[:4]
    mask = np.ones((2, T, 2))
    mask[0, :7] = PAPER_MASK
    mask[1, :4] = PAPER_MASK[:4]
    lengths = np.array([7, 4])
    if kind != "numpy":
        times = torch.tensor(times, requires_grad=kind == "torch-grad")
        mask, lengths = torch.tensor(mask), torch.tensor(lengths)
    delta = masking.time_deltas(times, mask, lengths=lengths)
    assert isinstance(delta, torch.Tensor) == (kind != "numpy")
    delta = np.asarray(delta.detach()) if kind != "numpy" else delta
    np.testing.assert_allclose(delta[0, :7], PAPER_DELTA, atol=1e-12)
    np.testing.assert_allclose(delta[1, :4], PAPER_DELTA[:4], atol=1e-12)
    assert (delta[0, 7:] == 0).all() and (delta[1, 4:] == 0).all()


@pytest.mark.parametrize("T", [1, 2, 13, 300])  # 300 > 255 steps: wider step counters
def test_time_deltas_matches_loop_reference(T):
    rng = np.random.default_rng(T)
    times, mask, _ = random_series(rng, 5, T, 3, p=0.2)
    got = masking.time_deltas(times, mask)
    got_t = masking.time_deltas(torch.from_numpy(times), torch.from_numpy(mask))
    got_grad = masking.time_deltas(torch.tensor(times, requires_grad=True), torch.from_numpy(mask))
    for b in range(5):
        want = delta_reference(times[b], mask[b])
        np.testing.assert_allclose(got[b], want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_t[b].numpy(), want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_grad[b].detach().numpy(), want, rtol=1e-9, atol=1e-9)


def test_time_deltas_blocks_of_series_agree_with_one_block(monkeypatch):
    rng = np.random.default_rng(1)
    times, mask, _ = random_series(rng, 23, 17, 4)
    lengths = rng.integers(0, 18, 23)
    whole = masking.time_deltas(times, mask, lengths=lengths)
    monkeypatch.setattr(masking, "_BLOCK_ENTRIES", 3 * 17 * 4)  # blocks of 3 series, last one ragged
    np.testing.assert_array_equal(masking.time_deltas(times, mask, lengths=lengths), whole)
    for b in range(23):
        want = delta_reference(times[b], mask[b])
        want[lengths[b]:] = 0
        np.testing.assert_allclose(whole[b], want, atol=1e-9)


def test_time_deltas_shared_times_and_leading_dims():
    rng = np.random.default_rng(2)
    _, mask, _ = random_series(rng, 6, 8, 2)
    mask = mask.reshape(2, 3, 8, 2)
    grid = np.arange(8.0)
    got = masking.time_deltas(grid, mask)
    assert got.shape == (2, 3, 8, 2)
    np.testing.assert_allclose(got[1, 2], delta_reference(grid, mask[1, 2]))


def test_time_deltas_checks_shapes_and_lengths():
    with pytest.raises(ConfigError, match=r"expected shape \(7,\).*got \(6,\)"):
        masking.time_deltas(PAPER_TIMES[:6], PAPER_MASK)
    with pytest.raises(ConfigError, match=r"lengths: expected values in \[0, 7\].*got 8"):
        masking.time_deltas(PAPER_TIMES[None], PAPER_MASK[None], lengths=np.array([8]))
    with pytest.raises(ConfigError, match="lengths: expected integers"):
        masking.time_deltas(PAPER_TIMES[None], PAPER_MASK[None], lengths=np.array([7.0]))


# ---------------------------------------------------------------------------- forward_fill
def test_forward_fill_carries_last_observation_and_fills_before_first():
    values = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [3.0, 4.0], [np.nan, np.nan]])
    mask = masking.observed_mask(values)
    got = masking.forward_fill(values, mask)
    np.testing.assert_array_equal(got, [[np.nan, 1], [2, 1], [2, 1], [3, 4], [3, 4]])
    got = masking.forward_fill(values, mask, fill=np.array([-7.0, -8.0]))
    np.testing.assert_array_equal(got, [[-7, 1], [2, 1], [2, 1], [3, 4], [3, 4]])


@pytest.mark.parametrize("T", [1, 9, 260])
def test_forward_fill_matches_loop_reference_numpy_and_torch(T, monkeypatch):
    rng = np.random.default_rng(T)
    _, mask, values = random_series(rng, 7, T, 3, p=0.1)
    fill = np.array([0.5, -1.5, 2.5], dtype=np.float32)
    monkeypatch.setattr(masking, "_BLOCK_ENTRIES", 2 * T * 3)  # several blocks of series
    got = masking.forward_fill(values, mask, fill=fill)
    got_t = masking.forward_fill(torch.from_numpy(values), torch.from_numpy(mask), fill=torch.from_numpy(fill))
    got_grad = masking.forward_fill(
        torch.tensor(values, requires_grad=True), torch.from_numpy(mask), fill=torch.from_numpy(fill)
    )
    assert got.dtype == np.float32 and got_t.dtype == got_grad.dtype == torch.float32
    for b in range(7):
        want = ffill_reference(values[b], mask[b], fill)
        np.testing.assert_array_equal(got[b], want)
        np.testing.assert_array_equal(got_t[b].numpy(), want)
        np.testing.assert_array_equal(got_grad[b].detach().numpy(), want)


def test_forward_fill_uses_the_mask_not_nan():
    rng = np.random.default_rng(3)
    _, mask, values = random_series(rng, 4, 11, 3)
    zero_filled = np.nan_to_num(values, nan=0.0)
    np.testing.assert_array_equal(masking.forward_fill(zero_filled, mask), masking.forward_fill(values, mask))
    # an observed entry the mask calls unobserved is not carried
    values[:, 0, :] = 99.0
    mask[:, 0, :] = 0
    assert not (masking.forward_fill(values, mask) == 99.0).any()


def fill_forward(values, mask, torch_kernel):
    zeros = np.zeros(values.shape[-1], np.float32)
    if not torch_kernel:
        return masking.forward_fill(values, mask, fill=zeros)
    # a tensor that needs a gradient takes the torch kernel
    out = masking.forward_fill(torch.tensor(values, requires_grad=True), torch.from_numpy(mask), fill=zeros)
    return out.detach().numpy()


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 12),
    F=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    t=st.integers(0, 11),
    torch_kernel=st.booleans(),
)
def test_forward_fill_never_leaks_a_later_step_into_an_earlier_one(T, F, seed, t, torch_kernel):
    t = t % T
    rng = np.random.default_rng(seed)
    _, mask, values = random_series(rng, 2, T, F, p=0.5)
    changed_values, changed_mask = values.copy(), mask.copy()
    changed_values[:, t] = rng.standard_normal((2, F))
    changed_mask[:, t] = 1 - mask[:, t]
    before = fill_forward(values, mask, torch_kernel)
    after = fill_forward(changed_values, changed_mask, torch_kernel)
    np.testing.assert_array_equal(after[:, :t], before[:, :t])


def test_forward_fill_torch_is_differentiable_and_stays_on_dtype():
    values = torch.tensor([[1.0], [0.0], [3.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0], [0.0], [1.0]])
    fill = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    out = masking.forward_fill(values, mask, fill=fill)
    out.sum().backward()
    # step 0 is used twice (itself and carried to step 1), step 1 never, step 2 once
    np.testing.assert_array_equal(values.grad.numpy().ravel(), [2, 0, 1])
    assert fill.grad.item() == 0


def test_forward_fill_checks_arguments():
    values = np.zeros((4, 3))
    with pytest.raises(ConfigError, match=r"mask: expected shape \(4, 3\).*got \(4, 2\)"):
        masking.forward_fill(values, np.ones((4, 2)))
    with pytest.raises(ConfigError, match=r"fill: expected shape \(3,\).*got \(2,\)"):
        masking.forward_fill(values, np.ones((4, 3)), fill=[0.0, 0.0])
    with pytest.raises(ConfigError, match=r"expected shape \(\.\.\., T, F\).*got \(4,\)"):
        masking.forward_fill(np.zeros(4), np.ones(4))
    with pytest.raises(ConfigError, match="expected a floating dtype, got int64"):
        masking.forward_fill(np.zeros((4, 3), dtype=np.int64), np.ones((4, 3)))


# ---------------------------------------------------------------------------- means
@pytest.mark.parametrize("T", [1, 2, 13, 300])
@pytest.mark.parametrize("kind", ["numpy", "torch", "torch_grad"])
def test_forward_fill_and_deltas_equal_the_two_functions_and_the_paper_recursions(T, kind, monkeypatch):
    rng = np.random.default_rng(T)
    times, mask, values = random_series(rng, 11, T, 3, p=0.2)
    values = np.nan_to_num(values)
    lengths = rng.integers(0, T + 1, 11)
    fill = rng.standard_normal(3).astype(np.float32)
    monkeypatch.setattr(masking, "_BLOCK_ENTRIES", 4 * T * 3)  # several blocks, the last one ragged
    args = (values, mask, times)
    if kind != "numpy":
        args = tuple(torch.from_numpy(a) for a in args)
    if kind == "torch_grad":
        args[0].requires_grad_(True)
    filled, delta = masking.forward_fill_and_deltas(*args, fill, lengths=lengths)
    assert type(filled) is type(args[0]) and filled.shape == values.shape and delta.shape == values.shape
    filled = filled.detach().numpy() if kind != "numpy" else filled
    delta = delta.detach().numpy() if kind != "numpy" else delta
    np.testing.assert_array_equal(filled, masking.forward_fill(values, mask, fill))
    np.testing.assert_array_equal(delta, masking.time_deltas(times, mask, lengths=lengths))
    for b in range(11):
        np.testing.assert_allclose(filled[b], ffill_reference(values[b], mask[b], fill), rtol=1e-6)
        want = delta_reference(times[b], mask[b])
        want[lengths[b]:] = 0
        np.testing.assert_allclose(delta[b], want, atol=1e-9)


def test_forward_fill_and_deltas_check_their_arguments():
    times, mask, values = PAPER_TIMES, PAPER_MASK, np.zeros(PAPER_MASK.shape)
    with pytest.raises(ConfigError, match="times: expected shape"):
        masking.forward_fill_and_deltas(values, mask, times[:-1])
    with pytest.raises(ConfigError, match="mask: expected shape"):
        masking.forward_fill_and_deltas(values, mask[:-1], times)
    with pytest.raises(ConfigError, match=r"fill: expected shape \(2,\)"):
        masking.forward_fill_and_deltas(values, mask, times, np.zeros(3))
    filled, delta = masking.forward_fill_and_deltas(values, mask, times)
    np.testing.assert_allclose(delta, PAPER_DELTA, atol=1e-12)
    assert np.isnan(filled[0, 1]) and filled[1, 1] == 0  # variable 2 first seen at step 2


def test_ragged_time_deltas_equal_the_padded_ones_series_by_series():
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 20, 40)
    lengths[0] = 0  # an empty first series
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    times = np.concatenate([np.sort(rng.uniform(0, 48, n)) for n in lengths])
    mask = (rng.random((offsets[-1], 3)) < 0.3).astype(np.float32)
    got = masking.ragged_time_deltas(times, mask, offsets)
    assert got.shape == mask.shape
    for i, n in enumerate(lengths):
        rows = slice(offsets[i], offsets[i + 1])
        np.testing.assert_allclose(got[rows], delta_reference(times[rows], mask[rows]), atol=1e-9)
    with pytest.raises(ConfigError, match="offsets"):
        masking.ragged_time_deltas(times, mask, offsets[:-1])
    with pytest.raises(ConfigError, match="mask"):
        masking.ragged_time_deltas(times, mask[:-1], offsets)


def test_mean_impute_keeps_observed_and_fills_the_rest():
    values = np.array([[[1.0, np.nan], [np.nan, 4.0]]])
    mask = masking.observed_mask(values)
    got = masking.mean_impute(values, mask, [10.0, 20.0])
    np.testing.assert_array_equal(got, [[[1, 20], [10, 4]]])
    got_t = masking.mean_impute(torch.from_numpy(values), torch.from_numpy(mask), torch.tensor([10.0, 20.0]))
    assert got_t.dtype == torch.float64
    np.testing.assert_array_equal(got_t.numpy(), got)
    with pytest.raises(ConfigError, match=r"means: expected finite.*\[1\]"):
        masking.mean_impute(values, mask, [0.0, np.nan])


def test_empirical_mean_over_batch_and_steps_ignores_unobserved():
    values = np.array([[[1.0, 0.0], [3.0, 100.0]], [[5.0, 2.0], [0.0, 0.0]]], dtype=np.float32)
    mask = np.array([[[1, 0], [1, 0]], [[1, 1], [0, 1]]], dtype=np.float32)
    np.testing.assert_allclose(masking.empirical_mean(values, mask), [3.0, 1.0])
    got_t = masking.empirical_mean(torch.from_numpy(values), torch.from_numpy(mask))
    np.testing.assert_allclose(got_t.numpy(), [3.0, 1.0])


def test_empirical_mean_warns_and_gives_nan_for_a_never_observed_variable():
    values = np.ones((2, 3, 3))
    mask = np.ones((2, 3, 3))
    mask[..., 1] = 0
    with pytest.warns(RuntimeWarning, match=r"\[1\] never observed"):
        got = masking.empirical_mean(values, mask)
    assert np.isnan(got[1]) and got[0] == 1 and got[2] == 1
    with pytest.warns(RuntimeWarning, match=r"\[1\] never observed"):
        masking.empirical_mean(torch.from_numpy(values), torch.from_numpy(mask))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masking.empirical_mean(values, np.ones_like(values))  # no warning when all are observed


def test_a_non_finite_time_at_a_real_step_is_named_padding_may_hold_anything():
    """A NaN time gave NaN deltas silently; the network later blamed `delta`."""
    mask = np.ones((2, 3, 1))
    with pytest.raises(ConfigError, match=r"time_deltas: times: expected finite hours at every real step, got nan "
                                          r"at index \(1, 1\)"):
        masking.time_deltas(np.array([[0.0, 1, 2], [0, np.nan, 2]]), mask)
    with pytest.raises(ConfigError, match=r"got inf at index \(1, 2\)"):  # shared (T,) times, per series
        masking.time_deltas(torch.tensor([0.0, 1, np.inf]), torch.ones(2, 3, 1), lengths=torch.tensor([2, 3]))
    padded = masking.time_deltas(np.array([[0.0, 1, np.nan], [0, 1, 2]]), mask, lengths=np.array([2, 3]))
    np.testing.assert_array_equal(padded[:, :, 0], [[0, 1, 0], [0, 1, 1]])
    with pytest.raises(ConfigError, match=r"forward_fill_and_deltas: times: expected finite hours"):
        masking.forward_fill_and_deltas(np.ones((1, 2, 1)), np.ones((1, 2, 1)), np.array([[0.0, np.nan]]))


def test_times_that_step_back_within_a_series_are_named_padding_and_equal_times_are_not():
    """Unsorted times gave negative deltas silently (time_deltas([0, 2, 1]) held -1)."""
    with pytest.raises(ConfigError, match=r"time_deltas: times: expected ascending times within each series, got "
                                          r"1.0 after 2.0 at index \(2,\)"):
        masking.time_deltas(np.array([0, 2, 1.0]), np.ones((3, 1)))
    with pytest.raises(ConfigError, match=r"forward_fill_and_deltas: times: expected ascending .* at index \(1, 1\)"):
        masking.forward_fill_and_deltas(torch.ones(2, 3, 1), torch.ones(2, 3, 1), torch.tensor([[0.0, 1, 2], [3, 1, 4]]))
    padded = masking.time_deltas(np.array([[0.0, 1, 0], [0, 0, 2]]), np.ones((2, 3, 1)), lengths=np.array([2, 3]))
    np.testing.assert_array_equal(padded[:, :, 0], [[0, 1, 0], [0, 0, 2]])  # padding back to 0; equal times
