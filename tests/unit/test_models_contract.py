"""The contract every recurrent preset keeps, on the fused (fast=True) and reference (fast=False) paths.

Shapes, padding invariance, zero-length series, all-missing inputs, gradients to every
parameter, batch-order invariance, determinism under a seed; plus the configuration surface
(hparams round trip, x_mean in the checkpoint, YAML mirrors, ConfigError on bad names).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from grud import ConfigError, DataError
from grud.models import PRESETS, RecurrentNetwork, preset, preset_arguments, summary

F = 3
H = 8
ROOT = Path(__file__).resolve().parents[2]
CASES = [(name, fast) for name in PRESETS for fast in (True, False)]
IDS = [f"{name}-{'fast' if fast else 'loop'}" for name, fast in CASES]


def make_batch(lengths, T=None, seed=0, missing=0.5):
    """A batch in grud's vocabulary: NaN-free values, mask, delta consistent with times."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    B = len(lengths)
    T = int(lengths.max()) if T is None else T
    steps = torch.rand(B, T, generator=g) * 2 + 0.1
    times = torch.cumsum(steps, 1) - steps[:, :1]
    mask = (torch.rand(B, T, F, generator=g) > missing).float()
    values = torch.randn(B, T, F, generator=g) * mask
    valid = (torch.arange(T)[None] < lengths[:, None]).float()
    delta = torch.zeros(B, T, F)
    for t in range(1, T):
        delta[:, t] = times[:, t, None] - times[:, t - 1, None] + (1 - mask[:, t - 1]) * delta[:, t - 1]
    times, values, mask, delta = times * valid, values * valid[..., None], mask * valid[..., None], delta * valid[..., None]
    static = torch.randn(B, 2, generator=g)
    return dict(values=values, mask=mask, delta=delta, times=times, lengths=lengths, static=static)


def build(name, fast, seed=0, **kw):
    torch.manual_seed(seed)
    net = preset(name, n_features=F, n_static=2, hidden_size=H, fast=fast, **kw)
    net.set_input_means(torch.tensor([0.5, -0.25, 1.0]))
    if net.initial_state is not None:  # zero at init; non-zero here so the static features matter
        with torch.no_grad():
            net.initial_state.weight.normal_(0.0, 0.5)
            net.initial_state.bias.normal_(0.0, 0.5)
    return net


def run(net, batch):
    return net(batch["values"], batch["mask"], batch["delta"], batch["times"], batch["lengths"], batch["static"])


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_shapes_and_zero_outputs_at_padding(name, fast):
    net = build(name, fast).eval()
    batch = make_batch([5, 2, 4], T=6)
    outputs, last = run(net, batch)
    assert net.output_size == H * (2 if net.bidirectional else 1)
    assert outputs.shape == (3, 6, net.output_size)
    assert last.shape == (3, net.output_size)
    assert outputs[0, 5:].abs().max() == 0 and outputs[1, 2:].abs().max() == 0
    assert outputs[1, :2].abs().max() > 0


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_padding_with_empty_steps_changes_nothing(name, fast):
    net = build(name, fast).eval()
    alone = make_batch([4], seed=3)
    padded = {k: v.clone() for k, v in alone.items()}
    for k in ("values", "mask", "delta"):
        extra = torch.rand(1, 3, F) + 1.0  # junk in the padding must not matter
        padded[k] = torch.cat([alone[k], extra], 1)
    padded["times"] = torch.cat([alone["times"], torch.tensor([[9.0, 10.0, 11.0]])], 1)
    out_a, last_a = run(net, alone)
    out_p, last_p = run(net, padded)
    torch.testing.assert_close(last_p, last_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_p[:, :4], out_a, rtol=1e-5, atol=1e-6)
    assert out_p[:, 4:].abs().max() == 0


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_zero_length_series_keeps_initial_state(name, fast):
    net = build(name, fast).eval()
    batch = make_batch([0, 3], T=3)
    outputs, last = run(net, batch)
    initial = torch.zeros(net.output_size)
    if net.initial_state is not None and net.num_layers == 1:  # static_state sets the first layer's state
        initial = torch.tanh(net.initial_state(batch["static"][0]))
        assert initial.abs().max() > 0
    torch.testing.assert_close(last[0], initial, rtol=0, atol=1e-6)
    assert torch.equal(outputs[0], torch.zeros(3, net.output_size))
    assert last[1].abs().max() > 0


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_all_missing_inputs_give_finite_states(name, fast):
    net = build(name, fast).train()
    batch = make_batch([6, 6], missing=1.0)
    assert batch["mask"].sum() == 0
    batch["delta"] = batch["delta"] * 100  # long gaps: the decays go to their limits
    outputs, last = run(net, batch)
    assert torch.isfinite(outputs).all() and torch.isfinite(last).all()
    (outputs.sum() + last.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_gradients_reach_every_parameter(name, fast):
    net = build(name, fast).train()
    batch = make_batch([6, 4, 5], seed=1)
    outputs, last = run(net, batch)
    (outputs.pow(2).sum() + last.sum()).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_batch_order_does_not_matter(name, fast):
    net = build(name, fast).eval()
    batch = make_batch([5, 2, 4, 1], T=5, seed=2)
    perm = torch.tensor([2, 0, 3, 1])
    out, last = run(net, batch)
    out_p, last_p = run(net, {k: v[perm] for k, v in batch.items()})
    torch.testing.assert_close(out_p, out[perm], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last_p, last[perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_deterministic_under_a_seed_including_dropout(name, fast):
    batch = make_batch([5, 3], seed=4)
    results = []
    for _ in range(2):
        net = build(name, fast, seed=7).train()  # training mode: dropout masks are drawn
        torch.manual_seed(11)
        results.append(run(net, batch))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


@pytest.mark.parametrize("name", PRESETS)
def test_fast_and_reference_paths_agree_in_values_and_gradients(name):
    batch = make_batch([5, 3, 0], seed=5)
    nets = [build(name, fast).eval() for fast in (True, False)]
    (out_f, last_f), (out_r, last_r) = [run(net, batch) for net in nets]
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last_f, last_r, rtol=1e-5, atol=1e-6)
    for net, (out, last) in zip(nets, [(out_f, last_f), (out_r, last_r)]):
        (out.pow(2).sum() + last.sum()).backward()
    for (pname, p_f), p_r in zip(nets[0].named_parameters(), nets[1].parameters()):
        torch.testing.assert_close(p_f.grad, p_r.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{pname}: {m}")


@pytest.mark.parametrize("name", PRESETS)
def test_hparams_and_state_dict_rebuild_the_same_network(name):
    net = build(name, True).eval()
    hp = net.hparams
    assert all(isinstance(v, (int, float, str, bool, list, type(None))) for v in hp.values())
    assert "x_mean" in net.state_dict()
    twin = RecurrentNetwork(**hp)
    twin.load_state_dict(net.state_dict())
    twin.eval()
    assert torch.equal(twin.x_mean, torch.tensor([0.5, -0.25, 1.0]))
    batch = make_batch([4, 2], seed=6)
    torch.testing.assert_close(run(twin, batch), run(net, batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", PRESETS)
def test_yaml_config_mirrors_the_preset(name):
    cfg = yaml.safe_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name and cfg.pop("kind") == "recurrent"
    assert cfg == preset_arguments(name)
    text = (ROOT / "conf" / "model" / f"{name}.yaml").read_text()
    for key in cfg:  # every key is documented with a comment on its line
        line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
        assert "#" in line, f"{key} has no comment"


@pytest.mark.parametrize("name", PRESETS)
def test_summary_lists_layers_shapes_and_parameter_count(name):
    net = build(name, True)
    rng = torch.get_rng_state()
    text = summary(net, seq_len=7, batch_size=2)
    assert torch.equal(rng, torch.get_rng_state())  # the caller's random state is untouched
    assert f"(2, 7, {net.output_size})" in text
    assert f"Total params: {sum(p.numel() for p in net.parameters()):,}" in text
    assert net.training


@pytest.mark.parametrize("name,fast", CASES, ids=IDS)
def test_no_step_or_no_series_gives_empty_outputs_and_the_initial_state(name, fast):
    """T = 0 (a batch of series with no observation) and B = 0 (an empty batch) are valid input."""
    net = build(name, fast).eval()
    batch = make_batch([2, 1])
    empty = {k: (v[:, :0] if k in ("values", "mask", "delta", "times") else v) for k, v in batch.items()}
    empty["lengths"] = torch.zeros_like(batch["lengths"])
    padded = {**batch, "lengths": torch.zeros_like(batch["lengths"])}  # steps there, none valid
    with torch.no_grad():
        out, last = run(net, empty)
        _, last_padded = run(net, padded)
        none = run(net, {k: v[:0] for k, v in batch.items()})
    assert out.shape == (2, 0, net.output_size) and last.shape == (2, net.output_size)
    torch.testing.assert_close(last, last_padded)
    assert none[0].shape == (0, batch["values"].shape[1], net.output_size) and none[1].shape == (0, net.output_size)


@pytest.mark.parametrize("check", ["native", "torch"])
def test_nan_in_the_batch_is_refused_naming_the_tensor(check):
    """The boundary check finds a NaN or an infinity with the native kernel (one pass) and without it (sums)."""
    import contextlib

    from grud.models.fast import native

    net = build("grud", True)
    off = native.disabled() if check == "torch" else contextlib.nullcontext()
    with off:
        batch = make_batch([3, 2])
        batch["values"][1, 0, 2] = float("nan")
        with pytest.raises(DataError, match=r"values.*NaN.*\(1, 0, 2\)"):
            run(net, batch)
        batch = make_batch([3, 2])
        batch["delta"][0, 1, 0] = float("nan")
        with pytest.raises(DataError, match="delta"):
            run(net, batch)
        batch = make_batch([3, 2])
        batch["times"][1, 1] = float("inf")  # an infinity becomes NaN inside the network (inf - inf, 0 * inf)
        with pytest.raises(DataError, match=r"times: contains 1 infinite value\(s\) \(first at index \(1, 1\)\)"):
            run(net, batch)
        batch = make_batch([3, 2])
        batch["values"][0, 0, 1] = -float("inf")
        with pytest.raises(DataError, match=r"values: contains 1 infinite"):
            run(net, batch)
        batch = make_batch([3, 2])
        batch["values"][0, 0, 1] = 3e38  # large but finite: float32 sums must not overflow into a false alarm
        batch["values"][1, 0, 1] = 3e38
        run(net, batch)


@pytest.mark.parametrize("name", ["grud", "gru_mean", "lstm"])
@pytest.mark.parametrize("bad", [0.5, 2.0, float("nan")])
def test_a_mask_that_is_not_zero_or_one_is_refused_at_the_boundary(name, bad):
    """The inputs read the mask differently (GRU-Mean mixes m * x + (1 - m) * mean, GRU-D tests m != 0):
    a mask of 0.5 or 2 would mean different things to different models."""
    net = build(name, False)
    batch = make_batch([3, 2])
    batch["mask"][1, 0, 2] = bad
    with pytest.raises(DataError, match=r"mask: expected 0 \(unobserved\) or 1 \(observed\) everywhere, got "
                                        r".* at index \(1, 0, 2\) \(1 entries are neither\)"):
        run(net, batch)
    batch = make_batch([3, 2])
    T = batch["mask"].shape[1]
    assert int(batch["lengths"][1]) < T
    if not torch.isnan(torch.tensor(bad)):  # NaN anywhere is the non-finite check's
        batch["mask"][1, T - 1, 0] = bad  # padding of series 1: may hold anything
        run(net, batch)


@pytest.mark.parametrize("name", ["grud", "gru_simple"])
def test_a_negative_delta_is_refused_at_the_boundary_padding_may_hold_anything(name):
    """Unsorted times gave negative deltas that GRU-D's decay read silently (exp(-relu(w d + b)) = 1)."""
    net = build(name, False)
    batch = make_batch([3, 2])
    batch["delta"][0, 2, 1] = -0.5
    with pytest.raises(DataError, match=r"delta: expected hours since the last observation \(>= 0\), got -0.5 at "
                                        r"index \(0, 2, 1\) \(1 negative entries\): are the times ascending"):
        run(net, batch)
    batch = make_batch([3, 2])
    T = batch["delta"].shape[1]
    batch["delta"][1, T - 1, 0] = -3.0  # padding of series 1
    run(net, batch)


def test_shapes_are_checked_with_expected_and_actual():
    net = build("gru_mean", True)
    batch = make_batch([3, 2])
    with pytest.raises(DataError, match=r"mask: expected shape \(B, T, F\) = \(2, 3, 3\), got \(2, 3, 2\)"):
        net(batch["values"], batch["mask"][..., :2], batch["delta"], batch["times"], batch["lengths"])
    with pytest.raises(DataError, match=r"lengths: expected values in \[0, T = 3\]"):
        net(batch["values"], batch["mask"], batch["delta"], batch["times"], torch.tensor([4, 1]))


def test_bad_configuration_raises_config_error_listing_allowed_values():
    with pytest.raises(ConfigError, match="gru_mean"):
        preset("gru_median", n_features=F)
    with pytest.raises(ConfigError, match="hidden_size"):
        preset("grud", n_features=F, hiden_size=4)
    with pytest.raises(ConfigError, match="mean, forward, mixed, decay"):
        preset("grud", n_features=F, input="median")
    with pytest.raises(ConfigError, match="gru, lstm, peephole_lstm, clockwork, grud"):
        preset("grud", n_features=F, cell="rnn")
    with pytest.raises(ConfigError, match="dropout"):
        preset("lstm", n_features=F, dropout=1.5)
    with pytest.raises(ConfigError, match="periods"):
        preset("clockwork", n_features=F, periods=[4, 2, 1])
    with pytest.raises(ConfigError, match="steps, hours"):
        preset("clockwork", n_features=F, period_unit="days")


def test_overrides_reach_the_network():
    net = preset("grud", n_features=F, hidden_size=5, input_decay=False, hidden_decay=False, mask_in_gates=False)
    names = {n for n, _ in net.named_parameters()}
    assert not any("decay" in n or "weight_mh" in n for n in names)
    assert net.hparams["hidden_size"] == 5 and net.output_size == 5
    net = preset("clockwork", n_features=F, n_modules=3, hidden_size=6)
    assert net.layers[0].cells[0].periods == [1, 2, 4]
