"""Overlapping tiles blended with linear ramps: how `Method` bounds the memory of large outputs.

Tile edges are chosen in LR pixels and mapped to the output by the real ratio (on the exact LR/output pixel
grid where the ratio has a small one); over each overlap the outer quarter is left to the neighbouring tile
(where a tile's own border effects live), the rest is a linear ramp.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def _ramp(n: int, before: int, after: int, device) -> torch.Tensor:  # n
    """Blending weights of one tile along one axis, which overlaps the previous tile by `before` pixels and
    the next by `after`: over each overlap, zero on its outer quarter (where the tile's own border effects
    live), then a linear ramp up to one."""
    w = torch.ones(n, device=device)
    for overlap, at_end in ((before, False), (after, True)):
        if overlap <= 0:
            continue
        halo = overlap // 4
        ramp = torch.linspace(0, 1, overlap - 2 * halo + 2, device=device)[1:-1]
        part = torch.cat([torch.zeros(halo, device=device), ramp])
        if at_end:
            w[n - overlap + halo :] = torch.minimum(w[n - overlap + halo :], part.flip(0))
        else:
            w[: overlap - halo] = torch.minimum(w[: overlap - halo], part)
    return w


def _spans(size: int, tile: int, overlap: int, unit: int) -> list[tuple[int, int]]:
    """Evenly spaced tiles [start, end) covering 0..size, overlapping by about `overlap`, starting on multiples
    of `unit`; the last ends at `size` (and so may be up to `unit` - 1 longer than `tile`)."""
    last = (size - tile) // unit * unit
    if size <= tile or last == 0:
        return [(0, size)]
    count = math.ceil((size - overlap) / (tile - overlap))
    starts = sorted({round(i * last / (count - 1) / unit) * unit for i in range(count)})
    return [(s, s + tile) for s in starts[:-1]] + [(starts[-1], size)]


def _axis_tiles(lr_size: int, size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis as (LR start, LR end, output start, output end). Tile boundaries are chosen in LR
    pixels and mapped to the output by the real ratio size / lr_size. Where a small grid exists on which both
    are whole numbers (and output positions multiples of 4, the network's own grid) the tiles sit on it, so a
    tile sees exactly the pixels it would see in the whole image; otherwise output boundaries are rounded
    (a tile's RGB is then off its depth by under half an output pixel)."""
    ratio = size / lr_size
    step = size // math.gcd(size, lr_size)  # output pixels of the smallest exact LR/output grid
    unit = 1
    for unit_out in (step * 4 // math.gcd(step, 4), step):
        if 8 * unit_out <= tile:
            unit = unit_out * lr_size // size
            break
    overlap_lr = max(2 * unit, int(min(overlap, tile // 4) / ratio) // unit * unit)
    tile_lr = max(4 * overlap_lr, int(tile / ratio) // unit * unit)

    def out(a: int) -> int:
        return (2 * a * size + lr_size) // (2 * lr_size)  # round(a * ratio), exact in integers

    return [(a0, a1, out(a0), out(a1)) for a0, a1 in _spans(lr_size, tile_lr, overlap_lr, unit)]


def tiled(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lr: torch.Tensor, rgb: torch.Tensor,
          tile: int, overlap: int) -> torch.Tensor:  # B x 1 x h x w, B x 3 x H x W -> B x 1 x H x W
    """`predict(lr, rgb)` over overlapping tiles of about `tile` output pixels, blended."""
    height, width = rgb.shape[-2:]
    rows = _axis_tiles(lr.shape[-2], height, tile, overlap)
    cols = _axis_tiles(lr.shape[-1], width, tile, overlap)
    out = torch.zeros(rgb.shape[0], 1, height, width, dtype=lr.dtype, device=lr.device)
    weight = torch.zeros(1, 1, height, width, dtype=lr.dtype, device=lr.device)
    for i, (a0, a1, y0, y1) in enumerate(rows):
        wy = _ramp(y1 - y0, rows[i - 1][3] - y0 if i else 0, y1 - rows[i + 1][2] if i + 1 < len(rows) else 0,
                   lr.device)
        for j, (b0, b1, x0, x1) in enumerate(cols):
            wx = _ramp(x1 - x0, cols[j - 1][3] - x0 if j else 0,
                       x1 - cols[j + 1][2] if j + 1 < len(cols) else 0, lr.device)
            pred = predict(lr[..., a0:a1, b0:b1], rgb[..., y0:y1, x0:x1]).to(lr.device)
            w = (wy[:, None] * wx[None]).to(lr.dtype)
            out[..., y0:y1, x0:x1] += pred * w
            weight[..., y0:y1, x0:x1] += w
    return out / weight
