"""Guided convolutions (PAKA, PAC, plain) with one interface, and the hierarchical PAKA module.

Every guided convolution is called as ``conv(x, guide)``: x is B x C_in x H x W, guide is
B x C_guide x H x W (or None for self-guidance), the result is B x C_out x H x W.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from depthsr.ops import gaussian_kernel, pac_conv2d, paka_conv2d


class _StaticWeight(nn.Module):
    """The static k x k weight and bias, initialised as ``nn.Conv2d`` does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.dilation = kernel_size, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)


def _zero_last(branch: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(branch[-1].weight)
    nn.init.zeros_(branch[-1].bias)
    return branch


class PAKAConv2d(_StaticWeight):
    """Pixel adaptive kernel attention convolution.

    A channel branch (1x1 -> ReLU -> 1x1 to C_in) and a spatial branch (3x3 -> ReLU -> 1x1 to k*k)
    read the guidance and predict the attention logits; both end in zero-initialised layers, so a
    fresh layer is exactly a plain convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        guide_channels: int | None = None,
        hidden: int | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation)
        g = guide_channels or in_channels
        hidden = hidden or max(8, g // 4)
        self.channel_attention = _zero_last(
            nn.Sequential(nn.Conv2d(g, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, in_channels, 1))
        )
        self.spatial_attention = _zero_last(
            nn.Sequential(
                nn.Conv2d(g, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, kernel_size**2, 1)
            )
        )

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor | None = None  # B x C_in x H x W, B x C_guide x H x W
    ) -> torch.Tensor:  # B x C_out x H x W
        g = x if guide is None else guide
        return paka_conv2d(
            x, self.weight, self.bias, self.channel_attention(g), self.spatial_attention(g), dilation=self.dilation
        )


class PACConv2d(_StaticWeight):
    """Pixel-adaptive convolution: a Gaussian kernel on a learned embedding of the guidance."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        guide_channels: int | None = None,
        embedding: int = 8,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation)
        self.embed = nn.Conv2d(guide_channels or in_channels, embedding, 1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        g = self.embed(x if guide is None else guide)
        kernel = gaussian_kernel(g, self.kernel_size, self.dilation)
        return pac_conv2d(x, self.weight, self.bias, kernel, dilation=self.dilation)


class PlainConv2d(nn.Conv2d):
    """The PAKA-off twin: a plain 'same' convolution over the input concatenated with the guidance (guidance
    by concatenation, the usual baseline), so the twin sees the same features through static weights."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        guide_channels: int | None = None,
    ) -> None:
        super().__init__(in_channels + (guide_channels or in_channels), out_channels, kernel_size,
                         padding=dilation * (kernel_size - 1) // 2, dilation=dilation)

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor | None = None  # B x C_in x H x W, B x C_guide x H x W
    ) -> torch.Tensor:  # B x C_out x H x W
        return super().forward(torch.cat([x, x if guide is None else guide], 1))


GUIDED_CONVS: dict[str, type[nn.Module]] = {"paka": PAKAConv2d, "pac": PACConv2d, "plain": PlainConv2d}


def guided_conv(kind: str, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                guide_channels: int | None = None) -> nn.Module:
    """A guided convolution of the named kind ('paka', 'pac' or 'plain')."""
    if kind not in GUIDED_CONVS:
        raise ValueError(f"unknown convolution kind {kind!r}; choose from {sorted(GUIDED_CONVS)}")
    return GUIDED_CONVS[kind](in_channels, out_channels, kernel_size, dilation, guide_channels)


class HierarchicalPAKA(nn.Module):
    """HPM: guided convs at growing dilations in a chain; their outputs are fused by a 1x1 conv and
    added to the input (a residual block with a receptive field of 1 + 2 * sum(dilations))."""

    def __init__(self, channels: int, guide_channels: int, dilations: tuple[int, ...] = (1, 2, 4),
                 kind: str = "paka") -> None:
        super().__init__()
        self.convs = nn.ModuleList(guided_conv(kind, channels, channels, 3, d, guide_channels) for d in dilations)
        self.fuse = nn.Conv2d(channels * len(dilations), channels, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor  # B x C x H x W, B x C_guide x H x W
    ) -> torch.Tensor:  # B x C x H x W
        h, outs = x, []
        for conv in self.convs:
            h = self.act(conv(h, guide))
            outs.append(h)
        return x + self.fuse(torch.cat(outs, 1))
