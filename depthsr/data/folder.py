"""The generic RGB-D folder format (the format of ``../shared/data``).

    SET/meta.json            {"units": ..., "role": "train" | "eval", ...}
    SET/NAME/rgb.png         the guide image
    SET/NAME/depth.png|.npy  ground truth (PNG values taken as they are, in the set's units)
    SET/NAME/lr_xS.png|.npy  optional measured low-resolution input at scale S
"""
from __future__ import annotations

import json
from pathlib import Path

from torch.utils.data import Dataset

from depthsr.data.io import read_depth, read_rgb
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


def read_pair(folder: Path, units: str, scale: int | None = None) -> Sample:
    """One pair folder as a Sample (with `lr` when `scale` is given and lr_x{scale} exists)."""
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
    if scale is not None and (lr_path := _one(folder, f"lr_x{scale}")) is not None:
        sample["lr"] = read_depth(lr_path, depth_scale=1.0)
    return sample


class FolderDataset(Dataset):
    """All pairs of one SET folder, sorted by name."""

    def __init__(self, root: str | Path, scale: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DepthSRError(f"{self.root}: no such folder")
        self.meta = read_meta(self.root)
        self.units = self.meta.get("units", "arbitrary")
        self.role = self.meta.get("role", "eval")
        self.scale = scale
        self.folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.folders:
            raise DepthSRError(f"{self.root}: no pair folders (expected NAME/rgb.png and NAME/depth.png)")

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> Sample:
        return read_pair(self.folders[index], self.units, self.scale)
