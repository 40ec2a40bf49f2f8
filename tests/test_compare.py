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


def _bicubic_rmse_by_hand(depth: np.ndarray, scale: int, border: int = 0) -> float:
    """PIL bicubic down and up, RMSE over the (cropped) valid pixels: independent of depthsr."""
    h, w = depth.shape[0] // scale * scale, depth.shape[1] // scale * scale
    gt = depth[:h, :w].astype(np.float32)
    lr = Image.fromarray(gt, mode="F").resize((w // scale, h // scale), Image.BICUBIC)
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
    assert list(rows[0]) == ["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae"]
    assert len(rows) == 2 * 3 * 3
    per_image = _rows(out / "per_image.csv")
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
    assert "protocol: bicubic" in md and "| method | x4 | x8 | x16 |" in md and md in capsys.readouterr().out
    assert cv2.imread(str(out / "rmse_vs_scale.png")) is not None


def test_compare_on_nyu_file_and_real_protocol(shared, nyu_file, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"nyu:{nyu_file}", "--scales", "4", "--methods", "bicubic",
                 "--out", str(out), "--quiet"]) == 0
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
