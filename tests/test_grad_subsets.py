"""Gradients of the fast PAKA and PAC operators for every subset of inputs that require grad, against the
unfold references (issue 15): a frozen depth branch, fine-tuning the guidance only, a fixed weight... each asks
the backward for a different set of gradients, and each set must come out as the reference's.

Every subset runs on both CPU paths (the fused native kernels and the portable slab path), with one slab per
image and with many, on the factorised and on the tanh path; `gradcheck` (independent of any reference) runs
on small one-slab cases only. The bfloat16 autocast results are compared with the float64 unfold reference on
the bfloat16-rounded inputs, forward and every gradient.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from op_inputs import DEVICES
from op_inputs import paka_inputs as _inputs

from depthsr.ops import pac_conv2d, pac_conv2d_reference, paka_conv2d, paka_conv2d_reference, slab_engine

PAKA_ARGS = ("x", "weight", "bias", "a_ch", "a_sp")
PAC_ARGS = ("x", "weight", "bias", "kernel")


def subsets(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset of `names`."""
    return [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]


def _paka_args(scale: float = 1.0, dtype=torch.float64, device="cpu", case=(2, 3, 4, 7, 9, 3, 2, None)):
    *shape, d, padding = case
    x, w, b, a_ch, a_sp = _inputs(*shape, d, padding, dtype=dtype, scale=scale, device=device)
    return dict(zip(PAKA_ARGS, (x, w, b, a_ch, a_sp))), dict(padding=padding, dilation=d)


def _pac_args(dtype=torch.float64, device="cpu", case=(2, 3, 4, 7, 9, 3, 2, None)):
    *shape, d, padding = case
    x, w, b, _, a_sp = _inputs(*shape, d, padding, dtype=dtype, device=device)
    return dict(zip(PAC_ARGS, (x, w, b, torch.sigmoid(a_sp)))), dict(padding=padding, dilation=d)


def _grads(fn, args: dict[str, torch.Tensor], wanted: tuple[str, ...], gy: torch.Tensor | None, **kw):
    """(output, gradients of the `wanted` arguments) with only those requiring grad."""
    inputs = {k: v.detach().clone().requires_grad_(k in wanted) for k, v in args.items()}
    y = fn(*inputs.values(), **kw)
    if gy is None:
        gy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7)).to(y)
    return y, torch.autograd.grad(y, [inputs[k] for k in wanted], gy), gy


def _check_subsets(fast, reference, args, kw, names, rtol=1e-11, atol=1e-11):
    bad = []
    for wanted in subsets(names):
        y, got, gy = _grads(fast, args, wanted, None, **kw)
        assert y.requires_grad
        _, want, _ = _grads(reference, {k: v.cpu().double() for k, v in args.items()}, wanted, gy.cpu().double(),
                            **kw)
        for name, g, r in zip(wanted, got, want):
            if g is None or g.shape != r.shape or not torch.allclose(g.cpu().double(), r, rtol=rtol, atol=atol):
                error = float("nan") if g is None or g.shape != r.shape else float((g.cpu().double() - r).abs().max())
                bad.append(f"d/d{name} with {'+'.join(wanted)} requiring grad: max error {error:.3g}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["factorised", "tanh"])
def test_paka_every_grad_subset_equals_reference(slab_size, scale):
    """31 subsets of (x, weight, bias, a_ch, a_sp), e.g. only the attention logits (a frozen depth branch)."""
    args, kw = _paka_args(scale)
    _check_subsets(paka_conv2d, paka_conv2d_reference, args, kw, PAKA_ARGS)


def test_pac_every_grad_subset_equals_reference(slab_size):
    args, kw = _pac_args()
    _check_subsets(pac_conv2d, pac_conv2d_reference, args, kw, PAC_ARGS)


@pytest.mark.parametrize("case", [(1, 2, 3, 9, 300, 3, 1, None), (2, 3, 2, 6, 8, 5, 1, (1, 3))])
def test_paka_attention_only_gradients_on_wide_and_padded_inputs(slab_size, case):
    """Only the logits require grad (x and weight frozen), on rows wider than one unit of native work and with
    an asymmetric padding: the attention gradients still equal the reference's."""
    args, kw = _paka_args(case=case)
    for wanted in (("a_ch",), ("a_sp",), ("a_ch", "a_sp"), ("bias", "a_ch")):
        y, got, gy = _grads(paka_conv2d, args, wanted, None, **kw)
        _, want, _ = _grads(paka_conv2d_reference, args, wanted, gy, **kw)
        for g, r in zip(got, want):
            torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("op", ["paka", "pac"])
def test_gradcheck_every_subset_one_slab(engine, op):
    """Independent of any reference: finite differences on a small one-slab case, every subset."""
    if op == "paka":
        args, kw = _paka_args(case=(1, 2, 2, 4, 5, 3, 1, None))
        fn, names = paka_conv2d, PAKA_ARGS
    else:
        args, kw = _pac_args(case=(1, 2, 2, 4, 5, 3, 1, None))
        fn, names = pac_conv2d, PAC_ARGS
    for wanted in subsets(names):
        inputs = tuple(v.detach().clone().requires_grad_(k in wanted) for k, v in args.items())
        assert torch.autograd.gradcheck(lambda *a: fn(*a, **kw), inputs, fast_mode=True), wanted


def test_no_input_requiring_grad_gives_a_plain_tensor(engine):
    args, kw = _paka_args()
    y = paka_conv2d(*args.values(), **kw)
    assert not y.requires_grad and y.grad_fn is None
    torch.testing.assert_close(y, paka_conv2d_reference(*args.values(), **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["paka", "pac"])
def test_every_grad_subset_on_device(device, op):
    """What each device runs (CPU: native kernels; CUDA: Triton in float32), every subset against the
    float64 reference on the CPU."""
    dtype, tol = (torch.float64, 1e-10) if device == "cpu" else (torch.float32, 1e-3)
    if op == "paka":
        args, kw = _paka_args(dtype=dtype, device=device)
        _check_subsets(paka_conv2d, paka_conv2d_reference, args, kw, PAKA_ARGS, rtol=tol, atol=tol)
    else:
        args, kw = _pac_args(dtype=dtype, device=device)
        _check_subsets(pac_conv2d, pac_conv2d_reference, args, kw, PAC_ARGS, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["paka", "pac"])
def test_bf16_autocast_against_the_unfold_reference(device, op, monkeypatch):
    """Under bfloat16 autocast (float32 parameters, as in bf16-mixed training), over many slabs: the output and
    every gradient, for every subset requiring grad, equal the float64 unfold reference on the bfloat16-rounded
    inputs to within bfloat16 rounding; every gradient comes back in its input's dtype (float32)."""
    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", 500)
    case = (2, 6, 5, 12, 10, 3, 1, None)
    if op == "paka":
        args, kw = _paka_args(dtype=torch.float32, device=device, case=case)
        fn, ref_fn, names = paka_conv2d, paka_conv2d_reference, PAKA_ARGS
    else:
        args, kw = _pac_args(dtype=torch.float32, device=device, case=case)
        fn, ref_fn, names = pac_conv2d, pac_conv2d_reference, PAC_ARGS
    rounded = {k: v.to(torch.bfloat16).double().cpu() for k, v in args.items()}
    gy = torch.randn(2, 5, 12, 10, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    bad = []
    for wanted in subsets(names):
        inputs = {k: v.detach().clone().requires_grad_(k in wanted) for k, v in args.items()}
        with torch.autocast("cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16):
            y = fn(*inputs.values(), **kw)
        assert y.dtype == torch.bfloat16
        got = torch.autograd.grad(y, [inputs[k] for k in wanted], gy.to(device))
        ref_inputs = {k: v.clone().requires_grad_(k in wanted) for k, v in rounded.items()}
        ref = ref_fn(*ref_inputs.values(), **kw)
        want = torch.autograd.grad(ref, [ref_inputs[k] for k in wanted], gy.double())
        scale = float(ref.detach().abs().max())
        error = float((y.detach().cpu().double() - ref.detach()).abs().max())
        if error > 2**-7 * scale:
            bad.append(f"output with {'+'.join(wanted)}: max error {error:.3g}")
        for name, g, r in zip(wanted, got, want):
            error = float((g.cpu().double() - r).abs().max()) / float(r.abs().max())
            if g.dtype != torch.float32 or error > 2**-6:
                bad.append(f"d/d{name} with {'+'.join(wanted)}: {g.dtype}, relative error {error:.3g}")
    assert not bad, "\n".join(bad)
