"""The self-check: how far to trust a network over bicubic for one input, measured on the input itself.

The task is repeated one level down: the input, downsampled by the same ratio, is upsampled back to its own size
by the network (guided by the RGB at that size) and by bicubic. The least-squares weight w with which
bicubic + w (network - bicubic) reproduces the input is the network's trust for this image; the answer at full
size is then bicubic + w (network - bicubic). Where the depth's edges do not follow the RGB's (real sensors:
misregistration, flying pixels, smeared edges) w falls towards 0 and the answer towards bicubic; where they do,
w stays near 1. No parameters and no ground truth: only the input.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from depthsr.ops.resize import bicubic_resize

MIN_PROXY_SIDE = 16  # the repeated task's input (pixels on its shorter side) below which it says too little


def proxy_size(lr_size: tuple[int, int], hr_size: tuple[int, int]) -> tuple[int, int]:
    """The input's size divided by the ratio on each axis (rounded): the repeated task's input size."""
    return round(lr_size[0] ** 2 / hr_size[0]), round(lr_size[1] ** 2 / hr_size[1])


def trust(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    lr: torch.Tensor,  # B x 1 x h x w
    rgb: torch.Tensor,  # B x 3 x H x W
) -> torch.Tensor:  # B x 1 x 1 x 1, in 0..1
    """Per image, the weight in 0..1 that `predict(lr, rgb) -> B x 1 x H x W` earns over bicubic on the repeated
    task; 1 where that task's input would be under MIN_PROXY_SIDE pixels on a side."""
    size = proxy_size(lr.shape[-2:], rgb.shape[-2:])
    if min(size) < MIN_PROXY_SIDE:
        return lr.new_ones(lr.shape[0], 1, 1, 1)
    small = bicubic_resize(lr, size)
    base = bicubic_resize(small, lr.shape[-2:])
    gain = predict(small, bicubic_resize(rgb, lr.shape[-2:]).clamp(0, 1)) - base
    dims = (1, 2, 3)
    weight = ((lr - base) * gain).sum(dims, keepdim=True) / (gain * gain).sum(dims, keepdim=True).clamp_min(1e-12)
    return weight.clamp(0, 1)


def blend(
    pred: torch.Tensor,  # B x 1 x H x W
    lr: torch.Tensor,  # B x 1 x h x w
    weight: torch.Tensor,  # B x 1 x 1 x 1
) -> torch.Tensor:  # B x 1 x H x W
    """bicubic + weight (pred - bicubic)."""
    base = bicubic_resize(lr, pred.shape[-2:])
    return base + weight * (pred - base)
