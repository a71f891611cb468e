"""Input strategies: the ``mixed`` input's delta scale, static features as network inputs."""
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
    net = preset("grud", n_features=4, n_static=2, hidden_size=5, static_input=True).eval()
    out, last = net(values, mask, delta, times, lengths, static)
    out2, _ = net(values, mask, delta, times, lengths, static + 1.0)
    assert not torch.allclose(out[:, 0], out2[:, 0])  # the first step already depends on them
    plain = preset("grud", n_features=4, n_static=2, hidden_size=5).eval()
    a, _ = plain(values, mask, delta, times, lengths, static)
    b, _ = plain(values, mask, delta, times, lengths, static + 1.0)
    torch.testing.assert_close(a, b)  # without the option the network ignores them
    with pytest.raises(DataError, match="static"):
        net(values, mask, delta, times, lengths, None)
