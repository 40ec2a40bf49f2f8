"""How a network should meet a non-integer ratio, measured side by side (issue 14): run at the input's own ratio,
or resample the input onto the grid of ratios a network was trained for (the largest power of two not above it)
and run there; for the shipped default (trained on random ratios 2-16 as well as x4/x8/x16, then finished at
x4/x8/x16) and for stage 0 (x4/x8/x16 only, commit b21d03f, re-exported in e05aea1). One pass each (no inference
steps), on the real ToF pairs of rgbdd under the bicubic protocol (cm), beside bicubic.

    python scripts/ratio_options.py [--scales 2.5 4 7.5 8 16] [--data ../shared/data/rgbdd]
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch
from stage0 import STAGE0_SHA256, write_stage0  # scripts/stage0.py

from depthsr.data.sets import parse_data
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.method import Method
from depthsr.methods.network import SHIPPED, NetworkMethod, load_network
from depthsr.ops.resize import bicubic_resize

ROOT = Path(__file__).resolve().parent.parent


class OnGrid(Method):
    """A method run on the input resampled (bicubic) to the largest power-of-two ratio not above its own."""

    def __init__(self, base: Method) -> None:
        self.base, self.name = base, f"{base.name}, on the x2^k grid"

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        ratio = width / lr.shape[-1]
        step = 2 ** math.floor(math.log2(ratio) + 1e-6)
        return self.base.predict(bicubic_resize(lr, (round(height / step), round(width / step))), rgb)


def one_pass(path: Path, name: str, sha256: str | None = None) -> NetworkMethod:
    model, _ = load_network(path, sha256)
    return NetworkMethod(model.without_inference_steps(), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[2.5, 4, 7.5, 8, 16])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "rgbdd"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        stage0 = write_stage0(Path(tmp) / "stage0.safetensors")
        shipped = one_pass(SHIPPED["default"], "default (random ratios, then x4/8/16)")
        first = one_pass(stage0, "stage 0 (x4/8/16)", STAGE0_SHA256)
        methods = [Bicubic(), shipped, OnGrid(shipped), first, OnGrid(first)]
        data = parse_data(f"folder:{args.data}")[0]
        print("| method | " + " | ".join(f"x{s:g}" for s in args.scales) + " |")
        print("|---|" + "---|" * len(args.scales))
        for method in methods:
            cells = [evaluate(method, data.open(s), s, "bicubic", "lr", data.border).rmse for s in args.scales]
            print(f"| {method.name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
