"""Procedural rooms rendered in perspective: a pinhole camera inside a box-shaped room (floor, ceiling, walls)
furnished with boxes, tables on thin legs and shelves, each surface textured with a photograph or a pattern.

What the cut-out scenes of `depthsr.data.synthetic` lack and indoor depth (NYU v2, RGB-D-D) is made of: planes
seen in perspective, whose depth is the inverse of a linear function of the pixel (a floor receding to the horizon
is far from linear in the image), creases where two planes meet at an angle, and objects standing on the floor
in front of walls. Deterministic per seed; depth in metres along the optical axis.
"""
from __future__ import annotations

import numpy as np

from depthsr.data.sample import Sample
from depthsr.data.synthetic import SyntheticDataset, photograph, shape_mask, texture


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:  # 3 x 3, camera -> world
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def camera_rays(h: int, w: int, focal: float, rotation: np.ndarray) -> np.ndarray:  # H x W x 3
    """World directions of the pixel centres' rays, scaled so that a ray's parameter t is the depth along the
    optical axis (camera z = 1; image y down, world y up)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    cam = np.stack([(u + 0.5 - w / 2) / focal, -(v + 0.5 - h / 2) / focal, np.ones_like(u)], -1)
    return cam @ rotation.T


def ray_box(rays: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rays from the origin against the axis-aligned box [lo, hi], each H x W: t where each ray enters it (inf where
    it misses it or the box is behind), the axis (0, 1, 2) of the face it enters by, t where it leaves it and the
    axis of the face it leaves by."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = lo / rays, hi / rays  # H x W x 3 each
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    near = np.where(np.isnan(near), -np.inf, near)  # a ray parallel to a slab and inside it
    far = np.where(np.isnan(far), np.inf, far)
    t_in, t_out = near.max(-1), far.min(-1)
    hit = (t_in < t_out) & (t_in > 0)
    return np.where(hit, t_in, np.inf), near.argmax(-1), t_out, far.argmin(-1)


def _furniture(rng: np.random.Generator, room_lo: np.ndarray, room_hi: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Boxes on the floor, tables (a top on four thin legs) and shelves against a wall, as (lo, hi) pairs."""
    floor = room_lo[1]
    boxes = []
    for _ in range(int(rng.integers(1, 7))):
        kind = rng.integers(3)
        cx = rng.uniform(room_lo[0] + 0.3, room_hi[0] - 0.3)
        cz = rng.uniform(max(room_lo[2], 0.8), room_hi[2] - 0.2)
        if kind == 0:  # a box, a bed, a cabinet
            half = rng.uniform(0.15, 0.8, 3) * np.array([1.0, 0.0, 1.0])
            top = floor + rng.uniform(0.2, 1.8)
            boxes.append((np.array([cx - half[0], floor, cz - half[2]]), np.array([cx + half[0], top, cz + half[2]])))
        elif kind == 1:  # a table: its top on four legs a few centimetres thick
            hx, hz, top = rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.7), floor + rng.uniform(0.45, 1.0)
            slab, leg = rng.uniform(0.02, 0.06), rng.uniform(0.02, 0.06)
            boxes.append((np.array([cx - hx, top - slab, cz - hz]), np.array([cx + hx, top, cz + hz])))
            for sx in (-1, 1):
                for sz in (-1, 1):
                    x, z = cx + sx * (hx - leg), cz + sz * (hz - leg)
                    boxes.append((np.array([x - leg, floor, z - leg]), np.array([x + leg, top - slab, z + leg])))
        else:  # a shelf or a wardrobe against the back wall
            hx, depth, top = rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.6), floor + rng.uniform(0.8, 2.2)
            back = room_hi[2]
            boxes.append((np.array([cx - hx, floor, back - depth]), np.array([cx + hx, top, back])))
    return boxes


def room_scene(seed: int, size: tuple[int, int] = (256, 256)) -> Sample:
    """One procedural room of `size` (H, W), seen from a random camera standing in it."""
    rng = np.random.default_rng(seed)
    h, w = size
    focal = w * rng.uniform(0.6, 1.2)  # NYU v2's Kinect: 0.81 image widths
    height = rng.uniform(0.6, 1.8)  # the camera above the floor
    room_lo = np.array([-rng.uniform(1.0, 4.0), -height, -rng.uniform(0.5, 2.0)])
    room_hi = np.array([rng.uniform(1.0, 4.0), rng.uniform(2.3, 3.2) - height, rng.uniform(2.0, 8.0)])
    rotation = _rotation(rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 0.15), rng.uniform(-0.08, 0.08))
    rays = camera_rays(h, w, focal, rotation)
    *_, depth, axis = ray_box(rays, room_lo, room_hi)  # the room from inside: where each ray leaves it
    sign = np.sign(np.take_along_axis(rays, axis[..., None], -1)[..., 0]).astype(np.int64)
    surface = axis * 2 + (sign > 0)  # which of the six walls: 0..5
    for index, (lo, hi) in enumerate(_furniture(rng, room_lo, room_hi)):
        t, face, *_ = ray_box(rays, lo, hi)
        closer = t < depth
        depth = np.where(closer, t, depth)
        surface = np.where(closer, 6 + index * 3 + face, surface)  # faces of one object differ by axis
    rgb = np.zeros((h, w, 3), np.float32)
    for label in np.unique(surface):
        mask = surface == label
        rgb[mask] = texture(rng, h, w)[mask]
    for _ in range(int(rng.integers(0, 4))):  # pictures, rugs, labels: colour edges that are no depth edges
        mask = shape_mask(rng, h, w)
        rgb[mask] = texture(rng, h, w)[mask]
    return photograph(rng, rgb, depth.astype(np.float32), f"room_{seed:06d}")


class RoomDataset(SyntheticDataset):
    """`length` procedural rooms, room i drawn from seed `seed + i`."""

    draw = staticmethod(room_scene)
