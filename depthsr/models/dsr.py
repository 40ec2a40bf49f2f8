"""The RGB-guided depth super-resolution network.

Data path (H x W is the output size, s the scale):

    lr (B x 1 x h x w) --bicubic--> up (B x 1 x H x W) -------------------------------------+
    rgb (B x 3 x H x W) -> RGB encoder: e0 (H), e1 (H/2), e2 (H/4)                           |
    up -> depth encoder: pixel-unshuffled at H/2 and H/4 -> d1, d2                           |
    guidance g2 = fuse(e2, d2) at H/4 steers the body's PAKA convolutions (hierarchical blocks);
    the decoder climbs back to H with the RGB features at each level and predicts a residual --+-> out

The guidance sees depth features as well as RGB ones, so an RGB edge that is no depth edge (texture)
need not become one. Internally the size is padded to a multiple of 4, so any scale s >= 1 works;
nothing depends on s, so one model serves x2 to x16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthsr.models.layers import HierarchicalPAKA, guided_conv
from depthsr.ops.resize import bicubic_resize


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2), nn.ReLU(inplace=True))


PRESETS: dict[str, dict] = {
    "small": {"width": 32, "blocks": 2},  # the CPU default (480 x 640 x4 in about 0.25 s on 2 threads)
    "base": {"width": 64, "blocks": 4},  # GPU-sized, for the NYU recipes
}


class GuidedDSRNet(nn.Module):
    """Guided depth super-resolution with PAKA (or, for ablations, PAC or plain) convolutions.

    Args:
        conv: 'paka', 'pac' or 'plain': the kind of every guided convolution.
        width: channels at H/4 (H/2 uses 3/4 of it, H half of it).
        blocks: hierarchical blocks at H/4.
        dilations: dilations inside each hierarchical block.
    """

    def __init__(self, conv: str = "paka", width: int = 32, blocks: int = 2,
                 dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        c2, c1, c0 = width, width * 3 // 4, width // 2
        self.conv_kind = conv
        self.config = {"width": width, "blocks": blocks, "dilations": list(dilations)}
        self.rgb0 = _conv(3, c0)
        self.rgb1 = _conv(c0, c1, stride=2)
        self.rgb2 = _conv(c1, c2, stride=2)
        self.depth1 = _conv(4, c1)
        self.depth2 = _conv(16, c2)
        self.guide2 = _conv(2 * c2, c2, k=1)
        self.guide1 = _conv(2 * c1, c1, k=1)
        self.body = nn.ModuleList(HierarchicalPAKA(c2, c2, tuple(dilations), conv) for _ in range(blocks))
        self.merge1 = _conv(c2 + c1, c1, k=1)
        self.refine1 = guided_conv(conv, c1, c1, 3, 1, c1)
        self.merge0 = _conv(c1 + c0, c0, k=1)
        self.refine0 = _conv(c0, c0)
        self.out = nn.Conv2d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the residual starts at zero: a fresh network is exactly bicubic
        nn.init.zeros_(self.out.bias)

    def forward(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W
    ) -> torch.Tensor:  # B x 1 x H x W
        height, width = rgb.shape[-2:]
        up = bicubic_resize(lr, (height, width))
        pad = (0, -width % 4, 0, -height % 4)
        up_p, rgb_p = F.pad(up, pad, mode="replicate"), F.pad(rgb, pad, mode="replicate")

        e0 = self.rgb0(rgb_p)
        e1 = self.rgb1(e0)
        e2 = self.rgb2(e1)
        d1 = self.depth1(F.pixel_unshuffle(up_p, 2))
        d2 = self.depth2(F.pixel_unshuffle(up_p, 4))

        g2 = self.guide2(torch.cat([e2, d2], 1))
        h = d2
        for block in self.body:
            h = block(h, g2)

        h = self.merge1(torch.cat([F.interpolate(h, scale_factor=2.0, mode="bilinear"), d1], 1))
        h = h + F.relu(self.refine1(h, self.guide1(torch.cat([e1, d1], 1))))
        h = self.merge0(torch.cat([F.interpolate(h, scale_factor=2.0, mode="bilinear"), e0], 1))
        h = self.refine0(h)
        return up + self.out(h)[..., :height, :width]
