"""One interface for every upsampling method (network or classical baseline):

    method(lr, rgb, depth_range=None) -> depth      # B x 1 x h x w, B x 3 x H x W -> B x 1 x H x W

Callers see depth in real units. Inside, invalid (zero / non-finite) LR pixels are filled from their
neighbours, the LR is min-max normalised per image (``norm: lr``, the default; or with a given
``depth_range``, e.g. the ground truth's for ``norm: gt``), the method's ``predict`` runs on 0..1 depth,
and the result is mapped back. Large outputs are processed in overlapping tiles blended with linear
ramps, so memory is bounded and no seams show.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from depthsr.data.sample import valid_mask, valid_range
from depthsr.errors import DepthSRError


def fill_invalid(lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # B x 1 x h x w, and its valid mask
    """Fill invalid pixels by repeatedly averaging valid 3x3 neighbours (all-invalid images become 0)."""
    valid = valid_mask(lr)
    if bool(valid.all()):
        return lr, valid
    filled = torch.where(valid, lr, torch.zeros_like(lr))
    known = valid.to(lr.dtype)
    ones = torch.ones(1, 1, 3, 3, dtype=lr.dtype, device=lr.device)
    for _ in range(max(lr.shape[-2:])):
        if bool(known.all()):
            break
        total = F.conv2d(filled * known, ones, padding=1)
        count = F.conv2d(known, ones, padding=1)
        grow = (known == 0) & (count > 0)
        filled = torch.where(grow, total / count.clamp_min(1), filled)
        known = torch.where(grow, torch.ones_like(known), known)
    return filled, valid


def normalise(
    lr: torch.Tensor, depth_range: tuple[torch.Tensor, torch.Tensor] | None = None  # B x 1 x h x w
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # lr in 0..1, lo (B x 1 x 1 x 1), span (B x 1 x 1 x 1)
    """Fill invalid pixels and min-max normalise per image by the LR's range (or `depth_range`)."""
    lr, valid = fill_invalid(lr)
    lo, hi = valid_range(lr, valid) if depth_range is None else depth_range
    span = (hi - lo).clamp_min(1e-6)
    return (lr - lo) / span, lo, span


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool, device) -> torch.Tensor:  # n
    """Blending weights of one tile along one axis: at an inner edge, zero over the first quarter of the
    overlap (where the tile's own border effects live), then a linear ramp up to one."""
    w = torch.ones(n, device=device)
    halo = overlap // 4
    ramp = torch.linspace(0, 1, overlap - 2 * halo + 2, device=device)[1:-1]
    if overlap and not at_start:
        w[:halo] = 0
        w[halo : overlap - halo] = ramp
    if overlap and not at_end:
        w[n - halo :] = 0
        w[n - overlap + halo : n - halo] = ramp.flip(0)
    return w


class Method(ABC):
    """An upsampling method. Subclasses implement `predict` on depth normalised to 0..1."""

    name: str = "method"
    scales: tuple[int, ...] | None = None  # scales it was trained for; None: any
    tile: int = 1024  # output tile side (pixels) beyond which the output is tiled
    overlap: int = 128  # tile overlap (pixels); its outer quarters are left to the neighbouring tile

    @abstractmethod
    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """B x 1 x h x w depth in 0..1, B x 3 x H x W rgb -> B x 1 x H x W depth in 0..1."""

    @torch.no_grad()
    def __call__(
        self, lr: torch.Tensor, rgb: torch.Tensor, depth_range: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:  # B x 1 x H x W
        if lr.dim() == 3:
            return self(lr[None], rgb[None], depth_range)[0]
        scale = check_scale(lr, rgb)
        lr_norm, lo, span = normalise(lr, depth_range)
        return self._tiled(lr_norm, rgb, scale) * span + lo

    def _tiled(self, lr: torch.Tensor, rgb: torch.Tensor, scale: int) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        if height <= self.tile and width <= self.tile:
            return self.predict(lr, rgb)
        step_unit = scale * 4
        tile = max(step_unit, self.tile // step_unit * step_unit)
        overlap = max(step_unit, self.overlap // step_unit * step_unit)
        out = torch.zeros(rgb.shape[0], 1, height, width, dtype=lr.dtype, device=lr.device)
        weight = torch.zeros(1, 1, height, width, dtype=lr.dtype, device=lr.device)
        for y0, y1 in _spans(height, tile, overlap, step_unit):
            for x0, x1 in _spans(width, tile, overlap, step_unit):
                pred = self.predict(lr[..., y0 // scale : y1 // scale, x0 // scale : x1 // scale],
                                    rgb[..., y0:y1, x0:x1])
                wy = _ramp(y1 - y0, overlap, y0 == 0, y1 == height, lr.device)
                wx = _ramp(x1 - x0, overlap, x0 == 0, x1 == width, lr.device)
                w = (wy[:, None] * wx[None]).to(lr.dtype)
                out[..., y0:y1, x0:x1] += pred * w
                weight[..., y0:y1, x0:x1] += w
        return out / weight


def _spans(size: int, tile: int, overlap: int, unit: int) -> list[tuple[int, int]]:
    """Tiles [start, end) covering 0..size, starts on multiples of `unit`; the last one ends at `size`
    (and so may be up to `unit` pixels longer than `tile`)."""
    if size <= tile:
        return [(0, size)]
    starts = list(range(0, size - tile, tile - overlap))
    last = (size - tile) // unit * unit
    if last > starts[-1]:
        starts.append(last)
    return [(s, min(s + tile, size)) for s in starts[:-1]] + [(starts[-1], size)]


def check_scale(lr: torch.Tensor, rgb: torch.Tensor) -> int:
    """The integer scale between LR depth and RGB; one clear error when there is none."""
    (h, w), (big_h, big_w) = lr.shape[-2:], rgb.shape[-2:]
    if h == 0 or w == 0 or big_h % h or big_w % w or big_h // h != big_w // w:
        raise DepthSRError(
            f"depth is {h} x {w} and rgb is {big_h} x {big_w}: not an integer scale (rgb must be s*h x s*w)"
        )
    return big_h // h
