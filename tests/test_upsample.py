"""`depthsr upsample` as a user runs it: real files in every format, bad inputs, folder mode."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depthsr.cli import main
from depthsr.data.io import read_depth, write_depth
from depthsr.ops.resize import bicubic_resize

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "checkpoints" / "depthsr_default.pt"


@pytest.fixture()
def pair(tmp_path, shared):
    """teddy (an eval pair) as a metric RGB-D camera would give it: RGB, x4 LR depth in metres, ground truth."""
    rgb = cv2.imread(str(shared / "middlebury2003/teddy/rgb.png"))
    gt8 = cv2.imread(str(shared / "middlebury2003/teddy/depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    h, w = gt8.shape[0] // 4 * 4, gt8.shape[1] // 4 * 4
    gt = torch.from_numpy(0.5 + 3.0 * (255 - gt8[:h, :w]) / 255)[None]  # metres
    lr = bicubic_resize(gt[None], (h // 4, w // 4))[0]
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[:h, :w])
    write_depth(tmp_path / "gt.npy", gt)
    write_depth(tmp_path / "lr.npy", lr)
    return tmp_path, gt, lr


def _run(*args: str) -> int:
    return main(["upsample", *args])


@pytest.mark.parametrize("src", [".png", ".npy", ".pfm"])
@pytest.mark.parametrize("dst", [".png", ".npy", ".pfm"])
def test_every_format_round_trips(pair, src, dst):
    folder, gt, lr = pair
    write_depth(folder / f"in{src}", lr)
    out = folder / f"out{dst}"
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / f"in{src}"), "--out", str(out),
                "--checkpoint", "bicubic") == 0
    result = read_depth(out)
    expected = bicubic_resize(read_depth(folder / f"in{src}")[None], gt.shape[-2:])[0]
    torch.testing.assert_close(result, expected, atol=0.6e-3 if dst == ".png" else 1e-5, rtol=0)


def test_default_model_beats_bicubic_on_a_real_pair(pair, capsys):
    folder, gt, lr = pair
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out", str(folder / "o.npy"),
                "--gt", str(folder / "gt.npy"), "--preview", str(folder / "p.png")) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("RMSE vs ground truth")][0]
    ours, bicubic = float(line.split()[5].rstrip(",")), float(line.split()[7])
    assert ours < bicubic
    preview = cv2.imread(str(folder / "p.png"))
    assert preview.shape == (gt.shape[1], 3 * gt.shape[2], 3)


def test_invalid_pixels_are_filled_not_spikes(pair, capsys):
    folder, gt, lr = pair
    holes = lr.clone()
    holes[:, 20:26, 30:40] = 0
    write_depth(folder / "holes.npy", holes)
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "holes.npy"),
                "--out", str(folder / "o.npy")) == 0
    assert "60 invalid LR pixels filled" in capsys.readouterr().out
    out = read_depth(folder / "o.npy")
    assert float(out.min()) > 0.9 * float(lr.min()) and float(out.max()) < 1.1 * float(lr.max())


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda f: f / "missing.npy", "missing.npy: no such file"),
        (lambda f: (f / "bad.png").write_bytes(b"junk") and f / "bad.png", "bad.png: not a readable image"),
        (lambda f: np.save(f / "nan.npy", np.full((10, 10), np.nan, np.float32)) or f / "nan.npy", "nan.npy"),
        (lambda f: np.save(f / "odd.npy", np.ones((37, 50), np.float32)) or f / "odd.npy",
         r"odd.npy is 37 x 50 and .*rgb.png is 372 x 448: not an integer scale"),
    ],
)
def test_bad_inputs_fail_in_one_line(pair, capsys, make, match):
    folder, _, _ = pair
    code = _run("--rgb", str(folder / "rgb.png"), "--depth", str(make(folder)), "--out", str(folder / "o.png"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("depthsr: error: ")
    import re

    assert re.search(match, err[0]), err[0]
    assert not (folder / "o.png").exists()


def test_scale_mismatch_and_input_overwrite_refused(pair, capsys):
    folder, _, _ = pair
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out", str(folder / "o.npy"),
                "--scale", "8") == 2
    assert "--scale 8 does not match the sizes" in capsys.readouterr().err
    before = (folder / "lr.npy").read_bytes()
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out",
                str(folder / "lr.npy")) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert (folder / "lr.npy").read_bytes() == before


def test_folder_mode_skips_and_reports_bad_pairs(pair, capsys):
    folder, gt, lr = pair
    rgb_dir, depth_dir = folder / "rgbs", folder / "depths"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for name in ("a", "b", "c"):
        (rgb_dir / f"{name}.png").write_bytes((folder / "rgb.png").read_bytes())
    write_depth(depth_dir / "a.npy", lr)
    write_depth(depth_dir / "b.png", lr)
    np.save(depth_dir / "c.npy", np.ones((7, 7), np.float32))  # wrong size
    write_depth(depth_dir / "d.npy", lr)  # no rgb
    code = _run("--rgb", str(rgb_dir), "--depth", str(depth_dir), "--out", str(folder / "out"),
                "--checkpoint", "bicubic", "--format", ".npy")
    out = capsys.readouterr().out
    assert code == 1
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.npy", "b.npy"]
    assert "upsampled 2 of 3 pairs" in out and "c.npy is 7 x 7" in out and "d.npy: unpaired" in out
