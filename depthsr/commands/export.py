"""`depthsr export`: a Lightning checkpoint of `depthsr fit` -> a small stand-alone .pt for `upsample`."""
from __future__ import annotations

import argparse

from depthsr.checkpoint import load_network, save_network


def run(args: argparse.Namespace) -> int:
    model, scales = load_network(args.ckpt)
    scales = args.scales or list(scales or [])
    save_network(args.out, model, model.conv_kind, model.config, scales, {"source": str(args.ckpt)})
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters, scales {scales})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="Lightning checkpoint -> small stand-alone .pt")
    p.add_argument("--ckpt", required=True, help="a .ckpt written by depthsr fit")
    p.add_argument("--out", required=True, help="the .pt to write")
    p.add_argument("--scales", type=int, nargs="*", help="scales it was trained for (default: from the ckpt)")
    p.set_defaults(run=run)
