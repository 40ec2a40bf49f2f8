"""How noisy the inputs of each protocol measure (`depthsr.models.noise_level`), and how much of the input cleaner's
correction the shipped default's gate lets through: the evidence for the gate's two levels (chosen on the training
inputs, procedural scenes and the Middlebury 2005 pairs; the evaluation sets are shown as a check, never tuned on).
Each row: a set under a protocol; each cell, at one ratio: the noise level (% of the depth range) of its inputs as
min / median / 95th percentile / max, and in brackets the images the gate opens at all, of how many.

    python scripts/noise_levels.py [--checkpoint MODEL.safetensors] [--scenes 150] [--scales 2.5 4 7.5 8 16]
        [--data ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from depthsr.data.degrade import evaluation_sample
from depthsr.data.folder import FolderDataset
from depthsr.data.synthetic import SyntheticDataset
from depthsr.methods.method import Method
from depthsr.methods.network import SHIPPED, resolve_method

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SEED = 777  # procedural scenes of this seed on: drawn like the training scenes, at an evaluation image's size


def readings(method: Method, data: torch.utils.data.Dataset, scale: float, protocol: str) -> np.ndarray:  # N x 2
    """(noise level, the share of the cleaner's correction) of each image's input, as `depthsr upsample` reports
    them (`Method.input_noise`)."""
    return np.array([method.input_noise(evaluation_sample(data[i], scale, protocol, 0.0, i)["lr"])
                     for i in range(len(data))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED["default"], help="a model file with a gated "
                        "input cleaner (default: the shipped default)")
    parser.add_argument("--scenes", type=int, default=150, help="procedural scenes (384 x 512, as rgbdd's pairs)")
    parser.add_argument("--scales", type=float, nargs="+", default=[2.5, 4, 7.5, 8, 16])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    torch.set_num_threads(1)
    method = resolve_method(str(args.checkpoint))
    gate = method.clean_gate
    if gate is None:
        parser.error(f"{args.checkpoint}: its network has no input cleaner gated by noise")
    print(f"the gate of {args.checkpoint.name}: none of the correction up to a noise of {100 * gate[0]:g} %, all of "
          f"it from {100 * gate[1]:g} % of the depth range\n")
    sets = {"procedural scenes (training)": SyntheticDataset(args.scenes, (384, 512), seed=TRAIN_SEED)}
    folders = [FolderDataset(p) for p in sorted(args.data.iterdir()) if (p / "meta.json").is_file()]
    for data in sorted(folders, key=lambda d: d.role != "train"):  # the training sets first
        sets[f"{data.root.name} ({'training' if data.role == 'train' else 'evaluation, a check'})"] = data
    print("| inputs | protocol | " + " | ".join(f"x{s:g}" for s in args.scales) + " |")
    print("|---|---|" + "---|" * len(args.scales))
    for name, data in sets.items():
        for protocol in ("bicubic", "tof"):
            cells = []
            for scale in args.scales:
                noise, share = readings(method, data, scale, protocol).T
                q = np.quantile(100 * noise, [0, 0.5, 0.95, 1])
                cells.append(" / ".join(f"{v:.2f}" for v in q) + f" ({int((share > 0).sum())}/{len(noise)})")
            print(f"| {name} | {protocol} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
