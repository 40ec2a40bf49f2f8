"""Training throughput on the CPU: the default x4 network (PAKA) beside its plain-conv twin, and the data
pipeline alone, on 256 x 256 crops, batch 4, measured side by side in one run.

    python scripts/bench_train.py [--steps 10] [--threads 2] [--mat PATH]   # --mat: an NYU .mat; default: procedural scenes
"""
from __future__ import annotations

import argparse
import time

import torch

from depthsr.data.datamodule import DegradeCollate, RandomCrops
from depthsr.data.nyu import NYUv2Dataset
from depthsr.data.synthetic import SyntheticDataset
from depthsr.method import normalise
from depthsr.models import build_model


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--mat", help="an NYU-format .mat to load from (default: procedural scenes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = NYUv2Dataset(args.mat) if args.mat else SyntheticDataset(64, (args.crop + 64, args.crop + 64))
    loader = torch.utils.data.DataLoader(RandomCrops(base, args.crop, repeats=100), batch_size=args.batch,
                                         shuffle=True, num_workers=0,
                                         collate_fn=DegradeCollate([4], "bicubic", 0.0))
    it = iter(loader)
    batch = next(it)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    data_rate = args.steps / (time.perf_counter() - start)

    paka, plain = train_rate("paka", batch, args.steps), train_rate("plain", batch, args.steps)
    b = args.batch
    print(f"x4, {args.crop} x {args.crop} crops, batch {b}, {args.threads} threads, "
          f"data from {'NYU ' + args.mat if args.mat else 'procedural scenes'} (one loader process)")
    print(f"paka  network: {paka * b:7.2f} samples/s")
    print(f"plain network: {plain * b:7.2f} samples/s")
    print(f"data pipeline: {data_rate * b:7.2f} samples/s")
    print(f"ratio paka/plain: {paka / plain:.2f} (target >= 0.5)")
    print(f"ratio data/paka training: {data_rate / paka:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
