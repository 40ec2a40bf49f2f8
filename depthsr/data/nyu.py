"""NYU Depth v2 labeled (``nyu_depth_v2_labeled.mat``: MATLAB v7.3, i.e. HDF5) read lazily through h5py.

Keys: ``images`` stored 1449 x 3 x 640 x 480 uint8 and ``depths`` stored 1449 x 640 x 480 float32 metres
(MATLAB writes column-major, so each image is transposed to H x W = 480 x 640 on read). The standard
split is the first 1000 pairs for training and the last 449 for testing. h5py (about 12 MB) is imported where a
file is read or written, not by every command that needs the NYU constants (`depthsr upsample` reads the border).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from depthsr.data.sample import Sample, valid_mask
from depthsr.errors import DepthSRError

if TYPE_CHECKING:
    import h5py

NUM_TRAIN = 1000
NYU_BORDER = 6  # pixels left out of the metric (the NYU protocol's border crop)


def _damaged(err: OSError) -> str:
    reason = str(err).split("(")[-1].rstrip(")") if "(" in str(err) else str(err)
    return f"cannot be read: truncated or damaged ({reason.strip()})"


def check_nyu_file(path: str | Path) -> int:
    """Validate the file's layout and return its number of pairs; one clear error otherwise."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such file (put nyu_depth_v2_labeled.mat there; see datasets/README.md)")
    if not h5py.is_hdf5(path):
        raise DepthSRError(f"{path}: not an HDF5 / MATLAB v7.3 file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DepthSRError(f"{path}: {_damaged(err)}") from None
    with f:
        for key in ("images", "depths"):
            if key not in f:
                raise DepthSRError(f"{path}: missing HDF5 key '{key}' (has: {', '.join(sorted(f.keys()))})")
        images, depths = f["images"], f["depths"]
        if images.ndim != 4 or images.shape[1] != 3:
            raise DepthSRError(f"{path}: 'images' must be N x 3 x W x H, got {' x '.join(map(str, images.shape))}")
        if depths.ndim != 3 or depths.shape != (images.shape[0], *images.shape[2:]):
            raise DepthSRError(
                f"{path}: 'depths' must be {images.shape[0]} x {images.shape[2]} x {images.shape[3]} to match "
                f"'images', got {' x '.join(map(str, depths.shape))}"
            )
        return int(images.shape[0])


class NYUv2Dataset(Dataset):
    """Pairs `indices` of the labeled file, in metres. The h5py handle is opened lazily in each worker
    process and never pickled."""

    def __init__(self, mat_path: str | Path, indices: list[int] | range | None = None) -> None:
        self.mat_path = Path(mat_path)
        total = check_nyu_file(self.mat_path)
        self.indices = list(range(total) if indices is None else indices)
        if self.indices and not (0 <= min(self.indices) and max(self.indices) < total):
            raise DepthSRError(f"{self.mat_path}: indices out of range 0..{total - 1}")
        self._file: h5py.File | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def _h5(self) -> h5py.File:
        if self._file is None:
            import h5py

            self._file = h5py.File(self.mat_path, "r")
        return self._file

    def __getitem__(self, index: int) -> Sample:
        i = self.indices[index]
        f = self._h5()
        try:
            rgb = np.asarray(f["images"][i]).transpose(0, 2, 1).astype(np.float32) / 255.0  # 3 x H x W
            depth = np.asarray(f["depths"][i]).T.astype(np.float32)[None]  # 1 x H x W
        except OSError as err:
            raise DepthSRError(f"{self.mat_path}: pair {i} {_damaged(err)}") from None
        depth_t = torch.from_numpy(np.ascontiguousarray(depth))
        return {"rgb": torch.from_numpy(np.ascontiguousarray(rgb)), "depth": depth_t, "valid": valid_mask(depth_t),
                "units": "m", "name": f"nyu_{i:04d}"}


def nyu_split(mat_path: str | Path, num_train: int = NUM_TRAIN) -> tuple[range, range]:
    """(train indices, test indices): the first `num_train` pairs, and the rest."""
    total = check_nyu_file(mat_path)
    if not 0 < num_train < total:
        raise DepthSRError(f"{mat_path}: num_train must be between 1 and {total - 1}, got {num_train}")
    return range(num_train), range(num_train, total)


def write_nyu_file(path: str | Path, rgb: np.ndarray, depth: np.ndarray, matlab_header: bool = True) -> None:
    """Write pairs (N x H x W x 3 uint8, N x H x W float32 metres) in the labeled file's layout:
    an HDF5 file with MATLAB's 512-byte user block when `matlab_header`. For tests and small subsets."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w", userblock_size=512 if matlab_header else 0) as f:
        f.create_dataset("images", data=rgb.transpose(0, 3, 2, 1), chunks=(1, 3, rgb.shape[2], rgb.shape[1]))
        f.create_dataset("depths", data=depth.transpose(0, 2, 1).astype(np.float32),
                         chunks=(1, depth.shape[2], depth.shape[1]))
    if matlab_header:
        with open(path, "r+b") as f:
            f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by depthsr".ljust(116) + b"\0" * 8
                    + b"\x00\x02IM")
