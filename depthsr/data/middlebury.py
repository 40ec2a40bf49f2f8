"""Middlebury stereo scenes as the site ships them, read as RGB-D pairs with the disparity as the target
(as the DSR papers do):

* 2005/2006: ``SCENE/view1.png`` and ``SCENE/disp1.png`` (8-bit disparity, 0 = unknown);
* 2014: ``SCENE/im0.png`` and ``SCENE/disp0.pfm`` (float disparity, inf = unknown); ``calib.txt`` (focal
  length, baseline) is not needed while the disparity itself is the target.

A folder that holds such scene folders is a data set; so is a folder in the generic RGB-D format
(preprocessed benchmark sets, e.g. the 30-pair or Lu 8-bit sets), which is read by the folder reader.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from depthsr.data.folder import FolderDataset
from depthsr.data.io import read_depth, read_rgb
from depthsr.data.sample import Sample, valid_mask
from depthsr.errors import DepthSRError

LAYOUTS = (("view1.png", "disp1.png"), ("im0.png", "disp0.pfm"))


def _layout(scene: Path) -> tuple[Path, Path] | None:
    for rgb, disp in LAYOUTS:
        if (scene / rgb).is_file() and (scene / disp).is_file():
            return scene / rgb, scene / disp
    return None


class MiddleburyScenes(Dataset):
    """The scene folders of one Middlebury release (2005/2006 or 2014 layout), disparity as depth."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DepthSRError(f"{self.root}: no such folder")
        self.scenes = [(p.name, *lay) for p in sorted(self.root.iterdir()) if p.is_dir() and (lay := _layout(p))]
        if not self.scenes:
            raise DepthSRError(f"{self.root}: no Middlebury scenes (SCENE/view1.png + disp1.png, "
                               "or SCENE/im0.png + disp0.pfm)")
        self.units = "disparity"

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> Sample:
        name, rgb_path, disp_path = self.scenes[index]
        rgb, disp = read_rgb(rgb_path), read_depth(disp_path, depth_scale=1.0)
        disp = torch.where(torch.isfinite(disp), disp, torch.zeros_like(disp))
        if rgb.shape[-2:] != disp.shape[-2:]:
            raise DepthSRError(f"{self.root / name}: image is {rgb.shape[1]} x {rgb.shape[2]} but disparity is "
                               f"{disp.shape[1]} x {disp.shape[2]}")
        return {"rgb": rgb, "depth": disp, "valid": valid_mask(disp), "units": self.units, "name": name}


def middlebury_dataset(root: str | Path, scale: int | None = None) -> Dataset:
    """Raw scenes when the folder holds them, otherwise the generic folder format."""
    root = Path(root)
    if root.is_dir() and any(_layout(p) for p in root.iterdir() if p.is_dir()):
        return MiddleburyScenes(root)
    return FolderDataset(root, scale)
