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

from depthsr.data.degrade import MM_IN_UNITS, TofParams, crop_to_multiple, lr_size, tof_downsample
from depthsr.data.sets import parse_data
from depthsr.evaluate import evaluation_step
from depthsr.methods.baselines import Bicubic
from depthsr.methods.method import Method
from depthsr.methods.network import NetworkMethod, resolve_method
from depthsr.metrics import DepthMetrics, per_image_rmse

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


def per_image(methods: list[Method], data, scale: float, params: TofParams) -> dict[str, list[float]]:
    """Per-image RMSE (report units) of each method on `data` degraded by `params`, seeded as `compare` seeds."""
    rmse: dict[str, list[float]] = {m.name: [] for m in methods}
    for index in range(len(data)):
        sample = crop_to_multiple(data[index], scale)
        depth = sample["depth"][None]
        generator = torch.Generator().manual_seed(index)
        lr = tof_downsample(depth, lr_size(*depth.shape[-2:], scale), params,
                            MM_IN_UNITS.get(sample.get("units", ""), 0.0), generator)
        batch = {"lr": lr, "rgb": sample["rgb"][None], "depth": depth, "valid": sample["valid"][None],
                 "units": sample.get("units", "")}
        for method in methods:
            metric = DepthMetrics()
            evaluation_step(method, batch, metric)
            rmse[method.name].append(float(per_image_rmse(metric.last)[0]))
    return rmse


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
            rmse = per_image(methods, data.open(scale), scale, params)
            base = rmse[methods[0].name]
            cells = [f"{sum(base) / len(base):.3f}"]
            for method in methods[1:]:
                values = rmse[method.name]
                worse = sum(v > b for v, b in zip(values, base))
                cells.append(f"{sum(values) / len(values):.3f} ({worse})")
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
