"""The generic RGB-D folder format (the format of ``../shared/data``).

    SET/meta.json            {"units": ..., "role": "train" | "eval", "border": N (optional), ...}
    SET/NAME/rgb.png         the guide image
    SET/NAME/depth.png|.npy  ground truth (PNG values taken as they are, in the set's units)
    SET/NAME/lr_xS.png|.npy  optional measured low-resolution input at ratio S (lr_x4, lr_x2.5)
    SET/NAME/lr.png|.npy     optional measured low-resolution input at whatever ratio the sensor has

`border` is how many pixels along each edge the metric leaves out; it belongs to the data set wherever it is
read from. Without the key, a set that names NYU (folder name or description) gets NYU's 6, others 0.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch.utils.data import Dataset

from depthsr.data.degrade import ratio_name
from depthsr.data.io import read_depth, read_rgb
from depthsr.data.nyu import NYU_BORDER
from depthsr.data.sample import Sample, valid_mask
from depthsr.errors import DepthSRError


def read_meta(root: Path) -> dict:
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return {"units": "arbitrary"}
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise DepthSRError(f"{meta_path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _one(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", ".npy", ".pfm"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def lr_stem(scale: float | None) -> str:
    """'lr_x4', 'lr_x2.5' for a ratio; 'lr' (the measured input at the sensor's own ratio) for None."""
    return "lr" if scale is None else f"lr_{ratio_name(scale)}"


def read_pair(folder: Path, units: str, scale: float | None = None, measured: bool = False) -> Sample:
    """One pair folder as a Sample, with `lr` when `scale` is given and lr_x{scale} exists, or with `measured`
    and an lr.* exists."""
    rgb_path, depth_path = folder / "rgb.png", _one(folder, "depth")
    if not rgb_path.is_file():
        raise DepthSRError(f"{folder}: unpaired: no rgb.png")
    if depth_path is None:
        raise DepthSRError(f"{folder}: unpaired: no depth.png or depth.npy")
    rgb, depth = read_rgb(rgb_path), read_depth(depth_path, depth_scale=1.0)
    if rgb.shape[-2:] != depth.shape[-2:]:
        raise DepthSRError(
            f"{folder}: rgb is {rgb.shape[1]} x {rgb.shape[2]} but depth is {depth.shape[1]} x {depth.shape[2]}"
        )
    sample: Sample = {"rgb": rgb, "depth": depth, "valid": valid_mask(depth), "units": units, "name": folder.name}
    if (scale is not None or measured) and (lr_path := _one(folder, lr_stem(scale))) is not None:
        sample["lr"] = read_depth(lr_path, depth_scale=1.0)
    return sample


class FolderDataset(Dataset):
    """All pairs of one SET folder, sorted by name."""

    def __init__(self, root: str | Path, scale: float | None = None, measured: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DepthSRError(f"{self.root}: no such folder")
        self.meta = read_meta(self.root)
        self.units = self.meta.get("units", "arbitrary")
        self.role = self.meta.get("role", "eval")
        self.border = _border(self.root, self.meta)
        self.scale, self.measured = scale, measured
        self.folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.folders:
            raise DepthSRError(f"{self.root}: no pair folders (expected NAME/rgb.png and NAME/depth.png)")

    def __len__(self) -> int:
        return len(self.folders)

    def has_lr(self, scale: float | None) -> bool:
        """Whether every pair has a measured input lr_x{scale} (or lr, for None)."""
        return all(_one(folder, lr_stem(scale)) is not None for folder in self.folders)

    def __getitem__(self, index: int) -> Sample:
        return read_pair(self.folders[index], self.units, self.scale, self.measured)


def _border(root: Path, meta: dict) -> int:
    border = meta.get("border")
    if border is None:
        names_nyu = "nyu" in f"{root.name} {meta.get('description', '')}".lower()
        return NYU_BORDER if names_nyu else 0
    if not isinstance(border, int) or isinstance(border, bool) or border < 0:
        raise DepthSRError(f"{root / 'meta.json'}: 'border' must be a whole number of pixels >= 0, got {border!r}")
    return border
