"""What the README, the model card and the CLI help promise, each held by a test that fails when the promise
breaks (issue 15). Every expected value is computed here, independently of depthsr (PIL's bicubic, numpy
arithmetic, a re-implementation of the network from its documented data path), on real files written by the
test or read from ../shared/data; nothing is mocked.

  units      depth comes out in the units it went in, for every format and bit depth (8-bit PNG: levels,
             16-bit PNG: millimetres, --depth-scale: the given units, .npy/.pfm: as they are)
  inputs     no output option (--out, --preview, folder --out) ever overwrites an input, however it is spelled
  splits     train, validation and test pairs are disjoint; eval sets are refused for training
  protocols  noisy / real / point on data whose LR and GT ranges differ; norm lr vs norm gt
  tables     every number in results.md is its row of results.csv, in the right column; per-image rows carry
             the data set's unit factor; the NYU file's test part is the pairs after the first 1000
  network    the network computes its documented data path (every skip and branch), layers start as documented
  model      the shipped model reproduces the results recorded in it, and the model card shows them
  readers, training data, metric, method, compare: the rules that seeded bugs (scripts/mutation_check.py)
             showed no test held

Promises the code or the docs break today are strict xfails naming the break (stale README / model-card
numbers): they flip to failures once fixed, so the xfail can go.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from depthsr.cli import main
from depthsr.data.datamodule import DSRDataModule, downscale_pair
from depthsr.data.degrade import degrade, downsample
from depthsr.data.folder import FolderDataset
from depthsr.data.io import read_depth, write_pfm
from depthsr.data.nyu import NUM_TRAIN, write_nyu_file
from depthsr.errors import DepthSRError
from depthsr.evaluate import evaluate
from depthsr.methods.method import Method
from depthsr.methods.network import DEFAULT_CHECKPOINT
from depthsr.models import PACConv2d, PAKAConv2d, PlainConv2d, build_model
from depthsr.ops import pac_conv2d_reference, paka_conv2d_reference
from depthsr.ops.resize import bicubic_resize

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ helpers


def pil_resize(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """PIL's bicubic on float32 values: the reference the bicubic protocol and baseline promise to equal."""
    return np.asarray(Image.fromarray(np.asarray(arr, np.float32), mode="F").resize(size_hw[::-1], Image.BICUBIC))


def scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RGB (uint8, h x w x 3, BGR as cv2 writes it) and a depth of about 1..3 (a slanted wall, a box in front)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 1.5 + xx / w + 0.5 * yy / h + 0.1 * np.sin(xx / 3 + seed)
    box = (yy > h // 4) & (yy < 3 * h // 4) & (xx > w // 3) & (xx < 2 * w // 3)
    depth[box] = 1.0 + 0.1 * seed
    rgb = (rng.uniform(0, 40, (h, w, 3)) + np.where(box[..., None], 180, 60)).astype(np.uint8)
    return rgb, depth.astype(np.float32)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def upsample(*args: str) -> int:
    return main(["upsample", *args])


# ------------------------------------------------------------------------------------------------ units


HR, LR = (48, 64), (12, 16)

# kind -> (how the file stores the LR depth, the factor PNG values are divided by on read, extra CLI arguments)
INPUTS = {
    "png8": (lambda d: np.round(d * 80).astype(np.uint8), 1.0, []),
    "png8 --depth-scale 4": (lambda d: np.round(d * 80).astype(np.uint8), 4.0, ["--depth-scale", "4"]),
    "png16": (lambda d: np.round(d * 1000).astype(np.uint16), 1000.0, []),
    "png16 --depth-scale 5000": (lambda d: np.round(d * 5000).astype(np.uint16), 5000.0, ["--depth-scale", "5000"]),
    "npy": (lambda d: d.astype(np.float32), None, []),
    "pfm": (lambda d: d.astype(np.float32), None, []),
}


def _write_input(folder: Path, kind: str, depth: np.ndarray) -> tuple[Path, np.ndarray]:
    store = INPUTS[kind][0](depth)
    if kind.startswith("png"):
        path = folder / f"lr_{kind.split()[0]}.png"
        assert cv2.imwrite(str(path), store)
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == store.dtype  # the bit depth it claims
    elif kind == "npy":
        path = folder / "lr.npy"
        np.save(path, store)
    else:
        path = folder / "lr.pfm"
        write_pfm(path, store)
    return path, store.astype(np.float32)


@pytest.mark.parametrize("dst", [".png", ".npy", ".pfm"])
@pytest.mark.parametrize("kind", list(INPUTS))
def test_units_in_are_units_out_for_every_format_and_bit_depth(tmp_path, kind, dst):
    """A PNG result is in the PNG input's own units (8-bit: levels, 16-bit: millimetres, --depth-scale N: what
    the file's values are); a float result is the input after --depth-scale (.npy/.pfm inputs: as they are,
    written to PNG as x1000). Bicubic, so the expected values are PIL's bicubic of the file's own numbers."""
    rgb, depth = scene(*HR)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    path, stored = _write_input(tmp_path, kind, pil_resize(depth, LR))
    out = tmp_path / f"out{dst}"
    assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(path), "--out", str(out),
                    "--checkpoint", "bicubic", *INPUTS[kind][2]) == 0
    factor = INPUTS[kind][1]
    up = pil_resize(stored, HR)  # in the file's own numbers
    if dst == ".png":
        result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert result.dtype == np.uint16 and result.shape == HR
        expected = np.clip(np.round(up * (1000.0 if factor is None else 1.0)), 0, 65535)
        assert np.abs(result.astype(np.float64) - expected).max() <= 1.0  # rounding to whole units
    else:
        result = np.load(out) if dst == ".npy" else read_depth(out)[0].numpy()
        assert result.dtype == np.float32 and result.shape == HR
        expected = up / (1.0 if factor is None else factor)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_read_depth_takes_8_bit_png_values_as_they_are_and_16_bit_as_millimetres(tmp_path):
    levels = np.arange(1, 241, dtype=np.uint8).reshape(12, 20)
    cv2.imwrite(str(tmp_path / "d8.png"), levels)
    np.testing.assert_array_equal(read_depth(tmp_path / "d8.png")[0].numpy(), levels.astype(np.float32))
    mm = (np.arange(240, dtype=np.uint16) * 250 + 7).reshape(12, 20)
    cv2.imwrite(str(tmp_path / "d16.png"), mm)
    np.testing.assert_allclose(read_depth(tmp_path / "d16.png")[0].numpy(), mm / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(read_depth(tmp_path / "d16.png", depth_scale=5000)[0].numpy(), mm / 5000.0, rtol=1e-6)
    np.testing.assert_allclose(read_depth(tmp_path / "d8.png", depth_scale=4)[0].numpy(), levels / 4.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["png8", "png16"])
def test_gt_rmse_is_printed_in_the_inputs_units(tmp_path, capsys, kind):
    """--gt: the RMSE of bicubic against the ground truth, in the input's units after the depth scale (8-bit:
    levels; 16-bit: metres), as computed here with PIL."""
    rgb, depth = scene(*HR)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    path, stored = _write_input(tmp_path, kind, pil_resize(depth, LR))
    gt = INPUTS[kind][0](depth)
    cv2.imwrite(str(tmp_path / "gt.png"), gt)
    assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(path), "--out", str(tmp_path / "o.npy"),
                    "--checkpoint", "bicubic", "--gt", str(tmp_path / "gt.png")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("RMSE vs ground truth"))
    printed = float(line.rsplit("bicubic ", 1)[1])
    factor = INPUTS[kind][1]
    by_hand = math.sqrt(float(np.mean((pil_resize(stored, HR) - gt.astype(np.float32)) ** 2))) / factor
    assert printed == pytest.approx(by_hand, rel=2e-3, abs=1e-3)


def test_folder_mode_keeps_each_files_units(tmp_path, capsys):
    """Folder mode with an 8-bit and a 16-bit depth map side by side: each PNG result in its own input's units."""
    rgb_dir, depth_dir = tmp_path / "rgbs", tmp_path / "depths"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    expected = {}
    for name, kind in (("eight", "png8"), ("sixteen", "png16")):
        rgb, depth = scene(*HR, seed=len(name))
        cv2.imwrite(str(rgb_dir / f"{name}.png"), rgb)
        stored = INPUTS[kind][0](pil_resize(depth, LR))
        cv2.imwrite(str(depth_dir / f"{name}.png"), stored)
        expected[name] = pil_resize(stored.astype(np.float32), HR)
    assert upsample("--rgb", str(rgb_dir), "--depth", str(depth_dir), "--out", str(tmp_path / "out"),
                    "--checkpoint", "bicubic") == 0
    for name, want in expected.items():
        got = cv2.imread(str(tmp_path / "out" / f"{name}.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
        assert np.abs(got - np.round(want)).max() <= 1.0, name


# ------------------------------------------------------------------------------------------------ inputs


@pytest.fixture()
def pair(tmp_path):
    rgb, depth = scene(*HR)
    folder = tmp_path / "pair"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "rgb.png"), rgb)
    cv2.imwrite(str(folder / "lr.png"), np.round(pil_resize(depth, LR) * 1000).astype(np.uint16))
    cv2.imwrite(str(folder / "gt.png"), np.round(depth * 1000).astype(np.uint16))
    return folder


SPELLINGS = {
    "absolute": lambda f, name: str(f / name),
    "relative": lambda f, name: name,
    "dot-dot": lambda f, name: str(f / "sub" / ".." / name),
    "symlink": lambda f, name: (f / f"link_{name}").symlink_to(f / name) or str(f / f"link_{name}"),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("option", ["--out", "--preview"])
@pytest.mark.parametrize("victim", ["rgb.png", "lr.png", "gt.png"])
def test_no_output_option_overwrites_an_input(pair, capsys, monkeypatch, victim, option, spelling):
    monkeypatch.chdir(pair)
    target = SPELLINGS[spelling](pair, victim)
    before = snapshot(pair)
    args = {"--out": str(pair / "out.png"), "--preview": None}
    args[option] = target
    argv = ["--rgb", str(pair / "rgb.png"), "--depth", str(pair / "lr.png"), "--gt", str(pair / "gt.png"),
            "--checkpoint", "bicubic", "--out", args["--out"]] + (["--preview", args["--preview"]]
                                                                 if args["--preview"] else [])
    assert upsample(*argv) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite an input file" in err and err.count("\n") == 1, err
    assert snapshot(pair) == before


@pytest.mark.parametrize("spelling", ["absolute", "dot-dot", "symlink"])
@pytest.mark.parametrize("victim", ["rgbs", "depths"])
def test_folder_mode_never_writes_into_an_input_folder(tmp_path, capsys, victim, spelling):
    rgb, depth = scene(*HR)
    for folder in ("rgbs", "depths", "sub"):
        (tmp_path / folder).mkdir()
    cv2.imwrite(str(tmp_path / "rgbs" / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "depths" / "a.png"), np.round(pil_resize(depth, LR) * 1000).astype(np.uint16))
    out = SPELLINGS[spelling](tmp_path, victim)
    before = snapshot(tmp_path)
    assert upsample("--rgb", str(tmp_path / "rgbs"), "--depth", str(tmp_path / "depths"), "--out", out,
                    "--checkpoint", "bicubic", "--preview", "yes") == 2
    assert "write the results to a folder of their own" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------ splits


@pytest.fixture(scope="module")
def nyu7(tmp_path_factory) -> Path:
    """A 7-pair NYU-format file of distinct generated scenes (32 x 48, metres)."""
    scenes = [scene(32, 48, seed) for seed in range(7)]
    path = tmp_path_factory.mktemp("nyu7") / "nyu7.mat"
    rgbs = np.stack([s[0][..., ::-1] for s in scenes])
    write_nyu_file(path, np.ascontiguousarray(rgbs), np.stack([s[1] * (1 + i) for i, s in enumerate(scenes)]))
    return path


def _names(dataset) -> list[str]:
    return [dataset[i]["name"] for i in range(len(dataset))]


@pytest.mark.parametrize("cache", [False, True])
def test_train_validation_and_test_pairs_are_disjoint(nyu7, cache):
    """NYU: the first num_train pairs train, less the last val_count of them, which validate; the rest test.
    Checked by name and by content, and through the loaders the Trainer gets."""
    dm = DSRDataModule(mat_path=str(nyu7), num_train=5, val_count=2, crop=16, scales=[4], batch_size=2,
                       num_workers=0, cache=cache)
    dm.check("fit")
    dm.setup("fit")
    train = _names(dm.train_set.base)
    (val_spec,), (test_spec,) = dm.val_sets, dm.test_sets
    val_set, val_border, test_set, test_border = val_spec.open(4), val_spec.border, test_spec.open(4), test_spec.border
    assert sorted(train) == ["nyu_0000", "nyu_0001", "nyu_0002"]
    assert _names(val_set) == ["nyu_0003", "nyu_0004"] and _names(test_set) == ["nyu_0005", "nyu_0006"]
    assert val_border == test_border == 6
    depths = {"train": [dm.train_set.base[i]["depth"] for i in range(len(dm.train_set.base))],
              "val": [s["depth"] for s in val_set], "test": [s["depth"] for s in test_set]}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not any(torch.equal(x, y) for x in depths[a] for y in depths[b]), (a, b)
    assert [b["name"][0] for b in dm.val_dataloader()[0]] == ["nyu_0003", "nyu_0004"]
    assert [b["name"][0] for b in dm.test_dataloader()[0]] == ["nyu_0005", "nyu_0006"]
    assert len(dm.train_set) == 3 and dm.eval_names("val") == ["nyu_val_x4"]


def test_synthetic_validation_scenes_are_not_training_scenes():
    """No held-out procedural scene is a training scene: each validation scene differs from every training
    scene drawn at the validation size."""
    from depthsr.data.synthetic import SyntheticDataset

    dm = DSRDataModule(synthetic=4, crop=32, scales=[4], num_workers=0, batch_size=2)
    dm.setup("fit")
    (spec,) = dm.val_sets
    val, border = spec.open(4), spec.border
    assert len(val) == 8 and border == 0
    size = tuple(val[0]["depth"].shape[-2:])
    train_at_val_size = SyntheticDataset(4, size, seed=0)  # the training scenes (seeds 0..3) at that size
    for i in range(len(val)):
        assert not any(torch.equal(val[i]["depth"], train_at_val_size[j]["depth"]) for j in range(4)), i


def _folder_set(root: Path, meta: dict | None, n: int = 2, size: tuple[int, int] = (40, 40)) -> Path:
    root.mkdir(parents=True)
    if meta is not None:
        (root / "meta.json").write_text(json.dumps(meta))
    for i in range(n):
        rgb, depth = scene(*size, seed=i)
        (root / f"p{i}").mkdir()
        cv2.imwrite(str(root / f"p{i}" / "rgb.png"), rgb)
        np.save(root / f"p{i}" / "depth.npy", depth)
    return root


@pytest.mark.parametrize("meta", [{"units": "m", "role": "eval"}, {"units": "m"}, None])
def test_eval_sets_are_refused_for_training(tmp_path, meta):
    """role: eval, or no role at all (the default), is never trained on: check and setup both refuse."""
    path = _folder_set(tmp_path / "evalset", meta)
    dm = DSRDataModule(train_folders=[str(path)], crop=32, scales=[4], num_workers=0, batch_size=2, repeats=4)
    for step in (lambda: dm.check("fit"), lambda: dm.setup("fit")):
        with pytest.raises(DepthSRError, match=r"evalset: meta.json marks this set role '(eval)'; only 'train' sets"):
            step()


def test_train_sets_are_trained_on_and_skipped_by_compare(tmp_path, capsys):
    root = tmp_path / "sets"
    train = _folder_set(root / "trainset", {"units": "m", "role": "train"})
    _folder_set(root / "evalset", {"units": "m", "role": "eval"})
    dm = DSRDataModule(train_folders=[str(train)], folder_repeats=3, crop=32, scales=[4], num_workers=0,
                       batch_size=2)
    dm.check("fit")
    dm.setup("fit")
    assert len(dm.train_set) == 6 and sorted(set(_names(dm.train_set.base))) == ["p0", "p1"]
    assert main(["compare", "--data", f"folder:{root}", "--scales", "4", "--methods", "bicubic", "--out",
                 str(tmp_path / "cmp"), "--quiet"]) == 0
    assert "skipping trainset: marked role 'train'" in capsys.readouterr().out
    assert {r["dataset"] for r in read_csv(tmp_path / "cmp" / "results.csv")} == {"evalset"}


# ------------------------------------------------------------------------------------------------ protocols


def _spiky(h: int, w: int, low: float, high: float, spike: float, seed: int) -> torch.Tensor:  # 1 x h x w
    """A smooth depth in low..high with scattered invalid (0) pixels and one spike: the valid range is
    spike - low, which neither the LR input (the spike is averaged away) nor a range counting the zeros has."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    depth = low + (high - low) * (0.5 * xx + 0.5 * yy)
    depth[torch.rand(h, w, generator=g) < 0.01] = 0.0
    depth[h // 2, w // 3] = spike
    return depth[None]


def test_noisy_protocol_scales_noise_by_each_images_own_valid_gt_range():
    """noise x (max - min of the image's valid ground truth), per image of a batch."""
    depth = torch.stack([_spiky(256, 256, 5.0, 6.0, 10.0, 0), _spiky(256, 256, 1.0, 1.5, 3.0, 1)])
    noisy = downsample(depth, 4, "noisy", 0.05, torch.Generator().manual_seed(0))
    clean = downsample(depth, 4, "bicubic")
    for i, valid_range in enumerate((5.0, 2.0)):
        diff = (noisy[i] - clean[i]).double()
        assert float(diff.std()) == pytest.approx(0.05 * valid_range, rel=0.08), i
        assert abs(float(diff.mean())) < 4 * 0.05 * valid_range / 64  # zero-mean: 4 standard errors
    single = degrade({"depth": depth[1], "rgb": torch.zeros(3, 256, 256), "valid": depth[1] > 0, "name": "a"},
                     4, "noisy", 0.05, torch.Generator().manual_seed(0))
    assert float((single["lr"] - clean[1]).std()) == pytest.approx(0.1, rel=0.08)


def test_point_protocol_after_cropping_to_a_multiple():
    """30 x 43 at x4: cropped to 28 x 40 (each side by its own remainder), then the centre of each 4 x 4 block."""
    depth = torch.arange(30 * 43, dtype=torch.float32).view(1, 30, 43)
    out = degrade({"depth": depth, "rgb": torch.zeros(3, 30, 43), "valid": depth > 0}, 4, "point")
    assert out["depth"].shape == (1, 28, 40) and out["rgb"].shape == (3, 28, 40) and out["valid"].shape == (1, 28, 40)
    assert torch.equal(out["lr"][0], depth[0, 2:28:4, 2:40:4])


def test_real_protocol_crops_the_ground_truth_and_keeps_the_measured_input():
    depth = torch.rand(1, 66, 70) + 1
    lr = torch.rand(1, 16, 17) + 5
    sample = {"depth": depth, "rgb": torch.rand(3, 66, 70), "valid": depth > 0, "lr": lr, "name": "s"}
    out = degrade(sample, 4, "real")
    assert torch.equal(out["lr"], lr) and torch.equal(out["depth"], depth[..., :64, :68])
    assert out["rgb"].shape == (3, 64, 68) and out["scale"] == 4
    with pytest.raises(DepthSRError, match=r"s: lr_x4 is 12 x 17 but the ground truth is 66 x 70"):
        degrade({**sample, "lr": torch.rand(1, 12, 17)}, 4, "real")


class Top(Method):
    """Predicts the top of the normalised range everywhere: its result is the top of the range used to
    normalise (the LR's for norm lr, the ground truth's for norm gt)."""

    name = "top"

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return torch.ones(lr.shape[0], 1, *rgb.shape[-2:], dtype=lr.dtype)


@pytest.mark.parametrize("norm", ["lr", "gt"])
def test_norm_lr_and_gt_on_data_whose_ranges_differ(norm):
    """The method's range comes from the LR input (norm lr) or the valid ground truth (norm gt); the metric is
    per image, in the data set's report units (metres -> cm), both computed here."""
    samples = []
    for i in range(2):
        depth = _spiky(64, 64, 2.0 + i, 3.0 + i, 6.0 + i, i)
        samples.append({"depth": depth, "rgb": torch.rand(3, 64, 64), "valid": depth > 0, "units": "m",
                        "name": f"s{i}"})
    res = evaluate(Top(), samples, 4, "bicubic", norm)
    rows = []
    for s in samples:
        gt = s["depth"][0].numpy().astype(np.float64)
        lr = pil_resize(gt, (16, 16))
        top = (gt[gt > 0].max() if norm == "gt" else lr[lr != 0].max())
        rows.append(100 * math.sqrt(np.mean((top - gt[gt > 0]) ** 2)))
    assert [r["rmse"] for r in res.per_image] == pytest.approx(rows, rel=1e-4)
    assert res.rmse == pytest.approx(sum(rows) / 2, rel=1e-4) and res.units == "cm"


# ------------------------------------------------------------------------------------------------ tables


def _set_of(root: Path, units: str, kind: str, n: int = 2, size=(40, 56), gain: float = 1.0) -> None:
    """A folder set whose depth is stored as `kind` (npy: float; png16: millimetres) with isolated invalid
    pixels (never a whole LR footprint, so the LR input has no zeros)."""
    root.mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"units": units, "role": "eval"}))
    for i in range(n):
        rgb, depth = scene(*size, seed=i)
        depth = depth * gain
        depth[3 + i, 5] = 0.0
        (root / f"p{i}").mkdir()
        cv2.imwrite(str(root / f"p{i}" / "rgb.png"), rgb)
        if kind == "npy":
            np.save(root / f"p{i}" / "depth.npy", depth)
        else:
            cv2.imwrite(str(root / f"p{i}" / "depth.png"), np.round(depth * 1000).astype(np.uint16))


def _by_hand(gt: np.ndarray, scale: int, factor: float) -> tuple[float, float, int]:
    """(RMSE, MAE, pixels) of PIL bicubic down and up, over the valid pixels, times the report factor."""
    h, w = gt.shape[0] // scale * scale, gt.shape[1] // scale * scale
    gt = gt[:h, :w].astype(np.float32)
    up = pil_resize(pil_resize(gt, (h // scale, w // scale)), (h, w)).astype(np.float64)
    err = (up - gt)[gt != 0] * factor
    return math.sqrt(float(np.mean(err**2))), float(np.mean(np.abs(err))), int(err.size)


def parse_markdown(text: str) -> dict[str, dict]:
    """results.md -> {dataset: {header, cells {(method, scale): (rmse, mae)}, gains {method: {scale: %}},
    worse {method: {scale: (n, of)}}}}."""
    tables = {}
    for block in re.split(r"\n## ", text)[1:]:
        head, *lines = block.splitlines()
        name, meta = re.fullmatch(r"(\S+) \((.*)\)", head).groups()
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]
        scales = [c[1:] for c in rows[0][1:]]
        cells = {}
        for row in rows[2:]:
            for scale, cell in zip(scales, row[1:]):
                rmse, mae = re.fullmatch(r"([-\d.]+) \(([-\d.]+)\)", cell).groups()
                cells[row[0], scale] = (rmse, mae)
        gains, worse = {}, {}
        for line in lines:
            if m := re.fullmatch(r"(\S+) vs bicubic \(RMSE reduction\): (.*)", line):
                gains[m[1]] = {s: p for p, s in re.findall(r"([+-][\d.]+)% at x(\S+?)(?:,|$)", m[2])}
            if m := re.fullmatch(r"(\S+): images worse than bicubic: (.*)", line):
                worse[m[1]] = {s: (int(a), int(b)) for a, b, s in re.findall(r"(\d+)/(\d+) at x(\S+?)(?:,|$)", m[2])}
        tables[name] = {"meta": meta, "cells": cells, "gains": gains, "worse": worse}
    return tables


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """compare over a folder of sets in metres (.npy), millimetres (16-bit PNG) and levels: bicubic and jbu at
    x4, x2 and x16 (given out of order)."""
    root = tmp_path_factory.mktemp("sets")
    _set_of(root / "metres", "m", "npy")
    _set_of(root / "millimetres", "mm", "png16")
    _set_of(root / "levels", "disparity8", "npy", n=3, gain=100.0)
    out = root.parent / f"{root.name}_cmp"
    assert main(["compare", "--data", f"folder:{root}", "--scales", "4", "2", "16", "--methods", "bicubic,jbu", "--out",
                 str(out), "--quiet", "--device", "cpu"]) == 0
    return out


FACTORS = {"metres": (100.0, "cm"), "millimetres": (0.1, "cm"), "levels": (1.0, "levels")}


def test_per_image_rows_carry_the_unit_factor(compared):
    """Each bicubic row of per_image.csv is the RMSE, MAE and pixel count computed here, times the set's report
    factor (metres -> cm, millimetres -> cm, levels as they are)."""
    rows = read_csv(compared / "per_image.csv")
    root = compared.parent / compared.name.removesuffix("_cmp")
    checked = 0
    for row in rows:
        if row["method"] != "bicubic":
            continue
        factor, report = FACTORS[row["dataset"]]
        pair = root / row["dataset"] / row["image"]
        gt = np.load(pair / "depth.npy") if (pair / "depth.npy").is_file() else \
            cv2.imread(str(pair / "depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
        rmse, mae, pixels = _by_hand(gt, int(row["scale"]), factor)
        assert float(row["rmse"]) == pytest.approx(rmse, rel=1e-3), row
        assert float(row["mae"]) == pytest.approx(mae, rel=1e-3), row
        assert int(row["pixels"]) == pixels and row["units"] == report
        checked += 1
    assert checked == 3 * (2 + 2 + 3)


def test_results_csv_summarises_the_per_image_rows(compared):
    rows, per_image = read_csv(compared / "results.csv"), read_csv(compared / "per_image.csv")
    assert len(rows) == 3 * 2 * 3
    assert list(rows[0]) == ["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae",
                             "worse_than_bicubic"]  # the columns the README lists, in its order
    for row in rows:
        mine = [r for r in per_image if all(r[k] == row[k] for k in ("method", "dataset", "scale", "protocol"))]
        assert len(mine) == int(row["images"]) == (3 if row["dataset"] == "levels" else 2)
        assert row["units"] == FACTORS[row["dataset"]][1] and all(r["units"] == row["units"] for r in mine)
        mean = sum(float(r["rmse"]) for r in mine) / len(mine)
        assert float(row["rmse"]) == pytest.approx(mean, rel=1e-5, abs=1e-6)  # results.csv: 6 decimals
        pooled_mae = sum(float(r["mae"]) * int(r["pixels"]) for r in mine) / sum(int(r["pixels"]) for r in mine)
        assert float(row["mae"]) == pytest.approx(pooled_mae, rel=1e-5, abs=1e-6)
        if row["method"] == "bicubic":
            assert row["worse_than_bicubic"] == ""
        else:
            bicubic = {r["image"]: float(r["rmse"]) for r in per_image if r["method"] == "bicubic"
                       and (r["dataset"], r["scale"]) == (row["dataset"], row["scale"])}
            assert int(row["worse_than_bicubic"]) == sum(float(r["rmse"]) > bicubic[r["image"]] for r in mine)


def test_every_number_in_results_md_is_its_results_csv_row(compared, capsys):
    rows = read_csv(compared / "results.csv")
    md = (compared / "results.md").read_text()
    tables = parse_markdown(md)
    assert set(tables) == {r["dataset"] for r in rows}
    for dataset, table in tables.items():
        sub = [r for r in rows if r["dataset"] == dataset]
        assert table["meta"] == f"{sub[0]['units']}, {sub[0]['images']} images, protocol bicubic"
        assert set(table["cells"]) == {(r["method"], r["scale"]) for r in sub}
        for r in sub:
            rmse, mae = table["cells"][r["method"], r["scale"]]
            assert (rmse, mae) == (f"{float(r['rmse']):.3f}", f"{float(r['mae']):.3f}"), (dataset, r)
            if r["method"] == "bicubic":
                continue
            bicubic = next(b for b in sub if b["method"] == "bicubic" and b["scale"] == r["scale"])
            gain = 100 * (1 - float(r["rmse"]) / float(bicubic["rmse"]))
            assert float(table["gains"][r["method"]][r["scale"]]) == pytest.approx(gain, abs=0.051)
            assert table["worse"][r["method"]][r["scale"]] == (int(r["worse_than_bicubic"]), int(r["images"]))
        assert [c[1] for c in table["cells"] if c[0] == "bicubic"] == ["2", "4", "16"]  # columns in ratio order


def test_nyu_file_is_evaluated_on_the_pairs_after_the_first_1000(tmp_path):
    """A file of more than 1000 pairs: only its test part (pairs 1000 on) is evaluated, with NYU's 6-pixel
    border, in cm."""
    n = 1003
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (n, 20, 20, 3), dtype=np.uint8)
    depth = (1 + rng.random((n, 20, 20))).astype(np.float32)
    depth[:NUM_TRAIN] = 0.0  # training pairs carry no valid depth: evaluated, they would count no image
    write_nyu_file(tmp_path / "big.mat", rgb, depth)
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"nyu:{tmp_path / 'big.mat'}", "--scales", "4", "--methods", "bicubic",
                 "--out", str(out), "--quiet"]) == 0
    (row,) = read_csv(out / "results.csv")
    per_image = read_csv(out / "per_image.csv")
    assert [r["image"] for r in per_image] == ["nyu_1000", "nyu_1001", "nyu_1002"] and row["images"] == "3"
    by_hand = []
    for i in range(NUM_TRAIN, n):
        gt = depth[i]
        up = pil_resize(pil_resize(gt, (5, 5)), (20, 20)).astype(np.float64)
        by_hand.append(100 * math.sqrt(float(np.mean((up - gt)[6:14, 6:14] ** 2))))
    assert [float(r["rmse"]) for r in per_image] == pytest.approx(by_hand, rel=1e-3)
    assert {r["pixels"] for r in per_image} == {"64"} and row["units"] == "cm"


# ------------------------------------------------------------------------------------------------ network


def _conv(seq, x: torch.Tensor, k: int, stride: int = 1) -> torch.Tensor:
    """A k x k Conv2d ('same' padding) then ReLU."""
    conv = seq[0]
    assert conv.weight.shape[-2:] == (k, k)  # the layer shapes the shipped weights have
    return F.relu(F.conv2d(x, conv.weight, conv.bias, stride, k // 2))


def _branch(seq, g: torch.Tensor, k: int) -> torch.Tensor:
    """k x k conv ('same') -> ReLU -> 1x1 conv: PAKA's attention branches."""
    hidden = F.relu(F.conv2d(g, seq[0].weight, seq[0].bias, padding=k // 2))
    return F.conv2d(hidden, seq[2].weight, seq[2].bias)


def _guided(layer, x: torch.Tensor, g: torch.Tensor, dilation: int) -> torch.Tensor:
    """A 3 x 3 guided convolution at `dilation`, by its documented definition."""
    assert layer.weight.shape[-2:] == (3, 3)
    if isinstance(layer, PAKAConv2d):
        a_ch, a_sp = _branch(layer.channel_attention, g, 1), _branch(layer.spatial_attention, g, 3)
        return paka_conv2d_reference(x, layer.weight, layer.bias, a_ch, a_sp, dilation=dilation)
    if isinstance(layer, PACConv2d):
        f = F.conv2d(g, layer.embed.weight, layer.embed.bias)
        b, c, h, w = f.shape
        cols = F.unfold(f, 3, dilation=dilation, padding=dilation).view(b, c, 9, h, w)
        kernel = torch.exp(-0.5 * (cols - f[:, :, None]).square().sum(1))
        return pac_conv2d_reference(x, layer.weight, layer.bias, kernel, dilation=dilation)
    assert isinstance(layer, PlainConv2d)
    return F.conv2d(torch.cat([x, g], 1), layer.weight, layer.bias, padding=dilation, dilation=dilation)


def reference_network(net, lr: torch.Tensor, rgb: torch.Tensor, dilations=(1, 2, 4)) -> torch.Tensor:
    """GuidedDSRNet's documented data path, written out here from its weights."""
    height, width = rgb.shape[-2:]
    up = bicubic_resize(lr, (height, width))
    pad = (0, -width % 4, 0, -height % 4)
    up_p, rgb_p = F.pad(up, pad, mode="replicate"), F.pad(rgb, pad, mode="replicate")
    e0 = _conv(net.rgb0, rgb_p, 3)  # RGB encoder at H, H/2, H/4
    e1 = _conv(net.rgb1, e0, 3, stride=2)
    e2 = _conv(net.rgb2, e1, 3, stride=2)
    d1 = _conv(net.depth1, F.pixel_unshuffle(up_p, 2), 3)  # depth encoder: the bicubic depth pixel-unshuffled
    d2 = _conv(net.depth2, F.pixel_unshuffle(up_p, 4), 3)
    g2 = _conv(net.guide2, torch.cat([e2, d2], 1), 1)  # guidance from RGB and depth features
    h = d2
    for block in net.body:  # hierarchical blocks: a chain of guided convs, fused, plus the block's input
        outs, inner = [], h
        for conv, dilation in zip(block.convs, dilations, strict=True):
            inner = F.relu(_guided(conv, inner, g2, dilation))
            outs.append(inner)
        h = h + F.conv2d(torch.cat(outs, 1), block.fuse.weight, block.fuse.bias)
    double = lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
    h = _conv(net.merge1, torch.cat([double(h), d1], 1), 1)  # decoder: back to H/2 with the depth features
    h = h + F.relu(_guided(net.refine1, h, _conv(net.guide1, torch.cat([e1, d1], 1), 1), 1))
    h = _conv(net.merge0, torch.cat([double(h), e0], 1), 1)  # back to H with the RGB features
    h = _conv(net.refine0, h, 3)
    return up + F.conv2d(h, net.out.weight, net.out.bias, padding=1)[..., :height, :width]


@pytest.mark.parametrize("kind", ["paka", "pac", "plain"])
def test_network_computes_its_documented_data_path(kind):
    """Every skip and branch doing its documented work: the network equals its data path written out here
    (float64, weights perturbed so every attention branch is open), at a size that is no multiple of 4."""
    torch.manual_seed(0)
    net = build_model(kind, width=8, blocks=2).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    lr, rgb = torch.rand(2, 1, 8, 10, dtype=torch.float64) + 1, torch.rand(2, 3, 30, 38, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(lr, rgb), reference_network(net, lr, rgb), rtol=1e-9, atol=1e-9)
    assert len(net.body) == 2
    assert [net.rgb2[0].out_channels, net.rgb1[0].out_channels, net.rgb0[0].out_channels] == [8, 6, 4]  # width 8


@pytest.mark.parametrize("cls", [PAKAConv2d, PACConv2d])
@pytest.mark.parametrize("dilation", [1, 3])
def test_static_weights_start_as_nn_conv2d_does(cls, dilation):
    """'The static k x k weight and bias, initialised as nn.Conv2d does': the same numbers from the same seed."""
    torch.manual_seed(5)
    layer = cls(6, 4, 3, dilation, guide_channels=5)
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(6, 4, 3)
    assert torch.equal(layer.weight, conv.weight) and torch.equal(layer.bias, conv.bias)


def test_plain_twin_keeps_the_size_at_every_dilation():
    for dilation in (1, 2, 4):
        layer = PlainConv2d(3, 2, 3, dilation, guide_channels=4)
        assert layer(torch.rand(1, 3, 11, 9), torch.rand(1, 4, 11, 9)).shape == (1, 2, 11, 9)
        alone = PlainConv2d(3, 2, 3, dilation)  # no guide: the input guides itself
        assert alone(torch.rand(1, 3, 11, 9)).shape == (1, 2, 11, 9)


# ------------------------------------------------------------------------------------------------ shipped model


DEFAULT = DEFAULT_CHECKPOINT  # the package data checkpoints/ links to
PINNED = ("crops256", "middlebury2003", "nyu_normalized", "rgbdd")  # the sets of the model card's tables


def _recorded(method: str) -> list[dict]:
    from depthsr.methods.model_file import model_info

    rows = (model_info(DEFAULT).get("results") or {}).get("rows", [])
    return [r for r in rows if r.get("method") == method]


@pytest.mark.slow
def test_shipped_model_reproduces_its_recorded_results(shared):
    """Every 'default' row the shipped model records for the pinned real sets (`depthsr compare --norm gt` on
    ../shared/data, bicubic protocol, as scripts/train_default.sh and eval_default.sh record them) is
    reproduced within 0.1 %, not only 'better than bicubic'."""
    from depthsr.methods.network import resolve_method

    rows = [r for r in _recorded("default") if r.get("dataset") in PINNED]
    assert {r["dataset"] for r in rows} == set(PINNED), f"{DEFAULT} records no results on {PINNED}"
    method = resolve_method("default")
    for row in rows:
        data = FolderDataset(shared / row["dataset"])
        res = evaluate(method, data, float(row["scale"]), row["protocol"], "gt", data.border)
        assert res.rmse == pytest.approx(row["rmse"], rel=1e-3), row
        assert res.images == row["images"] and res.units == row["units"]


def test_model_card_shows_the_recorded_results():
    """The model card's side-by-side table (bicubic and the shipped default, x4 / x8 / x16) shows the results
    recorded in the shipped model file, to its two decimals."""
    from decimal import ROUND_HALF_UP, Decimal

    card = (ROOT / "checkpoints" / "README.md").read_text()
    lines = [line for line in card.splitlines() if line.startswith("| set |")]
    assert len(lines) == 1, "the model card's side-by-side table (| set | bicubic | shipped default | ...)"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = card.split(lines[0], 1)[1].splitlines()[2:]
    recorded = {(r["method"], r["dataset"], int(r["scale"])): r["rmse"] for m in ("bicubic", "default")
                for r in _recorded(m)}
    checked = 0
    for line in table:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("*", "") for c in line.strip("|").split("|")]
        dataset = cells[0].split(" (")[0]
        for column, method in (("bicubic", "bicubic"), ("shipped default", "default")):
            shown = cells[header.index(column)].split(" / ")
            for scale, value in zip((4, 8, 16), shown, strict=True):
                rmse = recorded[method, dataset, scale]
                twice = Decimal(f"{rmse:.3f}").quantize(Decimal("0.01"), ROUND_HALF_UP)  # rounded from 3 decimals
                assert value in (f"{rmse:.2f}", str(twice)), (method, dataset, scale, rmse)
                checked += 1
    assert checked >= 6 * len(PINNED)


def _doc_tables(doc: Path, start: str, end: str) -> dict[str, dict]:
    """The `depthsr compare` tables (results.md's, under #### headings) that `doc` shows between `start` and `end`."""
    text = doc.read_text().replace("\n#### ", "\n## ")
    return parse_markdown("\n" + text.split(start, 1)[1].split(end, 1)[0])


def _cells_unlike_evaluate(shared: Path, tables: dict, shown: str, method: Method, datasets, norm: str) -> list[str]:
    """Each of `tables`' cells of the row `shown` on `datasets` that is not what `evaluate(method, ...)` gives to the
    digit (RMSE and MAE at 3 decimals), as 'dataset xS: shown ..., compare ...'."""
    wrong = []
    for dataset in datasets:
        data = FolderDataset(shared / dataset)
        for (name, scale), (rmse, mae) in tables[dataset]["cells"].items():
            if name == shown:
                res = evaluate(method, data, float(scale), norm=norm, border=data.border)
                if (rmse, mae) != (f"{res.rmse:.3f}", f"{res.mae:.3f}"):
                    wrong.append(f"{dataset} x{scale}: shown {rmse} ({mae}), compare {res.rmse:.3f} ({res.mae:.3f})")
    return wrong


def test_model_card_headline_bicubic_rows_are_what_compare_gives(shared):
    """Each bicubic cell of the model card's headline tables is what `depthsr compare` gives today (bicubic is
    the same under norm lr and gt)."""
    from depthsr.methods.baselines import Bicubic

    tables = _doc_tables(ROOT / "checkpoints" / "README.md", "## Results", "## This round")
    assert set(tables) == set(PINNED)
    wrong = _cells_unlike_evaluate(shared, tables, "bicubic", Bicubic(), tables, "lr")
    assert not wrong, wrong


@pytest.mark.slow
def test_readme_compare_tables_are_what_compare_gives_for_the_shipped_model(shared):
    """The README's tables of `depthsr compare ... --methods bicubic,default --norm lr` (scripts/eval_default.sh's
    out/eval_lr) show today's shipped model: every cell of its small sets is what `evaluate` gives, to the digit."""
    from depthsr.methods.network import resolve_method

    tables = _doc_tables(ROOT / "README.md", "On the real evaluation pairs of `../shared/data`", "\n## Protocols")
    assert set(tables) == set(PINNED)
    small = ("crops256", "middlebury2003", "nyu_normalized")  # not rgbdd: 40 pairs x 3 ratios, minutes
    wrong = _cells_unlike_evaluate(shared, tables, "default", resolve_method("default"), small, "lr")
    assert not wrong, wrong


@pytest.mark.parametrize("name", ["paka", "pac", "plain"])
def test_a_fresh_network_is_exactly_bicubic(name):
    torch.manual_seed(0)
    net = build_model(name)
    lr, rgb = torch.rand(1, 1, 8, 8) + 1, torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(lr, rgb), bicubic_resize(lr, (32, 32)), rtol=0, atol=0)


def test_readme_parameter_counts_are_the_networks():
    readme = (ROOT / "README.md").read_text()
    for name in ("paka", "pac", "plain"):
        shown = re.search(rf"^\| {name} \| ([\d,]+) \|", readme, re.M)
        assert shown and int(shown[1].replace(",", "")) == sum(p.numel() for p in build_model(name).parameters()), name


# ------------------------------------------------------------------------------------------------ readers


def test_rgb_is_read_as_rgb_in_0_1_at_8_and_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    Image.fromarray(rgb8).save(tmp_path / "a8.png")  # PIL writes RGB order
    cv2.imwrite(str(tmp_path / "a16.png"), rgb16[..., ::-1])  # cv2 writes BGR order
    from depthsr.data.io import read_rgb

    np.testing.assert_allclose(read_rgb(tmp_path / "a8.png").numpy(), rgb8.transpose(2, 0, 1) / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_rgb(tmp_path / "a16.png").numpy(), rgb16.transpose(2, 0, 1) / 65535.0,
                               atol=1e-7)


def test_big_endian_pfm_is_read(tmp_path):
    """PFM's scale line says the byte order: positive is big-endian (rows stored bottom first)."""
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) + 0.5
    (tmp_path / "be.pfm").write_bytes(b"Pf\n4 3\n1.0\n" + arr[::-1].astype(">f4").tobytes())
    np.testing.assert_array_equal(read_depth(tmp_path / "be.pfm")[0].numpy(), arr)


@pytest.mark.parametrize("name,meta,border", [
    ("nyu_set", {"units": "m"}, 6),
    ("mine", {"units": "m", "description": "NYU Depth v2 test crops"}, 6),
    ("nyu_set", {"units": "m", "border": 2}, 2),
    ("mine", {"units": "m"}, 0),
])
def test_border_belongs_to_the_data_set(tmp_path, name, meta, border):
    """NYU's 6 pixels for a folder set that names NYU (folder name or description), a meta.json 'border'
    wherever it is given, 0 otherwise; the per-image pixel counts show it."""
    _folder_set(tmp_path / name, meta, n=1, size=(40, 48))
    assert FolderDataset(tmp_path / name).border == border
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{tmp_path / name}", "--scales", "4", "--methods", "bicubic",
                 "--out", str(out), "--quiet"]) == 0
    assert read_csv(out / "per_image.csv")[0]["pixels"] == str((40 - 2 * border) * (48 - 2 * border))


def test_middlebury_2014_unknown_disparity_is_invalid_not_infinite(tmp_path):
    from depthsr.data.middlebury import middlebury_dataset

    rgb, depth = scene(32, 40)
    (tmp_path / "s").mkdir()
    cv2.imwrite(str(tmp_path / "s" / "im0.png"), rgb)
    disp = depth * 50
    disp[4:6, 10:20] = np.inf
    write_pfm(tmp_path / "s" / "disp0.pfm", disp)
    sample = middlebury_dataset(tmp_path)[0]
    assert torch.isfinite(sample["depth"]).all() and int((~sample["valid"]).sum()) == 20
    assert torch.isfinite(degrade(sample, 4, "bicubic")["lr"]).all()


def test_middlebury_folder_sets_keep_their_measured_inputs(tmp_path):
    from depthsr.data.middlebury import middlebury_dataset

    _folder_set(tmp_path / "set", {"units": "disparity8", "role": "eval"}, n=1)
    np.save(tmp_path / "set" / "p0" / "lr_x4.npy", np.ones((10, 10), np.float32))
    assert torch.equal(middlebury_dataset(tmp_path / "set", 4)[0]["lr"], torch.ones(1, 10, 10))


# ------------------------------------------------------------------------------------------------ training data


def test_training_crops_are_windows_of_the_source_with_rgb_and_depth_flipped_together():
    """Every crop is a crop x crop window of its (non-square) source, flipped or not, and the RGB, the depth
    and the mask are the same window with the same flips."""
    import random

    from depthsr.data.datamodule import RandomCrops

    h, w = 40, 100
    depth = torch.arange(h * w, dtype=torch.float32).view(1, h, w) + 1
    sample = {"depth": depth, "rgb": depth.expand(3, h, w) / (h * w), "valid": depth % 7 != 0, "units": "m"}
    crops = RandomCrops([sample], 32, repeats=1)
    random.seed(0)
    flips = set()
    for _ in range(60):
        c = crops[0]
        assert c["depth"].shape == (1, 32, 32)
        d = c["depth"][0]
        flip_x, flip_y = bool(d[0, 1] < d[0, 0]), bool(d[1, 0] < d[0, 0])
        flips.add((flip_x, flip_y))
        window = d.flip(-1) if flip_x else d
        window = window.flip(-2) if flip_y else window
        y, x = divmod(int(window[0, 0]) - 1, w)
        assert torch.equal(window, depth[0, y : y + 32, x : x + 32])
        assert torch.equal(c["rgb"], c["depth"].expand(3, 32, 32) / (h * w))
        assert torch.equal(c["valid"], c["depth"] % 7 != 0)
    assert len(flips) == 4


@pytest.mark.parametrize("protocol", ["point", "noisy"])
def test_training_batches_follow_the_configured_protocol(protocol):
    from depthsr.data.datamodule import DegradeCollate

    depth = torch.rand(2, 1, 32, 32) + 1
    items = [{"rgb": torch.rand(3, 32, 32), "depth": depth[i], "valid": torch.ones(1, 32, 32, dtype=torch.bool),
              "units": "m"} for i in range(2)]
    batch = DegradeCollate([4], protocol, 0.05)(items)
    clean = downsample(depth, 4, "bicubic")
    if protocol == "point":
        assert torch.equal(batch["lr"], depth[..., 2::4, 2::4])
    else:
        assert 0.3 < float((batch["lr"] - clean).std()) / (0.05 * float(depth.amax() - depth.amin())) < 1.7


def test_padding_images_of_a_distributed_evaluation_count_nothing(nyu7):
    from depthsr.data.nyu import NYUv2Dataset
    from depthsr.data.sets import Degraded

    data = Degraded(NYUv2Dataset(nyu7, [0, 1, 2]), 4, "bicubic", border=6, name="nyu_test")
    assert data[0]["valid"].any() and not data[3]["valid"].any() and data[3]["name"] == "nyu_0000"
    assert (data[3]["eval_set"], data[3]["border"], data[3]["protocol"]) == ("nyu_test_x4", 6, "bicubic")


def test_training_loader_shuffles_and_drops_the_last_partial_batch():
    from torch.utils.data import RandomSampler

    dm = DSRDataModule(synthetic=5, crop=32, scales=[4], num_workers=0, batch_size=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RandomSampler) and loader.drop_last and len(loader) == 2


# ------------------------------------------------------------------------------------------------ upsample


def test_gt_a_few_pixels_larger_is_cropped_to_the_result(tmp_path, capsys):
    """A ground truth larger than the result by less than a ratio (the LR cropped it) is cropped, as the
    protocols crop the ground truth, and the RMSE is taken over the result's pixels."""
    rgb, depth = scene(*HR)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    lr = pil_resize(depth, LR)
    np.save(tmp_path / "lr.npy", lr)
    big = np.pad(depth, ((0, 3), (0, 2)), mode="edge") + 0.0
    np.save(tmp_path / "gt.npy", big)
    assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "lr.npy"), "--out",
                    str(tmp_path / "o.npy"), "--checkpoint", "bicubic", "--gt", str(tmp_path / "gt.npy")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("RMSE vs ground truth"))
    by_hand = math.sqrt(float(np.mean((pil_resize(lr, HR) - depth) ** 2)))
    assert float(line.rsplit("bicubic ", 1)[1]) == pytest.approx(by_hand, rel=2e-3, abs=1e-3)


def test_scale_is_checked_on_both_axes(tmp_path, capsys):
    """100 x 100 beside 400 x 406 (one view, x4 down, x4.06 across): --scale 4 fits the height, not the width."""
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((400, 406, 3), np.uint8))
    np.save(tmp_path / "lr.npy", np.ones((100, 100), np.float32))
    assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "lr.npy"), "--out",
                    str(tmp_path / "o.npy"), "--checkpoint", "bicubic", "--scale", "4") == 2
    assert "--scale 4 does not match the sizes" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_untrained_ratio_note_only_off_the_trained_ratios(tmp_path, capsys):
    from depthsr.methods.model_file import save_network

    torch.manual_seed(0)
    net = build_model("plain", width=8, blocks=1)
    save_network(tmp_path / "net.safetensors", net, "plain", net.config, [4, 8])
    rgb, depth = scene(*HR)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    for ratio, noted in ((4, False), (8, False), (2, True)):
        np.save(tmp_path / "lr.npy", pil_resize(depth, (HR[0] // ratio, HR[1] // ratio)))
        assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "lr.npy"), "--out",
                        str(tmp_path / "o.npy"), "--checkpoint", str(tmp_path / "net.safetensors")) == 0
        out = capsys.readouterr().out
        assert ("note: the model was trained for x4/x8, not x2" in out) == noted, (ratio, out)


# ------------------------------------------------------------------------------------------------ method


def test_depth_larger_than_the_rgb_on_one_axis_is_refused():
    from depthsr.methods.baselines import Bicubic

    with pytest.raises(DepthSRError, match="the depth must not be larger than the rgb"):
        Bicubic()(torch.rand(1, 1, 100, 101) + 1, torch.rand(1, 3, 100, 100))


def test_small_maps_whose_size_rounded_are_accepted():
    """7 x 9 beside 28 x 37 (37 / 4 rounded to 9): within a pixel of the RGB's aspect ratio."""
    from depthsr.methods.baselines import Bicubic

    lr = torch.rand(1, 1, 7, 9) + 1
    torch.testing.assert_close(Bicubic()(lr, torch.rand(1, 3, 28, 37)), bicubic_resize(lr, (28, 37)),
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ metric


def test_metric_border_on_a_non_square_image_by_hand():
    from depthsr.metrics import DepthMetrics, per_image_errors

    gt = torch.full((1, 1, 6, 9), 2.0)
    pred = gt.clone()
    pred[..., 1:5, 1:8] += torch.arange(28, dtype=torch.float32).view(4, 7) / 10  # the inside, 4 x 7
    e = per_image_errors(pred, gt, border=1)
    inside = (torch.arange(28, dtype=torch.float64) / 10)
    assert e["count"].item() == 28 and e["sq"].item() == pytest.approx(float((inside**2).sum()))
    m = DepthMetrics(border=1)
    m.update(pred, gt)
    assert float(m.compute()["mae"]) == pytest.approx(float(inside.mean()))


def test_delta1_counts_under_and_over_estimates_alike():
    from depthsr.metrics import DepthMetrics

    gt = torch.tensor([[[[4.0, 4.0, 4.0, 4.0]]]])
    pred = torch.tensor([[[[2.0, 3.5, 4.5, 8.0]]]])  # ratios 2, 1.14, 1.125, 2
    m = DepthMetrics()
    m.update(pred, gt)
    assert float(m.compute()["delta1"]) == 0.5


def test_images_without_valid_pixels_are_not_counted():
    from depthsr.metrics import DepthMetrics

    gt = torch.stack([torch.full((1, 4, 4), 2.0), torch.zeros(1, 4, 4)])
    pred = torch.full((2, 1, 4, 4), 3.0)
    m = DepthMetrics()
    m.update(pred, gt)
    out = m.compute()
    assert int(out["images"]) == 1 and float(out["rmse"]) == 1.0


# ------------------------------------------------------------------------------------------------ compare


def test_measured_inputs_at_the_sensors_own_ratio(tmp_path):
    """Protocol real: lr_x4.npy (column x4) and lr.npy at the sensor's ratio 48/18 (column x2.667), each
    evaluated against the ground truth by hand; bicubic is added when --methods leaves it out."""
    root = tmp_path / "phone"
    _folder_set(root, {"units": "mm", "role": "eval"}, n=2, size=(40, 48))
    for p in ("p0", "p1"):
        gt = np.load(root / p / "depth.npy")
        np.save(root / p / "lr_x4.npy", pil_resize(gt, (10, 12)))
        np.save(root / p / "lr.npy", pil_resize(gt, (15, 18)))
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{root}", "--protocol", "real", "--scales", "4", "--methods", "jbu",
                 "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "results.csv")
    assert [(r["method"], r["scale"]) for r in rows] == [("bicubic", "4"), ("jbu", "4"), ("bicubic", "2.667"),
                                                         ("jbu", "2.667")]
    for scale, lr_name in (("4", "lr_x4.npy"), ("2.667", "lr.npy")):
        per_image = [r for r in read_csv(out / "per_image.csv") if r["method"] == "bicubic" and r["scale"] == scale]
        for r in per_image:
            gt = np.load(root / r["image"] / "depth.npy")
            up = pil_resize(np.load(root / r["image"] / lr_name), gt.shape)
            assert float(r["rmse"]) == pytest.approx(0.1 * math.sqrt(float(np.mean((up - gt) ** 2))), rel=1e-3)
    assert "bicubic was added" in (out / "results.md").read_text()


def test_limit_takes_the_first_images(tmp_path):
    _folder_set(tmp_path / "set", {"units": "m", "role": "eval"}, n=3)
    assert main(["compare", "--data", f"folder:{tmp_path / 'set'}", "--scales", "4", "--methods", "bicubic",
                 "--limit", "2", "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    assert [r["image"] for r in read_csv(tmp_path / "cmp" / "per_image.csv")] == ["p0", "p1"]


def test_a_ratio_of_one_is_refused(tmp_path, capsys):
    _folder_set(tmp_path / "set", {"units": "m", "role": "eval"}, n=1)
    assert main(["compare", "--data", f"folder:{tmp_path / 'set'}", "--scales", "1", "--methods", "bicubic",
                 "--out", str(tmp_path / "cmp"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "depthsr: error: --scales 1: a ratio must be above 1 and at most 64"
    assert not (tmp_path / "cmp").exists()


def test_profile_counts_every_parameter(capsys):
    assert main(["profile", "--height", "32", "--width", "48", "--models", "paka", "plain"]) == 0
    out = capsys.readouterr().out
    for name in ("paka", "plain"):
        count = sum(p.numel() for p in build_model(name).parameters())
        assert re.search(rf"^{name}\s+{count:,}\s", out, re.M), out


def test_profile_counts_the_products_of_every_convolution():
    """'GFLOPs (convolutions and matrix products)': at least 2 x O x C x k^2 per output pixel for every
    convolution, PAKA's included, counted here from the layers' shapes."""
    from depthsr.commands.profile import count

    height, width = 64, 96
    net = build_model("paka").eval()
    products = []

    def hook(module, inputs, output):
        o, c, kh, kw = module.weight.shape
        products.append(2 * o * c * kh * kw * output.shape[-2] * output.shape[-1])

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, PAKAConv2d))]
    with torch.no_grad():
        net(torch.rand(1, 1, height // 4, width // 4), torch.rand(1, 3, height, width))
    for handle in handles:
        handle.remove()
    assert count("paka", height, width, 4)[1] >= sum(products)


def test_compare_norm_gt_normalises_a_network_by_the_ground_truth(tmp_path):
    """--norm gt reaches the network (baselines are affine-invariant, a network is not): each per-image row
    equals the network evaluated here with the ground truth's range, and differs from --norm lr."""
    from depthsr.methods.model_file import save_network
    from depthsr.methods.network import NetworkMethod

    torch.manual_seed(0)
    net = build_model("plain", width=8, blocks=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_network(tmp_path / "net.safetensors", net, "plain", net.config, [4])
    root = tmp_path / "set"
    _folder_set(root, {"units": "m", "role": "eval"}, n=2)
    for p in ("p0", "p1"):  # a thin pole far in front: the ground truth's range is not the LR input's
        depth = np.load(root / p / "depth.npy")
        depth[10:12, 20] = 0.2
        np.save(root / p / "depth.npy", depth)
    rmse = {}
    for norm in ("lr", "gt"):
        out = tmp_path / norm
        assert main(["compare", "--data", f"folder:{root}", "--scales", "4", "--methods",
                     str(tmp_path / "net.safetensors"), "--norm", norm, "--out", str(out), "--quiet"]) == 0
        assert f"normalisation: {norm}" in (out / "results.md").read_text()
        rmse[norm] = [float(r["rmse"]) for r in read_csv(out / "per_image.csv") if r["method"] != "bicubic"]
    mine = evaluate(NetworkMethod(net.eval()), FolderDataset(root), 4, "bicubic", "gt")
    assert rmse["gt"] == pytest.approx([r["rmse"] for r in mine.per_image], rel=1e-4)
    assert all(abs(a / b - 1) > 1e-3 for a, b in zip(rmse["gt"], rmse["lr"]))


def test_ratios_inside_a_trained_range_are_not_noted_as_untrained(tmp_path, capsys):
    """A model trained on random ratios 2-6 (recorded in its file) besides x4 and x8: x5 is trained, x12 not,
    in compare's notes as in upsample's report."""
    from depthsr.methods.model_file import save_network

    torch.manual_seed(0)
    net = build_model("plain", width=8, blocks=1)
    save_network(tmp_path / "net.safetensors", net, "plain", net.config, [4, 8], {"ratio_range": [2.0, 6.0]})
    _folder_set(tmp_path / "set", {"units": "m", "role": "eval"}, n=1, size=(60, 60))
    for scale, noted in (("5", False), ("12", True)):
        assert main(["compare", "--data", f"folder:{tmp_path / 'set'}", "--scales", scale, "--methods",
                     str(tmp_path / "net.safetensors"), "--out", str(tmp_path / f"cmp{scale}"), "--quiet"]) == 0
        out = capsys.readouterr().out
        assert ("numbers are for ratios it was not trained for" in out) == noted, (scale, out)
    rgb, depth = scene(60, 60)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    for ratio, noted in ((5, False), (12, True)):
        np.save(tmp_path / "lr.npy", pil_resize(depth, (60 // ratio, 60 // ratio)))
        assert upsample("--rgb", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "lr.npy"), "--out",
                        str(tmp_path / "o.npy"), "--checkpoint", str(tmp_path / "net.safetensors")) == 0
        assert ("note: the model was trained for" in capsys.readouterr().out) == noted, ratio


@pytest.mark.parametrize("lr_size,size", [(61, 400), (83, 544), (144, 384)])
def test_tile_edges_are_within_half_a_pixel_of_their_depth(lr_size, size):
    """Tile edges are chosen in LR pixels and mapped by the real ratio, rounded: each tile's output window is
    within half an output pixel of its LR window (exactly on it where a small common grid exists)."""
    from depthsr.methods.tiling import _axis_tiles

    tiles = _axis_tiles(lr_size, size, 128, 64)
    assert len(tiles) > 2
    for a0, a1, y0, y1 in tiles:
        for a, y in ((a0, y0), (a1, y1)):
            assert abs(y - a * size / lr_size) <= 0.5, (a, y)


def test_items_smaller_than_the_crop_are_mirrored_up_to_it_and_the_mirror_is_outside_the_loss():
    """--data.pad_small: an item under the crop becomes a whole crop, the item itself at a random offset (flipped or
    not) and every pixel around it its reflection, marked invalid; without the option, or under half the crop, the
    item is refused in one line naming it."""
    import random

    from depthsr.data.datamodule import RandomCrops

    h, w = 20, 24
    depth = torch.arange(h * w, dtype=torch.float32).view(1, h, w) + 1
    sample = {"depth": depth, "rgb": depth.expand(3, h, w) / (h * w), "valid": depth % 7 != 0, "name": "far/6"}
    crops = RandomCrops([sample], 32, repeats=1, pad_small=True)
    random.seed(0)
    offsets = set()
    for _ in range(40):
        c = crops[0]
        d = c["depth"][0]
        assert c["depth"].shape == (1, 32, 32) and c["valid"].sum() == sample["valid"].sum()
        rows, cols = c["valid"][0].any(1).nonzero()[:, 0], c["valid"][0].any(0).nonzero()[:, 0]
        y, x = int(rows.min()), int(cols.min())  # every outer row and column of the item holds valid pixels
        window = d[y : y + h, x : x + w]
        window = window.flip(-1) if window[0, 1] < window[0, 0] else window
        window = window.flip(-2) if window[1, 0] < window[0, 0] else window
        assert torch.equal(window, depth[0])
        item = torch.zeros(32, 32, dtype=torch.bool)
        item[y : y + h, x : x + w] = True
        assert not c["valid"][0][~item].any()
        assert torch.equal(c["rgb"], c["depth"].expand(3, 32, 32) / (h * w))
        if y > 0:  # the row above the item mirrors the item's second row
            assert torch.equal(d[y - 1, x : x + w], d[y + 1, x : x + w])
        if x + w < 32:  # the column right of it its last but one
            assert torch.equal(d[y : y + h, x + w], d[y : y + h, x + w - 2])
        offsets.add((y, x))
    assert len(offsets) > 10
    with pytest.raises(DepthSRError, match=r"^far/6: 20 x 24 is smaller than the training crop 32 \(--data.pad_small"):
        RandomCrops([sample], 32)[0]
    with pytest.raises(DepthSRError, match=r"^far/6: 20 x 24 is not over half the training crop 40"):
        RandomCrops([sample], 40, pad_small=True)[0]


def test_folder_sets_train_at_each_downscaling(tmp_path):
    """--data.folder_downscales lists every pair of a train set again, seen from farther: RGB area-averaged, depth
    and validity at the nearest source pixel (edges stay sharp), each listed folder_repeats times."""
    train = _folder_set(tmp_path / "trainset", {"units": "m", "role": "train"}, size=(96, 99))
    dm = DSRDataModule(train_folders=[str(train)], folder_repeats=2, folder_downscales=[1, 3], crop=32, scales=[4],
                       num_workers=0, batch_size=2)
    dm.check("fit")
    dm.setup("fit")
    assert len(dm.train_set) == 8 and sorted(set(_names(dm.train_set.base))) == ["p0", "p0/3", "p1", "p1/3"]
    full, far = dm.train_set.base[0], dm.train_set.base[4]
    assert far["name"] == "p0/3" and far["depth"].shape == (1, 32, 33)
    torch.testing.assert_close(far["depth"], full["depth"][:, 1::3, 1::3], rtol=0, atol=0)
    assert torch.equal(far["valid"], full["valid"][:, 1::3, 1::3])
    blocks = full["rgb"].reshape(3, 32, 3, 33, 3).mean((2, 4))
    torch.testing.assert_close(far["rgb"], blocks)
    assert downscale_pair(full, 2.5)["depth"].shape == (1, 38, 40)  # round(96 / 2.5), round(99 / 2.5)
    with pytest.raises(DepthSRError, match=r"folder_downscales must be 1 or more \(no upscaling\), got \[0.5\]"):
        DSRDataModule(train_folders=[str(train)], folder_downscales=[0.5], crop=32, scales=[4])
    far = DSRDataModule(train_folders=[str(train)], folder_downscales=[3], crop=48, scales=[4], pad_small=True,
                        num_workers=0, batch_size=2)
    far.setup("fit")  # 32 x 33 pairs in 48 x 48 crops, the mirrored rim outside the loss
    crop = far.train_set[0]
    assert crop["depth"].shape == (1, 48, 48) and crop["valid"].sum() == far.train_set.base[0]["valid"].sum()
