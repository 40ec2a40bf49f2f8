"""The matrix product of the fused CPU path, on oneDNN where it is available.

``torch.mm`` on the CPU goes to MKL, which runs float32 GEMMs at a fraction of the processor's speed on
non-Intel CPUs; oneDNN (behind PyTorch's convolutions and ``mkldnn._linear_pointwise``) does not. Float32
products go through oneDNN when PyTorch has it, everything else through ``torch.mm``; both agree to rounding.
"""
from __future__ import annotations

import torch


def _onednn(t: torch.Tensor) -> bool:
    return (
        t.dtype == torch.float32
        and t.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def matmul(
    a: torch.Tensor,  # M x K, any strides
    b: torch.Tensor,  # K x N
) -> torch.Tensor:  # M x N, contiguous
    """a @ b."""
    if not _onednn(a):
        return torch.mm(a, b)
    if not (b.is_contiguous() or b.t().is_contiguous()):
        b = b.contiguous()
    # oneDNN's "weight" is N x K: b.t() is it, or its transpose, densely
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")
