"""`depthsr compare` on real pairs and a generated NYU-format file, checked against metrics computed here."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from depthsr.cli import main

pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _bicubic_rmse_by_hand(depth: np.ndarray, scale: float, border: int = 0) -> float:
    """PIL bicubic down and up, RMSE over the (cropped) valid pixels: independent of depthsr. An integer ratio
    crops to a multiple of it; any other keeps the image and rounds the low-resolution size."""
    if float(scale).is_integer():
        h, w = depth.shape[0] // int(scale) * int(scale), depth.shape[1] // int(scale) * int(scale)
    else:
        h, w = depth.shape
    gt = depth[:h, :w].astype(np.float32)
    lr = Image.fromarray(gt, mode="F").resize((round(w / scale), round(h / scale)), Image.BICUBIC)
    up = np.asarray(lr.resize((w, h), Image.BICUBIC))
    err = (up - gt)[border : h - border, border : w - border]
    valid = gt[border : h - border, border : w - border] != 0
    return float(np.sqrt(np.mean(err[valid] ** 2)))


def test_compare_on_shared_folder_sets(shared, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--data", f"folder:{shared / 'middlebury2003'}", "--data", f"folder:{shared / 'crops256'}",
                 "--scales", "4", "8", "16", "--methods", "bicubic,jbu", "--methods", "guided", "--out", str(out),
                 "--quiet"])
    assert code == 0
    rows = _rows(out / "results.csv")
    assert list(rows[0]) == ["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae",
                             "worse_than_bicubic"]
    assert len(rows) == 2 * 3 * 3
    per_image = _rows(out / "per_image.csv")
    printed = capsys.readouterr().out
    for row in rows:  # images worse than bicubic, counted again here from per_image.csv
        if row["method"] == "bicubic":
            assert row["worse_than_bicubic"] == ""
            continue
        mine = {r["image"]: float(r["rmse"]) for r in per_image if (r["method"], r["dataset"], r["scale"]) ==
                (row["method"], row["dataset"], row["scale"])}
        bicubic = {r["image"]: float(r["rmse"]) for r in per_image if (r["method"], r["dataset"], r["scale"]) ==
                   ("bicubic", row["dataset"], row["scale"])}
        worse = sum(mine[k] > bicubic[k] for k in mine)
        assert int(row["worse_than_bicubic"]) == worse
        assert (f"{row['method']} on {row['dataset']} at x{row['scale']}: {worse} of {len(mine)} images worse than "
                "bicubic") in printed
    for scale in (4, 8, 16):
        row = next(r for r in rows if r["method"] == "bicubic" and r["dataset"] == "middlebury2003"
                   and r["scale"] == str(scale))
        by_hand = []
        for scene in ("cones", "teddy", "tsukuba", "venus"):
            gt = cv2.imread(str(shared / "middlebury2003" / scene / "depth.png"), cv2.IMREAD_UNCHANGED)
            by_hand.append(_bicubic_rmse_by_hand(gt, scale))
            drill = next(r for r in per_image if r["method"] == "bicubic" and r["image"] == scene
                         and r["scale"] == str(scale))
            assert math.isclose(float(drill["rmse"]), by_hand[-1], rel_tol=1e-3)
        assert math.isclose(float(row["rmse"]), sum(by_hand) / 4, rel_tol=1e-3)
        assert row["units"] == "levels" and row["images"] == "4" and row["protocol"] == "bicubic"
    for dataset in ("middlebury2003", "crops256"):
        bic = [float(r["rmse"]) for r in rows if r["method"] == "bicubic" and r["dataset"] == dataset]
        assert bic == sorted(bic) and bic[0] < bic[-1]  # bicubic's RMSE grows with the scale
    md = (out / "results.md").read_text()
    assert "protocol: bicubic" in md and "| method | x4 | x8 | x16 |" in md and md in printed
    assert "jbu: images worse than bicubic: " in md and "guided: images worse than bicubic: " in md
    assert cv2.imread(str(out / "rmse_vs_scale.png")) is not None


def test_compare_on_nyu_file_and_real_protocol(shared, nyu_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"nyu:{nyu_file}", "--scales", "4", "--methods", "bicubic",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out  # a file of 1000 pairs or fewer: said, in the output and in results.md
    assert "has only 6 pairs, so all of them are evaluated" in printed
    assert "has only 6 pairs" in (out / "results.md").read_text()
    row = _rows(out / "results.csv")[0]
    import h5py

    with h5py.File(nyu_file) as f:
        depths = [np.asarray(f["depths"][i]).T for i in range(6)]
    by_hand = np.mean([_bicubic_rmse_by_hand(d, 4, border=6) * 100 for d in depths])  # metres -> cm
    assert row["dataset"] == "nyu" and row["units"] == "cm" and row["images"] == "6"
    assert math.isclose(float(row["rmse"]), by_hand, rel_tol=1e-3)

    out2 = tmp_path / "real"
    assert main(["compare", "--data", f"folder:{shared / 'middlebury2005'}", "--scales", "8", "--methods",
                 "bicubic", "--protocol", "real", "--out", str(out2), "--quiet"]) == 0
    assert _rows(out2 / "results.csv")[0]["protocol"] == "real"


def test_compare_bad_spec_is_one_line(tmp_path, capsys):
    assert main(["compare", "--data", "zip:foo", "--methods", "bicubic", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("depthsr: error: --data 'zip:foo': expected nyu:PATH.mat, "
                                               "middlebury:DIR or folder:DIR")


def test_non_integer_ratios_name_the_ratio(shared, tmp_path):
    """--scales 2.5 7.5: the whole image (no crop), the low-resolution size rounded, the ratio in every file."""
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{shared / 'crops256'}", "--scales", "2.5", "7.5", "--methods",
                 "bicubic,jbu", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    rows, per_image = _rows(out / "results.csv"), _rows(out / "per_image.csv")
    assert [(r["method"], r["scale"]) for r in rows] == [("bicubic", "2.5"), ("jbu", "2.5"), ("bicubic", "7.5"),
                                                         ("jbu", "7.5")]
    for scale in (2.5, 7.5):
        for crop in ("crop0", "crop1", "crop2"):
            gt = np.load(shared / "crops256" / crop / "depth.npy")
            drill = next(r for r in per_image if r["method"] == "bicubic" and r["image"] == crop
                         and r["scale"] == f"{scale:g}")
            assert math.isclose(float(drill["rmse"]), _bicubic_rmse_by_hand(gt, scale), rel_tol=1e-3)
    assert "| method | x2.5 | x7.5 |" in (out / "results.md").read_text()


def test_nyu_border_belongs_to_the_data_set(shared, tmp_path):
    """NYU read from a folder set gets NYU's 6-pixel border, as from the .mat file; a meta.json may set it."""
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{shared / 'nyu_normalized'}", "--scales", "4", "--methods",
                 "bicubic", "--out", str(out), "--quiet"]) == 0
    gt = cv2.imread(str(shared / "nyu_normalized" / "1025" / "depth.png"), cv2.IMREAD_UNCHANGED)
    row = _rows(out / "results.csv")[0]
    assert math.isclose(float(row["rmse"]), _bicubic_rmse_by_hand(gt, 4, border=6), rel_tol=1e-3)
    assert not math.isclose(float(row["rmse"]), _bicubic_rmse_by_hand(gt, 4), rel_tol=1e-3)
    assert "border 6 px" in (out / "results.md").read_text()

    mine = tmp_path / "mine"
    (mine / "1025").mkdir(parents=True)
    for name in ("rgb.png", "depth.png"):
        (mine / "1025" / name).write_bytes((shared / "nyu_normalized" / "1025" / name).read_bytes())
    (mine / "meta.json").write_text('{"units": "normalized8", "role": "eval", "border": 10}')
    assert main(["compare", "--data", f"folder:{mine}", "--scales", "4", "--methods", "bicubic", "--out",
                 str(tmp_path / "cmp2"), "--quiet"]) == 0
    row = _rows(tmp_path / "cmp2" / "results.csv")[0]
    assert math.isclose(float(row["rmse"]), _bicubic_rmse_by_hand(gt, 4, border=10), rel_tol=1e-3)


def test_real_protocol_takes_each_pairs_measured_lr_at_its_own_ratio(shared, tmp_path, capsys):
    """A folder set whose pairs carry lr.png (no ratio in the name): evaluated at the ratio the files have,
    in millimetres (RMSE in cm); the tof protocol runs on the same set; bicubic is added for the counts."""
    data = tmp_path / "phone"
    data.mkdir()
    (data / "meta.json").write_text('{"units": "mm", "role": "eval"}')
    names = sorted(p.name for p in (shared / "rgbdd").iterdir() if p.is_dir())[:2]
    for name in names:
        (data / name).mkdir()
        depth = cv2.imread(str(shared / "rgbdd" / name / "depth.png"), cv2.IMREAD_UNCHANGED)
        for file in ("rgb.png", "depth.png"):
            (data / name / file).write_bytes((shared / "rgbdd" / name / file).read_bytes())
        cv2.imwrite(str(data / name / "lr.png"), cv2.resize(depth, (192, 144), interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{data}", "--protocol", "real", "--methods", "jbu", "--out", str(out),
                 "--quiet"]) == 0
    rows = _rows(out / "results.csv")
    assert [(r["method"], r["scale"], r["units"], r["images"]) for r in rows] == [
        ("bicubic", "2.667", "cm", "2"), ("jbu", "2.667", "cm", "2")]
    assert rows[1]["worse_than_bicubic"] in ("0", "1", "2")
    printed = capsys.readouterr().out
    assert "bicubic was added" in printed and "no measured lr_x4 inputs" in printed
    assert {r["scale"] for r in _rows(out / "per_image.csv")} == {"2.667"}

    out2 = tmp_path / "tof"
    assert main(["compare", "--data", f"folder:{data}", "--protocol", "tof", "--scales", "2.5", "--methods",
                 "bicubic", "--out", str(out2), "--quiet"]) == 0
    row = _rows(out2 / "results.csv")[0]
    assert row["protocol"] == "tof" and row["scale"] == "2.5" and 0 < float(row["rmse"]) < 10
