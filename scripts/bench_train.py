"""Training throughput on the CPU: the default x4 network (PAKA) beside its plain-conv twin, and the data
pipeline alone (NYU-format file read through h5py, and procedural scenes made on the fly), on 256 x 256
crops, batch 4, measured side by side in one run.

    python scripts/bench_train.py [--steps 10] [--threads 2] [--mat PATH] [--system-malloc]
    # --mat: the real nyu_depth_v2_labeled.mat; default: a temporary NYU-format file of 480 x 640 scenes
    # malloc keeps freed memory as the depthsr command does (depthsr.runtime); --system-malloc: glibc's default
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depthsr.data.datamodule import DegradeCollate, RandomCrops
from depthsr.data.nyu import NYUv2Dataset, write_nyu_file
from depthsr.data.synthetic import SyntheticDataset, synthetic_scene
from depthsr.methods.method import normalise
from depthsr.models import build_model
from depthsr.runtime import keep_freed_memory


def train_rate(name: str, batch: dict, steps: int) -> float:
    """Optimiser steps per second of network `name` on one fixed batch (after a warm-up step)."""
    torch.manual_seed(0)
    model = build_model(name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lr_norm, lo, span = normalise(batch["lr"])
    target = (batch["depth"] - lo) / span

    def step() -> None:
        opt.zero_grad()
        (model(lr_norm, batch["rgb"]) - target).abs().mean().backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def data_rate(base, crop: int, batch: int, steps: int) -> tuple[float, dict]:
    """Batches per second of the training loader (one process), and one batch."""
    loader = torch.utils.data.DataLoader(RandomCrops(base, crop, repeats=100), batch_size=batch, shuffle=True,
                                         num_workers=0, collate_fn=DegradeCollate([4], "bicubic", 0.0))
    it = iter(loader)
    first = next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps / (time.perf_counter() - start), first


def temporary_nyu(folder: str, n: int = 16) -> Path:
    scenes = [synthetic_scene(i, (480, 640)) for i in range(n)]
    rgb = np.stack([(s["rgb"].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for s in scenes])
    depth = np.stack([s["depth"][0].numpy() for s in scenes])
    path = Path(folder) / "nyu_format.mat"
    write_nyu_file(path, rgb, depth)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--mat", help="an NYU-format .mat (default: a temporary one of procedural scenes)")
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default malloc settings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "system malloc" if args.system_malloc or not keep_freed_memory() else "malloc keeps freed memory"
    b = args.batch
    with tempfile.TemporaryDirectory() as tmp:
        mat = Path(args.mat) if args.mat else temporary_nyu(tmp)
        nyu_rate, batch = data_rate(NYUv2Dataset(mat), args.crop, b, args.steps)
        synthetic_rate, _ = data_rate(SyntheticDataset(64, (args.crop, args.crop)), args.crop, b, args.steps)
    paka, plain = train_rate("paka", batch, args.steps), train_rate("plain", batch, args.steps)
    print(f"x4, {args.crop} x {args.crop} crops, batch {b}, {args.threads} threads, one loader process, {malloc}")
    print(f"paka  network training:         {paka * b:7.2f} samples/s")
    print(f"plain network training:         {plain * b:7.2f} samples/s")
    print(f"data: NYU-format file (h5py):   {nyu_rate * b:7.2f} samples/s ({mat.name})")
    print(f"data: procedural scenes:        {synthetic_rate * b:7.2f} samples/s (made on the fly)")
    print(f"ratio paka/plain: {paka / plain:.2f} (target >= 0.5)")
    print(f"ratio NYU data/paka training: {nyu_rate / paka:.1f}x, procedural: {synthetic_rate / paka:.1f}x "
          "(target >= 5x)")


if __name__ == "__main__":
    main()
