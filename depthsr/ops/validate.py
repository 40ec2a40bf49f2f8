"""Shape checks shared by the modulated convolutions (PAKA, PAC) and their references."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from depthsr.errors import DepthSRError


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of a stride-1 modulated convolution."""

    batch: int
    in_channels: int
    out_channels: int
    kernel_size: int
    dilation: int
    padding: tuple[int, int]
    out_height: int
    out_width: int

    @property
    def taps(self) -> int:
        return self.kernel_size * self.kernel_size


def _shape(t: torch.Tensor) -> str:
    return " x ".join(str(s) for s in t.shape)


def resolve_padding(kernel_size: int, dilation: int, padding: int | tuple[int, int] | None) -> tuple[int, int]:
    """`None` is 'same' padding; an int pads both sides of both axes."""
    if padding is None:
        p = dilation * (kernel_size - 1) // 2
        return p, p
    if isinstance(padding, int):
        padding = (padding, padding)
    ph, pw = (int(v) for v in padding)
    if ph < 0 or pw < 0:
        raise DepthSRError(f"padding must be >= 0, got {padding}")
    return ph, pw


def check_modulated_conv(
    name: str,
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    modulations: dict[str, tuple[torch.Tensor | None, int | None]],
    padding: int | tuple[int, int] | None,
    dilation: int,
) -> ConvGeometry:
    """Validate a modulated convolution's inputs and return its geometry.

    `modulations` maps an argument name to (tensor, expected channel count); each must be
    B x channels x H_out x W_out.
    """
    if x.dim() != 4:
        raise DepthSRError(f"{name}: x must be B x C x H x W, got {_shape(x)}")
    b, c, h, w = x.shape
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise DepthSRError(f"{name}: weight must be O x C x k x k with odd k, got {_shape(weight)}")
    o, wc, k, _ = weight.shape
    if wc != c:
        raise DepthSRError(f"{name}: weight expects {wc} input channels but x has {c} ({_shape(x)})")
    if bias is not None and tuple(bias.shape) != (o,):
        raise DepthSRError(f"{name}: bias must have shape ({o},), got {_shape(bias)}")
    if not isinstance(dilation, int) or dilation < 1:
        raise DepthSRError(f"{name}: dilation must be an integer >= 1, got {dilation}")
    ph, pw = resolve_padding(k, dilation, padding)
    ho, wo = h + 2 * ph - dilation * (k - 1), w + 2 * pw - dilation * (k - 1)
    if ho < 1 or wo < 1:
        raise DepthSRError(f"{name}: input {h} x {w} is too small for k={k}, dilation={dilation}, padding={ph, pw}")
    for arg, (t, channels) in modulations.items():
        if t is None:
            continue
        expected = (b, channels, ho, wo)
        if tuple(t.shape) != expected:
            want = " x ".join(str(s) for s in expected)
            raise DepthSRError(f"{name}: {arg} must be {want} (B x {channels} x H_out x W_out), got {_shape(t)}")
    return ConvGeometry(b, c, o, k, dilation, (ph, pw), ho, wo)
