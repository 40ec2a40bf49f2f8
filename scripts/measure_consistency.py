"""Measures the LR-consistency lever (iterative back-projection: the prediction, bicubic-downsampled, is pulled
back to the input) on held-out pairs: the real Motorcycle pair and 8 procedural scenes, bicubic and tof protocols,
x4/x8/x16.

    python scripts/measure_consistency.py MODEL_FILE
"""
from __future__ import annotations

import argparse

import torch

from depthsr.data.packaged import motorcycle
from depthsr.data.synthetic import held_out_scenes
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.method import Method
from depthsr.methods.network import load_network
from depthsr.ops.resize import bicubic_resize


class BackProjected(Method):
    """A network followed by `iterations` steps of back-projection onto its LR input."""

    def __init__(self, model: torch.nn.Module, iterations: int) -> None:
        self.model, self.iterations = model.eval(), iterations

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:  # B x 1 x H x W
        out = self.model(lr, rgb)
        for _ in range(self.iterations):
            out = out + bicubic_resize(lr - bicubic_resize(out, tuple(lr.shape[-2:])), tuple(rgb.shape[-2:]))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    args = parser.parse_args()
    model = load_network(args.model)[0].without_inference_steps()  # the lever is measured on the network alone
    data = {"motorcycle": [motorcycle()], "synthetic": held_out_scenes()}
    cells = [(name, protocol, scale) for name in data for protocol in ("bicubic", "tof") for scale in (4, 8, 16)]
    print("| method | " + " | ".join(f"{n} {p} x{s}" for n, p, s in cells) + " |")
    print("|---|" + "---|" * len(cells))
    methods = {"bicubic": Bicubic(), "network": BackProjected(model, 0), "+1 back-projection": BackProjected(model, 1),
               "+3 back-projections": BackProjected(model, 3)}
    for label, method in methods.items():
        row = [f"{evaluate(method, data[n], s, p).rmse:.3f}" for n, p, s in cells]
        print(f"| {label} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
