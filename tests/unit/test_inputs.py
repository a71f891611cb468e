"""Input strategies: the ``mixed`` input's delta scale, static features as network inputs and as the first state."""
from __future__ import annotations

import pytest
import torch

from grud.errors import ConfigError, DataError
from grud.models import preset
from grud.models.inputs import MixedInput


def _batch(B=3, T=6, F=4, S=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(B, T, F, generator=g) > 0.4).float()
    values = torch.randn(B, T, F, generator=g) * mask
    delta = torch.rand(B, T, F, generator=g) * 48
    times = torch.cumsum(torch.rand(B, T, generator=g), 1)
    lengths = torch.tensor([T, T - 2, 1])
    static = torch.randn(B, S, generator=g)
    return values, mask, delta, times, lengths, static


@pytest.mark.parametrize("scale", ["hours", "log1p"])
def test_mixed_input_feeds_delta_in_hours_or_log1p(scale):
    values, mask, delta, *_ = _batch()
    x = MixedInput(4, delta=scale)(values, mask, delta, torch.zeros(4))
    assert x.shape == (3, 6, 12)
    torch.testing.assert_close(x[..., 4:8], mask)
    torch.testing.assert_close(x[..., 8:], delta if scale == "hours" else torch.log1p(delta))


def test_mixed_delta_is_a_checked_network_argument():
    net = preset("gru_simple", n_features=4, n_static=2, hidden_size=5, mixed_delta="hours")
    assert net.hparams["mixed_delta"] == "hours" and net.input_layer.delta == "hours"  # the paper's
    assert preset("gru_simple", n_features=4, hidden_size=5).input_layer.delta == "log1p"  # the default
    with pytest.raises(ConfigError, match="mixed_delta"):
        preset("gru_simple", n_features=4, mixed_delta="minutes")


def test_static_input_conditions_every_step_on_the_static_features():
    torch.manual_seed(0)
    values, mask, delta, times, lengths, static = _batch()
    net = preset("grud", n_features=4, n_static=2, hidden_size=5, static_input=True, static_state=False).eval()
    out, last = net(values, mask, delta, times, lengths, static)
    out2, _ = net(values, mask, delta, times, lengths, static + 1.0)
    assert not torch.allclose(out[:, 0], out2[:, 0])  # the first step already depends on them
    plain = preset("grud", n_features=4, n_static=2, hidden_size=5, static_state=False).eval()
    a, _ = plain(values, mask, delta, times, lengths, static)
    b, _ = plain(values, mask, delta, times, lengths, static + 1.0)
    torch.testing.assert_close(a, b)  # without the option the network ignores them
    with pytest.raises(DataError, match="static"):
        net(values, mask, delta, times, lengths, None)


def _with_random_initial_state(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.initial_state.weight.copy_(torch.randn(net.initial_state.weight.shape, generator=g))
        net.initial_state.bias.copy_(torch.randn(net.initial_state.bias.shape, generator=g))
    return net


def test_static_state_starts_as_the_zero_state_and_then_learns_from_the_static_features():
    values, mask, delta, times, lengths, static = _batch()
    torch.manual_seed(0)
    net = preset("grud", n_features=4, n_static=2, hidden_size=5, static_state=True).eval()
    torch.manual_seed(0)
    plain = preset("grud", n_features=4, n_static=2, hidden_size=5, static_state=False).eval()
    assert net.initial_state is not None and plain.initial_state is None
    # zero-initialised: the same network as without the option
    torch.testing.assert_close(net(values, mask, delta, times, lengths, static),
                               plain(values, mask, delta, times, lengths, static))
    # and the static features' gradient reaches W_s (so training can move it off zero)
    net.train()
    _, last = net(values, mask, delta, times, lengths, static)
    last.sum().backward()
    assert net.initial_state.weight.grad.abs().sum() > 0
    net.eval()
    _with_random_initial_state(net)
    a, _ = net(values, mask, delta, times, lengths, static)
    b, _ = net(values, mask, delta, times, lengths, static + 1.0)
    assert not torch.allclose(a[:, 0], b[:, 0])  # the first step already depends on them
    with pytest.raises(DataError, match="static_state"):
        net(values, mask, delta, times, lengths, None)


@pytest.mark.parametrize("name, extra", [("grud", {}), ("grud", {"bidirectional": True}), ("gru_mean", {}),
                                         ("lstm", {}), ("bilstm", {}), ("clockwork", {})])
def test_static_state_fused_path_matches_the_cell_loop_in_values_and_gradients(name, extra):
    # a bidirectional GRU-D: each direction starts from a column slice of tanh(W s + b), which the
    # native kernel once read from a freed copy (wrong hidden-decay gradients, now and then NaN)
    values, mask, delta, times, lengths, static = _batch()
    results = []
    for fast in (True, False):
        torch.manual_seed(0)
        net = _with_random_initial_state(preset(name, n_features=4, n_static=2, hidden_size=5, fast=fast,
                                                **extra).eval())
        s = static.clone().requires_grad_(True)
        out, last = net(values, mask, delta, times, lengths, s)
        (out.square().sum() + last.sum()).backward()
        results.append((out.detach(), last.detach(), s.grad, net.initial_state.weight.grad,
                        *[p.grad for n, p in net.named_parameters() if "decay" in n and p.grad is not None]))
    for fused, loop in zip(*results):
        torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)


def test_static_state_is_off_without_static_features_and_in_checkpoints_saved_before_it():
    assert preset("grud", n_features=4, n_static=0, hidden_size=5).initial_state is None
    from grud.models import RecurrentNetwork

    old = dict(preset("grud", n_features=4, n_static=2, hidden_size=5).hparams)
    del old["static_state"]  # hyperparameters of a checkpoint written before the option existed
    assert RecurrentNetwork(**old).initial_state is None
