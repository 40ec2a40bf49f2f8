"""`depthsr upsample`: one RGB-D pair (or two folders of them) -> a high-resolution depth map.

Depth in: 16-bit PNG (millimetres by default, 0 = invalid; --depth-scale to override), 8-bit PNG (values as
they are), .npy or .pfm (metres). Depth out, by extension: 16-bit PNG (value x depth scale, so millimetres
for millimetre input), .npy or .pfm (float32, in the input's units after --depth-scale).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from depthsr.baselines import Bicubic
from depthsr.checkpoint import resolve_method
from depthsr.data.io import DEPTH_SUFFIXES, read_depth, read_rgb, write_depth, write_image
from depthsr.data.sample import valid_mask
from depthsr.errors import DepthSRError
from depthsr.method import Method, check_scale
from depthsr.visualize import side_by_side

RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _png_scale(path: Path, override: float | None) -> float:
    """The factor PNG values are divided by on read (and multiplied by on write)."""
    if override is not None:
        return override
    if path.suffix.lower() != ".png":
        return 1000.0  # metres written to a 16-bit PNG as millimetres
    try:
        with Image.open(path) as img:  # reads the header only: the pixels are read once, by read_depth
            sixteen_bit = img.mode.startswith("I")
    except (OSError, ValueError):
        sixteen_bit = False  # read_depth reports the unreadable file
    return 1000.0 if sixteen_bit else 1.0


def upsample_pair(method: Method, rgb_path: Path, depth_path: Path, out: Path, scale: int | None,
                  depth_scale: float | None, preview: Path | None = None, gt_path: Path | None = None) -> dict:
    """Upsample one pair and write the result (and preview); returns what it did, for the report."""
    out = Path(out)
    for src in (rgb_path, depth_path, gt_path):
        if src is not None and out.resolve() == Path(src).resolve():
            raise DepthSRError(f"{out}: refusing to overwrite an input file")
    if out.suffix.lower() not in DEPTH_SUFFIXES:
        raise DepthSRError(f"{out}: unknown output format; use one of {', '.join(DEPTH_SUFFIXES)}")
    factor = _png_scale(depth_path, depth_scale)
    rgb, lr = read_rgb(rgb_path), read_depth(depth_path, factor)
    if not torch.isfinite(lr).any():
        raise DepthSRError(f"{depth_path}: no valid depth value (all zero, NaN or inf)")
    if torch.isnan(lr).any():
        raise DepthSRError(f"{depth_path}: contains NaN values; mark invalid pixels with 0")
    (h, w), (big_h, big_w) = lr.shape[-2:], rgb.shape[-2:]
    try:
        inferred = check_scale(lr, rgb)
    except DepthSRError:
        raise DepthSRError(f"{depth_path} is {h} x {w} and {rgb_path} is {big_h} x {big_w}: "
                           "not an integer scale (rgb must be s*h x s*w)") from None
    if scale is not None and scale != inferred:
        raise DepthSRError(f"--scale {scale} does not match the sizes: {depth_path} is {h} x {w}, "
                           f"{rgb_path} is {big_h} x {big_w} (scale {inferred})")
    invalid = int((~valid_mask(lr)).sum())
    result = method(lr, rgb)
    write_depth(out, result, depth_scale=factor)
    info = {"out": out, "scale": inferred, "invalid": invalid, "size": (big_h, big_w)}
    if preview is not None:
        write_image(preview, side_by_side(rgb, lr, result))
    if gt_path is not None:
        from depthsr.metrics import per_image_errors, per_image_rmse  # torchmetrics: imported only when needed

        gt = read_depth(gt_path, factor)
        gh, gw = gt.shape[-2:]
        if not (big_h <= gh < big_h + inferred and big_w <= gw < big_w + inferred):
            raise DepthSRError(f"{gt_path} is {gh} x {gw}, the result {big_h} x {big_w}")
        gt = gt[..., :big_h, :big_w]  # as the protocols crop the ground truth to a multiple of the scale
        bicubic = Bicubic()(lr, rgb)
        for key, pred in (("rmse", result), ("rmse_bicubic", bicubic)):
            info[key] = float(per_image_rmse(per_image_errors(pred[None], gt[None])))
    return info


def _report(info: dict, method: Method) -> str:
    msg = f"wrote {info['out']} ({info['size'][0]} x {info['size'][1]}, x{info['scale']})"
    if info["invalid"]:
        msg += f"; {info['invalid']} invalid LR pixels filled"
    if method.scales is not None and info["scale"] not in method.scales:
        msg += f"; note: the model was trained for x{'/x'.join(map(str, method.scales))}, not x{info['scale']}"
    if "rmse" in info:
        msg += f"\nRMSE vs ground truth: {method.name} {info['rmse']:.3f}, bicubic {info['rmse_bicubic']:.3f}"
    return msg


def _pairs(rgb_dir: Path, depth_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(rgb, depth) files matched by name stem; and the names that have no partner."""
    rgbs = {p.stem: p for p in sorted(rgb_dir.iterdir()) if p.suffix.lower() in RGB_SUFFIXES}
    depths = {p.stem: p for p in sorted(depth_dir.iterdir()) if p.suffix.lower() in DEPTH_SUFFIXES}
    pairs = [(rgbs[s], depths[s]) for s in sorted(rgbs.keys() & depths.keys())]
    unpaired = [f"{rgbs.get(s) or depths.get(s)}: unpaired (no matching {'depth' if s in rgbs else 'rgb'} file)"
                for s in sorted(rgbs.keys() ^ depths.keys())]
    return pairs, unpaired


def run(args: argparse.Namespace) -> int:
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    method = resolve_method(args.checkpoint or "default")
    if args.tile:
        method.tile = args.tile
    rgb, depth, out = Path(args.rgb), Path(args.depth), Path(args.out)
    if not rgb.is_dir():
        info = upsample_pair(method, rgb, depth, out, args.scale, args.depth_scale,
                             Path(args.preview) if args.preview else None, Path(args.gt) if args.gt else None)
        print(_report(info, method) + f"\n({time.perf_counter() - start:.2f} s)")
        return 0
    if not depth.is_dir():
        raise DepthSRError(f"{depth}: --rgb is a folder, so --depth must be one too")
    if out.suffix.lower() in DEPTH_SUFFIXES:
        raise DepthSRError(f"{out}: in folder mode --out is a folder")
    pairs, failures = _pairs(rgb, depth)
    done = 0
    for rgb_path, depth_path in tqdm(pairs, desc="upsample", unit="pair"):
        target = out / f"{rgb_path.stem}{args.format}"
        preview = out / f"{rgb_path.stem}_preview.png" if args.preview else None
        try:
            upsample_pair(method, rgb_path, depth_path, target, args.scale, args.depth_scale, preview)
            done += 1
        except DepthSRError as err:
            failures.append(str(err))
    print(f"upsampled {done} of {len(pairs)} pairs into {out}")
    for failure in failures:
        print(f"skipped: {failure}")
    return 1 if failures else 0


def add_parser(sub) -> None:
    p = sub.add_parser("upsample", help="upsample a depth map guided by its RGB image (or two folders of them)")
    p.add_argument("--rgb", required=True, help="RGB image (PNG/JPEG) or a folder of them")
    p.add_argument("--depth", required=True, help="low-resolution depth (.png 16-bit mm, .npy, .pfm) or a folder")
    p.add_argument("--out", required=True, help="output depth (.png, .npy, .pfm) or, in folder mode, a folder")
    p.add_argument("--scale", type=int, help="upsampling factor (default: inferred from the two sizes)")
    p.add_argument("--checkpoint", help="a .pt/.ckpt to use instead of the shipped default model")
    p.add_argument("--depth-scale", type=float, dest="depth_scale",
                   help="PNG depth values per unit (default: 1000 for 16-bit, i.e. mm -> m; 1 for 8-bit)")
    p.add_argument("--preview", help="write a colour-mapped RGB | LR | result PNG (folder mode: any value)")
    p.add_argument("--gt", help="ground-truth depth: print the RMSE against it, beside bicubic's")
    p.add_argument("--format", default=".png", choices=DEPTH_SUFFIXES, help="output format in folder mode")
    p.add_argument("--tile", type=int, help="tile side in output pixels for large images (default 1024)")
    p.set_defaults(run=run)
