"""The fused recurrences of grud.models.fast agree with the autograd-recorded reference loops.

* ``torch.autograd.gradcheck`` of each hand-written backward in double precision (hidden decay,
  recurrent dropout mask, peepholes, padding, gradients to the initial state);
* fast vs reference forward values and every gradient within 1e-5 in float32 on random batches
  with padding, on the training path (autograd Function) and the inference path (no graph);
* padding semantics a user relies on: a padded batch gives each series the result it gets alone;
* argument checks name the argument and the expected shape;
* every preset gives the same outputs and parameter gradients with ``fast=True`` and ``fast=False``.

Every test runs twice: with the GRU's native kernel (:mod:`grud.models.fast.native`; skipped where
it cannot be built) and with its PyTorch path, which is what runs where there is no C compiler.
"""
from __future__ import annotations

import pytest
import torch

from grud.models.fast import (
    clockwork_recurrence,
    clockwork_recurrence_reference,
    gru_recurrence,
    gru_recurrence_reference,
    lstm_recurrence,
    lstm_recurrence_reference,
)
from grud.models.fast.clockwork import ClockworkRecurrence
from grud.models.fast.gru import GRURecurrence
from grud.models.fast.lstm import LSTMRecurrence

ATOL = 1e-5


@pytest.fixture(autouse=True, params=["native", "torch"])
def gru_backend(request):
    """The GRU recurrence's backend for this test: the native kernel, or its PyTorch path."""
    from grud.models.fast import native

    if request.param == "torch":
        with native.disabled():
            yield request.param
        return
    if not native.available():
        pytest.skip(f"native kernel unavailable: {native.status()}")
    yield request.param


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny shapes gain nothing from intra-op threads, and on a busy machine waiting for them dominates."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _valid(lengths, T, dtype):
    lengths = torch.as_tensor(lengths)
    return (torch.arange(T)[None] < lengths[:, None]).to(dtype)


def gru_args(B=3, T=5, H=4, lengths=None, gamma=True, dropout=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = 1.0 / H**0.5

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    lengths = [T] * B if lengths is None else lengths
    return dict(
        gi=rnd(B, T, 3 * H),
        weight_hh=rnd(3 * H, H, scale=s * 2),
        bias_hh=rnd(3 * H, scale=s),
        h0=rnd(B, H),
        valid=_valid(lengths, T, dtype),
        gamma_h=torch.rand(B, T, H, generator=g, dtype=dtype).requires_grad_() if gamma else None,
        hidden_dropout=(torch.rand(B, H, generator=g, dtype=dtype) * 2).requires_grad_() if dropout else None,
    )


def lstm_args(B=3, T=5, H=4, lengths=None, peephole=True, dropout=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = 1.0 / H**0.5

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    lengths = [T] * B if lengths is None else lengths
    return dict(
        gi=rnd(B, T, 4 * H),
        weight_hh=rnd(4 * H, H, scale=s * 2),
        bias_hh=rnd(4 * H, scale=s),
        h0=rnd(B, H),
        c0=rnd(B, H),
        valid=_valid(lengths, T, dtype),
        peephole=rnd(3, H) if peephole else None,
        hidden_dropout=(torch.rand(B, H, generator=g, dtype=dtype) * 2).requires_grad_() if dropout else None,
    )


def clockwork_args(B=3, T=5, H=4, lengths=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = [T] * B if lengths is None else lengths
    valid = _valid(lengths, T, dtype)
    ticks = (torch.rand(B, T, H, generator=g) < 0.6).to(dtype)
    return dict(
        gi=torch.randn(B, T, H, generator=g, dtype=dtype).requires_grad_(),
        weight_hh=(torch.randn(H, H, generator=g, dtype=dtype) / H**0.5).tril().requires_grad_(),
        bias_hh=torch.randn(H, generator=g, dtype=dtype).requires_grad_(),
        h0=torch.randn(B, H, generator=g, dtype=dtype).requires_grad_(),
        update=ticks * valid[..., None],
    )


FUNCTIONS = {
    "gru": (GRURecurrence, gru_recurrence, gru_recurrence_reference, gru_args),
    "lstm": (LSTMRecurrence, lstm_recurrence, lstm_recurrence_reference, lstm_args),
    "clockwork": (ClockworkRecurrence, clockwork_recurrence, clockwork_recurrence_reference, clockwork_args),
}


def _differentiable(args):
    return [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.requires_grad]


# ---------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("gamma,dropout,padded", [(True, True, True), (False, False, False), (True, False, False), (False, True, True)])
def test_gru_function_passes_gradcheck(gamma, dropout, padded):
    args = gru_args(gamma=gamma, dropout=dropout, lengths=[5, 3, 1] if padded else None)
    assert torch.autograd.gradcheck(GRURecurrence.apply, tuple(args.values()))


@pytest.mark.parametrize("padded", [True, False])
def test_gru_with_the_decay_exponent_passes_gradcheck_and_matches_the_reference(padded):
    """gamma_exp: gamma_h is the exponent e of GRU-D's hidden decay, exp(min(e, 0)), applied inside."""
    args = gru_args(lengths=[5, 3, 1] if padded else None)
    g = torch.Generator().manual_seed(3)
    args["gamma_h"] = (torch.randn(3, 5, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()  # both signs
    assert torch.autograd.gradcheck(lambda *a: GRURecurrence.apply(*a, True), tuple(args.values()))
    diff = _differentiable(args)
    got = gru_recurrence(**args, gamma_exp=True)
    want = gru_recurrence_reference(**args, gamma_exp=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    grads = torch.autograd.grad(sum(x.sum() for x in got), [args[k] for k in diff])
    grads_ref = torch.autograd.grad(sum(x.sum() for x in want), [args[k] for k in diff])
    for name, a, b in zip(diff, grads, grads_ref):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("peephole,dropout,padded", [(True, True, True), (False, False, False), (True, False, False), (False, True, True)])
def test_lstm_function_passes_gradcheck(peephole, dropout, padded):
    args = lstm_args(peephole=peephole, dropout=dropout, lengths=[5, 3, 1] if padded else None)
    assert torch.autograd.gradcheck(LSTMRecurrence.apply, tuple(args.values()))


@pytest.mark.parametrize("padded", [True, False])
def test_clockwork_function_passes_gradcheck(padded):
    args = clockwork_args(lengths=[5, 3, 1] if padded else None)
    assert torch.autograd.gradcheck(ClockworkRecurrence.apply, tuple(args.values()))


# ---------------------------------------------------------------------------- fast vs reference
VARIANTS = [
    ("gru", dict(gamma=True, dropout=True)),
    ("gru", dict(gamma=True, dropout=False)),
    ("gru", dict(gamma=False, dropout=False)),
    ("lstm", dict(peephole=True, dropout=True)),
    ("lstm", dict(peephole=False, dropout=False)),
    ("clockwork", dict()),
]


@pytest.mark.parametrize("kind,options", VARIANTS, ids=[f"{k}-{'-'.join(o)}" for k, o in VARIANTS])
@pytest.mark.parametrize("lengths", [[12, 12, 12, 12], [12, 7, 1, 0]], ids=["full", "padded"])
def test_fast_matches_reference_values_and_all_gradients_float32(kind, options, lengths):
    _, fast, reference, make = FUNCTIONS[kind]
    args = make(B=4, T=12, H=8, lengths=lengths, dtype=torch.float32, seed=1, **options)
    names = _differentiable(args)
    results = []
    for fn in (fast, reference):
        out = fn(**args)
        g = torch.Generator().manual_seed(2)
        # a loss touching every output: random weights on the sequence and on each final state
        loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in out)
        grads = torch.autograd.grad(loss, [args[k] for k in names])
        results.append(([o.detach() for o in out], grads))
    (out_f, grad_f), (out_r, grad_r) = results
    for a, b in zip(out_f, out_r):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    for name, a, b in zip(names, grad_f, grad_r):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("kind", list(FUNCTIONS))
@pytest.mark.parametrize("used", ["sequence", "final states"])
def test_gradients_when_only_some_outputs_enter_the_loss(kind, used):
    # the usual classification loss reads only the final state; the backward then gets None for the rest
    _, fast, reference, make = FUNCTIONS[kind]
    args = make(B=3, T=7, H=5, lengths=[7, 5, 2], dtype=torch.float64, seed=8)
    names = _differentiable(args)
    grads = []
    for fn in (fast, reference):
        out = fn(**args)
        loss = out[0].square().sum() if used == "sequence" else sum(o.square().sum() for o in out[1:])
        grads.append(torch.autograd.grad(loss, [args[k] for k in names]))
    for name, a, b in zip(names, *grads):
        torch.testing.assert_close(a, b, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_long_sequences_stay_within_tolerance_float32(kind):
    # errors of tanh-as-sigmoid and the reordered sums must not build up over many steps
    _, fast, reference, make = FUNCTIONS[kind]
    args = make(B=4, T=150, H=8, lengths=[150, 120, 60, 1], dtype=torch.float32, seed=6)
    names = _differentiable(args)
    out_f, out_r = fast(**args), reference(**args)
    for a, b in zip(out_f, out_r):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    grads = [torch.autograd.grad(sum(o.sum() for o in out), [args[k] for k in names]) for out in (out_f, out_r)]
    for name, a, b in zip(names, *grads):
        # gradients summed over 150 steps reach ~100: float32 round-off scales with them
        scale = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, atol=ATOL * scale, rtol=0, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_inference_path_without_graph_matches_training_path(kind):
    _, fast, reference, make = FUNCTIONS[kind]
    args = make(B=3, T=9, H=5, lengths=[9, 4, 2], dtype=torch.float32, seed=3)
    with torch.no_grad():
        out_nograd = fast(**args)
        out_ref = reference(**args)
    assert all(not o.requires_grad for o in out_nograd)
    for a, b in zip(out_nograd, out_ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_padded_batch_gives_each_series_its_own_result(kind):
    _, fast, _, make = FUNCTIONS[kind]
    lengths = [6, 3, 1]
    args = make(B=3, T=6, H=4, lengths=lengths, dtype=torch.float64, seed=4)
    with torch.no_grad():
        out_batch = fast(**args)
        for b, L in enumerate(lengths):
            alone = {}
            for k, v in args.items():
                if v is None:
                    alone[k] = None
                elif k in ("weight_hh", "bias_hh", "peephole"):
                    alone[k] = v
                elif v.dim() >= 2 and k not in ("h0", "c0", "hidden_dropout"):
                    alone[k] = v[b : b + 1, :L]
                else:
                    alone[k] = v[b : b + 1]
            out_alone = fast(**alone)
            torch.testing.assert_close(out_batch[0][b, :L], out_alone[0][0])
            assert torch.all(out_batch[0][b, L:] == 0), "outputs at padded steps must be zero"
            for last_batch, last_alone in zip(out_batch[1:], out_alone[1:]):
                torch.testing.assert_close(last_batch[b], last_alone[0])


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_no_time_steps_return_the_initial_state_and_its_gradient(kind):
    _, fast, _, make = FUNCTIONS[kind]
    args = make(T=0, dtype=torch.float32)
    outputs, h_last, *rest = fast(**args)
    assert outputs.shape == (3, 0, 4)
    torch.testing.assert_close(h_last, args["h0"].detach())
    (h_last.sum() + sum(r.sum() for r in rest)).backward()
    torch.testing.assert_close(args["h0"].grad, torch.ones(3, 4))
    assert torch.count_nonzero(args["weight_hh"].grad) == 0


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_changing_the_outputs_in_place_before_backward_is_an_error(kind):
    _, fast, _, make = FUNCTIONS[kind]
    args = make(dtype=torch.float32)
    outputs = fast(**args)[0]
    loss = outputs.sum()
    # the outputs share memory with what the backward needs: autograd refuses, either at the
    # change (the native GRU's outputs are a view of its time-major buffer) or at the backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation|is a view and is being modified inplace"):
        outputs.mul_(2)
        loss.backward()


def test_bool_valid_mask_is_accepted():
    args = gru_args(lengths=[5, 2, 3], dtype=torch.float32)
    expected = gru_recurrence(**args)[1]
    args["valid"] = args["valid"].bool()
    torch.testing.assert_close(gru_recurrence(**args)[1], expected)


@pytest.mark.parametrize(
    "kind,name,bad,expected",
    [
        ("gru", "gi", torch.zeros(3, 5, 8), "gi (B, T, 3H)"),
        ("gru", "weight_hh", torch.zeros(4, 12), "weight_hh: expected shape (3H, H) = (12, 4), got (4, 12)"),
        ("gru", "valid", torch.ones(3, 4), "valid: expected shape (B, T) = (3, 5), got (3, 4)"),
        ("gru", "gamma_h", torch.ones(3, 5), "gamma_h: expected shape (B, T, H) = (3, 5, 4), got (3, 5)"),
        ("lstm", "peephole", torch.ones(2, 4), "peephole: expected shape (3, H) = (3, 4), got (2, 4)"),
        ("lstm", "c0", torch.ones(3, 5), "c0: expected shape (B, H) = (3, 4), got (3, 5)"),
        ("clockwork", "update", torch.ones(3, 5), "update: expected shape (B, T, H) = (3, 5, 4), got (3, 5)"),
    ],
)
def test_bad_shapes_raise_with_expected_and_actual(kind, name, bad, expected):
    _, fast, _, make = FUNCTIONS[kind]
    args = make(dtype=torch.float32)
    args[name] = bad
    with pytest.raises(ValueError) as err:
        fast(**args)
    assert expected in str(err.value)


def test_mixed_dtypes_are_rejected():
    args = gru_args(dtype=torch.float32)
    args["weight_hh"] = args["weight_hh"].double()
    with pytest.raises(ValueError, match="weight_hh: expected dtype torch.float32"):
        gru_recurrence(**args)


# ---------------------------------------------------------------------------- presets
def _presets():
    try:
        from grud.models import PRESETS, preset
    except ImportError as err:  # the models package is written in parallel
        pytest.skip(f"grud.models presets not importable yet: {err}")
    return PRESETS, preset


def _batch(F, lengths, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths)
    B = len(lengths)
    steps = torch.rand(B, T, generator=g) * 2 + 0.1
    times = torch.cumsum(steps, 1) - steps[:, :1]
    valid = (torch.arange(T)[None] < lengths[:, None]).float()
    mask = (torch.rand(B, T, F, generator=g) > 0.5).float() * valid[..., None]
    values = torch.randn(B, T, F, generator=g) * mask
    delta = torch.zeros(B, T, F)
    for t in range(1, T):
        delta[:, t] = times[:, t, None] - times[:, t - 1, None] + (1 - mask[:, t - 1]) * delta[:, t - 1]
    return values, mask, delta * valid[..., None], times * valid, lengths


PRESET_NAMES = [
    "grud", "gru_mean", "gru_forward", "gru_simple", "lstm_mean", "lstm", "stacked_lstm", "bilstm",
    "peephole_lstm", "clockwork",
]


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_every_preset_fast_and_reference_agree(name, training):
    PRESETS, preset = _presets()
    if name not in PRESETS:
        pytest.skip(f"preset {name!r} not defined")
    F = 3
    torch.manual_seed(0)
    fast = preset(name, F, hidden_size=8, fast=True)
    loop = preset(name, F, hidden_size=8, fast=False)
    loop.load_state_dict(fast.state_dict())
    fast.train(training)
    loop.train(training)
    batch = _batch(F, [7, 4, 1], T=7)
    results = []
    for net in (fast, loop):
        torch.manual_seed(5)  # same dropout masks on both paths
        outputs, last = net(*batch)
        (outputs.square().sum() + last.sum()).backward()
        grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
        results.append((outputs.detach(), last.detach(), grads))
    (o_f, l_f, g_f), (o_r, l_r, g_r) = results
    torch.testing.assert_close(o_f, o_r, atol=ATOL, rtol=0)
    torch.testing.assert_close(l_f, l_r, atol=ATOL, rtol=0)
    assert g_f.keys() == g_r.keys()
    for k in g_f:
        torch.testing.assert_close(g_f[k], g_r[k], atol=ATOL, rtol=1e-5, msg=lambda m: f"gradient of {k}: {m}")


# ---------------------------------------------------------------- GRU-D input projection
def _projection_case(dtype, lead=(3, 5), I=6, F=4, H=2, seed=0):
    from grud.models.cells import GRUDCell

    g = torch.Generator().manual_seed(seed)
    cell = GRUDCell(I, H, n_features=F).to(dtype)
    x = torch.randn(*lead, I, generator=g, dtype=dtype, requires_grad=True)
    mask = (torch.rand(*lead, F, generator=g) < 0.4).to(dtype)
    return cell, x, mask


def test_masked_input_projection_matches_the_cell_values_and_gradients():
    from grud.models.fast import masked_input_projection

    cell, x, mask = _projection_case(torch.float32)
    ref = cell.input_projection(x, mask)
    fast = masked_input_projection(x, mask, cell.weight_ih, cell.weight_mh, cell.bias_ih)
    assert fast.shape == ref.shape == (3, 5, 3 * cell.hidden_size)
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=0)
    w = torch.randn_like(ref)
    params = [x, cell.weight_ih, cell.weight_mh, cell.bias_ih]
    g_ref = torch.autograd.grad((ref * w).sum(), params)
    g_fast = torch.autograd.grad((fast * w).sum(), params)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_masked_input_projection_with_an_input_scale_equals_scaling_first():
    """x_scale (the layer's variational input dropout) applied inside equals multiplying x first."""
    from grud.models.fast import masked_input_projection

    cell, x, mask = _projection_case(torch.float64)
    scale = (torch.rand(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.7) / 0.7
    ref = cell.input_projection(x * scale[:, None, :], mask)
    fast = masked_input_projection(x, mask, cell.weight_ih, cell.weight_mh, cell.bias_ih, x_scale=scale)
    torch.testing.assert_close(fast, ref)
    w = torch.randn_like(ref)
    params = [x, cell.weight_ih, cell.weight_mh, cell.bias_ih]
    for a, b in zip(torch.autograd.grad((fast * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda x_, wi, wm, b: masked_input_projection(x_, mask, wi, wm, b, x_scale=scale), tuple(params))
    with pytest.raises(ValueError, match=r"x_scale: expected shape \(B, I\) = \(3, 6\), got \(3, 5\)"):
        masked_input_projection(x, mask, cell.weight_ih, cell.weight_mh, cell.bias_ih, x_scale=scale[:, :5])


def test_masked_input_projection_passes_gradcheck_and_gives_the_mask_no_gradient():
    from grud.models.fast import masked_input_projection

    cell, x, mask = _projection_case(torch.float64, lead=(2, 3), I=3, F=2)
    mask.requires_grad_()
    fn = lambda x_, w, v, b: masked_input_projection(x_, mask, w, v, b)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, cell.weight_ih, cell.weight_mh, cell.bias_ih))
    masked_input_projection(x, mask, cell.weight_ih, cell.weight_mh, cell.bias_ih).sum().backward()
    assert mask.grad is None


def test_masked_input_projection_names_a_mismatched_mask():
    from grud.models.fast import masked_input_projection

    cell, x, mask = _projection_case(torch.float32)
    with pytest.raises(ValueError, match=r"x, mask: expected shapes .* F = 4.*got \(3, 5, 6\) and \(3, 5, 3\)"):
        masked_input_projection(x, mask[..., :3], cell.weight_ih, cell.weight_mh, cell.bias_ih)


# ---------------------------------------------------------------- memory
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("backward", [True, False])
def test_step_buffers_are_freed_without_the_garbage_collector(kind, backward):
    """A training step's outputs and saved buffers go as soon as the caller drops them.

    Regression: the fused GRU kept its outputs (the state buffer) as a ctx attribute, a reference
    cycle through its own grad_fn; every step's buffers then waited for the cyclic garbage
    collector, and a training loop's memory grew by megabytes per step.
    """
    import gc
    import weakref

    _, fast, _, make = FUNCTIONS[kind]
    args = make(B=2, T=4, H=3, dtype=torch.float32)  # every step valid: the outputs are the state buffer
    gc.collect()
    gc.disable()
    try:
        outputs = fast(**args)
        alive = weakref.ref(outputs[0])
        if backward:
            outputs[1].sum().backward()
        del outputs
        assert alive() is None, "the outputs outlived their last reference (a reference cycle)"
    finally:
        gc.enable()
