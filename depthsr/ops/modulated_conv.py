"""Per-pixel, per-tap modulated convolution: the engine behind PAKA and PAC.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * m(c, t, i) * x_c(i + t)

Two modulations are supported (``modulation``):
  * ``paka``:   m(c, t, i) = 1 + tanh(a_ch[c](i) + a_sp[t](i))
  * ``kernel``: m(c, t, i) = kernel[t](i)              (shared by all channels, as in PAC)

``modulated_conv2d_reference`` unfolds the whole input (B x C*k*k x H*W: k*k times the input's
memory) and is kept for tests. ``modulated_conv2d`` computes the same sum without ever holding the unfolded
input, through the custom ops ``depthsr::paka_conv2d`` / ``depthsr::pac_conv2d`` (``custom_ops``), which
pick an engine per call (``dispatch``): fused native kernels on the CPU in float32/float64 (``fused_cpu``),
fused Triton kernels on CUDA (``triton_conv``), PyTorch operations slab by slab elsewhere (``slab_engine``).
Plain eager inference (nothing to differentiate, nothing being compiled) calls the same forward without the
custom op's dispatch, whose first call imports torch._dynamo (about 170 MB and a second per process).

For PAKA on the CPU the per-tap tanh is replaced by the exact identity

    1 + tanh(a + b) = 2 / (1 + exp(-2a) * exp(-2b))

with one exponential per channel and one per tap (not per channel *and* tap), when every logit lies within
+-``FACTORISED_LIMIT`` (always, for trained layers: tanh saturates long before); otherwise the tanh is taken.
"""
from __future__ import annotations

from typing import Literal

import torch

from depthsr.ops import custom_ops  # registers the depthsr:: ops
from depthsr.ops.modulation import FACTORISED_LIMIT, modulation_reference
from depthsr.ops.validate import ConvGeometry

__all__ = ["FACTORISED_LIMIT", "modulated_conv2d", "modulated_conv2d_reference", "modulation_reference"]

Mode = Literal["paka", "kernel"]


def _eager_inference(*tensors: torch.Tensor | None) -> bool:
    """Whether a call is plain eager inference: plain tensors, no graph to record, not under torch.compile."""
    present = [t for t in tensors if t is not None]
    if any(type(t) not in (torch.Tensor, torch.nn.Parameter) for t in present) or torch.compiler.is_compiling():
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in present))


def modulated_conv2d_reference(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    modulation: torch.Tensor,  # B x (C or 1) x k*k x H_out x W_out
    geo: ConvGeometry,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Unfold the whole input, modulate, multiply: the definition, with k*k times the input's memory."""
    b, c, o, kk = geo.batch, geo.in_channels, geo.out_channels, geo.taps
    n = geo.out_height * geo.out_width
    cols = torch.nn.functional.unfold(x, geo.kernel_size, dilation=geo.dilation, padding=geo.padding)
    cols = cols.view(b, c, kk, n) * modulation.reshape(b, -1, kk, n)
    y = torch.matmul(weight.reshape(o, c * kk), cols.view(b, c * kk, n))
    if bias is not None:
        y = y + bias.view(1, o, 1)
    return y.view(b, o, geo.out_height, geo.out_width)


def _dtypes(
    activations: list[torch.Tensor], parameters: list[torch.Tensor | None], device: torch.device
) -> tuple[torch.dtype, torch.dtype | None]:
    """(compute dtype, parameter dtype or None to keep each parameter's own). Under autocast: the autocast
    dtype, and the parameters stay as they are (float32 weights get float32 gradients); otherwise every
    tensor is promoted to one dtype."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type), None
    dtype = activations[0].dtype
    for t in [*activations[1:], *parameters]:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype, dtype


def modulated_conv2d(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    a_ch: torch.Tensor | None,  # B x C x H_out x W_out (paka only)
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out (paka logits, or the kernel)
    mode: Mode,
    geo: ConvGeometry,
) -> torch.Tensor:  # B x O x H_out x W_out
    """The modulated convolution through its custom op; equal to the reference.

    Under autocast x and the modulation are cast to the autocast dtype, so mixed precision works unchanged.
    """
    activations = [x, a_sp] if a_ch is None else [x, a_ch, a_sp]
    dtype, param_dtype = _dtypes(activations, [weight, bias], x.device)
    x, a_sp = x.to(dtype).contiguous(), a_sp.to(dtype).contiguous()
    if param_dtype is not None:
        weight = weight.to(param_dtype)
        bias = None if bias is None else bias.to(param_dtype)
    pad_h, pad_w = geo.padding
    direct = _eager_inference(x, weight, bias, a_ch, a_sp)
    if mode == "paka":
        a_ch = a_ch.to(dtype).contiguous()
        paka = custom_ops.paka_forward if direct else torch.ops.depthsr.paka_conv2d
        return paka(x, weight, bias, a_ch, a_sp, pad_h, pad_w, geo.dilation)[0]
    pac = custom_ops.pac_forward if direct else torch.ops.depthsr.pac_conv2d
    return pac(x, weight, bias, a_sp, pad_h, pad_w, geo.dilation)
