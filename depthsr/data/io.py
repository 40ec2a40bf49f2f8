"""Readers and writers of RGB images and depth maps (PNG 8/16-bit, .npy, .pfm); writes are atomic."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from depthsr.errors import DepthSRError

DEPTH_SUFFIXES = (".png", ".npy", ".pfm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # RGB images read, and previews written


def read_rgb(path: str | Path) -> torch.Tensor:  # 3 x H x W, float 0..1
    """An RGB image (PNG/JPEG/...), 8 or 16 bit, grey promoted to RGB."""
    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DepthSRError(f"{path}: not a readable image")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    img = img[:, :, ::-1].astype(np.float32) / scale
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def read_pfm(path: str | Path) -> np.ndarray:  # H x W float32
    """A PFM file (top row first), read by OpenCV; of a colour PFM, its first (red) channel."""
    path = Path(path)
    with open(path, "rb") as f:
        header = f.readline().strip()
    if header not in (b"Pf", b"PF"):
        raise DepthSRError(f"{path}: not a PFM file (header {header[:8]!r})")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our one line, not OpenCV's log
    try:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        data = None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if data is None:
        raise DepthSRError(f"{path}: damaged PFM file (malformed size line or truncated data)")
    if data.ndim == 3:
        data = data[:, :, 2]  # OpenCV gives BGR
    return np.ascontiguousarray(data, dtype=np.float32)


def read_rgb8(path: str | Path) -> np.ndarray:  # H x W x 3 uint8, RGB
    """An 8-bit image as RGB; PNGs through Pillow (the same pixels; OpenCV's libpng prints warnings about the
    colour profiles of some bundled photographs), other formats through OpenCV."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DepthSRError(f"{path}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def read_depth(path: str | Path, depth_scale: float | None = None) -> torch.Tensor:  # 1 x H x W float32
    """A depth map. PNG values are divided by `depth_scale` (default: 1000 for 16-bit, i.e. mm -> m;
    1 for 8-bit); .npy and .pfm are taken as they are. 0 and non-finite values mean invalid."""
    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DepthSRError(f"{path}: not a readable .npy file ({err})") from None
        arr = np.squeeze(arr)
    elif suffix == ".pfm":
        arr = read_pfm(path)
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise DepthSRError(f"{path}: not a readable image")
        if arr.ndim == 3:
            raise DepthSRError(f"{path}: a depth map must have one channel, got {arr.shape[2]}")
        if depth_scale is None:
            depth_scale = 1000.0 if arr.dtype == np.uint16 else 1.0
        arr = arr.astype(np.float32) / depth_scale
    if arr.ndim != 2:
        raise DepthSRError(f"{path}: a depth map must be H x W, got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DepthSRError(f"{path}: depth must be numeric, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]


def _file_mode() -> int:
    """The mode a newly created file gets under the process's umask (0o644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable(path: str | Path, what: str = "output") -> None:
    """One clear error, before any work, when `path` cannot be written: a folder in its place, a file where a
    folder of its path should be, or a folder without write permission."""
    path = Path(path)
    if path.is_dir():
        raise DepthSRError(f"{path}: is a folder, not a file {what}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DepthSRError(f"{path}: cannot write the {what}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DepthSRError(f"{path}: cannot write the {what}: no write permission in {parent}")


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file (an interrupt
    or a failed write leaves the old file, or none). The file gets the usual mode under the umask."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise DepthSRError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise DepthSRError(f"{path}: cannot write ({err.strerror or err})") from None
        raise


def write_pfm(path: str | Path, depth: np.ndarray) -> None:
    """A single-channel little-endian PFM (stored bottom row first, as the format says), written by OpenCV."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    atomic_write(Path(path), lambda tmp: _imwrite(tmp, depth))


def write_depth(path: str | Path, depth: torch.Tensor, depth_scale: float = 1000.0) -> None:
    """Write 1 x H x W (or H x W) depth by extension: .png 16-bit (value * depth_scale, so metres -> mm),
    .npy float32, .pfm float32."""
    path = Path(path)
    arr = depth.detach().cpu().float().numpy().reshape(depth.shape[-2:])
    suffix = path.suffix.lower()
    if suffix == ".npy":
        atomic_write(path, lambda tmp: np.save(tmp, arr))
    elif suffix == ".pfm":
        write_pfm(path, arr)
    elif suffix == ".png":
        png = np.clip(np.nan_to_num(arr * depth_scale, nan=0.0), 0, 65535).round().astype(np.uint16)
        atomic_write(path, lambda tmp: _imwrite(tmp, png))
    else:
        raise DepthSRError(f"{path}: unknown depth format {suffix!r}; use one of {', '.join(DEPTH_SUFFIXES)}")


def _imwrite(path: str, img: np.ndarray) -> None:
    if not cv2.imwrite(path, img):
        raise DepthSRError(f"{path}: could not write image")


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an H x W x 3 uint8 RGB image atomically (format by extension)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DepthSRError(f"{path}: unknown image format; use one of {', '.join(IMAGE_SUFFIXES)}")
    atomic_write(path, lambda tmp: _imwrite(tmp, np.ascontiguousarray(rgb[:, :, ::-1])))
