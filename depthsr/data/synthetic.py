"""Procedural RGB-D scenes: a room-like background (one or two slanted planes meeting in a crease), objects at
several depths (flat, slanted, curved bumps, folds, thin bars and poles) occluding each other, each textured with
a crop of a real photograph or a procedural pattern, plus decals that change the colour but not the depth
(texture edges that are no depth edges, the trap of guided upsampling), lit by a random light so that folds,
bumps and creases shade the colour as real surfaces do (shading edges that are no depth edges either).
Deterministic per seed; depth in metres.

The photographs are the ones scikit-image ships inside its package (no download); without scikit-image the
textures are procedural only.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from depthsr.data.io import read_rgb8
from depthsr.data.packaged import bundled_data_dir
from depthsr.data.sample import Sample, valid_mask

PHOTOS = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "color.png",
          "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "page.png", "retina.jpg",
          "rocket.jpg", "text.png", "clock_motion.png")


@lru_cache(maxsize=1)
def photo_bank() -> tuple[np.ndarray, ...]:  # each h x w x 3 float32 in 0..1
    """The photographs bundled with scikit-image (empty when it is not installed)."""
    root = bundled_data_dir()
    if root is None:
        return ()
    photos = []
    for name in PHOTOS:
        if (root / name).is_file():
            photos.append(read_rgb8(root / name).astype(np.float32) / 255.0)
    return tuple(photos)


def _photo_texture(rng: np.random.Generator, photo: np.ndarray, h: int, w: int) -> np.ndarray:  # H x W x 3
    zoom = rng.uniform(0.5, 2.0)
    ph, pw = photo.shape[:2]
    ch, cw = min(ph, max(8, int(h / zoom))), min(pw, max(8, int(w / zoom)))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = cv2.resize(photo[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain, tint = rng.uniform(0.6, 1.3), rng.uniform(0.8, 1.2, 3)
    return np.ascontiguousarray((crop * gain * tint).clip(0, 1), dtype=np.float32)


def _pattern_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:  # H x W x 3 in 0..1
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


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:  # H x W x 3 in 0..1
    photos = photo_bank()
    if photos and rng.random() < 0.7:
        return _photo_texture(rng, photos[rng.integers(len(photos))], h, w)
    return _pattern_texture(rng, h, w)


def shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:  # H x W bool
    mask = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    size = rng.uniform(0.08, 0.4) * min(h, w)
    kind = rng.integers(3) if rng.random() < 0.8 else 3
    if kind == 0:  # box
        angle = rng.uniform(0, 180)
        box = cv2.boxPoints(((cx, cy), (size * rng.uniform(0.5, 2), size * rng.uniform(0.5, 2)), angle))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    elif kind == 1:  # ellipse
        axes = (int(size * rng.uniform(0.4, 1)), int(size * rng.uniform(0.4, 1)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif kind == 2:  # polygon
        n = rng.integers(3, 8)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    else:  # thin bar or pole, 1 to 6 pixels wide, often crossing the image
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.5, 1.5) * max(h, w)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1, int(rng.integers(1, 7)))
    return mask.astype(bool)


def _surface(rng: np.random.Generator, h: int, w: int, base: float, curved: bool) -> np.ndarray:  # H x W
    """A slanted plane at `base`, optionally curved: a smooth bump or dent, or folds like a curtain's."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    gx, gy = rng.uniform(-0.4, 0.4, 2) * base
    depth = base + gx * (xx - 0.5) + gy * (yy - 0.5)
    if curved and rng.random() < 0.6:
        cx, cy, r = rng.uniform(0, w / max(h, w)), rng.uniform(0, h / max(h, w)), rng.uniform(0.1, 0.5)
        bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        depth = depth + rng.uniform(-0.25, 0.25) * base * bump
    elif curved:  # folds: smooth ridges whose shading draws strong colour edges where depth has none
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.04, 0.25)
        phase = xx * np.cos(angle) + yy * np.sin(angle)
        wobble = 0.3 * np.sin(2 * np.pi * phase / (period * rng.uniform(2, 5)) + rng.uniform(0, 2 * np.pi))
        depth = depth + rng.uniform(0.01, 0.04) * base * np.sin(2 * np.pi * phase / period + wobble)
    return np.maximum(depth, 0.05 * base).astype(np.float32)


def _lambert(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:  # H x W -> H x W in 0..1
    """Diffuse shading of the depth map's surfaces under a random light (focal length ~ the image width):
    curved surfaces and creases change colour smoothly or sharply while the depth stays continuous."""
    focal = depth.shape[1] * rng.uniform(0.8, 1.2)
    dzdy, dzdx = np.gradient(depth)
    nx, ny = -dzdx * focal / depth, -dzdy * focal / depth
    norm = np.sqrt(nx * nx + ny * ny + 1)
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7), 1.0])
    light /= np.linalg.norm(light)
    diffuse = np.clip((nx * light[0] + ny * light[1] + light[2]) / norm, 0, 1)
    ambient = rng.uniform(0.2, 0.6)
    return (ambient + (1 - ambient) * diffuse).astype(np.float32)


def synthetic_scene(seed: int, size: tuple[int, int] = (256, 256)) -> Sample:
    """One procedural scene of `size` (H, W)."""
    rng = np.random.default_rng(seed)
    h, w = size
    far = rng.uniform(2.0, 9.0)
    depth = _surface(rng, h, w, far, curved=rng.random() < 0.5)
    if rng.random() < 0.6:  # a second wall or the floor, meeting the first in a crease
        depth = np.minimum(depth, _surface(rng, h, w, far * rng.uniform(0.7, 1.2), curved=False))
    rgb = texture(rng, h, w)
    for _ in range(int(rng.integers(3, 10))):
        mask = shape_mask(rng, h, w)
        near = far * rng.uniform(0.15, 0.9)
        depth[mask] = np.minimum(depth[mask], _surface(rng, h, w, near, curved=rng.random() < 0.4)[mask])
        rgb[mask] = texture(rng, h, w)[mask]
    for _ in range(int(rng.integers(1, 6))):  # decals: colour changes, depth does not
        mask = shape_mask(rng, h, w)
        rgb[mask] = texture(rng, h, w)[mask]
    return photograph(rng, rgb, depth, f"synthetic_{seed:06d}")


def photograph(rng: np.random.Generator, albedo: np.ndarray, depth: np.ndarray, name: str) -> Sample:
    """The sample a camera records of a scene: `albedo` (H x W x 3 in 0..1) darkened with distance and, most
    of the time, shaded by a random light, plus sensor noise and a slight blur; `depth` (H x W, metres)."""
    shade = 1.0 - rng.uniform(0.0, 0.35) * (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)
    if rng.random() < 0.7:
        shade = shade * _lambert(rng, depth) / rng.uniform(0.6, 0.9)
    rgb = albedo * shade[..., None] + rng.normal(0, rng.uniform(0.002, 0.02), albedo.shape)
    rgb = cv2.GaussianBlur(rgb.clip(0, 1).astype(np.float32), (0, 0), rng.uniform(0.3, 0.8))
    depth_t = torch.from_numpy(depth)[None]
    return {"rgb": torch.from_numpy(rgb.transpose(2, 0, 1).copy()), "depth": depth_t, "valid": valid_mask(depth_t),
            "units": "m", "name": name}


class SyntheticDataset(Dataset):
    """`length` procedural scenes, scene i drawn from seed `seed + i` (by `draw`; subclasses draw other scenes)."""

    draw = staticmethod(synthetic_scene)

    def __init__(self, length: int = 1000, size: tuple[int, int] = (256, 256), seed: int = 0) -> None:
        self.length, self.size, self.seed = length, tuple(size), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return self.draw(self.seed + index, self.size)


HELD_OUT_SEED = 10_000_000  # far beyond any training seed: held-out scenes never overlap the training ones


def held_out_scenes(count: int = 8, size: tuple[int, int] = (256, 256)) -> SyntheticDataset:
    """The procedural scenes for validation and held-out measurements (never trained on)."""
    return SyntheticDataset(count, size, seed=HELD_OUT_SEED)
