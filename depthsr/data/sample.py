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
