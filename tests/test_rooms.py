"""Procedural rooms: the perspective geometry against closed forms, determinism, and training on them."""
import numpy as np
import pytest
import torch

from depthsr.data.datamodule import DSRDataModule
from depthsr.data.rooms import _rotation, camera_rays, ray_box, room_scene
from depthsr.errors import DepthSRError


def test_a_floor_seen_level_is_at_its_closed_form_depth():
    """A camera `height` above the floor, looking level with focal f: the floor under image row v (centre at
    H / 2) lies at depth height * f / (v + 0.5 - H / 2)."""
    h, w, focal, height = 40, 48, 30.0, 1.3
    rays = camera_rays(h, w, focal, np.eye(3))
    lo, hi = np.array([-50.0, -height, -1.0]), np.array([50.0, 2.0, 50.0])
    _, _, t_out, axis = ray_box(rays, lo, hi)
    v = np.arange(h)[:, None] + 0.5 - h / 2
    floor = (axis == 1) & (rays[..., 1] < 0)
    assert floor[h // 2 + 1 :, w // 2].all()  # the lower half's middle column sees the floor
    np.testing.assert_allclose(t_out[floor], np.broadcast_to(height * focal / v, (h, w))[floor], rtol=1e-12)


def test_a_plane_in_perspective_has_inverse_depth_affine_in_the_pixel():
    """Seen from any camera, the points of one wall have 1 / depth = a u + b v + c exactly."""
    h, w = 48, 64
    rays = camera_rays(h, w, 50.0, _rotation(0.4, -0.3, 0.05))
    lo, hi = np.array([-2.0, -1.5, -1.0]), np.array([3.0, 1.2, 4.0])
    _, _, t_out, axis = ray_box(rays, lo, hi)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    for face in range(3):
        for side in (rays[..., face] < 0, rays[..., face] > 0):
            mask = (axis == face) & side
            if mask.sum() < 10:
                continue
            design = np.stack([u[mask], v[mask], np.ones(mask.sum())], 1)
            coef, *_ = np.linalg.lstsq(design, 1 / t_out[mask], rcond=None)
            np.testing.assert_allclose(design @ coef, 1 / t_out[mask], rtol=1e-9)


def test_ray_box_enters_and_leaves_on_the_box_surface():
    """The entry and exit points lie on the box's faces (on the named axis), and every ray that misses passes
    the box by: none of its points at 1000 steps along the ray lies inside."""
    rng = np.random.default_rng(0)
    rays = rng.normal(size=(30, 40, 3))
    lo, hi = np.array([0.5, -1.0, 1.0]), np.array([2.0, 1.0, 3.0])
    t_in, face, t_out, exit_face = ray_box(rays, lo, hi)
    hit = np.isfinite(t_in)
    assert 0 < hit.sum() < hit.size
    for t, axis in ((t_in, face), (t_out, exit_face)):
        points = rays[hit] * t[hit][:, None]
        assert np.all((points >= lo - 1e-9) & (points <= hi + 1e-9))
        on_face = np.take_along_axis(points, axis[hit][:, None], 1)[:, 0]
        bounds = np.stack([lo[axis[hit]], hi[axis[hit]]], 1)
        assert np.abs(bounds - on_face[:, None]).min(1).max() < 1e-9
    steps = rays[~hit][:, None, :] * np.linspace(0, 10, 1000)[None, :, None]
    assert not np.any(np.all((steps > lo) & (steps < hi), -1))


def test_rooms_are_deterministic_positive_and_photo_textured():
    a, b = room_scene(3, (64, 80)), room_scene(3, (64, 80))
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["depth"], b["depth"])
    assert a["rgb"].shape == (3, 64, 80) and a["depth"].shape == (1, 64, 80) and a["valid"].all()
    assert torch.isfinite(a["depth"]).all() and float(a["depth"].min()) > 0
    assert 0 <= float(a["rgb"].min()) and float(a["rgb"].max()) <= 1
    assert not torch.equal(a["depth"], room_scene(4, (64, 80))["depth"])


def test_a_data_module_of_rooms_alone_gives_training_batches():
    dm = DSRDataModule(rooms=6, crop=32, scales=[4], num_workers=0, batch_size=2)
    dm.check("fit")
    dm.setup("fit")
    assert len(dm.train_set) == 6
    batch = next(iter(dm.train_dataloader()))
    assert batch["depth"].shape == (2, 1, 32, 32) and batch["lr"].shape == (2, 1, 8, 8)
    assert batch["rgb"].shape == (2, 3, 32, 32) and torch.isfinite(batch["lr"]).all()


def test_rooms_drawn_larger_than_the_crop_are_cropped():
    """`room_size` 48 with crop 32: each training crop is a (maybe mirrored) 32 x 32 window of the 48 x 48 room."""
    dm = DSRDataModule(rooms=2, room_size=48, crop=32, scales=[4], num_workers=0, batch_size=2)
    dm.setup("fit")
    crop = dm.train_set[0]["depth"]
    assert crop.shape == (1, 32, 32)
    room = room_scene(0, (48, 48))["depth"]
    mirrored = [crop, crop.flip(-1), crop.flip(-2), crop.flip(-1, -2)]
    assert any(torch.equal(m, room[:, y : y + 32, x : x + 32]) for y in range(17) for x in range(17) for m in mirrored)


def test_bad_room_settings_are_one_line_errors():
    with pytest.raises(DepthSRError, match=r"--data.rooms N"):
        DSRDataModule()
    with pytest.raises(DepthSRError, match=r"room_size 24 is smaller than the training crop 32"):
        DSRDataModule(rooms=2, room_size=24, crop=32, scales=[4])
