"""The fast PAKA/PAC operators against their unfold references, gradients by gradcheck.

Every fast-path test runs on both CPU paths (the fused native kernels, and the portable PyTorch slab
path that compiler-less machines and CUDA fallbacks use), with one slab per image and with many; the
``device`` tests run what ``paka_conv2d`` picks on each device (on CUDA: the Triton kernels).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from op_inputs import DEVICES
from op_inputs import paka_inputs as _inputs
from torch.utils._python_dispatch import TorchDispatchMode

from depthsr.errors import DepthSRError
from depthsr.ops import (
    custom_ops,
    fused_cpu,
    pac_conv2d,
    pac_conv2d_reference,
    paka_conv2d,
    paka_conv2d_reference,
    slab_engine,
)
from depthsr.ops.modulation import FACTORISED_LIMIT

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


def _spy(monkeypatch, calls: list[str]) -> None:
    """Record every engine call (module.function) the dispatcher makes."""
    for module in (fused_cpu, slab_engine):
        for name in ("forward", "backward"):
            real, label = getattr(module, name), f"{module.__name__.rsplit('.', 1)[1]}.{name}"
            monkeypatch.setattr(module, name, lambda *a, _real=real, _label=label: calls.append(_label) or _real(*a))


def test_dispatch_takes_the_path_under_test(engine, monkeypatch):
    calls: list[str] = []
    _spy(monkeypatch, calls)
    x, w, b, a_ch, a_sp = (t.requires_grad_() for t in _inputs(1, 2, 2, 5, 5, 3, 1, None))
    paka_conv2d(x, w, b, a_ch, a_sp).sum().backward()
    module = {"native": "fused_cpu", "portable": "slab_engine"}[engine]
    assert calls == [f"{module}.forward", f"{module}.backward"]


def test_huge_logits_and_half_precision_take_the_slab_path(monkeypatch):
    """The native kernels read factors only: logits beyond the factorised range, or bfloat16, go to the slab."""
    calls: list[str] = []
    _spy(monkeypatch, calls)
    for scale, dtype in ((50.0, torch.float64), (1.0, torch.bfloat16)):
        paka_conv2d(*_inputs(1, 2, 2, 5, 5, 3, 1, None, scale=scale, dtype=dtype))
    assert calls == ["slab_engine.forward", "slab_engine.forward"]


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
def test_paka_gradcheck(case, one_slab):
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


def test_paka_gradcheck_tanh_path(one_slab):
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
def test_pac_fast_equals_reference(case, slab_size):
    *shape, d, padding = case
    x, w, b, _, a_sp = _inputs(*shape, d, padding)
    kernel = torch.sigmoid(a_sp)
    torch.testing.assert_close(pac_conv2d(x, w, b, kernel, padding=padding, dilation=d),
                               pac_conv2d_reference(x, w, b, kernel, padding=padding, dilation=d),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:4])
def test_pac_gradcheck(case, one_slab):
    *shape, d, padding = case
    x, w, b, _, a_sp = _inputs(*shape, d, padding)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), torch.sigmoid(a_sp).requires_grad_())
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


@pytest.mark.parametrize("case", [CASES[1], CASES[5]], ids=["k5-dilation2", "k5-padding1x3"])
def test_portable_fold_by_one_launch_equals_reference(case, monkeypatch):
    """Off the CPU the portable backward folds each slab's tap gradients into dL/dx with one F.fold: the same
    code run here on the CPU, over many slabs, against the reference's gradients."""
    monkeypatch.setenv("DEPTHSR_NATIVE", "0")
    monkeypatch.setattr(slab_engine, "TAPWISE_FOLD", set())
    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", 37)
    *shape, d, padding = case
    args = [t.requires_grad_() for t in _inputs(*shape, d, padding)]
    y = paka_conv2d(*args, padding=padding, dilation=d)
    gy = torch.randn(y.shape, dtype=torch.float64)
    ref = torch.autograd.grad(paka_conv2d_reference(*args, padding=padding, dilation=d), args, gy)
    for got, want in zip(torch.autograd.grad(y, args, gy), ref):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


class _Recorder(TorchDispatchMode):
    """Every aten operation run under it, with its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def _portable_ops_off_the_cpu(k: int) -> list[tuple]:
    """The operations of one PAKA forward and backward through the op's bodies on meta tensors (a device that
    is not the CPU: the dispatcher sends it to the slab path, and a value read from it raises)."""
    x, w, b, a_ch, a_sp = (t.to("meta") for t in _inputs(2, 4, 3, 16, 12, k, 1, None, dtype=torch.float32))
    pad = k // 2
    with _Recorder() as rec:
        y, m_ch, m_sp, _ = custom_ops.paka_forward(x, w, b, a_ch, a_sp, pad, pad, 1)
        assert m_ch.numel() == m_sp.numel() == 0  # off the CPU the backward reads the logits themselves
        custom_ops.paka_backward(torch.ones_like(y), x, w, a_ch, a_sp, None, pad, pad, 1, [True] * 4)
    return rec.ops


def test_portable_path_off_the_cpu_never_waits_for_the_device():
    """Issue 10: no host sync per PAKA call (no .item()/float() of a device tensor, no host tensor copied in),
    and backward's launches per slab do not grow with k*k (one F.fold, not k*k strided additions)."""
    launches = {}
    for k in (3, 5):
        ops = _portable_ops_off_the_cpu(k)
        assert not [f for f, *_ in ops if f is torch.ops.aten._local_scalar_dense.default]
        tensors = [a for _, args, kwargs in ops for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        assert {t.device.type for t in tensors} == {"meta"}
        launches[k] = sum(not f.is_view for f, *_ in ops)
    assert launches[3] == launches[5] < 100, launches  # two images, one slab each


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["paka", "pac"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_fast_equals_reference_on_device(device, mode, dtype, tol, monkeypatch):
    """What the op runs on each device (CPU: native kernels; CUDA: Triton, or the slab path for float64),
    forward and every gradient, against the float64 reference."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 would be a different precision
    x, w, b, a_ch, a_sp = _inputs(2, 20, 24, 11, 13, 3, 2, None)
    if mode == "pac":
        a_ch, a_sp = None, torch.sigmoid(a_sp)
    fast_fn, ref_fn = (paka_conv2d, paka_conv2d_reference) if mode == "paka" else (pac_conv2d, pac_conv2d_reference)
    ref_args = [t for t in (x, w, b, a_ch, a_sp) if t is not None]
    ref_args = [t.to(dtype).double().requires_grad_() for t in ref_args]
    ref = ref_fn(*ref_args, dilation=2)
    gy = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_grads = torch.autograd.grad(ref, ref_args, gy)
    args = [t.detach().to(device, dtype).requires_grad_() for t in ref_args]
    y = fast_fn(*args, dilation=2)
    assert y.device.type == device and y.dtype == dtype
    grads = torch.autograd.grad(y, args, gy.to(device, dtype))
    scale = lambda t: t.abs().max().item()  # noqa: E731
    torch.testing.assert_close(y.cpu().double(), ref, rtol=tol, atol=tol * scale(ref))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.cpu().double(), want, rtol=tol, atol=tol * scale(want))


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bfloat16_runs_close_to_the_reference(device):
    """Under bfloat16 autocast the output is within bfloat16 rounding of the float64 unfold reference."""
    autocast_device = device if device == "cuda" else "cpu"
    x, w, b, a_ch, a_sp = _inputs(2, 8, 8, 16, 16, 3, 1, None, dtype=torch.float32, device=device)
    ref = paka_conv2d_reference(*(t.double() for t in (x, w, b, a_ch, a_sp))).float()
    args = tuple(t.clone().requires_grad_() for t in (x, w, b, a_ch, a_sp))
    with torch.autocast(autocast_device, dtype=torch.bfloat16):
        y = paka_conv2d(*args)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=5e-2, atol=0.5)
    y.float().sum().backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args)
    assert args[1].grad.dtype == args[2].grad.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_weight_gradient_accumulates_in_float32(device, monkeypatch):
    """Under bfloat16 autocast, over many slabs (CPU) or many pixel chunks (CUDA), the float32 weight's gradient
    stays within a few bfloat16 roundings of the exact gradient of the rounded inputs: summed in bfloat16, the
    error would grow with the number of slabs."""
    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", 2000)  # about 150 slabs
    autocast_device = device if device == "cuda" else "cpu"
    x, w, b, a_ch, a_sp = _inputs(2, 8, 8, 60, 50, 3, 1, None, dtype=torch.float32, device=device)
    w = w.requires_grad_()
    with torch.autocast(autocast_device, dtype=torch.bfloat16):
        y = paka_conv2d(x, w, b, a_ch, a_sp)
    gy = torch.ones_like(y)
    (grad_w,) = torch.autograd.grad(y, w, gy)
    rounded = [t.to(torch.bfloat16).double().cpu() for t in (x, w, b, a_ch, a_sp)]
    rounded[1].requires_grad_()
    (exact,) = torch.autograd.grad(paka_conv2d_reference(*rounded), rounded[1], gy.double().cpu())
    assert grad_w.dtype == torch.float32
    error = (grad_w.cpu().double() - exact).abs().max() / exact.abs().max()
    assert error < 2 ** -7, f"relative error {error:.2e}"


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
