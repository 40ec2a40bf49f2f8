"""Short training runs side by side (same data, same number of steps, from scratch): the PAKA / plain / PAC
ablation. Each variant trains with configs/short_run.yaml (the default model's recipe at a small budget) plus its
overrides; the last weights are measured on the evaluation pairs of ../shared/data (bicubic protocol, `--norm gt`,
as the model card's tables), with the training time and the forward time at 480 x 640 x4 (2 threads).

    python scripts/short_runs.py [--steps 2000] [--variants paka plain pac]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_inference import best_time  # scripts/ is on the path of a script run from it

from depthsr.data.sets import parse_data
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.network import NetworkMethod, load_network

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "paka": [],
    "plain": ["--model.model", "plain"],
    "pac": ["--model.model", "pac"],
}
SETS = ("middlebury2003", "nyu_normalized", "rgbdd")
SCALES = (4, 8, 16)


def forward_seconds(model: torch.nn.Module) -> float:
    """Best of three forward passes at 480 x 640, x4 (after a warm-up), timed as scripts/bench_inference.py does."""
    lr, rgb = torch.rand(1, 1, 120, 160), torch.rand(1, 3, 480, 640)
    with torch.no_grad():
        return best_time(lambda: model(lr, rgb), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--root", default="runs/short")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    sets = [s for name in SETS for s in parse_data(f"folder:{Path(args.shared) / name}")]
    header = ("| variant | params | train min | forward s | "
              + " | ".join(f"{s.name} x{scale}" for s in sets for scale in SCALES) + " |")
    lines = [header, "|" + "---|" * (4 + len(sets) * len(SCALES))]
    methods = [("bicubic", Bicubic(), 0, 0.0, 0.0)]
    for name in args.variants:
        out = Path(args.root) / name
        cmd = [str(Path(sys.executable).parent / "depthsr"), "fit", "--config", "configs/short_run.yaml",
               "--trainer.max_steps", str(args.steps), "--trainer.default_root_dir", str(out), *VARIANTS[name]]
        timing = out / "train_seconds.txt"
        if not timing.is_file():  # a variant already trained in this root is evaluated, not retrained
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            timing.write_text(f"{time.perf_counter() - start:.1f}\n")
        seconds = float(timing.read_text())
        ckpt = sorted(out.glob("**/*.ckpt"), key=lambda p: p.stat().st_mtime)[-1]
        model, _ = load_network(ckpt)
        methods.append((name, NetworkMethod(model, name), sum(p.numel() for p in model.parameters()), seconds,
                        forward_seconds(model)))
    for name, method, params, seconds, forward in methods:
        row = [f"{evaluate(method, s.open(scale), scale, 'bicubic', 'gt', s.border).rmse:.2f}"
               for s in sets for scale in SCALES]
        lines.append(f"| {name} | {params:,} | {seconds / 60:.0f} | {forward:.3f} | " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
