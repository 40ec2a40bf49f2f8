"""`depthsr upsample`: one RGB-D pair (or two folders of them) -> a high-resolution depth map.

Depth in: 16-bit PNG (millimetres by default, 0 = invalid; --depth-scale to override), 8-bit PNG (values as
they are), .npy or .pfm (metres). Depth out, by extension: 16-bit PNG (value x depth scale, so millimetres
for millimetre input), .npy or .pfm (float32, in the input's units after --depth-scale). The depth may be any
size up to the RGB's, at any ratio (e.g. a 192 x 144 phone ToF map beside a 512 x 384 photo), as long as it
shows the RGB's view.

Every argument is checked before any work, and nothing is written unless everything succeeded: the result
(and preview) are written last, each through a temporary file.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from depthsr.data.io import (
    DEPTH_SUFFIXES,
    IMAGE_SUFFIXES,
    check_writable,
    read_depth,
    read_rgb,
    write_depth,
    write_image,
)
from depthsr.data.sample import valid_mask
from depthsr.errors import DepthSRError
from depthsr.methods.baselines import Bicubic
from depthsr.methods.method import MIN_TILE, Method, check_ratio, check_valid, ratio_label, resolve_device
from depthsr.methods.network import resolve_method
from depthsr.visualize import side_by_side

RGB_SUFFIXES = IMAGE_SUFFIXES


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


def _same(a: Path, b: Path | None) -> bool:
    return b is not None and Path(a).resolve() == Path(b).resolve()


def check_outputs(inputs: list[Path | None], out: Path, preview: Path | None) -> None:
    """The output (and preview) paths, before any work: known formats, no input overwritten, not the same
    file twice, writable."""
    if out.suffix.lower() not in DEPTH_SUFFIXES:
        raise DepthSRError(f"{out}: unknown output format; use one of {', '.join(DEPTH_SUFFIXES)}")
    if preview is not None and preview.suffix.lower() not in IMAGE_SUFFIXES:
        raise DepthSRError(f"{preview}: unknown preview format; use one of {', '.join(IMAGE_SUFFIXES)}")
    for target, what in ((out, "output"), (preview, "preview")):
        if target is None:
            continue
        if any(_same(target, src) for src in inputs):
            raise DepthSRError(f"{target}: refusing to overwrite an input file with the {what}")
        check_writable(target, what)
    if preview is not None and _same(out, preview):
        raise DepthSRError(f"{preview}: the preview and the output are the same file")


def _check_scale(scale: float | None, lr: torch.Tensor, rgb: torch.Tensor, depth_path: Path, rgb_path: Path) -> None:
    """--scale, when given, must be the ratio the sizes show (to within a pixel of rounding)."""
    if scale is None:
        return
    (h, w), (big_h, big_w) = lr.shape[-2:], rgb.shape[-2:]
    if abs(big_h / scale - h) > 1 or abs(big_w / scale - w) > 1:
        raise DepthSRError(f"--scale {scale:g} does not match the sizes: {depth_path} is {h} x {w}, {rgb_path} is "
                           f"{big_h} x {big_w} ({ratio_label(big_h / h, big_w / w)})")


def upsample_pair(method: Method, rgb_path: Path, depth_path: Path, out: Path, scale: float | None,
                  depth_scale: float | None, preview: Path | None = None, gt_path: Path | None = None) -> dict:
    """Upsample one pair and write the result (and preview); returns what it did, for the report.
    Everything is read and checked first, and the files are written last."""
    out = Path(out)
    check_outputs([rgb_path, depth_path, gt_path], out, preview)
    factor = _png_scale(depth_path, depth_scale)
    rgb, lr = read_rgb(rgb_path), read_depth(depth_path, factor)
    gt = read_depth(gt_path, factor) if gt_path is not None else None
    (h, w), (big_h, big_w) = lr.shape[-2:], rgb.shape[-2:]
    try:
        ratio = check_ratio(lr, rgb)
    except DepthSRError as err:
        reason = str(err).split(": ", 1)[1]
        raise DepthSRError(f"{depth_path} is {h} x {w} and {rgb_path} is {big_h} x {big_w}: {reason}") from None
    _check_scale(scale, lr, rgb, depth_path, rgb_path)
    if gt is not None:
        gh, gw = gt.shape[-2:]
        if not (big_h <= gh < big_h + math.ceil(ratio[0]) and big_w <= gw < big_w + math.ceil(ratio[1])):
            raise DepthSRError(f"{gt_path} is {gh} x {gw}, the result {big_h} x {big_w}")
        gt = gt[..., :big_h, :big_w]  # as the protocols crop the ground truth to a multiple of the scale
    invalid = check_valid(lr, str(depth_path))
    info = {"out": out, "ratio": ratio, "invalid": invalid, "size": (big_h, big_w), "noise": method.input_noise(lr)}
    if gt is None:
        result = method(lr, rgb)
    else:  # the evaluation step of `compare` and `test`, on this one image in its own units
        from depthsr.evaluate import evaluation_step  # torchmetrics: imported only when needed
        from depthsr.metrics import DepthMetrics

        batch = {"lr": lr[None], "rgb": rgb[None], "depth": gt[None], "valid": valid_mask(gt)[None]}
        metric, reference = DepthMetrics(), DepthMetrics()
        result = evaluation_step(method, batch, metric)[0]
        evaluation_step(Bicubic(), batch, reference)
        info["rmse"], info["rmse_bicubic"] = float(metric.compute()["rmse"]), float(reference.compute()["rmse"])
    picture = side_by_side(rgb, lr, result) if preview is not None else None
    existed = out.exists()
    write_depth(out, result, depth_scale=factor)
    if picture is not None:
        try:
            write_image(preview, picture)
        except BaseException:
            if not existed:
                out.unlink(missing_ok=True)  # all or nothing
            raise
    return info


def _trained_for(method: Method, ratio: tuple[float, float]) -> bool:
    return any(method.trained_for(r) for r in ratio)


def _report(info: dict, method: Method) -> str:
    label = ratio_label(*info["ratio"])
    msg = f"wrote {info['out']} ({info['size'][0]} x {info['size'][1]}, {label})"
    if info["invalid"]:
        msg += f"; {info['invalid']} invalid LR pixels filled"
    if info.get("noise") is not None:
        noise, weight = info["noise"]
        state = "off" if weight == 0 else "on" if weight == 1 else f"weighed {weight:.2f}"
        msg += f"; input noise {100 * noise:.2f}% of its depth range: input cleaner {state}"
    if not _trained_for(method, info["ratio"]):
        msg += f"; note: the model was trained for x{'/x'.join(f'{s:g}' for s in method.scales)}, not {label}"
    if "rmse" in info:
        msg += f"\nRMSE vs ground truth: {method.name} {info['rmse']:.3f}, bicubic {info['rmse_bicubic']:.3f}"
    return msg


def _pairs(rgb_dir: Path, depth_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(rgb, depth) files matched by name stem; and the problems: names without a partner, and names that
    match two files of one kind (a.png beside a.jpg), which are skipped rather than guessed."""
    def by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
                found.setdefault(p.stem, []).append(p)
        return found

    rgbs, depths = by_stem(rgb_dir, RGB_SUFFIXES), by_stem(depth_dir, DEPTH_SUFFIXES)
    problems = [f"{rgbs[s][0]}: unpaired (no matching depth file)" for s in sorted(rgbs.keys() - depths.keys())]
    problems += [f"{depths[s][0]}: unpaired (no matching rgb file)" for s in sorted(depths.keys() - rgbs.keys())]
    pairs = []
    for stem in sorted(rgbs.keys() & depths.keys()):
        twins = [files for files in (rgbs[stem], depths[stem]) if len(files) > 1]
        if twins:
            problems.append(f"{twins[0][0].parent / stem}.*: ambiguous: {' and '.join(p.name for p in twins[0])} "
                            "have the same name; rename one")
        else:
            pairs.append((rgbs[stem][0], depths[stem][0]))
    return pairs, problems


def _check_args(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < MIN_TILE:
        raise DepthSRError(f"--tile {args.tile}: a tile must be at least {MIN_TILE} pixels")
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale >= 1):
        raise DepthSRError(f"--scale {args.scale:g}: the ratio must be a number of at least 1")
    if args.depth_scale is not None and not (math.isfinite(args.depth_scale) and args.depth_scale > 0):
        raise DepthSRError(f"--depth-scale {args.depth_scale:g}: must be a positive number")


def _check_folder_mode(args: argparse.Namespace, rgb: Path, depth: Path, out: Path) -> None:
    if args.gt:
        raise DepthSRError(f"{args.gt}: --gt works on one pair, not in folder mode")
    if out.suffix.lower() in DEPTH_SUFFIXES or out.is_file():
        raise DepthSRError(f"{out}: in folder mode --out is a folder")
    if _same(out, rgb) or _same(out, depth):
        raise DepthSRError(f"{out}: write the results to a folder of their own, not into an input folder")
    check_writable(out / f"x{args.format}", "output")


def _folder_mode(args: argparse.Namespace, method: Method, pairs: list[tuple[Path, Path]], failures: list[str],
                 out: Path) -> int:
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


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    _check_args(args)
    rgb, depth, out = Path(args.rgb), Path(args.depth), Path(args.out)
    preview, gt = Path(args.preview) if args.preview else None, Path(args.gt) if args.gt else None
    if rgb.is_dir() != depth.is_dir():
        folder, other = (rgb, "--depth") if rgb.is_dir() else (depth, "--rgb")
        raise DepthSRError(f"{folder}: is a folder, so {other} must be one too")
    if rgb.is_dir():
        _check_folder_mode(args, rgb, depth, out)
        pairs, failures = _pairs(rgb, depth)
        if not pairs:
            raise DepthSRError(f"{rgb}, {depth}: no RGB-D pairs to upsample ("
                               f"{failures[0] if failures else 'the folders hold no images'})")
    else:
        check_outputs([rgb, depth, gt], out, preview)
        for src, what in ((rgb, "rgb"), (depth, "depth"), (gt, "ground truth")):
            if src is not None and not src.is_file():
                raise DepthSRError(f"{src}: no such file (the {what})")
    device = resolve_device(args.device)
    method = resolve_method(args.checkpoint or "default").to(device)
    if args.tile:
        method.tile = args.tile
    if rgb.is_dir():
        return _folder_mode(args, method, pairs, failures, out)
    info = upsample_pair(method, rgb, depth, out, args.scale, args.depth_scale, preview, gt)
    print(_report(info, method) + f"\n({time.perf_counter() - start:.2f} s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("upsample", help="upsample a depth map guided by its RGB image (or two folders of them)")
    p.add_argument("--rgb", required=True, help="RGB image (PNG/JPEG) or a folder of them")
    p.add_argument("--depth", required=True,
                   help="low-resolution depth (.png 16-bit mm, .npy, .pfm), any size up to the RGB's, or a folder")
    p.add_argument("--out", required=True, help="output depth (.png, .npy, .pfm) or, in folder mode, a folder")
    p.add_argument("--scale", type=float,
                   help="the ratio RGB / depth, to check it (default: taken from the sizes; need not be whole)")
    p.add_argument("--checkpoint", help="a model file to use instead of the shipped default model, the shipped 'tof' "
                   "model (depth from a real time-of-flight sensor), or a baseline")
    p.add_argument("--depth-scale", type=float, dest="depth_scale",
                   help="PNG depth values per unit (default: 1000 for 16-bit, i.e. mm -> m; 1 for 8-bit)")
    p.add_argument("--preview", help="write a colour-mapped RGB | LR | result image (folder mode: any value)")
    p.add_argument("--gt", help="ground-truth depth: print the RMSE against it, beside bicubic's")
    p.add_argument("--format", default=".png", choices=DEPTH_SUFFIXES, help="output format in folder mode")
    p.add_argument("--tile", type=int, help=f"tile side in output pixels for large images (default 1024, "
                                            f"at least {MIN_TILE})")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda or cuda:N")
    p.set_defaults(run=run)
