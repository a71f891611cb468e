"""The one-step cells and the input strategies: agreement with torch's cells, the GRU-D decays,
closed-form parameter counts, the Clockwork RNN's schedule and connectivity."""
from __future__ import annotations

import pytest
import torch

from grud.models import count_parameters, preset
from grud.models.cells import ClockworkCell, GRUCell, GRUDCell, LSTMCell, PeepholeLSTMCell
from grud.models.fast import lstm_recurrence_reference
from grud.models.inputs import DecayInput, ForwardInput, MeanInput, MixedInput


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- agreement with torch
def test_gru_cell_equals_torch_gru_cell():
    torch.manual_seed(0)
    ref = torch.nn.GRUCell(5, 4)
    cell = GRUCell(5, 4)
    cell.load_state_dict(ref.state_dict())
    x, h = _rand(3, 5), _rand(3, 4, seed=1)
    torch.testing.assert_close(cell(x, h), ref(x, h))


def test_lstm_cell_equals_torch_lstm_cell():
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(5, 4)
    cell = LSTMCell(5, 4)
    cell.load_state_dict(ref.state_dict())
    x, h, c = _rand(3, 5), _rand(3, 4, seed=1), _rand(3, 4, seed=2)
    h1, c1 = cell(x, (h, c))
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)


def test_grud_cell_without_decays_and_mask_equals_torch_gru_cell():
    torch.manual_seed(0)
    ref = torch.nn.GRUCell(3, 4)
    cell = GRUDCell(3, 4, n_features=3, hidden_decay=False, mask_in_gates=False)
    cell.load_state_dict(ref.state_dict())  # same names, no extra parameters
    x, h = _rand(2, 3), _rand(2, 4, seed=1)
    mask, delta = torch.ones(2, 3), torch.full((2, 3), 5.0)
    torch.testing.assert_close(cell(x, h, mask, delta), ref(x, h))


def test_grud_cell_mask_term_enters_the_gates():
    torch.manual_seed(0)
    cell = GRUDCell(3, 4, n_features=3, hidden_decay=False, mask_in_gates=True)
    x, h = _rand(2, 3), _rand(2, 4, seed=1)
    a = cell(x, h, torch.ones(2, 3), None)
    b = cell(x, h, torch.zeros(2, 3), None)
    assert (a - b).abs().max() > 1e-4
    with torch.no_grad():
        cell.weight_mh.zero_()
    torch.testing.assert_close(cell(x, h, torch.ones(2, 3), None), cell(x, h, torch.zeros(2, 3), None))


def test_hidden_decay_is_identity_at_zero_delta_and_shrinks_the_state_as_delta_grows():
    torch.manual_seed(0)
    cell = GRUDCell(3, 4, n_features=3, hidden_decay=True, mask_in_gates=False)
    plain = GRUCell(3, 4)
    plain.load_state_dict(cell.state_dict(), strict=False)
    x, h = _rand(2, 3), _rand(2, 4, seed=1)
    torch.testing.assert_close(cell.decay_factor(torch.zeros(2, 3)), torch.ones(2, 4))
    torch.testing.assert_close(cell(x, h, None, torch.zeros(2, 3)), plain(x, h))
    gammas = [cell.decay_factor(torch.full((1, 3), d)) for d in (0.0, 1.0, 10.0, 1000.0)]
    for a, b in zip(gammas, gammas[1:]):
        assert (b < a).all()
    assert gammas[-1].max() < 1e-3  # a long gap forgets the state


def test_peephole_cell_matches_the_recurrence_definition_and_reduces_to_lstm():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(3, 4, forget_bias=1.0)
    x, h, c = _rand(2, 3), _rand(2, 4, seed=1), _rand(2, 4, seed=2)
    h1, c1 = cell(x, (h, c))
    # the fast module's reference loop (written independently) for one step
    gi = cell.input_projection(x)[:, None]
    _, h2, c2 = lstm_recurrence_reference(gi, cell.weight_hh, cell.bias_hh, h, c, torch.ones(2, 1), cell.peephole)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)
    # the output gate sees the new cell state: changing w_co changes h but not c
    with torch.no_grad():
        cell.peephole[2] += 1.0
    h3, c3 = cell(x, (h, c))
    torch.testing.assert_close(c3, c1)
    assert (h3 - h1).abs().max() > 1e-4
    plain = LSTMCell(3, 4)
    plain.load_state_dict({k: v for k, v in cell.state_dict().items() if k != "peephole"})
    with torch.no_grad():
        cell.peephole.zero_()
    torch.testing.assert_close(cell(x, (h, c))[0], plain(x, (h, c))[0])


def test_forget_bias_initialisation():
    cell = LSTMCell(3, 4, forget_bias=1.0)
    assert torch.equal(cell.bias_ih[4:8], torch.ones(4))
    assert torch.equal(cell.bias_hh[4:8], torch.zeros(4))
    net = preset("lstm", n_features=3, hidden_size=4, forget_bias=2.5)
    assert torch.equal(net.layers[0].cells[0].bias_ih[4:8], torch.full((4,), 2.5))


def test_cell_shape_errors_show_expected_and_actual():
    cell = GRUCell(5, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, I\) = \(B, 5\), got \(3, 2\)"):
        cell(torch.zeros(3, 2), torch.zeros(3, 4))


# ---------------------------------------------------------------- parameter counts
def test_lstm_parameter_count_closed_form():
    F = H = 32
    cell = LSTMCell(F, H)
    assert count_parameters(cell) == 4 * H * (H + F) + 8 * H
    # the course example counts one bias vector: 4H(H + F) + 4H = 8,320 for F = H = 32
    assert count_parameters(cell) - cell.bias_hh.numel() == 8_320
    net = preset("lstm", n_features=F, hidden_size=H, input="mean", num_layers=2)
    assert count_parameters(net) == 2 * (4 * H * (H + F) + 8 * H)
    bi = preset("bilstm", n_features=F, hidden_size=H, input="mean")
    assert count_parameters(bi) == 2 * (4 * H * (H + F) + 8 * H)
    peep = preset("peephole_lstm", n_features=F, hidden_size=H, input="mean")
    assert count_parameters(peep) == 4 * H * (H + F) + 8 * H + 3 * H


def test_gru_and_grud_parameter_counts_closed_form():
    F, H = 33, 49
    gru = preset("gru_mean", n_features=F, hidden_size=H)
    assert count_parameters(gru) == 3 * H * (H + F) + 6 * H
    simple = preset("gru_simple", n_features=F, hidden_size=H)
    assert count_parameters(simple) == 3 * H * (H + 3 * F) + 6 * H
    grud = preset("grud", n_features=F, hidden_size=H)
    gru_part = 3 * H * (H + F) + 6 * H
    mask_weights = 3 * H * F  # V
    hidden_decay = H * F + H  # W_gamma_h, b_gamma_h
    input_decay = 2 * F  # w, b per variable
    assert count_parameters(grud) == gru_part + mask_weights + hidden_decay + input_decay
    ablated = preset("grud", n_features=F, hidden_size=H, input_decay=False, hidden_decay=False, mask_in_gates=False)
    assert count_parameters(ablated) == gru_part


def test_clockwork_parameter_count():
    F, H = 3, 8
    net = preset("clockwork", n_features=F, hidden_size=H, input="mean")
    assert count_parameters(net) == H * F + H * H + 2 * H


# ---------------------------------------------------------------- input strategies
def test_input_decay_is_one_at_zero_delta_and_moves_toward_the_mean():
    torch.manual_seed(0)
    inp = DecayInput(2)
    assert torch.equal(inp.decay_factor(torch.zeros(4, 2)), torch.ones(4, 2))
    x_mean = torch.tensor([1.0, -1.0])
    # one observation at t = 0, then unobserved with growing delta
    T = 6
    values = torch.zeros(1, T, 2)
    values[0, 0] = torch.tensor([3.0, 2.0])
    mask = torch.zeros(1, T, 2)
    mask[0, 0] = 1
    delta = torch.arange(T, dtype=torch.float32).mul(4.0)[None, :, None].expand(1, T, 2).contiguous()
    x_hat = inp(values, mask, delta, x_mean)[0]
    assert torch.equal(x_hat[0], values[0, 0])  # observed: kept
    dist = (x_hat[1:] - x_mean).abs()
    assert (dist[1:] < dist[:-1]).all()  # strictly closer to the mean as delta grows
    assert (x_hat[1:] - values[0, 0]).abs().gt(0).all()
    off = DecayInput(2, input_decay=False)
    torch.testing.assert_close(off(values, mask, delta, x_mean), ForwardInput(2)(values, mask, delta, x_mean))


@pytest.mark.parametrize("B", [3, 40])
@pytest.mark.parametrize("backend", ["native", "torch"])
def test_decays_match_the_papers_equations_in_values_and_gradients(B, backend):
    """x_hat = m x + (1 - m)(gamma_x x_last + (1 - gamma_x) x_mean), gamma = exp(-relu(w delta + b))
    (Che et al. 2018, eqs. 1 and 3), written literally here; the modules compute them regrouped, the
    input decay in the native kernel where it builds (rows split over two threads at B = 40)."""
    import contextlib

    from grud.models.fast import native

    if backend == "native" and not native.available():
        pytest.skip(native.status())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with native.disabled() if backend == "torch" else contextlib.nullcontext():
            _check_decays_against_the_paper(B)
    finally:
        torch.set_num_threads(before)


def _check_decays_against_the_paper(B):
    from grud.data import masking

    g = torch.Generator().manual_seed(3)
    T, F, H = 7, 4, 5
    mask = (torch.rand(B, T, F, generator=g) < 0.4).float()
    values = torch.randn(B, T, F, generator=g) * mask
    times = torch.cumsum(torch.rand(B, T, generator=g) + 0.2, 1)
    delta = torch.as_tensor(masking.time_deltas(times, mask), dtype=torch.float32)
    x_mean = torch.randn(F, generator=g)
    inp = DecayInput(F)
    cell = GRUDCell(F, H, n_features=F)
    with torch.no_grad():  # away from relu's kink, where any subgradient is as good as another
        inp.bias.uniform_(-0.5, 0.5, generator=g)
        inp.weight.uniform_(-0.3, 0.3, generator=g)
        cell.decay_bias.uniform_(-0.5, 0.5, generator=g)

    x_last = masking.forward_fill(values, mask, fill=x_mean)
    gamma_x = torch.exp(-torch.relu(delta * inp.weight + inp.bias))
    literal_x = mask * values + (1 - mask) * (gamma_x * x_last + (1 - gamma_x) * x_mean)
    literal_h = torch.exp(-torch.relu(delta @ cell.decay_weight.t() + cell.decay_bias))
    x_hat, gamma_h = inp(values, mask, delta, x_mean), cell.decay_factor(delta)
    torch.testing.assert_close(x_hat, literal_x)
    torch.testing.assert_close(gamma_h, literal_h)
    wx, wh = torch.randn(B, T, F, generator=g), torch.randn(B, T, H, generator=g)
    params = [inp.weight, inp.bias, cell.decay_weight, cell.decay_bias]
    got = torch.autograd.grad((x_hat * wx).sum() + (gamma_h * wh).sum(), params)
    want = torch.autograd.grad((literal_x * wx).sum() + (literal_h * wh).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_mean_forward_and_mixed_inputs():
    x_mean = torch.tensor([10.0])
    values = torch.tensor([[[0.0], [2.0], [0.0], [0.0]]])
    mask = torch.tensor([[[0.0], [1.0], [0.0], [0.0]]])
    delta = torch.tensor([[[0.0], [1.0], [1.0], [2.0]]])
    assert MeanInput(1)(values, mask, delta, x_mean).flatten().tolist() == [10.0, 2.0, 10.0, 10.0]
    assert ForwardInput(1)(values, mask, delta, x_mean).flatten().tolist() == [10.0, 2.0, 2.0, 2.0]
    mixed = MixedInput(1)
    assert mixed.out_features == 3
    out = mixed(values, mask, delta, x_mean)
    assert out[0, :, 0].tolist() == [10.0, 2.0, 10.0, 10.0]
    assert torch.equal(out[..., 1:2], mask) and torch.equal(out[..., 2:3], torch.log1p(delta))
    assert torch.equal(MixedInput(1, delta="hours")(values, mask, delta, x_mean)[..., 2:3], delta)


# ---------------------------------------------------------------- clockwork
def _clockwork_states(fast: bool, weights_seed=0, T=12, perturb_fast_module=False):
    torch.manual_seed(weights_seed)
    net = preset("clockwork", n_features=2, hidden_size=6, n_modules=3, input="mean", fast=fast).eval()
    cell = net.layers[0].cells[0]
    if perturb_fast_module:
        with torch.no_grad():
            fast_units = cell.module_of_unit == 0
            cell.weight_ih[fast_units] += 0.5
            cell.bias_ih[fast_units] += 0.5
    g = torch.Generator().manual_seed(1)
    values = torch.randn(1, T, 2, generator=g)
    ones = torch.ones(1, T, 2)
    times = torch.arange(T, dtype=torch.float32)[None]
    outputs, _ = net(values, ones, ones, times, torch.tensor([T]))
    return outputs[0], cell


@pytest.mark.parametrize("fast", [True, False])
def test_clockwork_module_changes_only_at_multiples_of_its_period(fast):
    outputs, cell = _clockwork_states(fast)
    assert cell.periods == [1, 2, 4]
    slow = cell.module_of_unit == 2  # period 4
    changed = [bool((outputs[t, slow] != outputs[t - 1, slow]).any()) for t in range(1, 12)]
    assert changed == [t % 4 == 0 for t in range(1, 12)]
    assert (outputs[0, slow] != 0).all()  # ticks at step 0


@pytest.mark.parametrize("fast", [True, False])
def test_clockwork_fast_module_never_reaches_slower_ones(fast):
    base, cell = _clockwork_states(fast)
    perturbed, _ = _clockwork_states(fast, perturb_fast_module=True)
    fast_units = cell.module_of_unit == 0
    assert (perturbed[:, fast_units] - base[:, fast_units]).abs().max() > 1e-3
    torch.testing.assert_close(perturbed[:, ~fast_units], base[:, ~fast_units], rtol=0, atol=0)


def test_clockwork_hours_ticks_when_real_time_has_advanced_by_the_period():
    cell = ClockworkCell(1, 4, periods=[1.0, 3.0], period_unit="hours")
    times = torch.tensor([[0.0, 0.5, 1.2, 2.0, 3.1, 3.5, 6.5]])
    from grud.models.layers import clockwork_schedule

    ticks = clockwork_schedule(cell, torch.ones(1, 7), times)[0]
    assert ticks[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 1]  # at 0, 1.2, 3.1, 6.5 (2.0 is only 0.8 h after 1.2)
    assert ticks[:, 1].tolist() == [1, 0, 0, 0, 1, 0, 1]  # 0, 3.1, 6.5
    ticks = clockwork_schedule(cell, torch.tensor([[1.0, 1, 1, 1, 1, 0, 0]]), times)[0]
    assert ticks[5:].abs().sum() == 0  # padded steps never tick


def test_clockwork_splits_units_into_modules_connected_slow_to_fast():
    cell = ClockworkCell(2, 7, periods=[1, 2, 4])
    assert cell.module_sizes == [3, 2, 2]
    m = cell.module_of_unit
    # unit k receives from unit l exactly when module(l) >= module(k)
    assert torch.equal(cell.connectivity.bool(), m[None, :] >= m[:, None])
