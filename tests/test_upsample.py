"""`depthsr upsample` as a user runs it: real files in every format, any ratio, bad inputs, folder mode."""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from op_inputs import DEVICES

from depthsr.cli import main
from depthsr.data.degrade import downsample
from depthsr.data.io import read_depth, write_depth
from depthsr.methods.model_file import save_network
from depthsr.methods.network import DEFAULT_CHECKPOINT
from depthsr.models import build_model
from depthsr.ops.resize import bicubic_resize

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = DEFAULT_CHECKPOINT  # the package data checkpoints/ links to


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


@pytest.fixture()
def tof(tmp_path, shared):
    """A real RGB-D-D pair: the phone's 512 x 384 RGB and the Helios ToF depth (16-bit mm), with the depth
    shrunk to 192 x 144 as the phone's own ToF camera delivers it (ratio 8/3)."""
    src = shared / "rgbdd" / "20200509121031"
    depth = cv2.imread(str(src / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (384, 512)
    lr = cv2.resize(depth, (192, 144), interpolation=cv2.INTER_NEAREST)
    (tmp_path / "rgb.png").write_bytes((src / "rgb.png").read_bytes())
    (tmp_path / "gt.png").write_bytes((src / "depth.png").read_bytes())
    cv2.imwrite(str(tmp_path / "lr.png"), lr)
    return tmp_path, depth, lr


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    """A freshly initialised network (weights perturbed so it is not bicubic) as a model file."""
    torch.manual_seed(0)
    net = build_model("paka", width=8, blocks=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path_factory.mktemp("net") / "fresh.safetensors"
    save_network(path, net, "paka", net.config, [4])
    return path


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


def test_millimetres_in_millimetres_out_at_a_non_integer_ratio(tof, network, capsys):
    """A phone ToF capture (192 x 144, 16-bit mm) beside its 512 x 384 photo: any ratio, 16-bit mm out."""
    folder, depth, lr = tof
    for checkpoint, out in (("bicubic", "bicubic.png"), (str(network), "net.png")):
        assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.png"), "--out", str(folder / out),
                    "--checkpoint", checkpoint, "--gt", str(folder / "gt.png"), "--scale", "2.667") == 0
        report = capsys.readouterr().out
        assert "(384 x 512, x2.667)" in report and "RMSE vs ground truth" in report
        result = cv2.imread(str(folder / out), cv2.IMREAD_UNCHANGED)
        assert result.dtype == np.uint16 and result.shape == (384, 512)
    expected = bicubic_resize(torch.from_numpy(lr.astype(np.float32))[None, None], (384, 512))[0, 0].numpy()
    bicubic = cv2.imread(str(folder / "bicubic.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    valid = lr > 0
    if valid.all():
        assert np.abs(bicubic - expected).max() <= 0.5 + 1e-3  # millimetres, rounded to whole ones
    inside = depth > 0
    assert abs(float(np.median(bicubic[inside])) - float(np.median(depth[inside]))) < 0.05 * np.median(depth[inside])


def test_a_gated_cleaner_says_how_noisy_the_input_measured(tof, capsys):
    """With a model whose input cleaner is gated by noise, the report gives the input's noise level and whether the
    cleaner was on: off for the depth shrunk from the sensor's map by bicubic (smooth), on for the same map under
    the tof protocol (a simulated sensor); a model without a gate says nothing of it."""
    folder, depth, _ = tof
    torch.manual_seed(0)
    net = build_model("paka", width=8, blocks=1, clean_input=True, clean_gate=(0.002, 0.003))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    gated = folder / "gated.safetensors"
    save_network(gated, net, "paka", net.config, [4])
    metres = torch.from_numpy(depth.astype(np.float32) / 1000)[None, None]
    write_depth(folder / "smooth.npy", downsample(metres, 4, "bicubic")[0])
    write_depth(folder / "sensor.npy", downsample(metres, 4, "tof", units="m",
                                                  generator=torch.Generator().manual_seed(0))[0])
    for name, state in (("smooth", "input cleaner off"), ("sensor", "input cleaner on")):
        assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / f"{name}.npy"),
                    "--out", str(folder / f"{name}_out.npy"), "--checkpoint", str(gated)) == 0
        report = capsys.readouterr().out
        level = float(re.search(r"input noise ([\d.]+)% of its depth range", report)[1])
        assert state in report and (level < 0.2 if name == "smooth" else level > 0.3), report
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "sensor.npy"), "--out",
                str(folder / "plain.npy"), "--checkpoint", "bicubic") == 0
    assert "input noise" not in capsys.readouterr().out


def test_invalid_pixels_are_filled_not_spikes(pair, capsys):
    folder, gt, lr = pair
    holes = lr.clone()
    holes[:, 20:26, 30:40] = 0
    write_depth(folder / "holes.npy", holes)
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "holes.npy"),
                "--out", str(folder / "o.npy"), "--checkpoint", "bicubic") == 0
    assert "60 invalid LR pixels filled" in capsys.readouterr().out
    out = read_depth(folder / "o.npy")
    assert float(out.min()) > 0.9 * float(lr.min()) and float(out.max()) < 1.1 * float(lr.max())


def test_nan_and_inf_are_invalid_like_zero(pair, network, capsys):
    """One rule for every non-finite value: NaN, +inf and -inf are filled like 0, never an error or a spike."""
    folder, gt, lr = pair
    marked = lr.clone()
    marked[:, 20:26, 30:40] = float("nan")
    marked[:, 40:42, 10:20] = float("inf")
    marked[:, 50, 50:60] = -float("inf")
    write_depth(folder / "marked.npy", marked)
    zeros = torch.where(torch.isfinite(marked), marked, torch.zeros_like(marked))
    write_depth(folder / "zeros.npy", zeros)
    for name in ("marked", "zeros"):
        assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / f"{name}.npy"), "--out",
                    str(folder / f"o_{name}.npy"), "--checkpoint", str(network)) == 0
        assert "90 invalid LR pixels filled" in capsys.readouterr().out
    marked_out, zeros_out = read_depth(folder / "o_marked.npy"), read_depth(folder / "o_zeros.npy")
    assert torch.isfinite(marked_out).all() and torch.equal(marked_out, zeros_out)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda f: f / "missing.npy", "missing.npy: no such file"),
        (lambda f: (f / "bad.png").write_bytes(b"junk") and f / "bad.png", "bad.png: not a readable image"),
        (lambda f: np.save(f / "nan.npy", np.full((93, 112), np.nan, np.float32)) or f / "nan.npy",
         r"nan.npy: only 0.0% of its 10416 depth values are valid"),
        (lambda f: np.save(f / "odd.npy", np.ones((37, 50), np.float32)) or f / "odd.npy",
         r"odd.npy is 37 x 50 and .*rgb.png is 372 x 448: their aspect ratios differ by 10.9%"),
    ],
)
def test_bad_inputs_fail_in_one_line(pair, capsys, make, match):
    folder, _, _ = pair
    code = _run("--rgb", str(folder / "rgb.png"), "--depth", str(make(folder)), "--out", str(folder / "o.png"),
                "--checkpoint", "bicubic")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("depthsr: error: ")
    assert re.search(match, err[0]), err[0]
    assert not (folder / "o.png").exists()


def test_scale_mismatch_and_input_overwrite_refused(pair, capsys):
    folder, _, _ = pair
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out", str(folder / "o.npy"),
                "--scale", "8", "--checkpoint", "bicubic") == 2
    assert "--scale 8 does not match the sizes" in capsys.readouterr().err
    before = (folder / "lr.npy").read_bytes()
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out",
                str(folder / "lr.npy")) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert (folder / "lr.npy").read_bytes() == before


def test_any_ratio_whose_axes_round_differently(pair, capsys):
    """93 x 111 beside 372 x 448: x4 down, x4.04 across (a width that rounded): accepted, as bicubic."""
    folder, gt, lr = pair
    skew = bicubic_resize(gt[None], (93, 111))[0]
    write_depth(folder / "skew.npy", skew)
    assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "skew.npy"), "--out",
                str(folder / "o.npy"), "--checkpoint", "bicubic") == 0
    assert "x4 (height) / x4.036 (width)" in capsys.readouterr().out
    torch.testing.assert_close(read_depth(folder / "o.npy"), bicubic_resize(skew[None], (372, 448))[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_device_choice_gives_the_same_result(pair, network, device):
    folder, _, _ = pair
    outs = []
    for dev in ("cpu", device):
        out = folder / f"o_{dev}.npy"
        assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out", str(out),
                    "--checkpoint", str(network), "--device", dev) == 0
        outs.append(read_depth(out))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)


def test_written_files_respect_the_umask(pair):
    folder, _, _ = pair
    old = os.umask(0o027)
    try:
        assert _run("--rgb", str(folder / "rgb.png"), "--depth", str(folder / "lr.npy"), "--out",
                    str(folder / "o.png"), "--preview", str(folder / "p.jpg"), "--checkpoint", "bicubic") == 0
    finally:
        os.umask(old)
    assert (folder / "o.png").stat().st_mode & 0o777 == 0o640
    assert (folder / "p.jpg").stat().st_mode & 0o777 == 0o640


def test_folder_mode_skips_and_reports_bad_pairs(pair, capsys):
    folder, gt, lr = pair
    rgb_dir, depth_dir = folder / "rgbs", folder / "depths"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for name in ("a", "b", "c", "e"):
        (rgb_dir / f"{name}.png").write_bytes((folder / "rgb.png").read_bytes())
    (rgb_dir / "e.jpg").write_bytes((folder / "rgb.png").read_bytes())  # two RGB files named e
    write_depth(depth_dir / "a.npy", lr)
    write_depth(depth_dir / "b.png", lr)
    np.save(depth_dir / "c.npy", np.ones((7, 7), np.float32))  # wrong size
    write_depth(depth_dir / "d.npy", lr)  # no rgb
    write_depth(depth_dir / "e.npy", lr)
    code = _run("--rgb", str(rgb_dir), "--depth", str(depth_dir), "--out", str(folder / "out"),
                "--checkpoint", "bicubic", "--format", ".npy")
    out = capsys.readouterr().out
    assert code == 1
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.npy", "b.npy"]
    assert "upsampled 2 of 3 pairs" in out and "c.npy is 7 x 7" in out and "d.npy: unpaired" in out
    assert "e.*: ambiguous: e.jpg and e.png have the same name" in out


def test_folder_mode_at_non_integer_ratios(tof, capsys):
    """Two captures at different non-integer ratios (8/3 and 2.4) in one run; millimetres in and out."""
    folder, depth, lr = tof
    rgb_dir, depth_dir = folder / "rgbs", folder / "depths"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for name in ("phone", "other"):
        (rgb_dir / f"{name}.png").write_bytes((folder / "rgb.png").read_bytes())
    cv2.imwrite(str(depth_dir / "phone.png"), lr)
    cv2.imwrite(str(depth_dir / "other.png"), cv2.resize(depth, (213, 160), interpolation=cv2.INTER_NEAREST))
    assert _run("--rgb", str(rgb_dir), "--depth", str(depth_dir), "--out", str(folder / "out"),
                "--checkpoint", "bicubic") == 0
    assert "upsampled 2 of 2 pairs" in capsys.readouterr().out
    for name in ("phone", "other"):
        result = cv2.imread(str(folder / "out" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert result.dtype == np.uint16 and result.shape == (384, 512)


def test_upsample_loads_no_module_it_does_not_use(pair):
    """The command's peak memory is mostly imports (torch alone is 240 MB): an upsample with the default model
    must not pull in the compiler stack (torch._dynamo, ~170 MB), the FLOP counter of `depthsr profile`
    (torch.export, ~70 MB), kornia (the classical baselines') or h5py (the NYU file's reader, ~12 MB)."""
    import subprocess
    import sys

    folder = pair[0]
    rgb, lr, out = folder / "rgb.png", folder / "lr.npy", folder / "out.npy"
    code = ("import sys\nfrom depthsr.cli import main\n"
            f"code = main(['upsample', '--rgb', {str(rgb)!r}, '--depth', {str(lr)!r}, '--out', {str(out)!r}])\n"
            "heavy = ('torch._dynamo', 'torch.utils.flop_counter', 'kornia', 'h5py')\n"
            "print(code, [m for m in heavy if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stderr[-2000:]
    assert out.is_file()
