"""The sample every reader produces and every method and metric consumes, and the depth units."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch


class Sample(TypedDict, total=False):
    rgb: torch.Tensor  # 3 x H x W, float 0..1
    depth: torch.Tensor  # 1 x H x W, float, in the data set's units
    valid: torch.Tensor  # 1 x H x W, bool
    lr: torch.Tensor  # 1 x h x w, float, added by a degradation protocol
    units: str
    name: str
    scale: int


@dataclass(frozen=True)
class Units:
    """How a data set's depth is reported: metric values are multiplied by `factor` into `report`."""

    name: str
    report: str
    factor: float


UNITS = {
    "m": Units("m", "cm", 100.0),
    "mm": Units("mm", "cm", 0.1),
    "disparity8": Units("disparity8", "levels", 1.0),
    "normalized8": Units("normalized8", "levels", 1.0),
    "disparity": Units("disparity", "px", 1.0),
    "arbitrary": Units("arbitrary", "units", 1.0),
}


def units(name: str) -> Units:
    """The Units called `name` (unknown names are reported as they are)."""
    return UNITS.get(name, Units(name, name, 1.0))


def valid_mask(depth: torch.Tensor) -> torch.Tensor:  # same shape, bool
    """Valid depth: finite and non-zero."""
    return torch.isfinite(depth) & (depth != 0)


def valid_range(
    depth: torch.Tensor, valid: torch.Tensor  # B x 1 x H x W each
) -> tuple[torch.Tensor, torch.Tensor]:  # B x 1 x 1 x 1 each
    """Per-image min and max over valid pixels ((0, 1) for an image with none)."""
    big = torch.finfo(depth.dtype).max
    lo = torch.where(valid, depth, torch.full_like(depth, big)).amin((1, 2, 3), keepdim=True)
    hi = torch.where(valid, depth, torch.full_like(depth, -big)).amax((1, 2, 3), keepdim=True)
    none = ~valid.flatten(1).any(1).view(-1, 1, 1, 1)
    return torch.where(none, torch.zeros_like(lo), lo), torch.where(none, torch.ones_like(hi), hi)
