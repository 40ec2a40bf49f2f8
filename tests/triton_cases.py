"""The Triton kernels against the unfold reference, one case at a time: shared by tests/test_triton_kernel.py
on CUDA (in its process) and on the CPU through Triton's interpreter, where this file runs as a child process
with TRITON_INTERPRET=1 (read when triton is imported, so it cannot be switched on in the test process):

    TRITON_INTERPRET=1 python tests/triton_cases.py < cases.json > results.json
"""
from __future__ import annotations

import json
import sys

import torch
from op_inputs import paka_inputs

TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2, "bfloat16": 2e-2}  # relative to each max


def compare(case: dict, device: str) -> dict:
    """Forward and every gradient of the Triton kernels, against the float64 reference on the same inputs
    (rounded to the case's dtype): {output name: max error / max reference magnitude}, plus the dtypes and
    which gradients came back."""
    from depthsr.ops import pac_conv2d_reference, paka_conv2d_reference, triton_conv
    from depthsr.ops.engine import ConvCall
    from depthsr.ops.modulation import Modulation
    from depthsr.ops.validate import check_modulated_conv

    (b, c, o, h, w, k), d, padding = case["shape"], case["dilation"], case["padding"]
    padding = tuple(padding) if isinstance(padding, list) else padding
    dtype = getattr(torch, case["dtype"])
    x, weight, bias, a_ch, a_sp = paka_inputs(b, c, o, h, w, k, d, padding, scale=case.get("scale", 1.0))
    paka = case["mode"] == "paka"
    if not paka:
        a_ch, a_sp = None, torch.sigmoid(a_sp)
    if not case.get("bias", True):
        bias = None
    names = ["x", "weight", "bias", "a_ch", "a_sp"]
    ref_in = {n: t.to(dtype).double().requires_grad_() for n, t in zip(names, (x, weight, bias, a_ch, a_sp))
              if t is not None}
    geo = check_modulated_conv("case", x, weight, bias, {"a_sp": (a_sp, k * k)}, padding, d)
    if paka:
        ref = paka_conv2d_reference(*(ref_in.get(n) for n in names), padding=padding, dilation=d)
    else:
        ref = pac_conv2d_reference(*(ref_in.get(n) for n in names if n != "a_ch"), padding=padding, dilation=d)
    gy = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(dtype).double()
    ref_grads = dict(zip(ref_in, torch.autograd.grad(ref, list(ref_in.values()), gy)))

    on = {n: t.detach().to(device, dtype) for n, t in ref_in.items()}
    mod = Modulation("logits", on["a_ch"], on["a_sp"]) if paka else Modulation("kernel", None, on["a_sp"])
    needs = tuple(case.get("needs", (True, True, True, True)))  # x, weight, a_ch, a_sp
    call = ConvCall(on["x"], on["weight"], mod, geo)
    y = triton_conv.forward(call, on.get("bias"))
    grads = triton_conv.backward(call, gy.to(device, dtype), needs)

    def error(got: torch.Tensor, want: torch.Tensor) -> float:
        return ((got.double().cpu() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()

    result = {"errors": {"y": error(y, ref)}, "dtypes": {"y": str(y.dtype)}, "returned": {}}
    for name, got in zip(("x", "weight", "a_ch", "a_sp"), grads):
        result["returned"][name] = got is not None
        if got is not None:
            result["errors"][name] = error(got, ref_grads[name])
            result["dtypes"][name] = str(got.dtype)
    return result


def main() -> None:
    cases = json.load(sys.stdin)
    json.dump({name: compare(case, "cpu") for name, case in cases.items()}, sys.stdout)


if __name__ == "__main__":
    main()
