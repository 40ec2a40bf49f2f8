"""Degradations at any ratio, the tof protocol, the training mix, and the generated / packaged training data."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from depthsr.data.datamodule import DegradeCollate, DSRDataModule
from depthsr.data.degrade import (
    TofParams,
    degrade,
    downsample,
    edge_dropouts,
    evaluation_sample,
    lr_size,
    misregister,
    ratio_name,
    shift_image,
    tof_downsample,
)
from depthsr.data.packaged import motorcycle
from depthsr.data.synthetic import photo_bank, synthetic_scene
from depthsr.errors import DepthSRError


@pytest.mark.parametrize("scale,size", [(2.5, (40, 51)), (7.5, (13, 17)), (3, (33, 43)), (16, (6, 8))])
def test_lr_size_is_rounded_hr_over_ratio(scale, size):
    assert lr_size(100, 128, scale) == size


def test_bicubic_protocol_at_a_non_integer_ratio_equals_pil(shared):
    gt = np.load(shared / "crops256" / "crop0" / "depth.npy")
    lr = downsample(torch.from_numpy(gt)[None], 7.5, "bicubic")
    ref = np.asarray(Image.fromarray(gt).resize((34, 34), Image.BICUBIC))
    assert lr.shape == (1, 34, 34)
    np.testing.assert_allclose(lr[0].numpy(), ref, rtol=1e-4, atol=1e-3 * float(np.ptp(gt)))


def test_point_protocol_at_any_ratio_takes_the_pixel_under_each_centre():
    depth = torch.arange(20 * 30, dtype=torch.float32).view(1, 20, 30)
    lr = downsample(depth, 2.5, "point")
    rows, cols = [int((i + 0.5) * 2.5) for i in range(8)], [int((j + 0.5) * 2.5) for j in range(12)]
    assert torch.equal(lr[0], depth[0][rows][:, cols])
    assert torch.equal(downsample(depth, 5, "point")[0], depth[0, 2::5, 2::5])  # integer: the block centres


def test_degrade_keeps_the_whole_image_at_a_non_integer_ratio():
    sample = synthetic_scene(3, (50, 70))
    out = degrade(sample, 2.5, "bicubic")
    assert out["depth"].shape == (1, 50, 70) and out["lr"].shape == (1, 20, 28) and out["scale"] == 2.5
    assert degrade(sample, 4, "bicubic")["depth"].shape == (1, 48, 68)
    assert ratio_name(7.5) == "x7.5" and ratio_name(4) == "x4" and ratio_name(4.0) == "x4"


def _step_scene() -> torch.Tensor:  # 1 x 1 x 64 x 64: a near square (1 m) in front of a far wall (3 m)
    depth = torch.full((1, 1, 64, 64), 3.0, dtype=torch.float64)
    depth[..., 16:48, 16:48] = 1.0
    return depth


def test_tof_without_noise_shift_or_dropout_is_area_integration():
    depth = _step_scene()
    params = TofParams(shift=0.0, noise=0.0, dropout=0.0, quantum_mm=0.0)
    lr = tof_downsample(depth, (16, 16), params)
    torch.testing.assert_close(lr, torch.nn.functional.avg_pool2d(depth, 4))
    lr = tof_downsample(depth, (10, 10), params)  # 64 / 10: pixels straddling the edge mix the two depths
    assert ((lr > 1.0 + 1e-9) & (lr < 3.0 - 1e-9)).any()  # flying pixels


def test_tof_quantises_to_millimetres_and_noise_grows_with_depth():
    gen = torch.Generator().manual_seed(0)
    flat = torch.cat([torch.full((1, 1, 64, 64), 1.0), torch.full((1, 1, 64, 64), 4.0)]).double()
    lr = tof_downsample(flat, (32, 32), TofParams(shift=0, dropout=0, noise=0.01), mm=1e-3, generator=gen)
    torch.testing.assert_close(lr * 1000, torch.round(lr * 1000), rtol=0, atol=1e-9)
    near, far = float(lr[0].std()), float(lr[1].std())
    assert 0.007 < near < 0.013 and 0.03 < far < 0.05  # 1 % of 1 m and of 4 m


def test_tof_fills_dropouts_with_the_farther_neighbour():
    depth = _step_scene()
    params = TofParams(shift=0.0, noise=0.0, dropout=1.0, quantum_mm=0.0)
    clean = tof_downsample(depth, (16, 16), TofParams(shift=0.0, noise=0.0, dropout=0.0, quantum_mm=0.0))
    lr = tof_downsample(depth, (16, 16), params)
    changed = lr != clean
    assert changed.any()
    assert (lr[changed] == 3.0).all()  # every dropped edge pixel took the background's depth


def test_tof_shift_moves_the_depth_against_the_rgb():
    depth = _step_scene()
    params = TofParams(shift=4.0, noise=0.0, dropout=0.0, quantum_mm=0.0)
    lrs = [tof_downsample(depth, (16, 16), params, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    aligned = torch.nn.functional.avg_pool2d(depth, 4)
    assert any(not torch.equal(lr, aligned) for lr in lrs)
    assert all(torch.equal(lrs[0], tof_downsample(depth, (16, 16), params, generator=torch.Generator().manual_seed(0)))
               for _ in range(2))  # seeded: reproducible


def test_misregister_moves_the_rgb_by_whole_and_fractional_pixels():
    rgb = torch.rand(2, 3, 12, 16, dtype=torch.float64)
    dx, dy = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, -1.0], dtype=torch.float64)
    one = shift_image(rgb, dx, dy, mode="bilinear")
    torch.testing.assert_close(one[0, :, :, 1:], rgb[0, :, :, :-1])  # right by one pixel, left column repeated
    torch.testing.assert_close(one[0, :, :, 0], rgb[0, :, :, 0])
    torch.testing.assert_close(one[1, :, :-1], rgb[1, :, 1:])  # up by one pixel
    half = shift_image(rgb, torch.tensor([0.5, 0.5], dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                       mode="bilinear")
    torch.testing.assert_close(half[..., 1:], (rgb[..., 1:] + rgb[..., :-1]) / 2)
    moved = misregister(rgb, 2.0, torch.Generator().manual_seed(0))
    again = misregister(rgb, 2.0, torch.Generator().manual_seed(0))
    assert torch.equal(moved, again) and not torch.equal(moved, rgb)
    torch.testing.assert_close(misregister(rgb, 0.0), rgb)


def test_training_collate_misregisters_the_rgb_only():
    items = [{"rgb": torch.rand(3, 32, 32), "depth": 1 + torch.rand(1, 32, 32), "valid": torch.ones(1, 32, 32,
                                                                                                  dtype=torch.bool),
              "units": "m"} for _ in range(2)]
    random.seed(0)
    batch = DegradeCollate([4], "bicubic", 0.0, misregistered=1.0, max_shift=2.0)(items)
    assert not torch.equal(batch["rgb"], torch.stack([it["rgb"] for it in items]))
    assert torch.equal(batch["depth"], torch.stack([it["depth"] for it in items]))  # depth and lr untouched
    torch.testing.assert_close(batch["lr"], downsample(batch["depth"], 4, "bicubic"), rtol=0, atol=0)
    batch = DegradeCollate([4], "bicubic", 0.0, misregistered=0.0)(items)
    assert torch.equal(batch["rgb"], torch.stack([it["rgb"] for it in items]))


def test_tof_protocol_on_real_tof_depth_keeps_millimetres(shared):
    from depthsr.data.folder import FolderDataset

    sample = FolderDataset(shared / "rgbdd")[0]
    out = degrade(sample, 2.5, "tof", generator=torch.Generator().manual_seed(0))
    lr = out["lr"]
    assert lr.shape == (1, round(384 / 2.5), round(512 / 2.5))
    torch.testing.assert_close(lr, torch.round(lr), rtol=0, atol=0)  # whole millimetres
    bicubic = downsample(out["depth"], 2.5, "bicubic")
    rel = ((lr - bicubic).abs() / bicubic.clamp_min(1)).median()
    assert 0.0005 < float(rel) < 0.02  # about the protocol's 0.5 % noise, not a different image


def test_training_collate_mixes_ratios_and_protocols():
    items = [{"rgb": torch.rand(3, 48, 48), "depth": 1 + torch.rand(1, 48, 48), "valid": torch.ones(1, 48, 48,
                                                                                                  dtype=torch.bool),
              "units": "m"} for _ in range(2)]
    random.seed(0)
    collate = DegradeCollate([4, 8], "bicubic", 0.0, random_ratios=1.0, ratio_range=(2.0, 3.0), tof_share=0.0)
    sizes = {collate(items)["lr"].shape[-1] for _ in range(20)}
    assert sizes <= set(range(16, 25)) and len(sizes) > 2  # 48 / ratio for ratios in [2, 3]
    collate = DegradeCollate([4], "bicubic", 0.0, tof_share=1.0)
    batch = collate(items)
    torch.testing.assert_close(batch["lr"] * 1000, torch.round(batch["lr"] * 1000), rtol=0, atol=1e-3)
    assert float(batch["scale"]) == 4.0


def test_training_collate_mixes_in_point_sampled_batches():
    """`point_share` batches are the `point` protocol's (the centre pixel of each block), the others the benchmark
    protocol's; the shares cannot add up to more than one."""
    items = [{"rgb": torch.rand(3, 48, 48), "depth": 1 + torch.rand(1, 48, 48), "valid": torch.ones(1, 48, 48,
                                                                                                  dtype=torch.bool)}
             for _ in range(2)]
    depth = torch.stack([it["depth"] for it in items])
    point, bicubic = downsample(depth, 4, "point"), downsample(depth, 4, "bicubic")
    assert torch.equal(point, depth[..., 2::4, 2::4])  # the centre pixel of each 4 x 4 block
    random.seed(0)
    collate = DegradeCollate([4], "bicubic", 0.0, point_share=0.5)
    kinds = [("point" if torch.equal(lr, point) else "bicubic" if torch.equal(lr, bicubic) else "other")
             for lr in (collate(items)["lr"] for _ in range(40))]
    assert "other" not in kinds and 10 < kinds.count("point") < 30
    with pytest.raises(DepthSRError, match="tof_share 0.6 and point_share 0.5 add up to more than 1"):
        DSRDataModule(synthetic=4, tof_share=0.6, point_share=0.5)


def test_training_collate_adds_edge_dropouts_to_the_benchmark_protocol():
    depth = _step_scene()[0].float()
    items = [{"rgb": torch.rand(3, 64, 64), "depth": depth, "valid": torch.ones(1, 64, 64, dtype=torch.bool)}] * 2
    bicubic = downsample(torch.stack([it["depth"] for it in items]), 4, "bicubic")
    random.seed(0)
    torch.testing.assert_close(DegradeCollate([4], "bicubic", 0.0, dropouts=0.0)(items)["lr"], bicubic, rtol=0, atol=0)
    lr = DegradeCollate([4], "bicubic", 0.0, dropouts=1.0)(items)["lr"]
    changed = lr != bicubic
    assert 0 < int(changed.sum()) < int(changed.numel() / 4)  # some pixels of the square's edge, nothing else
    farthest = torch.nn.functional.max_pool2d(bicubic, 3, 1, 1)
    assert torch.equal(lr[changed], farthest[changed])  # filled with the farthest depth around them
    assert ((lr - bicubic) > 1.0).any()  # pixels of the near square (1 m) took the wall's depth (3 m)


def test_edge_dropouts_leave_flat_depth_and_rate_zero_alone():
    flat = torch.full((1, 1, 8, 8), 2.0)
    assert torch.equal(edge_dropouts(flat, 1.0), flat)
    step = _step_scene().float()
    assert torch.equal(edge_dropouts(step, 0.0), step)
    assert not torch.equal(edge_dropouts(step, 1.0), step)


def test_evaluation_takes_the_tof_protocols_parameters():
    sample = {"rgb": torch.rand(3, 64, 64), "depth": _step_scene()[0].float(), "valid": torch.ones(1, 64, 64,
                                                                                                  dtype=torch.bool)}
    area = TofParams(shift=0.0, noise=0.0, dropout=0.0, quantum_mm=0.0)
    lr = evaluation_sample(sample, 4, "tof", 0.0, 3, tof=area)["lr"]
    torch.testing.assert_close(lr, torch.nn.functional.adaptive_avg_pool2d(sample["depth"], (16, 16)), rtol=0, atol=0)
    default = evaluation_sample(sample, 4, "tof", 0.0, 3)["lr"]
    torch.testing.assert_close(default, evaluation_sample(sample, 4, "tof", 0.0, 3, tof=TofParams())["lr"], rtol=0,
                               atol=0)
    assert not torch.equal(default, lr)


def test_synthetic_scenes_are_deterministic_and_photo_textured():
    a, b = synthetic_scene(7, (64, 80)), synthetic_scene(7, (64, 80))
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["depth"], b["depth"])
    assert a["rgb"].shape == (3, 64, 80) and a["depth"].shape == (1, 64, 80) and a["valid"].all()
    assert float(a["depth"].min()) > 0 and 0 <= float(a["rgb"].min()) and float(a["rgb"].max()) <= 1
    assert len(photo_bank()) >= 10  # scikit-image's bundled photographs are found


def test_packaged_motorcycle_pair():
    s = motorcycle()
    assert s["rgb"].shape == (3, 500, 741) and s["depth"].shape == (1, 500, 741)
    assert torch.isfinite(s["depth"]).all() and 0.85 < float(s["valid"].float().mean()) < 0.99
    assert s["units"] == "disparity"


def test_evaluation_refuses_a_ratio_too_large_for_the_shorter_side():
    """A 24 x 400 image at x16 would have a 1-pixel-high input: refused in one line, whatever the longer side."""
    from depthsr.data.degrade import MIN_LR_SIDE, evaluation_sample

    depth = 1 + torch.rand(1, 24, 400)
    sample = {"rgb": torch.rand(3, 24, 400), "depth": depth, "valid": depth > 0, "units": "m", "name": "wide"}
    with pytest.raises(DepthSRError, match=rf"wide: 24 x 400 is too small for x16 .*under {MIN_LR_SIDE} pixels"):
        evaluation_sample(sample, 16, "bicubic", 0.0, 0)
    assert evaluation_sample(sample, 8, "bicubic", 0.0, 0)["lr"].shape == (1, 3, 50)
