"""Per-pixel, per-tap modulated convolution: the engine behind PAKA and PAC.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * m(c, t, i) * x_c(i + t)

Two modulations are supported:
  * ``paka``:   m(c, t, i) = 1 + tanh(a_ch[c](i) + a_sp[t](i))
  * ``kernel``: m(c, t, i) = kernel[t](i)              (shared by all channels, as in PAC)

``modulated_conv2d_reference`` unfolds the whole input (B x C*k*k x H*W: k*k times the input's
memory) and is kept for tests. ``modulated_conv2d`` computes the same sum slab by slab, never holding
the unfolded input: on the CPU in float32/float64 by fused native kernels (``fused_cpu``), elsewhere,
or without a C compiler, by PyTorch operations (``slab_engine``).

For PAKA the per-tap tanh is replaced by the exact identity

    1 + tanh(a + b) = 2 / (1 + exp(-2a) * exp(-2b))

with one exponential per channel and one per tap (not per channel *and* tap). It is used in
float32/float64 when every logit lies within +-``FACTORISED_LIMIT`` (always, for trained layers: tanh
saturates long before); otherwise the slab path takes the tanh directly.
"""
from __future__ import annotations

from typing import Literal

import torch

from depthsr.ops import native
from depthsr.ops.fused_cpu import FusedModulatedConv2d
from depthsr.ops.slab_engine import SlabModulatedConv2d
from depthsr.ops.validate import ConvGeometry

Mode = Literal["paka", "kernel"]

# Largest |logit| for which the factors exp(-2 a) are normal float32 numbers (e^-80 > 1.2e-38, e^80 < 3.4e38).
# Their product may over- or underflow: then 2 / (1 + product) is 0 or 2, the limits 1 + tanh(z) has there.
FACTORISED_LIMIT = 40.0


def modulation_reference(
    mode: Mode, a_ch: torch.Tensor | None, a_sp: torch.Tensor
) -> torch.Tensor:  # B x (C or 1) x k*k x H_out x W_out
    """The full modulation tensor m(c, t, i)."""
    if mode == "paka":
        assert a_ch is not None
        return 1 + torch.tanh(a_ch[:, :, None] + a_sp[:, None])
    return a_sp[:, None]


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


def paka_factors(
    a_ch: torch.Tensor,  # B x C x H x W
    a_sp: torch.Tensor,  # B x k*k x H x W
) -> tuple[torch.Tensor, torch.Tensor] | None:  # B x C x H x W, B x k*k x H x W
    """(exp(-2 a_ch), exp(-2 a_sp)), so that 1 + tanh(a_ch + a_sp) = 2 / (1 + their product).

    None when some logit's magnitude exceeds ``FACTORISED_LIMIT`` or the dtype has too little range
    (half precision): those calls take the tanh.
    """
    if a_ch.dtype not in (torch.float32, torch.float64):
        return None
    a_ch, a_sp = a_ch.detach(), a_sp.detach()  # constants to the engines, which differentiate the logits
    if float(torch.stack([*torch.aminmax(a_ch), *torch.aminmax(a_sp)]).abs().max()) > FACTORISED_LIMIT:
        return None
    return torch.mul(a_ch, -2).exp_(), torch.mul(a_sp, -2).exp_()


def _common_dtype(tensors: list[torch.Tensor | None], device: torch.device) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def modulated_conv2d(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    a_ch: torch.Tensor | None,  # B x C x H_out x W_out (paka only)
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out
    mode: Mode,
    geo: ConvGeometry,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Slab-wise modulated convolution with a recomputing backward; equal to the reference.

    Under autocast every input is cast to the autocast dtype, so mixed precision works unchanged.
    """
    tensors = [x, weight, bias, a_ch, a_sp]
    dtype = _common_dtype(tensors, x.device)
    x, weight, bias, a_ch, a_sp = (None if t is None else t.to(dtype).contiguous() for t in tensors)
    kernels = native.kernels(dtype) if x.device.type == "cpu" else None
    factors = paka_factors(a_ch, a_sp) if mode == "paka" else (None, a_sp)
    with torch.autocast(x.device.type, enabled=False):
        if factors is None:  # PAKA with huge logits, or half precision: tanh per slab
            return SlabModulatedConv2d.apply(x, weight, bias, a_ch, a_sp, None, None, geo)
        if kernels is not None:
            return FusedModulatedConv2d.apply(x, weight, bias, a_ch, a_sp, *factors, geo, kernels)
        return SlabModulatedConv2d.apply(x, weight, bias, a_ch, a_sp, *factors, geo)
