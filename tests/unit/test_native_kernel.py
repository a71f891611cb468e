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
    lengths = torch.tensor([T, T - 5, 1, T, 0, 9][:B])
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
