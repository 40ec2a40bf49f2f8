"""Real RGB-D pairs that ship inside installed packages (no download): the Middlebury 2014 'Motorcycle' left
view and its disparity, bundled with scikit-image. Training data only; not in any evaluation set here."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from depthsr.data.io import read_rgb8
from depthsr.data.sample import Sample
from depthsr.errors import DepthSRError


def bundled_data_dir() -> Path | None:
    """scikit-image's folder of bundled images (None when scikit-image is not installed)."""
    try:
        import skimage
    except ImportError:
        return None
    return Path(skimage.__file__).parent / "data"


def motorcycle() -> Sample:
    """Middlebury 2014 Motorcycle (500 x 741): RGB and disparity in pixels; unknown disparity is invalid and
    filled from its neighbours (so degradations stay finite), and the metric and loss skip it."""
    root = bundled_data_dir()
    if root is None:
        raise DepthSRError("the packaged Motorcycle pair needs scikit-image (pip install scikit-image)")
    rgb8 = read_rgb8(root / "motorcycle_left.png")
    disparity = np.load(root / "motorcycle_disp.npz", allow_pickle=False)["arr_0"].astype(np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    filled = cv2.inpaint(np.where(valid, disparity, 0).astype(np.float32), (~valid).astype(np.uint8), 5,
                         cv2.INPAINT_NS)
    rgb = torch.from_numpy(rgb8.transpose(2, 0, 1).copy()).float() / 255.0
    return {"rgb": rgb, "depth": torch.from_numpy(filled)[None], "valid": torch.from_numpy(valid)[None],
            "units": "disparity", "name": "motorcycle"}


class PackagedPairs(Dataset):
    """The packaged real pairs (today: Motorcycle), each listed `repeats` times."""

    def __init__(self, repeats: int = 1) -> None:
        self.repeats, self.pair = repeats, motorcycle()

    def __len__(self) -> int:
        return self.repeats

    def __getitem__(self, index: int) -> Sample:
        return self.pair
