"""How many plausible one-line bugs do the tests catch? (issue 15)

Seeds each mutation below into depthsr, one at a time, runs the test files that cover the mutated module
(``pytest -x -q -m "not slow"``, with a timeout) and counts the mutation killed when they fail. Prints the kill
rate per module and overall, and every survivor.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python scripts/mutation_check.py [--only TEXT] [--ids N ...]
        [--list] [--without tests/test_promises.py ...] [--timeout 600] [--in-place] [--keep] [--no-fork]

By default the mutations are made in a copy of the working tree (git's tracked and untracked, not ignored,
files) in a temporary folder, and the tests import depthsr from there: the repository's own depthsr/ is never
written, so a training, an export or an editor working on it meanwhile never sees a mutant. ``--in-place``
mutates the repository's files themselves instead (each restored, in a ``finally`` block, to its original
bytes and modification time, and checked). Either way each mutated file is restored before the next mutation,
and Python's bytecode goes to a temporary cache (PYTHONPYCACHEPREFIX), never next to the sources.

Tests that already fail on the unmutated code (e.g. ones needing the shipped default model while it is being
retrained) are found by a baseline run first and deselected, so a mutation only counts as killed by tests that
pass without it. A run that times out is repeated once with twice the time and, if it times out again, counted
neither killed nor survived. depthsr/ops/ is not mutated here (its kernels have their own reference tests).

The tests run in children forked from a server that has imported torch, Lightning and the other heavy
libraries once (never depthsr, which each child imports afresh, mutated): a mutant costs its tests' time, not
the imports' (``--no-fork``: a fresh process per mutant). On 2 idle cores the 107 mutations take about 15 min.
Mutations marked ``equivalent`` cannot be told from the original by any test (on this machine); the summary
gives the rate with and without them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    file: str  # under depthsr/
    original: str  # an exact fragment of one line, found exactly once in the file
    replacement: str
    bug: str  # what a user would see
    equivalent: str = ""  # why no test can tell it from the original (on this machine), if so


M = Mutation
MUTATIONS: list[Mutation] = [
    # ---------------------------------------------------------------- data/io.py
    M("data/io.py", "depth_scale = 1000.0 if arr.dtype == np.uint16 else 1.0", "depth_scale = 1000.0",
      "issue 15 #2: 8-bit PNG depth divided by 1000"),
    M("data/io.py", "scale = 65535.0 if img.dtype == np.uint16 else 255.0", "scale = 255.0",
      "16-bit RGB images read 257x too bright"),
    M("data/io.py", "img = img[:, :, ::-1].astype(np.float32) / scale", "img = img.astype(np.float32) / scale",
      "RGB read as BGR"),
    M("data/io.py", 'dtype="<f4" if scale < 0 else ">f4"', 'dtype="<f4"', "big-endian PFM read as little-endian"),
    M("data/io.py", "data = data.reshape(height, width, channels)[::-1, :, 0]",
      "data = data.reshape(height, width, channels)[:, :, 0]", "PFM read upside down"),
    M("data/io.py", "np.clip(np.nan_to_num(arr * depth_scale, nan=0.0), 0, 65535).round()",
      "np.clip(np.nan_to_num(arr * depth_scale, nan=0.0), 0, 65535)", "PNG depth truncated instead of rounded"),
    M("data/io.py", "os.chmod(tmp, _file_mode())  # mkstemp creates 0600", "pass",
      "written files get mode 0600 whatever the umask"),
    M("data/io.py", 'f.write(b"Pf\\n%d %d\\n-1\\n" % (width, height))',
      'f.write(b"Pf\\n%d %d\\n-1\\n" % (height, width))',
      "PFM header with height and width swapped"),
    # ---------------------------------------------------------------- data/sample.py
    M("data/sample.py", '"mm": Units("mm", "cm", 0.1)', '"mm": Units("mm", "cm", 10.0)',
      "millimetres reported as cm x100 too large"),
    M("data/sample.py", '"m": Units("m", "cm", 100.0)', '"m": Units("m", "m", 100.0)',
      "metres: numbers in cm labelled m"),
    M("data/sample.py", "lo = torch.where(valid, depth, torch.full_like(depth, big)).amin((1, 2, 3), keepdim=True)",
      "lo = depth.amin((1, 2, 3), keepdim=True)", "per-image range counts invalid (0) pixels"),
    M("data/sample.py", "return torch.isfinite(depth) & (depth != 0)", "return depth != 0",
      "NaN / inf depth counted valid"),
    # ---------------------------------------------------------------- data/folder.py
    M("data/folder.py", "rgb, depth = read_rgb(rgb_path), read_depth(depth_path, depth_scale=1.0)",
      "rgb, depth = read_rgb(rgb_path), read_depth(depth_path)", "folder sets' 16-bit PNG depth divided by 1000"),
    M("data/folder.py", 'self.role = self.meta.get("role", "eval")', 'self.role = self.meta.get("role", "train")',
      "a set without a role may be trained on"),
    M("data/folder.py", "return NYU_BORDER if names_nyu else 0", "return 0",
      "a folder set naming NYU loses NYU's 6-pixel border"),
    M("data/folder.py", "if (scale is not None or measured) and", "if scale is not None and",
      "measured lr.png at the sensor's ratio never read"),
    M("data/folder.py", 'return "lr" if scale is None else f"lr_{ratio_name(scale)}"',
      'return "lr" if scale is None else f"lr_x{scale}"', "lr_x4.png looked up as lr_x4.0.png"),
    # ---------------------------------------------------------------- data/middlebury.py
    M("data/middlebury.py", "disp = torch.where(torch.isfinite(disp), disp, torch.zeros_like(disp))", "pass",
      "Middlebury 2014 inf (unknown) disparity kept: NaN after degradation"),
    M("data/middlebury.py", "return FolderDataset(root, scale)", "return FolderDataset(root)",
      "preprocessed Middlebury sets lose their measured lr_xS inputs"),
    # ---------------------------------------------------------------- data/nyu.py
    M("data/nyu.py", "return range(num_train), range(num_train, total)",
      "return range(num_train), range(num_train - 1, total)", "last training pair also tested"),
    M("data/nyu.py", "NYU_BORDER = 6", "NYU_BORDER = 0", "NYU border crop lost"),
    M("data/nyu.py", "rgb = np.asarray(f[\"images\"][i]).transpose(0, 2, 1)", "rgb = np.asarray(f[\"images\"][i])",
      "NYU RGB not transposed"),
    # ---------------------------------------------------------------- data/degrade.py
    M("data/degrade.py", "rows = ((torch.arange(size[0]) + 0.5) * h / size[0])",
      "rows = ((torch.arange(size[0])) * h / size[0])", "point protocol takes block corners, not centres"),
    M("data/degrade.py", "lo, hi = valid_range(depth, valid_mask(depth))", "lo, hi = valid_range(lr, valid_mask(lr))",
      "noisy protocol scaled by the LR range, not the ground truth's"),
    M("data/degrade.py", "lr = lr + noise * span * torch.randn", "lr = lr + noise * torch.randn",
      "noisy protocol noise not scaled by the depth range"),
    M("data/degrade.py", "hh, ww = h - h % s, w - w % s", "hh, ww = h - h % s, w - h % s",
      "crop to a multiple uses the height's remainder for the width"),
    M("data/degrade.py", "return max(1, round(height / scale)), max(1, round(width / scale))",
      "return max(1, int(height / scale)), max(1, int(width / scale))", "LR size floored instead of rounded"),
    M("data/degrade.py", 'MM_IN_UNITS = {"m": 1e-3, "mm": 1.0}', 'MM_IN_UNITS = {"m": 1e-3, "mm": 1e-3}',
      "tof protocol quantises millimetre data to micrometres"),
    M("data/degrade.py", "lr = torch.where(hole, F.max_pool2d(lr, 3, 1, 1), lr)",
      "lr = torch.where(hole, -F.max_pool2d(-lr, 3, 1, 1), lr)", "tof dropouts filled with the nearest depth"),
    M("data/degrade.py", 'return f"x{float(scale):g}"', 'return f"x{scale}"', "ratio 4.0 named x4.0"),
    M("data/degrade.py", "if is_integer_ratio(scale) and (out_h, out_w) != (h * scale, w * scale):",
      "if False:", "real protocol accepts a measured input of the wrong size"),
    # ---------------------------------------------------------------- data/datamodule.py
    M("data/sets.py", "train = NYUv2Dataset(path, train_idx[: len(train_idx) - n_val])",
      "train = NYUv2Dataset(path, train_idx)", "issue 15 #4: validation pairs also trained on"),
    M("data/sets.py", 'if ds.role != "train":', 'if ds.role == "test":',
      "issue 15 #5: role: eval sets accepted for training"),
    M("data/sets.py", "NYUv2Dataset(path, train_idx[len(train_idx) - n_val :])",
      "NYUv2Dataset(path, train_idx[:n_val])", "validation on the first (training) pairs"),
    M("data/synthetic.py", "return SyntheticDataset(count, size, seed=HELD_OUT_SEED)",
      "return SyntheticDataset(count, size, seed=0)",
      "synthetic validation scenes are training scenes"),
    M("data/datamodule.py", 'out = {k: v.flip(-1) for k, v in out.items()}',
      'out = {k: v.flip(-1) if k != "rgb" else v for k, v in out.items()}',
      "training crops: depth flipped, RGB not"),
    M("data/datamodule.py", "y, x = random.randint(0, h - self.crop), random.randint(0, w - self.crop)",
      "y, x = random.randint(0, w - self.crop), random.randint(0, h - self.crop)",
      "training crop offsets drawn from the wrong axis"),
    M("data/datamodule.py", 'batch["lr"] = downsample(batch["depth"], scale, self.protocol, self.noise)',
      'batch["lr"] = downsample(batch["depth"], scale, "bicubic", self.noise)',
      "training ignores the configured protocol (noisy, point)"),
    M("data/sets.py", 's["valid"] = torch.zeros_like(s["valid"])', "pass",
      "DDP padding images counted in the test metric"),
    M("data/datamodule.py", "if stage == \"fit\" and hp.val_count > hp.num_train // 2:",
      "if stage == \"fit\" and hp.val_count >= hp.num_train // 2:", "a valid val_count refused"),
    M("data/datamodule.py", "return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=True,",
      "return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=False,", "training never shuffled"),
    M("data/sets.py", "fixed(\"nyu_test\", NYUv2Dataset(path, test_idx), NYU_BORDER)",
      "fixed(\"nyu_test\", NYUv2Dataset(path, test_idx), 0)", "NYU test without its border"),
    # ---------------------------------------------------------------- data/synthetic.py
    M("data/synthetic.py", "return synthetic_scene(self.seed + index, self.size)",
      "return synthetic_scene(index, self.size)", "every synthetic set draws the same scenes (val = train)"),
    # ---------------------------------------------------------------- commands/upsample.py
    M("commands/upsample.py", "write_depth(out, result, depth_scale=factor)", "write_depth(out, result)",
      "issue 15 #3: output PNG at x1000 whatever the input's scale"),
    M("commands/upsample.py", 'sixteen_bit = img.mode.startswith("I")', 'sixteen_bit = img.mode == "I"',
      "16-bit PNG input taken as 8-bit"),
    M("commands/upsample.py", "return 1000.0  # metres written to a 16-bit PNG as millimetres", "return 1.0",
      ".npy/.pfm metres written to PNG as whole metres"),
    M("commands/upsample.py", "if any(_same(target, src) for src in inputs):",
      "if any(_same(target, src) for src in inputs[:2]):", "--out/--preview may overwrite the --gt file"),
    M("commands/upsample.py", "return b is not None and Path(a).resolve() == Path(b).resolve()",
      "return b is not None and Path(a) == Path(b)", "an input spelled differently is overwritten"),
    M("commands/upsample.py", "if _same(out, rgb) or _same(out, depth):", "if _same(out, rgb):",
      "folder mode writes into the depth folder"),
    M("commands/upsample.py", "gt = gt[..., :big_h, :big_w]", "pass", "--gt larger than the result: wrong RMSE"),
    M("commands/upsample.py", "return 1 if failures else 0", "return 0", "folder mode exits 0 with skipped pairs"),
    M("commands/upsample.py", "if abs(big_h / scale - h) > 1 or abs(big_w / scale - w) > 1:",
      "if abs(big_h / scale - h) > 1 and abs(big_w / scale - w) > 1:", "--scale checked on one axis only"),
    M("commands/upsample.py", "return any(method.trained_for(r) for r in ratio)", "return method.scales is None",
      "no untrained-ratio note for a model trained for other ratios"),
    # ---------------------------------------------------------------- commands/compare.py
    M("commands/compare.py", "f\"{cell[m, s]['rmse']:.3f} ({cell[m, s]['mae']:.3f})\"",
      "f\"{cell[m, s]['mae']:.3f} ({cell[m, s]['rmse']:.3f})\"", "issue 15 #6: results.md shows MAE as RMSE"),
    M("data/sets.py", "NYUv2Dataset(path, range(NUM_TRAIN, total))", "NYUv2Dataset(path, range(total))",
      "NYU's training pairs evaluated as test pairs"),
    M("data/sets.py", 'if read_meta(p).get("role") == "train":', 'if read_meta(p).get("role") == "eval":',
      "evaluation sets skipped, training sets evaluated"),
    M("commands/compare.py", "return f\"{float(f'{ratio:.4g}'):g}\"", "return f\"{ratio:g}\"",
      "ratio 8/3 named 2.66667"),
    M("commands/compare.py", "gains = [f\"{100 * (1 - cell[m, s]['rmse'] / cell[REFERENCE, s]['rmse']):+.1f}%",
      "gains = [f\"{100 * (cell[m, s]['rmse'] / cell[REFERENCE, s]['rmse'] - 1):+.1f}%",
      "gain over bicubic with the wrong sign"),
    M("commands/compare.py", "key=lambda s: next(r[\"ratio\"] for r in sub if r[\"scale\"] == s))",
      "key=lambda s: s)", "table columns in string order (x16 before x2)"),
    M("commands/compare.py", "if not (math.isfinite(s) and 1 < s <= MAX_RATIO):",
      "if not (math.isfinite(s) and 1 <= s <= MAX_RATIO):", "--scales 1 accepted"),
    M("commands/compare.py", "names.insert(0, REFERENCE)", "pass", "bicubic not added: no worse-than-bicubic counts"),
    M("commands/compare.py", '"rmse", "mae", "worse_than_bicubic"]', '"mae", "rmse", "worse_than_bicubic"]',
      "results.csv columns in another order than documented"),
    M("commands/compare.py", "counts[r[\"method\"], r[\"dataset\"], r[\"scale\"]] = (worse + (r[\"rmse\"] > bicubic",
      "counts[r[\"method\"], r[\"dataset\"], r[\"scale\"]] = (worse + (r[\"rmse\"] < bicubic",
      "counts images better than bicubic as worse"),
    # ---------------------------------------------------------------- commands/export.py, profile.py
    M("commands/export.py", 'info["results"] = read_results(Path(args.results))', "pass",
      "--results not recorded in the model file"),
    M("commands/profile.py", "return sum(p.numel() for p in model.parameters()), counter.get_total_flops()",
      "return sum(p.numel() for p in model.parameters() if p.dim() > 1), counter.get_total_flops()",
      "profile leaves biases out of the parameter count"),
    # ---------------------------------------------------------------- method.py
    M("methods/method.py", "grow = (known == 0) & (count > 0)", "grow = count > 0",
      "filling invalid pixels changes valid ones"),
    M("methods/method.py", "lr_norm, lo, span = normalise(lr, depth_range)", "lr_norm, lo, span = normalise(lr)",
      "norm gt ignored (always the LR range)"),
    M("methods/method.py", "if fraction < MIN_VALID_FRACTION:", "if fraction <= MIN_VALID_FRACTION:",
      "exactly 5 % valid refused", equivalent="the fraction is a float32 mean: exactly 5 % valid gives "
      "0.0500000007 > 0.05, so < and <= agree on every input"),
    M("methods/method.py", "if h > big_h or w > big_w:", "if h > big_h and w > big_w:",
      "a depth wider (not taller) than the RGB accepted"),
    M("methods/method.py", "if abs(h - expected_h) > max(1.0, ASPECT_TOLERANCE * expected_h):",
      "if abs(h - expected_h) > ASPECT_TOLERANCE * expected_h:", "small maps whose size rounded refused"),
    M("methods/method.py", "return big_h / h, big_w / w", "return big_w / w, big_h / h", "ratio axes swapped"),
    M("methods/tiling.py", "halo = overlap // 4", "halo = 0", "tiles blend their own border effects in: seams"),
    M("methods/tiling.py", "return out / weight", "return out", "tiles summed, not blended",
      equivalent="the ramps of overlapping tiles sum to exactly 1 everywhere, so the division is by ones"),
    M("methods/tiling.py", "return (2 * a * size + lr_size) // (2 * lr_size)", "return a * size // lr_size",
      "tile edges floored instead of rounded"),
    M("methods/method.py", 'return torch.device("cuda" if torch.cuda.is_available() else "cpu")',
      'return torch.device("cpu")', "--device auto never picks the GPU",
      equivalent="on a machine without CUDA only: tests/test_method.py::test_resolve_device kills it on a GPU"),
    # ---------------------------------------------------------------- metrics.py
    M("metrics.py", "return t[..., border : t.shape[-2] - border, border : t.shape[-1] - border] if border > 0 else t",
      "return t[..., border : t.shape[-2] - border, border : t.shape[-2] - border] if border > 0 else t",
      "border crop uses the height for the width"),
    M("metrics.py", "ratio = torch.where(mask, torch.maximum(pred / target, target / pred)",
      "ratio = torch.where(mask, (pred / target)", "delta1 counts every underestimate as a hit"),
    M("metrics.py", "self.images += has.sum()", "self.images += has.numel()",
      "images without valid pixels counted in the mean RMSE"),
    M("metrics.py", '"mae": self.abs / count,', '"mae": self.abs / self.images.clamp_min(1),',
      "MAE per image instead of per pixel"),
    M("metrics.py",
      "pred, target = crop_border(pred, border).double() * factor, crop_border(target, border).double() * factor",
      "pred, target = crop_border(pred, border).double() * factor, crop_border(target, border).double()",
      "unit factor applied to the prediction only"),
    M("metrics.py", "return (errors[\"sq\"] / errors[\"count\"].clamp_min(1)).sqrt()",
      "return (errors[\"sq\"] / errors[\"count\"].clamp_min(1))", "per-image MSE reported as RMSE"),
    # ---------------------------------------------------------------- evaluate.py
    M("metrics.py", "e = per_image_errors(pred, target, valid, self.border, factor)",
      "e = per_image_errors(pred, target, valid, self.border)", "issue 15 #7: results without the unit factor"),
    M("evaluate.py", "metric.update(pred, depth, valid, batch_units(batch).factor)",
      "metric.update(pred, depth, valid)",
      "results.csv without the unit factor"),
    M("evaluate.py", 'depth_range = valid_range(depth, valid) if norm == "gt" else None',
      'depth_range = valid_range(depth, valid) if norm == "lr" else None', "norm lr and gt swapped"),
    M("evaluate.py", '"mae": float(e["abs"][0]) / max(count, 1)', '"mae": float(e["abs"][0])',
      "per-image MAE is a sum"),
    M("metrics.py", "e = per_image_errors(pred, target, valid, self.border, factor)",
      "e = per_image_errors(pred, target, valid, 0, factor)", "the metric ignores the set's border"),
    M("evaluate.py", "n = len(dataset) if limit is None else min(limit, len(dataset))", "n = len(dataset)",
      "--limit ignored"),
    M("data/degrade.py", "if min(height, width) / scale < MIN_LR_SIDE:", "if max(height, width) / scale < MIN_LR_SIDE:",
      "a ratio too large for the image accepted"),
    M("data/degrade.py", 'scale = sample["depth"].shape[-1] / sample["lr"].shape[-1]',
      'scale = sample["depth"].shape[-1] // sample["lr"].shape[-1]', "measured ratio 8/3 taken as 2"),
    # ---------------------------------------------------------------- models/
    M("models/dsr.py", "h = block(h, g2)", "h = block(d2, g2)", "only the last hierarchical block used"),
    M("models/dsr.py", "g2 = self.guide2(torch.cat([e2, d2], 1))", "g2 = self.guide2(torch.cat([e2, e2], 1))",
      "guidance at H/4 ignores the depth features"),
    M("models/dsr.py", "h = self.merge0(torch.cat([F.interpolate(h, scale_factor=2.0, mode=\"bilinear\"), e0], 1))",
      "h = self.merge0(torch.cat([F.interpolate(h, scale_factor=2.0, mode=\"nearest\"), e0], 1))",
      "nearest instead of bilinear upsampling in the decoder"),
    M("models/dsr.py", "h = self.merge1(torch.cat([F.interpolate(h, scale_factor=2.0, mode=\"bilinear\"), d1], 1))",
      "h = self.merge1(torch.cat([F.interpolate(h, scale_factor=2.0, mode=\"bilinear\"), e1], 1))",
      "decoder skip at H/2 takes RGB instead of depth features"),
    M("models/dsr.py", "pad = (0, -width % 4, 0, -height % 4)", "pad = (0, -height % 4, 0, -width % 4)",
      "padding to a multiple of 4 with height and width swapped"),
    M("models/dsr.py", "h = h + F.relu(self.refine1(h, self.guide1(torch.cat([e1, d1], 1))))",
      "h = F.relu(self.refine1(h, self.guide1(torch.cat([e1, d1], 1))))", "refinement loses its residual skip"),
    M("models/dsr.py", "self.refine0 = _conv(c0, c0)", "self.refine0 = _conv(c0, c0, k=1)",
      "last refinement a 1x1 instead of a 3x3 convolution"),
    M("models/layers.py", "return x + self.fuse(torch.cat(outs, 1))", "return self.fuse(torch.cat(outs, 1))",
      "hierarchical block loses its residual skip"),
    M("models/layers.py", "h = self.act(conv(h, guide))", "h = self.act(conv(x, guide))",
      "hierarchical convs in parallel, not a chain"),
    M("models/layers.py", "g = x if guide is None else guide\n        return paka_conv2d(",
      "g = x\n        return paka_conv2d(", "PAKA ignores its guidance"),
    M("models/layers.py", "nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))",
      "nn.init.kaiming_uniform_(self.weight)",
      "static weights not initialised as nn.Conv2d"),
    M("models/layers.py", "nn.init.zeros_(branch[-1].bias)", "pass", "a fresh PAKA layer is not a plain convolution"),
    M("models/layers.py", "self.act = nn.ReLU(inplace=True)", "self.act = nn.Identity()",
      "hierarchical block without its activation"),
    M("models/__init__.py", "return GuidedDSRNet(conv=name, **{**PRESETS[preset], **kwargs})",
      "return GuidedDSRNet(conv=name, **{**kwargs, **PRESETS[preset]})", "keyword arguments overridden by the preset"),
    # ---------------------------------------------------------------- added after the first full run
    M("commands/compare.py", "res = evaluate(method, data, scale, args.protocol, args.norm, spec.border,",
      "res = evaluate(method, data, scale, args.protocol, \"lr\", spec.border,", "--norm gt ignored"),
    M("commands/compare.py", "res = evaluate(method, data, scale, args.protocol, args.norm, spec.border,",
      "res = evaluate(method, data, scale, args.protocol, args.norm, 0,", "the data set's border ignored"),
    M("methods/method.py", "return lo <= ratio <= hi or any(abs(ratio / s - 1) < 0.01 for s in self.scales)",
      "return any(abs(ratio / s - 1) < 0.01 for s in self.scales)", "a trained ratio range ignored"),
    M("commands/compare.py", "untrained = [s for s in scales if not method.trained_for(s)]",
      "untrained = [s for s in scales if method.scales is not None and s not in method.scales]",
      "compare notes ratios inside a model's trained range as untrained"),
]

# test_compare.py and test_training.py are all slow (left out by -m "not slow") but cover these modules in CI
_DATA = ["tests/test_promises.py", "tests/test_data.py", "tests/test_degrade.py"]
_CLI = ["tests/test_upsample.py", "tests/test_cli_failures.py"]
_MODELS = ["tests/test_promises.py", "tests/test_models.py", "tests/test_method.py"]
TESTS: dict[str, list[str]] = {  # module -> the test files that cover it
    "data/io.py": [*_DATA, *_CLI],
    "data/sample.py": [*_DATA, "tests/test_method.py", "tests/test_metrics.py"],
    "data/folder.py": [*_DATA, "tests/test_compare.py"],
    "data/middlebury.py": [*_DATA, "tests/test_compare.py"],
    "data/nyu.py": [*_DATA, "tests/test_compare.py", "tests/test_cli_failures.py"],
    "data/degrade.py": [*_DATA, "tests/test_compare.py", "tests/test_method.py"],
    "data/datamodule.py": [*_DATA, "tests/test_training.py", "tests/test_cli_failures.py"],
    "data/sets.py": [*_DATA, "tests/test_compare.py", "tests/test_training.py", "tests/test_one_evaluation.py"],
    "data/synthetic.py": _DATA,
    "commands/upsample.py": ["tests/test_promises.py", *_CLI],
    "commands/compare.py": ["tests/test_promises.py", "tests/test_compare.py", "tests/test_cli_failures.py"],
    "commands/export.py": ["tests/test_promises.py", "tests/test_checkpoint_safety.py"],
    "commands/profile.py": ["tests/test_promises.py"],
    "methods/method.py": [*_MODELS, *_CLI],
    "methods/tiling.py": [*_MODELS, *_CLI],
    "metrics.py": ["tests/test_promises.py", "tests/test_metrics.py", "tests/test_compare.py"],
    "evaluate.py": ["tests/test_promises.py", "tests/test_compare.py", "tests/test_training.py",
                    "tests/test_cli_failures.py"],
    "models/dsr.py": _MODELS,
    "models/layers.py": _MODELS,
    "models/__init__.py": _MODELS,
}
GROUPS = ("data/", "commands/", "methods/", "metrics.py", "evaluate.py", "models/")


def group(file: str) -> str:
    return next(g for g in GROUPS if file.startswith(g))


# ------------------------------------------------------------------------------------------------ running


class Sandbox:
    """Where the mutations are made and the tests run: a copy of the working tree, or the repository."""

    def __init__(self, in_place: bool, keep: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="depthsr-mutants-"))
        self.keep = keep
        if in_place:
            self.root = ROOT
        else:
            self.root = self.tmp / ROOT.name
            listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                    cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
            for name in filter(None, listed):
                src = ROOT / name
                if src.is_file() and not src.is_symlink():
                    dst = self.root / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            shared = ROOT.parent / "shared"
            if shared.exists():
                (self.tmp / "shared").symlink_to(shared)  # tests read ../shared/data beside the repository
        self.env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                    "PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPYCACHEPREFIX": str(self.tmp / "pycache"), "WANDB_MODE": "offline"}
        where = subprocess.run([sys.executable, "-c", "import depthsr; print(depthsr.__file__)"], cwd=self.root,
                               env=self.env, capture_output=True, text=True, check=True).stdout.strip()
        if Path(where).resolve() != (self.root / "depthsr" / "__init__.py").resolve():
            raise SystemExit(f"the tests would import depthsr from {where}, not from {self.root}")

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


HEAVY = ("torch", "torch.nn.functional", "pytorch_lightning", "torchmetrics", "kornia", "cv2", "h5py", "numpy",
         "PIL.Image", "safetensors.torch", "skimage", "yaml", "tqdm", "matplotlib.pyplot", "pytest")


def serve() -> None:
    """The fork server (run as `mutation_check.py --serve` with the sandbox's environment): imports the heavy
    libraries once, never depthsr, then for each request on stdin forks a child that runs pytest in-process.
    The child imports depthsr afresh, so it sees the file as mutated at that moment; the server stays clean."""
    import importlib
    import json

    import matplotlib

    matplotlib.use("Agg")
    for name in HEAVY:
        importlib.import_module(name)
    assert not any(m == "depthsr" or m.startswith("depthsr.") for m in sys.modules), "the server imported depthsr"
    child = {"pid": 0}

    def stop(*_) -> None:  # the runner is closing: the running child (its own session) goes too
        if child["pid"]:
            try:
                os.killpg(child["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.monotonic()
        pid = child["pid"] = os.fork()
        if pid == 0:  # the child: its own session (killable as a group), output to the log file
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.setsid()
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 3
            try:
                import pytest

                code = int(pytest.main(request["args"]))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        code = None
        while time.monotonic() - start < request["timeout"]:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.1)
        if code is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        child["pid"] = 0
        print(json.dumps({"code": code, "seconds": time.monotonic() - start}), flush=True)


class Runner:
    """Runs pytest in the sandbox: through the fork server (the libraries imported once), or as a fresh
    process per run (`--no-fork`)."""

    def __init__(self, sandbox: Sandbox, fork: bool) -> None:
        self.sandbox, self.server = sandbox, None
        if fork:
            self.server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                           cwd=sandbox.root, env=sandbox.env, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, start_new_session=True)
            if '"ready"' not in (self.server.stdout.readline() or ""):
                raise SystemExit("the fork server did not start")

    def close(self) -> None:
        if self.server is not None:
            self.server.terminate()  # the server kills its running child, then exits
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()

    def run(self, files: list[str], deselect: list[str], timeout: float, first_failure: bool = True,
            junit: Path | None = None) -> tuple[str, float, str]:
        """('pass' | 'fail' | 'error' | 'timeout' | ..., seconds, output tail) of one pytest run."""
        args = ["-q", "-m", "not slow", "-p", "no:cacheprovider", "-W", "ignore"]
        args += ["-x"] if first_failure else []
        args += [f"--junitxml={junit}"] if junit else []
        args += [arg for node in deselect for arg in ("--deselect", node)] + files
        if self.server is not None:
            import json

            log = self.sandbox.tmp / "run.log"
            self.server.stdin.write(json.dumps({"args": args, "timeout": timeout, "log": str(log)}) + "\n")
            self.server.stdin.flush()
            reply = json.loads(self.server.stdout.readline())
            code, seconds, out = reply["code"], reply["seconds"], log.read_text(errors="replace")
        else:
            code, seconds, out = self._process(args, timeout)
        if code is None:
            return "timeout", seconds, out[-2000:]
        # 1: tests failed; 2: a collection error (the mutant does not import); 3-5: pytest itself went wrong
        return {0: "pass", 1: "fail", 2: "error"}.get(code, f"pytest exit {code}"), seconds, out[-2000:]

    def _process(self, args: list[str], timeout: float) -> tuple[int | None, float, str]:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=self.sandbox.root, env=self.sandbox.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, time.monotonic() - start, out
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return proc.returncode, time.monotonic() - start, out


def failing_nodes(junit: Path) -> list[str]:
    """The node ids (tests/test_x.py::name) that failed or errored in a JUnit XML report."""
    nodes = []
    for case in ET.parse(junit).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            parts = case.get("classname", "").split(".")  # tests.test_x (or tests.test_x.Class)
            nodes.append("::".join(["/".join(parts[:2]) + ".py", *parts[2:], case.get("name", "")]))
    return nodes


def first_failure(output: str) -> str:
    """The first failing test named in pytest's short summary."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1]
    return "?"


def _interrupt(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind through the finally blocks that restore the mutated file


def mutate_and_test(runner: Runner, mutation: Mutation, files: list[str], deselect: list[str],
                    timeout: float) -> tuple[str, float, str]:
    path = runner.sandbox.root / "depthsr" / mutation.file
    original = path.read_bytes()
    stat = path.stat()
    fragment, replacement = mutation.original.encode(), mutation.replacement.encode()
    if original.count(fragment) != 1:
        return "stale", 0.0, f"the original fragment occurs {original.count(fragment)} times in {path}"
    try:
        path.write_bytes(original.replace(fragment, replacement))
        return runner.run(files, deselect, timeout)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # bytecode caches see the original again
        if path.read_bytes() != original:
            raise SystemExit(f"could not restore {path}: restore it from git before anything else")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutations whose file or description contains this text")
    parser.add_argument("--ids", type=int, nargs="*", help="run only these mutations (numbers as --list shows)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--without", nargs="*", default=[], help="test files to leave out (measure the suite "
                        "without them)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's test run (a run that "
                        "times out is repeated once with twice the time)")
    parser.add_argument("--in-place", action="store_true", help="mutate the repository's files, not a copy")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--no-fork", action="store_true", help="a fresh pytest process per mutant (slower: every "
                        "run imports torch and Lightning again) instead of forking a server that has imported them")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    signal.signal(signal.SIGTERM, _interrupt)

    chosen = [m for i, m in enumerate(MUTATIONS, 1) if (not args.only or args.only in m.file or args.only in m.bug)
              and (not args.ids or i in args.ids)]
    tests = {f: [t for t in files if t not in args.without and (ROOT / t).is_file()] for f, files in TESTS.items()}
    if args.list:
        for m in chosen:
            print(f"{MUTATIONS.index(m) + 1:3d} {m.file}: {m.bug}\n    {m.original!r}\n -> {m.replacement!r}\n"
                  f"    tests: {' '.join(tests[m.file])}")
        return 0
    sandbox = Sandbox(args.in_place, args.keep)
    runner = None
    try:
        runner = Runner(sandbox, not args.no_fork)
        everything = sorted({t for m in chosen for t in tests[m.file]})
        print(f"baseline: {len(everything)} test files on the unmutated code in {sandbox.root} ...", flush=True)
        junit = sandbox.tmp / "baseline.xml"
        status, seconds, tail = runner.run(everything, [], 3 * args.timeout, False, junit)
        if status not in ("pass", "fail"):
            print(tail)
            raise SystemExit(f"baseline run: {status}")
        deselect = failing_nodes(junit)
        if deselect:  # once more, on their own: only tests that fail again are deselected (not a flaky one)
            status, _, tail = runner.run(deselect, [], 3 * args.timeout, False, junit)
            deselect = failing_nodes(junit) if status == "fail" else deselect
        print(f"baseline {seconds:.0f} s; {len(deselect)} test(s) already failing, deselected:"
              + "".join(f"\n    {n}" for n in deselect), flush=True)

        results: list[tuple[Mutation, str, float]] = []
        for i, m in enumerate(chosen, 1):
            status, seconds, tail = mutate_and_test(runner, m, tests[m.file], deselect, args.timeout)
            if status == "timeout":  # a slow machine, or a mutant that hangs: once more with twice the time
                status, seconds, tail = mutate_and_test(runner, m, tests[m.file], deselect, 2 * args.timeout)
            verdict = {"fail": "killed", "error": "killed", "pass": "SURVIVED"}.get(status, status)
            results.append((m, verdict, seconds))
            how = " (collection/import error)" if status == "error" else ""
            print(f"[{i:3d}/{len(chosen)}] {verdict:8s} #{MUTATIONS.index(m) + 1} {m.file}: {m.bug}{how} "
                  f"({seconds:.0f} s)", flush=True)
            if status == "fail":
                print(f"    by {first_failure(tail)}", flush=True)
            if status == "stale":
                print(f"    {tail}")
    finally:
        if runner is not None:
            runner.close()
        sandbox.close()

    print("\nkill rate per module (timeouts and stale mutations left out of the rate)")
    ran = [(m, v) for m, v, _ in results if v in ("killed", "SURVIVED")]
    for g in GROUPS:
        sub = [v for m, v in ran if group(m.file) == g]
        if sub:
            killed = sum(v == "killed" for v in sub)
            print(f"  {g:14s} {killed:3d} / {len(sub):3d}  {100 * killed / len(sub):5.1f} %")
    killed = sum(v == "killed" for _, v in ran)
    print(f"  {'overall':14s} {killed:3d} / {len(ran):3d}  {100 * killed / max(len(ran), 1):5.1f} %")
    real = [(m, v) for m, v in ran if not m.equivalent]
    print(f"  {'non-equivalent':14s} {sum(v == 'killed' for _, v in real):3d} / {len(real):3d}  "
          f"{100 * sum(v == 'killed' for _, v in real) / max(len(real), 1):5.1f} %  (leaving out the mutations "
          "marked equivalent)")
    survivors = [m for m, v in ran if v == "SURVIVED"]
    if survivors:
        print("\nsurvivors")
        for m in survivors:
            print(f"  #{MUTATIONS.index(m) + 1} {m.file}: {m.bug}\n      {m.original!r}\n   -> {m.replacement!r}"
                  + (f"\n      equivalent: {m.equivalent}" if m.equivalent else ""))
    others = [(m, v) for m, v, _ in results if v not in ("killed", "SURVIVED")]
    if others:  # timed out twice, a stale fragment, or pytest itself failing: neither killed nor survived
        print("\nnot counted\n" + "".join(f"  #{MUTATIONS.index(m) + 1} {m.file}: {m.bug}: {v}\n" for m, v in others))
    return 0


if __name__ == "__main__":
    sys.exit(main())
