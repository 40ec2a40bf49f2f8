"""Which part of the `tof` protocol costs a model its lead over bicubic (issue 14): each degradation of the protocol
alone (area integration, misregistration, depth noise, edge dropouts filled with the farthest depth) and all of them,
on the real ToF pairs of rgbdd (cm, `--norm lr`, RMSE with the images worse than bicubic in brackets). Network models
are also run without their back-projection steps (`consistency`), which move the answer towards the input, outliers
and all. The `all` row is `depthsr compare --protocol tof` (same inputs, same seeds).

    python scripts/tof_components.py [--methods default,tof,FILE.safetensors] [--scales 4 8] [--data DIR]
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path

import torch

from depthsr.commands.compare import worse_than_reference
from depthsr.data.degrade import TofParams
from depthsr.data.sets import parse_data
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.method import Method
from depthsr.methods.network import NetworkMethod, resolve_method

ROOT = Path(__file__).resolve().parent.parent
NONE = TofParams(shift=0.0, noise=0.0, dropout=0.0, quantum_mm=0.0)  # area integration alone
COMPONENTS = {
    "area integration alone": NONE,
    "+ misregistration": replace(NONE, shift=TofParams.shift),
    "+ depth noise": replace(NONE, noise=TofParams.noise),
    "+ edge dropouts": replace(NONE, dropout=TofParams.dropout),
    "all (the tof protocol)": TofParams(),
}


def without_back_projection(method: NetworkMethod) -> NetworkMethod:
    model = copy.deepcopy(method.model)
    model.consistency = 0
    return NetworkMethod(model, f"{method.name}, no back-projection", method.scales, method.ratio_range)


def methods_for(specs: list[str]) -> list[Method]:
    methods: list[Method] = [Bicubic()]
    for spec in specs:
        method = resolve_method(spec)
        methods.append(method)
        if isinstance(method, NetworkMethod) and method.model.consistency:
            methods.append(without_back_projection(method))
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="default,tof", help="shipped model names or model files, comma-separated")
    parser.add_argument("--scales", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "rgbdd"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    methods = methods_for(args.methods.split(","))
    data = parse_data(f"folder:{args.data}")[0]
    for scale in args.scales:
        print(f"\nx{scale:g}, {data.name}\n")
        print("| degradation | " + " | ".join(m.name for m in methods) + " |")
        print("|---|" + "---|" * len(methods))
        for label, params in COMPONENTS.items():
            results = [evaluate(m, data.open(scale), scale, "tof", border=data.border, tof=params) for m in methods]
            rows = [{**row, "method": m.name, "dataset": data.name, "scale": scale}
                    for m, result in zip(methods, results) for row in result.per_image]
            worse = worse_than_reference(rows)  # counted as `depthsr compare` counts them
            cells = [f"{results[0].rmse:.3f}"] + [f"{result.rmse:.3f} ({worse[m.name, data.name, scale][0]})"
                                                  for m, result in zip(methods[1:], results[1:])]
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
