"""`depthsr profile`: parameters and FLOPs of each network at one output size."""
from __future__ import annotations

import argparse
from unittest import mock

import torch

from depthsr.models import MODEL_NAMES, build_model, layers
from depthsr.ops import pac_conv2d_reference, paka_conv2d_reference


def count(name: str, height: int, width: int, scale: int, **kwargs) -> tuple[int, int]:
    """(parameters, FLOPs of one forward pass) of network `name` for an output of height x width.

    FlopCounterMode sees PyTorch's own products only: the native kernels and oneDNN GEMMs of PAKA's fast CPU
    path are invisible to it and its portable path splits the work into slabs. The guided convolutions are
    therefore counted through their references (the definition: one O x C*k*k product per output pixel), so
    every path of the same network counts the same work."""
    from torch.utils.flop_counter import FlopCounterMode  # pulls in torch.export (+70 MB): only where counted

    model = build_model(name, **kwargs).eval()
    lr, rgb = torch.rand(1, 1, height // scale, width // scale), torch.rand(1, 3, height, width)
    with (torch.no_grad(), mock.patch.object(layers, "paka_conv2d", paka_conv2d_reference),
          mock.patch.object(layers, "pac_conv2d", pac_conv2d_reference), FlopCounterMode(display=False) as counter):
        model(lr, rgb)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def run(args: argparse.Namespace) -> int:
    print(f"output {args.height} x {args.width}, x{args.scale} (FLOPs of convolutions and matrix products)")
    print(f"{'model':<8} {'parameters':>11} {'GFLOPs':>8}")
    for name in args.models:
        params, flops = count(name, args.height, args.width, args.scale)
        print(f"{name:<8} {params:>11,} {flops / 1e9:>8.2f}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="parameters and FLOPs of each network")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.set_defaults(run=run)
