"""The native GRU kernel (grud.models.fast.native): built where a C compiler exists, used by the
fused recurrence, equal to the PyTorch path, cached safely, and off (with a reason) when it cannot
be trusted. Values and gradients against the reference loops are in test_fast_paths.py, which runs
every test on both backends."""
from __future__ import annotations

import shutil

import pytest
import torch

from grud.models.fast import gru_recurrence, native
from grud.models.fast.native import build

HAS_CC = build._compiler() is not None


def _case(B=6, T=17, H=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, T - 5, 1, T, 0, 9] * (B // 6 + 1))[:B].clamp(0, T)
    return dict(
        gi=torch.randn(B, T, 3 * H, generator=g, dtype=dtype).requires_grad_(),
        weight_hh=(torch.randn(3 * H, H, generator=g, dtype=dtype) / H**0.5).requires_grad_(),
        bias_hh=torch.randn(3 * H, generator=g, dtype=dtype).requires_grad_(),
        h0=torch.randn(B, H, generator=g, dtype=dtype).requires_grad_(),
        valid=(torch.arange(T)[None] < lengths[:, None]).to(dtype),
        gamma_h=torch.rand(B, T, H, generator=g, dtype=dtype).requires_grad_(),
        hidden_dropout=(torch.rand(B, H, generator=g, dtype=dtype) * 2).requires_grad_(),
    )


def _run(args, weights):
    outputs, h_last = gru_recurrence(**args)
    loss = (outputs * weights[0]).sum() + (h_last * weights[1]).sum()
    names = [k for k, v in args.items() if v.requires_grad]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    return outputs.detach(), h_last.detach(), dict(zip(names, grads))


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_kernel_is_built_and_used_where_a_c_compiler_exists(monkeypatch):
    assert native.status() == "on"
    calls = []
    real = native.gru_forward
    monkeypatch.setattr(native, "gru_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = _case()
    outputs, h_last = gru_recurrence(**args)
    h_last.sum().backward()
    with torch.no_grad():
        gru_recurrence(**args)
    assert len(calls) == 2  # the training path and the inference path
    assert args["weight_hh"].grad is not None


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_native_and_pytorch_paths_agree_on_values_and_every_gradient(dtype, tol):
    args = _case(dtype=dtype)
    g = torch.Generator().manual_seed(1)
    weights = (torch.randn(args["gi"].shape[0], args["gi"].shape[1], 8, generator=g, dtype=dtype),
               torch.randn(args["h0"].shape, generator=g, dtype=dtype))
    got = _run(args, weights)
    with native.disabled():
        want = _run(args, weights)
    torch.testing.assert_close(got[0], want[0], atol=tol, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=tol, rtol=0)
    assert set(got[2]) == {"gi", "weight_hh", "bias_hh", "h0", "gamma_h", "hidden_dropout"}
    for name in got[2]:
        torch.testing.assert_close(got[2][name], want[2][name], atol=tol, rtol=0, msg=name)


def test_disabled_block_and_environment_variable_turn_the_kernel_off(monkeypatch):
    calls = []
    real = native.gru_forward
    monkeypatch.setattr(native, "gru_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    with native.disabled():
        assert not native.available()
        assert native.status() == "off: disabled() block"
        gru_recurrence(**_case())
    monkeypatch.setenv("GRUD_NATIVE", "0")
    assert not native.available()
    assert native.status() == "off: GRUD_NATIVE=0"
    gru_recurrence(**_case())
    assert calls == []


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_build_caches_one_library_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRUD_KERNEL_CACHE", str(tmp_path / "kernels"))
    path, err = build.build()
    assert err is None
    assert path.parent == tmp_path / "kernels"
    assert [p.name for p in (tmp_path / "kernels").iterdir()] == [path.name]  # no temporary left behind

    def no_second_compile(*a, **k):
        raise AssertionError("compiled again although the library is cached")

    monkeypatch.setattr(build, "_compile", no_second_compile)
    assert build.build() == (path, None)


def test_failed_compile_reports_the_compiler_error_and_leaves_nothing(tmp_path, monkeypatch):
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'broken-cc: cannot compile today' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("GRUD_KERNEL_CACHE", str(tmp_path / "kernels"))
    path, err = build.build()
    assert path is None
    assert "failed" in err and "broken-cc: cannot compile today" in err
    assert list((tmp_path / "kernels").iterdir()) == []


def test_no_compiler_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setenv("CC", "")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert build.build() == (None, "no C compiler found ($CC, cc, gcc, clang)")


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_self_check_rejects_a_kernel_that_disagrees_with_the_reference(monkeypatch):
    assert native._self_check() is None
    real = native.gru_forward

    def off_by_a_little(*a, **k):
        hs, h_last, saved = real(*a, **k)
        return hs + 1e-3, h_last, saved

    monkeypatch.setattr(native, "gru_forward", off_by_a_little)
    assert native._self_check() == "self-check failed: torch.float32 forward differs from the reference loop"


def _random_case(rng: torch.Generator, dtype=torch.float64):
    B = int(torch.randint(1, 40, (1,), generator=rng))
    T = int(torch.randint(0, 12, (1,), generator=rng))
    H = int(torch.randint(1, 13, (1,), generator=rng))
    lengths = torch.randint(0, T + 1, (B,), generator=rng)
    time_major = bool(torch.randint(0, 2, (1,), generator=rng))

    def seq(K):  # (B, T, K), batch-major or a view of a time-major tensor
        x = torch.randn(T, B, K, generator=rng, dtype=dtype).transpose(0, 1) if time_major else \
            torch.randn(B, T, K, generator=rng, dtype=dtype)
        return x.requires_grad_()

    args = dict(
        gi=seq(3 * H),
        weight_hh=(torch.randn(3 * H, H, generator=rng, dtype=dtype) / H**0.5).requires_grad_(),
        bias_hh=torch.randn(3 * H, generator=rng, dtype=dtype).requires_grad_(),
        h0=torch.randn(B, H, generator=rng, dtype=dtype).requires_grad_(),
        valid=(torch.arange(T)[None] < lengths[:, None]).to(dtype),
    )
    if bool(torch.randint(0, 2, (1,), generator=rng)):
        args["gamma_h"] = seq(H)
    if bool(torch.randint(0, 2, (1,), generator=rng)):
        args["hidden_dropout"] = (torch.rand(B, H, generator=rng, dtype=dtype) * 2).requires_grad_()
    gamma_exp = "gamma_h" in args and bool(torch.randint(0, 2, (1,), generator=rng))
    return args, gamma_exp


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("threads", [1, 2])
def test_random_shapes_layouts_and_options_match_the_reference_loop(threads):
    """Batch sizes that split unevenly over threads, empty and padded series, T = 0, odd H,
    batch- and time-major inputs, decay or its exponent, dropout: values and every gradient."""
    from grud.models.fast import gru_recurrence_reference

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = torch.Generator().manual_seed(threads)
        for _ in range(40):
            args, gamma_exp = _random_case(rng)
            got = gru_recurrence(**args, gamma_exp=gamma_exp)
            want = gru_recurrence_reference(**args, gamma_exp=gamma_exp)
            names = [k for k, v in args.items() if v.requires_grad]
            w = [torch.randn(x.shape, generator=rng, dtype=x.dtype) for x in want]
            g_got = torch.autograd.grad(sum((a * b).sum() for a, b in zip(got, w)), [args[k] for k in names],
                                        allow_unused=True)
            g_want = torch.autograd.grad(sum((a * b).sum() for a, b in zip(want, w)), [args[k] for k in names],
                                         allow_unused=True)
            shape = {k: tuple(v.shape) for k, v in args.items()}
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, msg=f"values, {shape}, gamma_exp={gamma_exp}")
            for name, a, b in zip(names, g_got, g_want):
                if b is None:
                    assert a is None or not a.abs().any(), name
                    continue
                torch.testing.assert_close(a, b, msg=f"d {name}, {shape}, gamma_exp={gamma_exp}")
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_rows_split_over_threads_give_the_single_thread_result_exactly():
    args = _case(B=37, T=9, H=6)  # 37 rows: 18 + 19 over two threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(args, (torch.ones(37, 9, 6), torch.ones(37, 6)))
        torch.set_num_threads(2)
        two = _run(args, (torch.ones(37, 9, 6), torch.ones(37, 6)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    for name in one[2]:
        torch.testing.assert_close(one[2][name], two[2][name], atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
def test_a_tensor_of_the_wrong_shape_is_refused_before_the_kernel_reads_it():
    """The kernel reads raw memory; a mis-shaped tensor is a ValueError, never an out-of-bounds read."""
    args = _case(B=4, T=5, H=3)
    with pytest.raises(ValueError, match=r"gamma_h: expected shape \(4, 5, 3\), got \(4, 5, 2\)"):
        native.gru_forward(args["gi"].detach(), args["weight_hh"].detach(), args["bias_hh"].detach(),
                           args["h0"].detach(), None, torch.ones(4, 5, 2), None, False)
    v = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4,\), got \(3,\)"):
        native.decay_input_forward(v, v, v, torch.zeros(4), torch.zeros(3), torch.zeros(4))


@pytest.mark.skipif(not HAS_CC, reason="no C compiler on this machine")
@pytest.mark.parametrize("gamma_exp", [False, True])
def test_non_contiguous_inputs_match_the_reference(gamma_exp):
    """h0 as a column slice (each direction's start in a bidirectional layer), W_hh as a transposed
    view: the wrapper's contiguous copies must live through the kernel call (a temporary freed
    before the call once made d gamma at step 0 read released memory)."""
    from grud.models.fast import gru_recurrence_reference

    B, T, H = 16, 30, 8
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    valid = (torch.arange(T)[None] < lengths[:, None]).float()
    results = []
    for fn in (gru_recurrence, gru_recurrence_reference):
        g = torch.Generator().manual_seed(4)
        gi = torch.randn(T, B, 3 * H, generator=g).transpose(0, 1).requires_grad_()
        w_t = (torch.randn(H, 3 * H, generator=g) / H**0.5).requires_grad_()
        b = torch.randn(3 * H, generator=g).requires_grad_()
        h0_both = torch.randn(B, 2 * H, generator=g).requires_grad_()
        e = (-torch.rand(T, B, H, generator=g) if not gamma_exp else torch.randn(T, B, H, generator=g))
        e = e.transpose(0, 1).requires_grad_()
        h0, w = h0_both[:, H:], w_t.t()
        assert not h0.is_contiguous() and not w.is_contiguous()
        out, last = fn(gi, w, b, h0, valid, e, None, gamma_exp=gamma_exp)
        loss = (out * torch.linspace(0, 1, out.numel()).view_as(out)).sum() + (3 * last).sum()
        results.append(torch.autograd.grad(loss, [gi, w_t, b, h0_both, e]))
    for name, got, want in zip(("gi", "weight_hh", "bias_hh", "h0", "gamma"), *results):
        torch.testing.assert_close(got, want, msg=f"d {name}")
