"""What every engine of the modulated convolution takes and gives back: one interface for the three of them.

An engine is a module with

    forward(call: ConvCall, bias: Tensor | None) -> Tensor                 # B x O x H_out x W_out
    backward(call: ConvCall, grad_y: Tensor, needs: Needs) -> Grads       # dL/dx, dL/dW, dL/da_ch, dL/da_sp

``fused_cpu`` (native kernels), ``triton_conv`` (Triton kernels) and ``slab_engine`` (PyTorch operations);
``dispatch`` picks one per call. A gradient not in ``needs`` comes back as None; the weight's comes back in
``accumulation_dtype`` of x's dtype (float32 for half precision), the others in x's dtype.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from depthsr.ops.modulation import Modulation
from depthsr.ops.validate import ConvGeometry

Needs = tuple[bool, bool, bool, bool]  # gradients wanted: x, weight, a_ch, a_sp (PAC: the kernel)
Grads = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


class ConvCall(NamedTuple):
    """One modulated convolution as the engines receive it: every tensor contiguous, in one dtype."""

    x: torch.Tensor  # B x C x H x W
    weight: torch.Tensor  # O x C x k x k
    mod: Modulation  # B x (C | None) x H_out x W_out, B x k*k x H_out x W_out
    geo: ConvGeometry


class Engine(Protocol):
    def forward(self, call: ConvCall, bias: torch.Tensor | None) -> torch.Tensor: ...

    def backward(self, call: ConvCall, grad_y: torch.Tensor, needs: Needs) -> Grads: ...


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which sums over many slabs or pixels (the weight's and the bias's gradients) are taken."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
