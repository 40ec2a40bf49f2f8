"""LR-consistency: moving a high-resolution prediction towards one whose downsampling equals the input."""
from __future__ import annotations

import torch

from depthsr.ops.resize import bicubic_resize


def back_project(
    hr: torch.Tensor,  # B x 1 x H x W
    lr: torch.Tensor,  # B x 1 x h x w
    steps: int = 1,
) -> torch.Tensor:  # B x 1 x H x W
    """Iterative back-projection: `steps` times, add the bicubically upsampled residual between `lr` and `hr`
    bicubically downsampled to h x w (the benchmark protocol's degradation). Differentiable; 0 steps returns `hr`."""
    size, out_size = lr.shape[-2:], hr.shape[-2:]
    for _ in range(steps):
        hr = hr + bicubic_resize(lr - bicubic_resize(hr, size), out_size)
    return hr
