"""Degradation protocols: how the low-resolution input is made from the ground truth.

* ``bicubic`` (DKN, JIIF, DCTNet and most tables since): PIL-style bicubic downsampling.
* ``point`` (PAC-style): the centre pixel of each s x s block.
* ``noisy``: bicubic, then Gaussian noise with standard deviation ``noise`` x the depth range.
* ``real``: the data set's own measured low-resolution input (``lr_xS``); nothing is synthesised.

Every protocol first crops the ground truth to a multiple of the scale, so H = s*h, W = s*w.
"""
from __future__ import annotations

import torch

from depthsr.data.sample import Sample, valid_mask, valid_range
from depthsr.errors import DepthSRError
from depthsr.ops.resize import bicubic_resize

PROTOCOLS = ("bicubic", "point", "noisy", "real")


def crop_to_multiple(sample: Sample, scale: int) -> Sample:
    """Crop rgb/depth/valid (bottom and right) so both sides are multiples of `scale`."""
    h, w = sample["depth"].shape[-2:]
    hh, ww = h - h % scale, w - w % scale
    out = dict(sample)
    for key in ("rgb", "depth", "valid"):
        if key in out:
            out[key] = out[key][..., :hh, :ww]
    return out  # type: ignore[return-value]


def downsample(
    depth: torch.Tensor,  # B x 1 x H x W (or 1 x H x W)
    scale: int,
    protocol: str,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # B x 1 x H/s x W/s (or 1 x H/s x W/s)
    """The synthetic low-resolution input of `depth` under a protocol (not 'real')."""
    if depth.dim() == 3:
        return downsample(depth[None], scale, protocol, noise, generator)[0]
    h, w = depth.shape[-2:]
    if protocol == "point":
        return depth[..., scale // 2 :: scale, scale // 2 :: scale].contiguous()
    if protocol not in ("bicubic", "noisy"):
        raise DepthSRError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    lr = bicubic_resize(depth, (h // scale, w // scale))
    if protocol == "noisy":
        lo, hi = valid_range(depth, valid_mask(depth))
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        lr = lr + noise * span * torch.randn(lr.shape, generator=generator, dtype=lr.dtype)
    return lr


def degrade(
    sample: Sample, scale: int, protocol: str = "bicubic", noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Sample:
    """The sample cropped to a multiple of `scale`, with its low-resolution input `lr` (1 x h x w)."""
    if protocol == "real":
        if "lr" not in sample:
            raise DepthSRError(f"{sample.get('name', 'sample')}: protocol 'real' needs a measured lr_x{scale} input")
        lr = sample["lr"]
        h, w = lr.shape[-2:]
        out = crop_to_multiple(sample, scale)
        out_h, out_w = out["depth"].shape[-2:]
        if (out_h, out_w) != (h * scale, w * scale):
            raise DepthSRError(
                f"{sample.get('name', 'sample')}: lr_x{scale} is {h} x {w} but the ground truth is "
                f"{sample['depth'].shape[-2]} x {sample['depth'].shape[-1]} (expected {h * scale} x {w * scale})"
            )
    else:
        out = crop_to_multiple(sample, scale)
        out["lr"] = downsample(out["depth"], scale, protocol, noise, generator)
    out["scale"] = scale
    return out
