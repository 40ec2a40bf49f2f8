"""Bicubic resizing as PIL does it (a = -0.5, antialiased when shrinking): the one resize of the project."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bicubic_resize(
    x: torch.Tensor,  # B x C x h x w
    size: tuple[int, int],
) -> torch.Tensor:  # B x C x H x W
    """Resize to (H, W) exactly as ``PIL.Image.resize(..., Image.BICUBIC)`` on float images.

    The protocol papers use (DKN, JIIF, DCTNet) downsample with PIL; cv2 and plain torch bicubic give
    different numbers, so every bicubic resize in the project goes through this function.
    """
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
