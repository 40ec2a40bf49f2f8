"""Short training runs side by side (same data, same number of steps): the levers and the PAKA / plain / PAC
ablation. Each variant trains with configs/short_run.yaml plus its overrides; the last weights are evaluated
on the held-out real Motorcycle pair and 8 held-out procedural scenes, under the bicubic and tof protocols.

    python scripts/short_runs.py [--steps 600] [--variants paka plain pac]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from depthsr.data.packaged import motorcycle
from depthsr.data.synthetic import held_out_scenes
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.network import NetworkMethod, load_network

VARIANTS = {
    "paka": [],
    "plain": ["--model.model", "plain"],
    "pac": ["--model.model", "pac"],
    "paka-notof": ["--data.tof_share", "0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--root", default="runs/short")
    args = parser.parse_args()
    torch.set_num_threads(2)
    real, synthetic = [motorcycle()], held_out_scenes()
    cells = [(data_name, data, scale, protocol) for data_name, data in (("motorcycle", real), ("synthetic", synthetic))
             for protocol in ("bicubic", "tof") for scale in (4, 8, 16)]
    header = "| variant | params | train s | " + " | ".join(f"{d} {p} x{s}" for d, _, s, p in cells) + " |"
    lines = [header, "|" + "---|" * (3 + len(cells))]
    methods = [("bicubic", Bicubic(), 0, 0.0)]
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
        methods.append((name, NetworkMethod(model, name), sum(p.numel() for p in model.parameters()), seconds))
    for name, method, params, seconds in methods:
        row = [f"{evaluate(method, data, scale, protocol).rmse:.3f}" for _, data, scale, protocol in cells]
        lines.append(f"| {name} | {params:,} | {seconds:.0f} | " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
