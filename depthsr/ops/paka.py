"""Pixel Adaptive Kernel Attention (PAKA) convolution, fast path and reference side by side.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * (1 + tanh(a_ch[c](i) + a_sp[t](i))) * x_c(i + t)

With a_ch = a_sp = 0 this is exactly ``F.conv2d``.
"""
from __future__ import annotations

import torch

from depthsr.ops.modulated_conv import modulated_conv2d, modulated_conv2d_reference
from depthsr.ops.modulation import modulation_reference
from depthsr.ops.validate import ConvGeometry, check_modulated_conv


def _check(x, weight, bias, a_ch, a_sp, padding, dilation) -> ConvGeometry:
    c = x.shape[1] if x.dim() == 4 else -1
    k = weight.shape[-1] if weight.dim() == 4 else -1
    return check_modulated_conv(
        "paka_conv2d", x, weight, bias, {"a_ch": (a_ch, c), "a_sp": (a_sp, k * k)}, padding, dilation
    )


def paka_conv2d(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    a_ch: torch.Tensor,  # B x C x H_out x W_out, channel attention logits
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out, spatial (tap) attention logits
    padding: int | tuple[int, int] | None = None,
    dilation: int = 1,
) -> torch.Tensor:  # B x O x H_out x W_out
    """PAKA convolution (stride 1, zero padding; ``padding=None`` keeps the size).

    Never materialises the B x C*k*k x H x W unfolded input; differentiable in every tensor argument.
    """
    geo = _check(x, weight, bias, a_ch, a_sp, padding, dilation)
    return modulated_conv2d(x, weight, bias, a_ch, a_sp, "paka", geo)


def paka_conv2d_reference(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    a_ch: torch.Tensor,  # B x C x H_out x W_out
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out
    padding: int | tuple[int, int] | None = None,
    dilation: int = 1,
) -> torch.Tensor:  # B x O x H_out x W_out
    """PAKA convolution by unfolding the whole input: the definition, for tests."""
    geo = _check(x, weight, bias, a_ch, a_sp, padding, dilation)
    return modulated_conv2d_reference(x, weight, bias, modulation_reference("paka", a_ch, a_sp), geo)
