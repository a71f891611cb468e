"""Recurrent layers: reversal within lengths, the backward direction, variational dropout."""
from __future__ import annotations

import pytest
import torch

from grud.data.masking import time_deltas
from grud.models import preset
from grud.errors import ConfigError, DataError
from grud.models.cells import ClockworkCell, GRUCell, GRUDCell, LSTMCell
from grud.models.layers import RecurrentLayer, reverse_padded, variational_mask

F = 2


def _batch(lengths, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths)
    B = len(lengths)
    valid = (torch.arange(T)[None] < lengths[:, None]).float()
    steps = torch.rand(B, T, generator=g) + 0.5
    times = (torch.cumsum(steps, 1) - steps[:, :1]) * valid
    mask = (torch.rand(B, T, F, generator=g) > 0.4).float() * valid[..., None]
    values = torch.randn(B, T, F, generator=g) * mask
    delta = time_deltas(times, mask, lengths=lengths)
    return values, mask, delta, times, lengths


def test_reverse_padded_reverses_within_each_length_only():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_padded(x, torch.tensor([3, 5]))
    assert out[0, :, 0].tolist() == [2.0, 1.0, 0.0, 3.0, 4.0]
    assert out[1, :, 0].tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert torch.equal(reverse_padded(out, torch.tensor([3, 5])), x)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", ["bilstm", "grud", "gru_forward", "clockwork"])
def test_bidirectional_padded_series_equals_the_series_alone(name, fast):
    torch.manual_seed(0)
    net = preset(name, n_features=F, hidden_size=4, bidirectional=True, fast=fast).eval()
    batch = _batch([4, 7, 2], T=7, seed=1)
    out, last = net(*batch)
    for i, L in enumerate([4, 7, 2]):
        alone = [t[i : i + 1, :L] if t.dim() > 1 else t[i : i + 1] for t in batch]
        out_a, last_a = net(*alone)
        torch.testing.assert_close(last[i : i + 1], last_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[i : i + 1, :L], out_a, rtol=1e-5, atol=1e-6)
        assert out[i, L:].abs().sum() == 0


def test_backward_direction_starts_at_the_last_real_step():
    torch.manual_seed(0)
    net = preset("bilstm", n_features=F, hidden_size=3, input="mean").eval()
    values, mask, delta, times, lengths = _batch([3], T=3, seed=2)
    out, last = net(values, mask, delta, times, lengths)
    # backward final state = its state after reading step 0 last; its first output is at t = L - 1
    assert torch.equal(last[0, 3:], out[0, 0, 3:])
    assert torch.equal(last[0, :3], out[0, 2, :3])
    # a unidirectional LSTM on the time-reversed series gives the backward half
    fwd_only = preset("lstm", n_features=F, hidden_size=3, input="mean").eval()
    fwd_only.layers[0].cells[0].load_state_dict(net.layers[0].cells[1].state_dict())
    flipped = [values.flip(1), mask.flip(1), delta, times, lengths]
    out_r, last_r = fwd_only(*flipped)
    torch.testing.assert_close(last_r[0], last[0, 3:])
    torch.testing.assert_close(out_r[0].flip(0), out[0, :, 3:])


def _hours_until_next_observation(times, mask, L):
    """The backward direction's delta, by a loop: for step k of a series of length L, the hours
    until the variable is next observed after k (until the last step if never again); 0 at L - 1."""
    delta = torch.zeros(L, mask.shape[-1])
    for k in range(L):
        for d in range(mask.shape[-1]):
            later = [j for j in range(k + 1, L) if mask[j, d] > 0]
            delta[k, d] = times[later[0] if later else L - 1] - times[k]
    return delta


@pytest.mark.parametrize("fast", [True, False])
def test_grud_backward_direction_decays_by_the_time_until_the_next_observation(fast):
    """The backward GRU-D direction reads time backwards: its delta is the time to the *next*
    observation. Reusing the forward delta (time since the previous one) reversed went unnoticed."""
    torch.manual_seed(0)
    H = 3
    bi = RecurrentLayer("grud", F, H, F, bidirectional=True, fast=fast).eval()
    with torch.no_grad():  # a strong hidden decay, so that a wrong delta shows
        bi.cells[1].decay_weight.uniform_(0.3, 1.0)
    uni = RecurrentLayer("grud", F, H, F, fast=fast).eval()
    uni.cells[0].load_state_dict(bi.cells[1].state_dict())
    values, mask, delta, times, lengths = _batch([5, 7, 3], T=7, seed=5)
    times = times * 3.0  # gaps of 1.5 to 4.5 hours
    delta = time_deltas(times, mask, lengths=lengths)
    out, last = bi(values, lengths, mask, delta, times)
    for i, L in enumerate(lengths.tolist()):
        back_delta = _hours_until_next_observation(times[i], mask[i], L)
        reversed_series = (values[i : i + 1, :L].flip(1), torch.tensor([L]), mask[i : i + 1, :L].flip(1),
                           back_delta.flip(0)[None])
        out_r, last_r = uni(*reversed_series)
        torch.testing.assert_close(out[i, :L, H:], out_r[0].flip(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last[i, H:], last_r[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_input_dropout_uses_one_mask_per_sequence_for_every_step(fast):
    torch.manual_seed(0)
    layer = RecurrentLayer("gru", 5, 4, F, input_dropout=0.5, fast=fast)
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 4, 6])
    torch.manual_seed(1)
    out_train, _ = layer.train()(x, lengths)
    torch.manual_seed(1)
    m = variational_mask(3, 5, 0.5, x)
    out_manual, _ = layer.eval()(x * m[:, None, :], lengths)
    torch.testing.assert_close(out_train, out_manual)
    assert set(m.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("fast", [True, False])
def test_recurrent_dropout_uses_one_mask_per_sequence_in_front_of_w_hh(fast):
    torch.manual_seed(0)
    layer = RecurrentLayer("grud", F, 4, F, recurrent_dropout=0.4, fast=fast)
    values, mask, delta, times, lengths = _batch([5, 5], T=5, seed=4)
    torch.manual_seed(2)
    out_train, last_train = layer.train()(values, lengths, mask, delta, times)
    torch.manual_seed(2)
    m = variational_mask(2, 4, 0.4, values)
    cell: GRUDCell = layer.cells[0]
    h = torch.zeros(2, 4)
    for t in range(5):
        h = cell(values[:, t], h, mask[:, t], delta[:, t], hidden_dropout=m)
        torch.testing.assert_close(out_train[:, t], h)
    torch.testing.assert_close(last_train, h)


def test_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    net = preset("stacked_lstm", n_features=F, hidden_size=4).eval()
    batch = _batch([5, 3], T=5)
    a = net(*batch)
    b = net(*batch)
    assert torch.equal(a[0], b[0])


def test_grud_layer_needs_mask_and_delta():
    layer = RecurrentLayer("grud", F, 4, F)
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, T, F\)"):
        layer(torch.zeros(1, 3, F), torch.tensor([3]))


# ---------------------------------------------------------------- arguments checked where they are given
@pytest.mark.parametrize("build, message", [
    (lambda: GRUCell(3, 0), r"GRUCell hidden_size: expected an integer >= 1, got 0"),
    (lambda: LSTMCell(0, 4), r"LSTMCell input_size: expected an integer >= 1, got 0"),
    (lambda: LSTMCell(3, 4, forget_bias=float("nan")), r"LSTMCell forget_bias: expected a finite number"),
    (lambda: GRUDCell(3, 4, n_features=0), r"GRUDCell n_features: expected an integer >= 1, got 0"),
    (lambda: ClockworkCell(3, 4, [4, 2]), r"ClockworkCell periods: expected a non-empty, strictly increasing"),
    (lambda: ClockworkCell(3, 4, [1, 2], "foo"), r"ClockworkCell period_unit: expected one of steps, hours"),
    (lambda: ClockworkCell(3, 2, [1, 2, 4]), r"ClockworkCell periods: expected at most hidden_size = 2 modules"),
    (lambda: ClockworkCell(3, 4, None), r"ClockworkCell periods: expected a list"),
    (lambda: RecurrentLayer("gru", 3, 4, 3, input_dropout=1.0), r"RecurrentLayer input_dropout: expected a probability"),
    (lambda: RecurrentLayer("gru", 3, 4, 3, recurrent_dropout=-0.5), r"RecurrentLayer recurrent_dropout"),
    (lambda: RecurrentLayer("grux", 3, 4, 3), r"RecurrentLayer cell: expected one of gru, lstm"),
    (lambda: RecurrentLayer("clockwork", 3, 4, 3), r"ClockworkCell periods: expected a list"),
])
def test_cells_and_layers_check_their_arguments_naming_them(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("lengths, message", [
    (torch.tensor([3, 9]), r"lengths: expected values in \[0, T = 4\], got min 3, max 9"),
    (torch.tensor([3]), r"lengths: expected shape \(B,\) = \(2,\), got \(1,\)"),
    (torch.tensor([3.0, 2.0]), r"lengths: expected an integer tensor, got dtype torch.float32"),
])
def test_the_layer_checks_lengths_on_every_path(fast, lengths, message):
    layer = RecurrentLayer("gru", 3, 4, 3, bidirectional=not fast, fast=fast)
    with pytest.raises(DataError, match=message):
        layer(torch.zeros(2, 4, 3), lengths)
