"""Readers, writers and degradation protocols on real files."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from depthsr.data.degrade import degrade, downsample
from depthsr.data.folder import FolderDataset, read_pair
from depthsr.data.io import read_depth, read_pfm, read_rgb, write_depth, write_pfm
from depthsr.data.middlebury import middlebury_dataset
from depthsr.data.nyu import NYUv2Dataset, check_nyu_file, nyu_split, write_nyu_file
from depthsr.errors import DepthSRError


def test_bicubic_protocol_equals_pil_on_a_real_pair(shared):
    s = read_pair(shared / "middlebury2003" / "teddy", "disparity8")
    d = degrade(s, 4, "bicubic")
    gt = d["depth"][0].numpy()
    pil = np.asarray(Image.fromarray(gt, mode="F").resize((gt.shape[1] // 4, gt.shape[0] // 4), Image.BICUBIC))
    assert d["lr"].shape == (1, gt.shape[0] // 4, gt.shape[1] // 4)
    np.testing.assert_allclose(d["lr"][0].numpy(), pil, atol=2e-3)


def test_point_protocol_takes_block_centres():
    depth = torch.arange(64, dtype=torch.float32).view(1, 8, 8)
    lr = downsample(depth, 4, "point")
    assert lr.tolist() == [[[depth[0, 2, 2].item(), depth[0, 2, 6].item()], [depth[0, 6, 2].item(),
                                                                          depth[0, 6, 6].item()]]]


def test_noisy_protocol_is_reproducible_and_scaled():
    depth = torch.linspace(1, 3, 64 * 64).view(1, 64, 64)
    a = downsample(depth, 4, "noisy", 0.05, torch.Generator().manual_seed(1))
    b = downsample(depth, 4, "noisy", 0.05, torch.Generator().manual_seed(1))
    clean = downsample(depth, 4, "bicubic")
    assert torch.equal(a, b)
    assert 0.08 < float((a - clean).std()) < 0.12  # 0.05 x range 2


def test_degrade_crops_to_a_multiple_of_the_scale(shared):
    s = read_pair(shared / "middlebury2003" / "tsukuba", "disparity8")
    d = degrade(s, 16, "bicubic")
    h, w = d["depth"].shape[-2:]
    assert h % 16 == 0 and w % 16 == 0 and d["rgb"].shape[-2:] == (h, w) and d["lr"].shape[-2:] == (h // 16, w // 16)


def test_real_protocol_uses_measured_input(shared):
    ds = FolderDataset(shared / "middlebury2005", scale=8)
    s = degrade(ds[0], 8, "real")
    assert s["lr"].shape[-2] * 8 == s["depth"].shape[-2] and ds.role == "train" and ds.units == "disparity8"
    with pytest.raises(DepthSRError, match="needs a measured lr_x3"):
        degrade(FolderDataset(shared / "middlebury2005", scale=3)[0], 3, "real")


@pytest.mark.parametrize("suffix", [".png", ".npy", ".pfm"])
def test_depth_round_trip(tmp_path, suffix):
    depth = torch.rand(1, 13, 17) * 5 + 0.5
    depth[0, 0, 0] = 0.0
    path = tmp_path / f"d{suffix}"
    write_depth(path, depth)
    back = read_depth(path)
    atol = 0.5e-3 if suffix == ".png" else 0
    torch.testing.assert_close(back, depth, atol=atol, rtol=0)
    assert back[0, 0, 0] == 0
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_pfm_matches_the_format(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_pfm(tmp_path / "a.pfm", arr)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n4 3\n-1\n")
    assert np.frombuffer(raw[-16:], "<f4").tolist() == [0, 1, 2, 3]  # bottom row of the file = top row
    np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), arr)


def test_rgb_reader_on_real_png(shared):
    rgb = read_rgb(shared / "middlebury2003" / "cones" / "rgb.png")
    assert rgb.shape[0] == 3 and rgb.dtype == torch.float32 and 0 <= float(rgb.min()) and float(rgb.max()) <= 1


@pytest.mark.parametrize(
    "name,content,match",
    [("missing.png", None, "no such file"), ("bad.png", b"not a png", "not a readable image"),
     ("bad.npy", b"garbage", "not a readable .npy"), ("bad.pfm", b"P6\n1 1\n", "not a PFM file")],
)
def test_bad_depth_files_raise_one_line(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DepthSRError, match=match) as err:
        read_depth(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_folder_errors(tmp_path, shared):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "rgb.png").write_bytes((shared / "middlebury2003/venus/rgb.png").read_bytes())
    with pytest.raises(DepthSRError, match="unpaired: no depth"):
        FolderDataset(tmp_path)[0]
    np.save(tmp_path / "a" / "depth.npy", np.ones((5, 5), np.float32))
    with pytest.raises(DepthSRError, match="rgb is .* but depth is 5 x 5"):
        FolderDataset(tmp_path)[0]


def test_middlebury_raw_layouts(tmp_path, shared):
    import cv2

    rgb = cv2.imread(str(shared / "middlebury2003/venus/rgb.png"))
    disp = cv2.imread(str(shared / "middlebury2003/venus/depth.png"), cv2.IMREAD_UNCHANGED)
    (tmp_path / "venus2005").mkdir()
    cv2.imwrite(str(tmp_path / "venus2005/view1.png"), rgb)
    disp0 = disp.copy()
    disp0[:3] = 0
    cv2.imwrite(str(tmp_path / "venus2005/disp1.png"), disp0)
    (tmp_path / "venus2014").mkdir()
    cv2.imwrite(str(tmp_path / "venus2014/im0.png"), rgb)
    pfm = disp.astype(np.float32)
    pfm[:3] = np.inf
    write_pfm(tmp_path / "venus2014/disp0.pfm", pfm)
    (tmp_path / "venus2014/calib.txt").write_text("cam0=[1 0 0; 0 1 0; 0 0 1]\nbaseline=193.0\n")
    ds = middlebury_dataset(tmp_path)
    assert len(ds) == 2
    for s in ds:
        assert s["valid"][0, :3].sum() == 0 and s["valid"][0, 3:].all()
        torch.testing.assert_close(s["depth"][0, 3:], torch.from_numpy(disp[3:].astype(np.float32)))


def test_nyu_file_round_trip_lazy_and_picklable(nyu_file, shared):
    assert check_nyu_file(nyu_file) == 6
    with open(nyu_file, "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"
    ds = NYUv2Dataset(nyu_file, range(6))
    s = ds[2]
    import cv2

    ref = cv2.resize(cv2.imread(str(shared / "middlebury2005" / "dolls" / "rgb.png")), (128, 96),
                     interpolation=cv2.INTER_AREA)[:, :, ::-1]
    assert s["rgb"].shape == (3, 96, 128) and s["depth"].shape == (1, 96, 128) and s["units"] == "m"
    torch.testing.assert_close(s["rgb"], torch.from_numpy(ref.transpose(2, 0, 1) / 255).float(), atol=1e-6, rtol=0)
    clone = pickle.loads(pickle.dumps(ds))  # the open handle is not pickled
    assert clone._file is None and torch.equal(clone[2]["depth"], s["depth"])
    assert nyu_split(nyu_file, 4) == (range(4), range(4, 6))


def test_nyu_plain_hdf5_and_errors(tmp_path):
    rgb = np.zeros((2, 8, 10, 3), np.uint8)
    depth = np.ones((2, 8, 10), np.float32)
    write_nyu_file(tmp_path / "plain.h5", rgb, depth, matlab_header=False)
    assert NYUv2Dataset(tmp_path / "plain.h5")[1]["depth"].shape == (1, 8, 10)
    with pytest.raises(DepthSRError, match="no such file"):
        check_nyu_file(tmp_path / "none.mat")
    (tmp_path / "text.mat").write_text("hello")
    with pytest.raises(DepthSRError, match="not an HDF5"):
        check_nyu_file(tmp_path / "text.mat")
    with h5py.File(tmp_path / "nokey.mat", "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)
    with pytest.raises(DepthSRError, match="missing HDF5 key 'depths'"):
        check_nyu_file(tmp_path / "nokey.mat")
    with h5py.File(tmp_path / "shape.mat", "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = np.ones((2, 5, 5), np.float32)
    with pytest.raises(DepthSRError, match="'depths' must be 2 x 10 x 8"):
        check_nyu_file(tmp_path / "shape.mat")
