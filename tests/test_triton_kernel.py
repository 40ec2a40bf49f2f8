"""The fused Triton kernels of the modulated convolution (depthsr/ops/triton_conv.py): forward and every
gradient equal to the unfold reference, and when the dispatcher uses them.

On the CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, which must be set before triton is
imported: one child process runs every case, tests/triton_cases.py); on CUDA they run compiled (skipped
without a GPU). float64 cases hold them to 1e-12, which only the exact algorithm meets; float32 and float16
show the precision path (float16 products, float32 accumulation, a float32 weight gradient). The interpreter
cannot take bfloat16 products (numpy has no bfloat16): bfloat16 runs on CUDA only.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from op_inputs import DEVICES
from triton_cases import TOLERANCE, compare

from depthsr.ops import dispatch, slab_engine
from depthsr.ops.engine import ConvCall
from depthsr.ops.modulation import Modulation
from depthsr.ops.validate import check_modulated_conv

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed (pip install -e '.[dev]' on "
                                  "Linux x86-64, or '.[gpu]'): the Triton kernels are not tested")

CASES = {  # shape: B, C, O, H, W, k
    "paka-k3": dict(mode="paka", shape=(2, 3, 5, 7, 9, 3), dilation=1, padding=None, dtype="float64"),
    "paka-k5-dilation2": dict(mode="paka", shape=(1, 4, 2, 10, 6, 5), dilation=2, padding=None, dtype="float64"),
    "paka-padding1x3-no-bias": dict(mode="paka", shape=(2, 2, 3, 6, 8, 5), dilation=1, padding=(1, 3),
                                    dtype="float64", bias=False),
    "paka-padding0": dict(mode="paka", shape=(1, 3, 3, 8, 7, 3), dilation=1, padding=0, dtype="float64"),
    "paka-k1": dict(mode="paka", shape=(1, 3, 2, 5, 6, 1), dilation=1, padding=None, dtype="float64"),
    "paka-huge-logits": dict(mode="paka", shape=(1, 3, 2, 5, 6, 3), dilation=1, padding=None, dtype="float64",
                             scale=60.0),
    "paka-many-blocks": dict(mode="paka", shape=(2, 40, 70, 9, 10, 3), dilation=1, padding=None,
                             dtype="float64"),  # 2 channel blocks, 2-3 output blocks, 2 pixel tiles
    "paka-some-gradients": dict(mode="paka", shape=(2, 3, 5, 7, 9, 3), dilation=2, padding=None, dtype="float64",
                                needs=(False, True, False, True)),
    "pac-k3-dilation2": dict(mode="pac", shape=(2, 3, 5, 7, 9, 3), dilation=2, padding=None, dtype="float64"),
    "pac-k5-padding1x3-no-bias": dict(mode="pac", shape=(2, 2, 3, 6, 8, 5), dilation=1, padding=(1, 3),
                                      dtype="float64", bias=False),
    "paka-float32": dict(mode="paka", shape=(2, 20, 24, 11, 13, 3), dilation=2, padding=None, dtype="float32"),
    "pac-float32": dict(mode="pac", shape=(2, 20, 24, 11, 13, 3), dilation=1, padding=None, dtype="float32"),
    "paka-float16": dict(mode="paka", shape=(1, 8, 8, 6, 6, 3), dilation=1, padding=None, dtype="float16"),
}
CUDA_ONLY = {
    "paka-bfloat16": dict(mode="paka", shape=(2, 20, 24, 11, 13, 3), dilation=2, padding=None, dtype="bfloat16"),
    "pac-bfloat16": dict(mode="pac", shape=(2, 20, 24, 11, 13, 3), dilation=1, padding=None, dtype="bfloat16"),
}


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """Every CPU case through Triton's interpreter, in one child process."""
    tests = Path(__file__).parent
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(tests / "triton_cases.py")], input=json.dumps(CASES), env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _check(case: dict, result: dict) -> None:
    tol = TOLERANCE[case["dtype"]]
    needs = dict(zip(("x", "weight", "a_ch", "a_sp"), case.get("needs", (True,) * 4)))
    if case["mode"] == "pac":
        needs["a_ch"] = False  # PAC has no channel logits
    assert result["returned"] == needs
    for name, err in result["errors"].items():
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"
    if needs["weight"]:  # half precision inputs: the weight gradient comes back accumulated in float32
        want = "torch.float64" if case["dtype"] == "float64" else "torch.float32"
        assert result["dtypes"]["weight"] == want


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [*CASES, *CUDA_ONLY])
def test_triton_kernels_equal_reference(device, name, request, monkeypatch):
    case = {**CASES, **CUDA_ONLY}[name]
    if device == "cpu":
        if name in CUDA_ONLY:
            pytest.skip("Triton's interpreter cannot multiply bfloat16 (numpy has no bfloat16)")
        result = request.getfixturevalue("interpreted")[name]
    else:
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 is another precision
        result = compare(case, device)
    _check(case, result)


def test_triton_applies_to_cuda_float32_and_half_only(monkeypatch):
    """When the dispatcher takes the Triton kernels, and why not otherwise."""
    monkeypatch.delenv("DEPTHSR_TRITON", raising=False)
    cuda = torch.device("cuda")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        if HAVE_TRITON:
            assert dispatch.triton_reason(cuda, dtype, 10) is None
        else:
            assert dispatch.triton_reason(cuda, dtype, 10).startswith("Triton is not installed")
    assert "float64" in dispatch.triton_reason(cuda, torch.float64, 10)
    assert "2^31" in dispatch.triton_reason(cuda, torch.float32, 2**31)
    assert "cpu" in dispatch.triton_reason(torch.device("cpu"), torch.float32, 10)
    monkeypatch.setenv("DEPTHSR_TRITON", "0")
    assert dispatch.triton_reason(cuda, torch.float32, 10) == "DEPTHSR_TRITON=0"


def test_largest_tensor_counts_the_output():
    """The 32-bit limit applies to y and dL/dy too, which can outgrow x (more output channels)."""
    x, kernel = torch.zeros(1, 2, 4, 4), torch.zeros(1, 9, 4, 4)
    geo = check_modulated_conv("t", x, torch.zeros(50, 2, 3, 3), None, {"kernel": (kernel, 9)}, None, 1)
    assert dispatch.largest_tensor(ConvCall(x, torch.zeros(50, 2, 3, 3), Modulation("kernel", None, kernel), geo)) \
        == 50 * 16


def test_fallback_is_said_once(monkeypatch, caplog):
    """A call off the CPU where the kernels do not apply takes the slab path and says why, once."""
    monkeypatch.setattr(dispatch, "_said", set())
    monkeypatch.setattr(dispatch, "triton_reason", lambda *_: "no kernel for this test")
    x = torch.zeros(1, 1, 3, 3, device="meta")
    geo = check_modulated_conv("t", x, torch.zeros(1, 1, 3, 3), None, {}, None, 1)
    call = ConvCall(x, x.new_zeros(1, 1, 3, 3), Modulation("kernel", None, x.new_zeros(1, 9, 3, 3)), geo)
    with caplog.at_level(logging.WARNING, logger="depthsr.ops.dispatch"):
        for _ in range(3):
            assert dispatch.engine(call) is slab_engine
    assert caplog.text.count("no kernel for this test") == 1
    assert "portable slab path" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_calls_take_the_triton_kernels(monkeypatch):
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    from depthsr.ops import paka_conv2d, triton_conv

    calls = []
    for fn in ("forward", "backward"):
        real = getattr(triton_conv, fn)
        monkeypatch.setattr(triton_conv, fn, lambda *a, _real=real, _fn=fn: calls.append(_fn) or _real(*a))
    args = [torch.randn(s, device="cuda", requires_grad=True) for s in ((2, 4, 8, 8), (3, 4, 3, 3), (3,),
                                                                       (2, 4, 8, 8), (2, 9, 8, 8))]
    paka_conv2d(*args).sum().backward()
    assert calls == ["forward", "backward"]
