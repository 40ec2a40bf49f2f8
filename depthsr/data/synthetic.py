"""Procedural RGB-D scenes: slanted planar objects at several depths over a background, each with its own
texture, plus painted decals that change the colour but not the depth (texture edges that are no depth
edges, the trap of guided upsampling). Deterministic per seed; depth in metres."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from depthsr.data.sample import Sample, valid_mask


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:  # H x W x 3 in 0..1
    base, other = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(5)
    if kind == 0:  # flat
        t = np.zeros((h, w), np.float32)
    elif kind == 1:  # stripes
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif kind == 2:  # checker
        period = rng.integers(4, 32)
        t = ((xx // period + yy // period) % 2).astype(np.float32)
    elif kind == 3:  # smooth noise
        small = rng.random((max(2, h // 16), max(2, w // 16))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:  # gradient
        angle = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return (base + (other - base) * t[..., None]).astype(np.float32)


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:  # H x W bool
    mask = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    size = rng.uniform(0.08, 0.4) * min(h, w)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, 180)
        box = cv2.boxPoints(((cx, cy), (size * rng.uniform(0.5, 2), size * rng.uniform(0.5, 2)), angle))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    elif kind == 1:
        axes = (int(size * rng.uniform(0.4, 1)), int(size * rng.uniform(0.4, 1)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        n = rng.integers(3, 8)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def _plane(rng: np.random.Generator, h: int, w: int, base: float) -> np.ndarray:  # H x W
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    gx, gy = rng.uniform(-0.3, 0.3, 2) * base
    return (base + gx * (xx - 0.5) + gy * (yy - 0.5)).astype(np.float32)


def synthetic_scene(seed: int, size: tuple[int, int] = (256, 256)) -> Sample:
    """One procedural scene of `size` (H, W)."""
    rng = np.random.default_rng(seed)
    h, w = size
    far = rng.uniform(4.0, 9.0)
    depth = _plane(rng, h, w, far)
    rgb = _texture(rng, h, w)
    for k in range(int(rng.integers(3, 9))):
        mask = _shape_mask(rng, h, w)
        near = far * rng.uniform(0.15, 0.9)
        depth[mask] = np.minimum(depth[mask], _plane(rng, h, w, near)[mask])
        rgb[mask] = _texture(rng, h, w)[mask]
    for _ in range(int(rng.integers(1, 6))):  # decals: colour changes, depth does not
        mask = _shape_mask(rng, h, w)
        rgb[mask] = _texture(rng, h, w)[mask]
    shade = 1.0 - 0.25 * (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)
    rgb = (rgb * shade[..., None] + rng.normal(0, 0.01, rgb.shape)).clip(0, 1).astype(np.float32)
    depth_t = torch.from_numpy(depth)[None]
    return {"rgb": torch.from_numpy(rgb.transpose(2, 0, 1).copy()), "depth": depth_t, "valid": valid_mask(depth_t),
            "units": "m", "name": f"synthetic_{seed:06d}"}


class SyntheticDataset(Dataset):
    """`length` procedural scenes, scene i drawn from seed `seed + i`."""

    def __init__(self, length: int = 1000, size: tuple[int, int] = (256, 256), seed: int = 0) -> None:
        self.length, self.size, self.seed = length, tuple(size), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return synthetic_scene(self.seed + index, self.size)
