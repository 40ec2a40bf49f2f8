"""How noisy a depth map is: a robust estimate of its white noise, relative to its depth range.

A sensor's depth is noisy on every surface; depth made by area-averaging or bicubic downsampling of a clean map is
smooth wherever the scene is. The estimate filters the depth with the 3 x 3 mask

    [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]     (the product of the second differences along the two axes)

(Immerkaer, "Fast noise variance estimation", 1996), which is zero on every surface that is at most quadratic along
either axis (planes, slanted or not, and smooth bends) and responds to white noise of standard deviation sigma with
standard deviation 6 sigma. Edges and clutter give large responses too, so instead of the mean the estimate takes a
low quantile of the responses' magnitudes (the smoothest parts of the image) and the quantile that white noise alone
would give there: an image with some smooth surface is measured by its noise, not by its edges. On a small image
that quantile rests on a few responses (its standard error is about sqrt(q (1 - q) / n) / (f(x_q) x_q) for n
responses, f the half-normal density at its q-quantile x_q: 31 % for n = 196, a 16 x 16 image, 20 % at n = 512), and
a small view of a whole scene may have no smooth part at all; an image with fewer than MIN_RESPONSES responses is
not measured.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NOISE_QUANTILE = 0.05  # the share of the smoothest responses the estimate reads
MIN_RESPONSES = 512  # fewer (an image under about 24 x 26 pixels): not measured


def _half_normal_quantile(q: float) -> float:
    """The q-quantile of |N(0, 1)|."""
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(q, dtype=torch.float64)).item()


def noise_level(
    depth: torch.Tensor,  # B x 1 x h x w
    quantile: float = NOISE_QUANTILE,
) -> torch.Tensor:  # B
    """The standard deviation of each image's white noise as a fraction of its depth range (max - min); 0 for an
    image too small to measure (fewer than MIN_RESPONSES positions of the 3 x 3 mask) or of a single depth."""
    b, (h, w) = depth.shape[0], depth.shape[-2:]
    if min(h, w) < 3 or (h - 2) * (w - 2) < MIN_RESPONSES:
        return depth.new_zeros(b)
    mask = depth.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])[None, None]
    response = F.conv2d(depth, mask).abs().flatten(1)  # B x (h-2)(w-2); white noise: 6 sigma |N(0, 1)|
    flat = depth.flatten(1)
    span = flat.amax(1) - flat.amin(1)
    sigma = torch.quantile(response, quantile, dim=1) / (6.0 * _half_normal_quantile(quantile))
    return torch.where(span > 0, sigma / span.clamp_min(torch.finfo(depth.dtype).tiny), torch.zeros_like(sigma))
