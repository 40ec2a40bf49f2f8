"""The fast PAKA/PAC operators against their unfold references, gradients by gradcheck.

Every fast-path test runs on both CPU paths (the fused native kernels, and the portable PyTorch slab
path that accelerators and compiler-less machines use), with one slab per image and with many.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from op_inputs import paka_inputs as _inputs

import depthsr.ops.slab_engine as slab_engine
from depthsr.errors import DepthSRError
from depthsr.ops import native, pac_conv2d, pac_conv2d_reference, paka_conv2d, paka_conv2d_reference
from depthsr.ops.modulated_conv import FACTORISED_LIMIT

CASES = [  # B, C, O, H, W, k, dilation, padding
    (2, 3, 5, 7, 9, 3, 1, None),
    (1, 4, 2, 10, 6, 5, 2, None),
    (3, 2, 3, 5, 5, 3, 3, None),
    (2, 6, 4, 9, 11, 1, 1, None),
    (1, 3, 3, 8, 7, 3, 1, 0),
    (2, 2, 3, 6, 8, 5, 1, (1, 3)),
    (1, 5, 7, 13, 4, 7, 1, None),
    (1, 2, 3, 4, 300, 3, 2, None),  # rows wider than one unit of native work (256 columns)
    (1, 3, 2, 5, 520, 5, 1, (1, 3)),
]


@pytest.fixture(params=["native", "portable"])
def engine(request, monkeypatch):
    """The CPU path under test; 'native' must really be available (CI has a C compiler)."""
    if request.param == "portable":
        monkeypatch.setenv("DEPTHSR_NATIVE", "0")
    else:
        monkeypatch.delenv("DEPTHSR_NATIVE", raising=False)
        assert native.kernels(torch.float64) is not None, "the native kernels did not build"
    return request.param


@pytest.fixture(params=[1 << 20, 37], ids=["one-slab", "many-slabs"])
def slab_size(request, monkeypatch, engine):
    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", request.param)
    return request.param


def test_dispatch_takes_the_path_under_test(engine):
    x, w, b, a_ch, a_sp = (t.requires_grad_() for t in _inputs(1, 2, 2, 5, 5, 3, 1, None))
    backward = paka_conv2d(x, w, b, a_ch, a_sp).grad_fn.name()
    assert backward == {"native": "FusedModulatedConv2dBackward", "portable": "SlabModulatedConv2dBackward"}[engine]


@pytest.mark.parametrize("case", CASES)
def test_paka_fast_equals_reference(case, slab_size):
    *shape, d, padding = case
    x, w, b, a_ch, a_sp = _inputs(*shape, d, padding)
    fast = paka_conv2d(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
    ref = paka_conv2d_reference(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:3])
def test_paka_tanh_path_for_widely_spread_logits(case, slab_size):
    """Logits far beyond the factorised range take the tanh path and still match the reference."""
    *shape, d, padding = case
    x, w, b, a_ch, a_sp = _inputs(*shape, d, padding, scale=40.0)
    fast = paka_conv2d(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
    torch.testing.assert_close(fast, paka_conv2d_reference(x, w, b, a_ch, a_sp, padding=padding, dilation=d),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:6])
def test_paka_gradcheck(case, slab_size):
    *shape, d, padding = case
    args = tuple(t.requires_grad_() for t in _inputs(*shape, d, padding))
    assert torch.autograd.gradcheck(lambda *a: paka_conv2d(*a, padding=padding, dilation=d), args)


def test_paka_factorised_limit_is_exact(slab_size):
    """Logits at the edge of the factorised range, of opposite signs (huge factors whose product is ~1) or
    alike (a product that over- or underflows), still equal the tanh of the reference."""
    x, w, b, a_ch, a_sp = _inputs(2, 3, 4, 6, 7, 3, 1, None)
    lim = FACTORISED_LIMIT
    a_ch = lim * torch.sign(a_ch)
    a_sp = torch.where(torch.rand(a_sp.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0) * lim
    a_sp = a_sp + torch.randn(a_sp.shape, dtype=a_sp.dtype) * 1e-3 * (a_sp < 0)  # some sums near 0
    a_sp = a_sp.clamp(-lim, lim)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        args = [t.to(dtype) for t in (x, w, b, a_ch, a_sp)]
        torch.testing.assert_close(paka_conv2d(*args), paka_conv2d_reference(*args), rtol=tol, atol=tol)


def test_paka_float32_forward_and_gradients_match_reference(slab_size):
    """float32 takes oneDNN's GEMMs on the native path: equal to the float64 reference to float32 rounding."""
    x, w, b, a_ch, a_sp = _inputs(2, 16, 8, 19, 23, 3, 1, None)
    gy = torch.randn(2, 8, 19, 23, dtype=torch.float64)
    ref_args = [t.clone().requires_grad_() for t in (x, w, b, a_ch, a_sp)]
    ref = torch.autograd.grad(paka_conv2d_reference(*ref_args), ref_args, gy)
    args = [t.float().requires_grad_() for t in (x, w, b, a_ch, a_sp)]
    y = paka_conv2d(*args)
    torch.testing.assert_close(y.double(), paka_conv2d_reference(x, w, b, a_ch, a_sp), rtol=1e-4, atol=1e-4)
    for got, want in zip(torch.autograd.grad(y, args, gy.float()), ref):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-3)


def test_paka_gradcheck_tanh_path():
    args = tuple(t.requires_grad_() for t in _inputs(1, 2, 2, 5, 6, 3, 1, None, scale=30.0))
    assert torch.autograd.gradcheck(paka_conv2d, args)


@pytest.mark.parametrize("case", [(2, 4, 3, 9, 7, 3, 2, None), *CASES[7:]])
def test_paka_gradients_equal_reference_gradients(case, slab_size):
    """Where gradcheck would be slow (wide rows), the gradients equal the reference's (itself autograd's)."""
    *shape, d, padding = case
    x, w, b, a_ch, a_sp = (t.requires_grad_() for t in _inputs(*shape, d, padding))
    y = paka_conv2d(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
    gy = torch.randn(y.shape, dtype=torch.float64)
    fast = torch.autograd.grad(y, (x, w, b, a_ch, a_sp), gy)
    ref_y = paka_conv2d_reference(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
    ref = torch.autograd.grad(ref_y, (x, w, b, a_ch, a_sp), gy)
    for f, r in zip(fast, ref):
        torch.testing.assert_close(f, r, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("case", CASES[:4])
def test_pac_fast_equals_reference_and_gradcheck(case, slab_size):
    *shape, d, padding = case
    x, w, b, _, a_sp = _inputs(*shape, d, padding)
    kernel = torch.sigmoid(a_sp)
    torch.testing.assert_close(pac_conv2d(x, w, b, kernel, padding=padding, dilation=d),
                               pac_conv2d_reference(x, w, b, kernel, padding=padding, dilation=d),
                               rtol=1e-12, atol=1e-12)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), kernel.detach().requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: pac_conv2d(*a, padding=padding, dilation=d), args)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_zero_logits_is_plain_convolution(dtype, tol):
    x, w, b, a_ch, a_sp = _inputs(2, 8, 6, 12, 10, 3, 2, None, dtype=dtype)
    y = paka_conv2d(x, w, b, torch.zeros_like(a_ch), torch.zeros_like(a_sp), dilation=2)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=2, dilation=2), rtol=tol, atol=tol)


def test_no_grad_non_contiguous_and_batch_one():
    x, w, b, a_ch, a_sp = _inputs(1, 4, 3, 8, 6, 3, 1, None)
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, non-contiguous strides
    a_ch_t = a_ch[..., ::1].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert not x_t.is_contiguous() and not a_ch_t.is_contiguous()
    with torch.no_grad():
        y = paka_conv2d(x_t, w, b, a_ch_t, a_sp)
    assert not y.requires_grad
    torch.testing.assert_close(y, paka_conv2d_reference(x, w, b, a_ch, a_sp), rtol=1e-12, atol=1e-12)
    y_nobias = paka_conv2d(x, w, None, a_ch, a_sp)
    torch.testing.assert_close(y_nobias, paka_conv2d_reference(x, w, None, a_ch, a_sp), rtol=1e-12, atol=1e-12)


def test_autocast_bfloat16_runs_close_to_float32():
    x, w, b, a_ch, a_sp = _inputs(2, 8, 8, 16, 16, 3, 1, None, dtype=torch.float32)
    ref = paka_conv2d(x, w, b, a_ch, a_sp)
    args = tuple(t.clone().requires_grad_() for t in (x, w, b, a_ch, a_sp))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = paka_conv2d(*args)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=5e-2, atol=0.5)
    y.float().sum().backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args)


@pytest.mark.parametrize(
    "args,match",
    [
        (dict(x=(4, 8, 8)), r"x must be B x C x H x W, got 4 x 8 x 8"),
        (dict(weight=(3, 4, 2, 2)), r"odd k"),
        (dict(weight=(3, 5, 3, 3)), r"weight expects 5 input channels but x has 4"),
        (dict(bias=(4,)), r"bias must have shape \(3,\)"),
        (dict(a_ch=(2, 4, 8, 7)), r"a_ch must be 2 x 4 x 8 x 8"),
        (dict(a_sp=(2, 4, 8, 8)), r"a_sp must be 2 x 9 x 8 x 8"),
    ],
)
def test_bad_shapes_raise_one_line(args, match):
    shapes = dict(x=(2, 4, 8, 8), weight=(3, 4, 3, 3), bias=(3,), a_ch=(2, 4, 8, 8), a_sp=(2, 9, 8, 8))
    shapes.update(args)
    t = {k: torch.randn(*v) for k, v in shapes.items()}
    with pytest.raises(DepthSRError, match=match) as err:
        paka_conv2d(t["x"], t["weight"], t["bias"], t["a_ch"], t["a_sp"])
    assert "\n" not in str(err.value)


def test_bad_dilation_raises():
    x, w, b, a_ch, a_sp = _inputs(1, 2, 2, 6, 6, 3, 1, None)
    with pytest.raises(DepthSRError, match="dilation must be an integer >= 1"):
        paka_conv2d(x, w, b, a_ch, a_sp, dilation=0)
