"""The custom ops ``depthsr::paka_conv2d`` / ``depthsr::pac_conv2d`` and their backward ops.

``torch.library.opcheck`` (schema, fake tensors against the real kernels, the autograd registration, AOT
dispatch with dynamic shapes) on small cases in float64 (float32 on CUDA, where float64 leaves the Triton
kernels), and what PAKA's forward op hands its backward.
"""
from __future__ import annotations

import pytest
import torch
from op_inputs import DEVICES, paka_inputs

import depthsr.ops  # noqa: F401  (registers the ops)

CASES = [  # B, C, O, H, W, k, dilation, padding, bias
    (2, 3, 4, 6, 7, 3, 1, None, True),
    (1, 2, 3, 9, 8, 3, 2, None, False),  # dilation, no bias
    (2, 2, 3, 6, 8, 5, 1, (1, 3), True),  # asymmetric padding
    (1, 3, 2, 5, 5, 1, 1, None, False),  # k = 1, no bias
]
IDS = ["k3", "dilation2-no-bias", "k5-padding1x3", "k1-no-bias"]


def _dtype(device: str) -> torch.dtype:
    return torch.float64 if device == "cpu" else torch.float32


def _args(case, device, scale=1.0):
    """Inputs requiring grad, and the op's trailing (pad_h, pad_w, dilation)."""
    *shape, k, d, padding, bias = case
    x, w, b, a_ch, a_sp = paka_inputs(*shape, k, d, padding, dtype=_dtype(device), scale=scale, device=device)
    ph, pw = (d * (k - 1) // 2,) * 2 if padding is None else padding
    tensors = [t.requires_grad_() for t in (x, w, b, a_ch, a_sp)]
    if not bias:
        tensors[2] = None
    return tensors, (ph, pw, d)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_opcheck_paka(device, case):
    tensors, conv = _args(case, device)
    torch.library.opcheck(torch.ops.depthsr.paka_conv2d.default, (*tensors, *conv))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_paka_beyond_the_factorised_range(device):
    """Logits far beyond +-40: on the CPU the forward op hands its backward copies of the logits, not factors."""
    tensors, conv = _args(CASES[1], device, scale=60.0)
    torch.library.opcheck(torch.ops.depthsr.paka_conv2d.default, (*tensors, *conv))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_opcheck_pac(device, case):
    (x, w, b, _, a_sp), conv = _args(case, device)
    kernel = torch.sigmoid(a_sp).detach().requires_grad_()
    torch.library.opcheck(torch.ops.depthsr.pac_conv2d.default, (x, w, b, kernel, *conv))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("needs", [[True, True, True, True], [False, True, False, True]], ids=["all", "some"])
def test_opcheck_backward_ops(device, needs):
    (x, w, b, a_ch, a_sp), conv = _args(CASES[1], device)
    x, w, a_ch, a_sp = (t.detach() for t in (x, w, a_ch, a_sp))
    y, m_ch, m_sp, factorised = torch.ops.depthsr.paka_conv2d(x, w, None, a_ch, a_sp, *conv)
    gy = torch.randn_like(y)
    saved = (m_ch, m_sp, factorised) if device == "cpu" else (a_ch, a_sp, None)
    torch.library.opcheck(torch.ops.depthsr.paka_conv2d_backward.default, (gy, x, w, *saved, *conv, needs))
    kernel = torch.sigmoid(a_sp)
    torch.library.opcheck(torch.ops.depthsr.pac_conv2d_backward.default,
                          (gy, x, w, kernel, *conv, [needs[0], needs[1], needs[3]]))


def test_paka_forward_hands_backward_the_factors_on_the_cpu():
    (x, w, b, a_ch, a_sp), conv = _args(CASES[0], "cpu")
    x, w, b, a_ch, a_sp = (t.detach() for t in (x, w, b, a_ch, a_sp))
    _, m_ch, m_sp, factorised = torch.ops.depthsr.paka_conv2d(x, w, b, a_ch, a_sp, *conv)
    assert bool(factorised)
    torch.testing.assert_close(m_ch, torch.exp(-2 * a_ch))
    torch.testing.assert_close(m_sp, torch.exp(-2 * a_sp))
    big = 60 * a_sp
    _, m_ch, m_sp, factorised = torch.ops.depthsr.paka_conv2d(x, w, b, a_ch, big, *conv)
    assert not bool(factorised)
    assert torch.equal(m_ch, a_ch) and torch.equal(m_sp, big) and m_sp.data_ptr() != big.data_ptr()
    _, m_ch, m_sp, factorised = torch.ops.depthsr.paka_conv2d(*(t.bfloat16() for t in (x, w, b, a_ch, a_sp)), *conv)
    assert m_ch.numel() == m_sp.numel() == 0 and not bool(factorised)  # the backward reads the logits


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_not_asked_for_are_not_computed(device):
    """The backward op computes what ``needs`` asks for, and returns empty tensors for the rest."""
    (x, w, b, a_ch, a_sp), conv = _args(CASES[0], device)
    x, w, a_ch, a_sp = (t.detach() for t in (x, w, a_ch, a_sp))
    y, m_ch, m_sp, factorised = torch.ops.depthsr.paka_conv2d(x, w, None, a_ch, a_sp, *conv)
    saved = (m_ch, m_sp, factorised) if device == "cpu" else (a_ch, a_sp, None)
    gy = torch.randn_like(y)
    full = torch.ops.depthsr.paka_conv2d_backward(gy, x, w, *saved, *conv, [True] * 4)
    some = torch.ops.depthsr.paka_conv2d_backward(gy, x, w, *saved, *conv, [False, True, False, True])
    assert some[0].numel() == some[2].numel() == 0
    torch.testing.assert_close(some[1], full[1])
    torch.testing.assert_close(some[3], full[3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eager_inference_skips_the_op_dispatch_and_equals_it(device, case):
    """Under no_grad the layers call the op's forward directly (not through torch.ops): the same numbers."""
    from depthsr.ops import pac_conv2d, paka_conv2d

    *shape, k, d, padding, bias = case
    x, w, b, a_ch, a_sp = paka_inputs(*shape, k, d, padding, dtype=_dtype(device), device=device)
    b = b if bias else None
    pad = (d * (k - 1) // 2,) * 2 if padding is None else ((padding,) * 2 if isinstance(padding, int) else padding)
    with torch.no_grad():
        direct = paka_conv2d(x, w, b, a_ch, a_sp, padding=padding, dilation=d)
        op = torch.ops.depthsr.paka_conv2d(x, w, b, a_ch, a_sp, *pad, d)[0]
        kernel = torch.sigmoid(a_sp)
        direct_pac = pac_conv2d(x, w, b, kernel, padding=padding, dilation=d)
        op_pac = torch.ops.depthsr.pac_conv2d(x, w, b, kernel, *pad, d)
    assert torch.equal(direct, op) and torch.equal(direct_pac, op_pac)


def test_inference_does_not_import_dynamo():
    """`depthsr upsample`'s forward pass stays lean: a custom op's first call imports torch._dynamo (about
    170 MB of RSS and a second), so eager inference must not go through one."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom depthsr.models import build_model\nnet = build_model('paka').eval()\n"
            "with torch.no_grad():\n    net(torch.rand(1, 1, 6, 8), torch.rand(1, 3, 24, 32))\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
