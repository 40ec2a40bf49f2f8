"""Degradation protocols: how the low-resolution input is made from the ground truth.

* ``bicubic`` (DKN, JIIF, DCTNet and most tables since): PIL-style bicubic downsampling.
* ``point`` (PAC-style): the centre pixel of each s x s block.
* ``noisy``: bicubic, then Gaussian noise with standard deviation ``noise`` x the depth range.
* ``tof``: a time-of-flight sensor (see ``tof_downsample`` and ``TofParams``): area integration (mixed, flying
  pixels at depth edges), a small misregistration, depth-proportional noise, edge dropouts filled as
  sensors fill them, millimetre quantisation.
* ``real``: the data set's own measured low-resolution input (``lr_xS`` or ``lr``); nothing is synthesised.

The ratio may be any number > 1: the low-resolution size is the high-resolution size / ratio, rounded. At an
integer ratio the ground truth is first cropped to a multiple of it, so H = s*h and W = s*w exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depthsr.data.sample import Sample, valid_mask, valid_range
from depthsr.errors import DepthSRError
from depthsr.ops.resize import bicubic_resize

PROTOCOLS = ("bicubic", "point", "noisy", "tof", "real")
MM_IN_UNITS = {"m": 1e-3, "mm": 1.0}  # one millimetre in a data set's units (ToF quantisation step)


@dataclass(frozen=True)
class TofParams:
    """The ``tof`` protocol's parameters (defaults: a phone / Helios-class ToF camera).

    Attributes:
        shift: largest misregistration between depth and RGB, in high-resolution pixels (uniform per image and axis).
        noise: standard deviation of the depth noise as a fraction of the depth itself (0.5 % of the distance).
        dropout: probability that a low-resolution pixel on a depth edge returns nothing (low signal); such holes
            are filled with the farthest depth of their 3 x 3 neighbourhood, as sensor pipelines fill them.
        edge: relative depth jump across a pixel's 3 x 3 neighbourhood that marks an edge pixel.
        quantum_mm: quantisation step in millimetres (applied for data in metres or millimetres).
    """

    shift: float = 1.0
    noise: float = 0.005
    dropout: float = 0.3
    edge: float = 0.05
    quantum_mm: float = 1.0


def is_integer_ratio(scale: float) -> bool:
    return float(scale).is_integer()


def lr_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The low-resolution size of an H x W image at ratio `scale` (rounded, at least 1 x 1)."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def crop_to_multiple(sample: Sample, scale: float) -> Sample:
    """At an integer ratio, rgb/depth/valid cropped (bottom and right) to multiples of it; otherwise as is."""
    out = dict(sample)
    if not is_integer_ratio(scale):
        return out  # type: ignore[return-value]
    s = int(scale)
    h, w = sample["depth"].shape[-2:]
    hh, ww = h - h % s, w - w % s
    for key in ("rgb", "depth", "valid"):
        if key in out:
            out[key] = out[key][..., :hh, :ww]
    return out  # type: ignore[return-value]


def shift_image(
    image: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, mode: str = "nearest"  # B x C x H x W, B, B
) -> torch.Tensor:  # B x C x H x W
    """`image` moved by (dx, dy) pixels per image, borders repeated ('nearest' for depth: no depth is invented
    between surfaces; 'bilinear' for colour)."""
    b, _, h, w = image.shape
    theta = torch.zeros(b, 2, 3, dtype=image.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=False)


def misregister(
    image: torch.Tensor, max_shift: float, generator: torch.Generator | None = None,  # B x C x H x W
    mode: str = "bilinear",
) -> torch.Tensor:  # B x C x H x W
    """`image` moved by up to `max_shift` pixels per axis (uniform per image): real rigs, whose depth and colour
    never line up exactly. Training moves the RGB against its depth (the ground truth is then misregistered too);
    ``tof`` moves the depth before its capture ('nearest')."""
    offsets = (torch.rand(2, image.shape[0], generator=generator, dtype=image.dtype) * 2 - 1) * max_shift
    return shift_image(image, offsets[0], offsets[1], mode=mode)


def edge_dropouts(
    lr: torch.Tensor,  # B x 1 x h x w
    rate: float,
    edge: float = TofParams.edge,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # B x 1 x h x w
    """`lr` with each pixel on a depth edge (its 3 x 3 neighbourhood spans more than `edge` times its depth) lost
    with probability `rate` and filled with the farthest depth of its 3 x 3 neighbourhood, as ToF pipelines fill
    the pixels that return no signal."""
    farthest = F.max_pool2d(lr, 3, 1, 1)
    on_edge = farthest + F.max_pool2d(-lr, 3, 1, 1) > edge * lr.abs().clamp_min(1e-12)  # local max - local min
    hole = on_edge & (torch.rand(lr.shape, generator=generator, dtype=lr.dtype) < rate)
    return torch.where(hole, farthest, lr)


def tof_downsample(
    depth: torch.Tensor,  # B x 1 x H x W, valid everywhere
    size: tuple[int, int],
    params: TofParams,
    mm: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # B x 1 x h x w
    """A simulated time-of-flight capture of `depth` at `size`; `mm` is one millimetre in depth's units
    (0: no quantisation)."""
    shifted = misregister(depth, params.shift, generator, mode="nearest")
    lr = F.adaptive_avg_pool2d(shifted, size)  # each pixel integrates its footprint: mixed pixels at edges
    lr = lr * (1 + params.noise * torch.randn(lr.shape, generator=generator, dtype=lr.dtype))
    lr = edge_dropouts(lr, params.dropout, params.edge, generator)
    if mm > 0 and params.quantum_mm > 0:
        step = mm * params.quantum_mm
        lr = torch.round(lr / step) * step
    return lr


def downsample(
    depth: torch.Tensor,  # B x 1 x H x W (or 1 x H x W)
    scale: float,
    protocol: str,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    units: str = "",
    tof: TofParams | None = None,
) -> torch.Tensor:  # B x 1 x round(H/s) x round(W/s) (or 1 x h x w)
    """The synthetic low-resolution input of `depth` under a protocol (not 'real') at ratio `scale`."""
    if depth.dim() == 3:
        return downsample(depth[None], scale, protocol, noise, generator, units, tof)[0]
    h, w = depth.shape[-2:]
    size = lr_size(h, w, scale)
    if protocol == "point":
        rows = ((torch.arange(size[0]) + 0.5) * h / size[0]).long().clamp_max(h - 1)
        cols = ((torch.arange(size[1]) + 0.5) * w / size[1]).long().clamp_max(w - 1)
        return depth[..., rows[:, None], cols[None, :]].contiguous()
    if protocol == "tof":
        return tof_downsample(depth, size, tof or TofParams(), MM_IN_UNITS.get(units, 0.0), generator)
    if protocol not in ("bicubic", "noisy"):
        raise DepthSRError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    lr = bicubic_resize(depth, size)
    if protocol == "noisy":
        lo, hi = valid_range(depth, valid_mask(depth))
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        lr = lr + noise * span * torch.randn(lr.shape, generator=generator, dtype=lr.dtype)
    return lr


def ratio_name(scale: float) -> str:
    """'x4' for 4, 'x7.5' for 7.5: how tables and file names spell a ratio."""
    return f"x{float(scale):g}"


def degrade(
    sample: Sample, scale: float, protocol: str = "bicubic", noise: float = 0.01,
    generator: torch.Generator | None = None, tof: TofParams | None = None,
) -> Sample:
    """The sample (cropped to a multiple of an integer `scale`) with its low-resolution input `lr` (1 x h x w);
    `tof`: the `tof` protocol's parameters (None: its defaults)."""
    name = sample.get("name", "sample")
    if protocol == "real":
        if "lr" not in sample:
            raise DepthSRError(f"{name}: protocol 'real' needs a measured lr_{ratio_name(scale)} (or lr) input")
        lr = sample["lr"]
        h, w = lr.shape[-2:]
        gt_h, gt_w = sample["depth"].shape[-2:]
        out = crop_to_multiple(sample, scale)
        out_h, out_w = out["depth"].shape[-2:]
        if is_integer_ratio(scale) and (out_h, out_w) != (h * scale, w * scale):
            raise DepthSRError(f"{name}: lr_{ratio_name(scale)} is {h} x {w} but the ground truth is {gt_h} x {gt_w} "
                               f"(expected {int(h * scale)} x {int(w * scale)})")
    else:
        out = crop_to_multiple(sample, scale)
        out["lr"] = downsample(out["depth"], scale, protocol, noise, generator, sample.get("units", ""), tof)
    out["scale"] = scale
    return out  # type: ignore[return-value]


MIN_LR_SIDE = 2  # smallest side (pixels) of a low-resolution input made by a protocol


def evaluation_sample(sample: Sample, scale: float | None, protocol: str, noise: float, index: int,
                      tof: TofParams | None = None) -> Sample:
    """Evaluation image `index` of a set degraded by `protocol` at `scale`, its noise drawn from a generator
    seeded by the index, so every table (compare, test, validation) sees the same inputs. `scale` None: protocol
    'real' with the pair's measured `lr` at its own ratio. `tof`: the `tof` protocol's parameters (None: defaults)."""
    name = sample.get("name", "sample")
    if scale is None:
        if "lr" not in sample:
            raise DepthSRError(f"{name}: protocol 'real' needs a measured lr input")
        scale = sample["depth"].shape[-1] / sample["lr"].shape[-1]
    elif protocol != "real":
        height, width = sample["depth"].shape[-2:]
        if min(height, width) / scale < MIN_LR_SIDE:
            raise DepthSRError(f"{name}: {height} x {width} is too small for x{scale:g} (the low-resolution input "
                               f"would be under {MIN_LR_SIDE} pixels on a side)")
    return degrade(sample, scale, protocol, noise, torch.Generator().manual_seed(index), tof)
