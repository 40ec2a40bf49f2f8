"""Pixel-adaptive convolution (PAC): a Gaussian kernel on guidance features modulates each tap.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * K[t](i) * x_c(i + t),
    K[t](i) = exp(-0.5 * ||f(i + t) - f(i)||^2)

The ablation twin of PAKA: the same engine, with a kernel shared by all channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from depthsr.ops.modulated_conv import modulated_conv2d, modulated_conv2d_reference
from depthsr.ops.modulation import modulation_reference
from depthsr.ops.validate import ConvGeometry, check_modulated_conv, resolve_padding


def _check(x, weight, bias, kernel, padding, dilation) -> ConvGeometry:
    k = weight.shape[-1] if weight.dim() == 4 else -1
    return check_modulated_conv("pac_conv2d", x, weight, bias, {"kernel": (kernel, k * k)}, padding, dilation)


def gaussian_kernel(
    features: torch.Tensor,  # B x F x H x W
    kernel_size: int,
    dilation: int = 1,
) -> torch.Tensor:  # B x k*k x H x W
    """exp(-0.5 ||f(i + t) - f(i)||^2) per tap t; taps outside the image compare against zeros."""
    b, f, h, w = features.shape
    kk = kernel_size * kernel_size
    pad = resolve_padding(kernel_size, dilation, None)
    cols = F.unfold(features, kernel_size, dilation=dilation, padding=pad).view(b, f, kk, h, w)
    return torch.exp(-0.5 * (cols - features[:, :, None]).square().sum(1))


def pac_conv2d(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    kernel: torch.Tensor,  # B x k*k x H_out x W_out
    padding: int | tuple[int, int] | None = None,
    dilation: int = 1,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Convolution with a per-pixel, per-tap kernel (fast slab path)."""
    geo = _check(x, weight, bias, kernel, padding, dilation)
    return modulated_conv2d(x, weight, bias, None, kernel, "kernel", geo)


def pac_conv2d_reference(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    kernel: torch.Tensor,  # B x k*k x H_out x W_out
    padding: int | tuple[int, int] | None = None,
    dilation: int = 1,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Convolution with a per-pixel, per-tap kernel by unfolding the whole input, for tests."""
    geo = _check(x, weight, bias, kernel, padding, dilation)
    return modulated_conv2d_reference(x, weight, bias, modulation_reference("kernel", None, kernel), geo)
