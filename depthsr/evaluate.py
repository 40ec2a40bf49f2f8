"""Evaluate one method on one data set at one ratio: the loop `depthsr compare` runs for every cell.

The same pieces as training and `upsample`: the data set's reader, `degrade` (the protocol), the method
wrapper and `DepthMetrics`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from depthsr.data.degrade import degrade
from depthsr.data.sample import units, valid_range
from depthsr.errors import DepthSRError
from depthsr.methods.method import Method
from depthsr.metrics import DepthMetrics, per_image_errors, per_image_rmse

MIN_LR_SIDE = 2  # smallest side (pixels) of a low-resolution input made by a protocol


@dataclass
class Result:
    """Summary of one (method, data set, ratio) cell, with its per-image rows."""

    rmse: float
    rmse_pooled: float
    mae: float
    delta1: float
    images: int
    units: str
    per_image: list[dict] = field(default_factory=list)
    ratio: float = 0.0  # the mean ratio of the inputs (for measured inputs, each pair's own)


def _check_size(sample: dict, scale: float) -> None:
    height, width = sample["depth"].shape[-2:]
    if min(height, width) / scale < MIN_LR_SIDE:
        raise DepthSRError(f"{sample.get('name', 'sample')}: {height} x {width} is too small for x{scale:g} (the "
                           f"low-resolution input would be under {MIN_LR_SIDE} pixels on a side)")


def evaluate(method: Method, dataset: Dataset, scale: float | None, protocol: str = "bicubic", norm: str = "lr",
             border: int = 0, noise: float = 0.01, limit: int | None = None, progress=None) -> Result:
    """Per-image and overall errors of `method` on `dataset` at ratio `scale` (in the data set's report
    units). `scale` None: protocol 'real' with each pair's measured `lr` at its own ratio."""
    metric = DepthMetrics(crop=border)
    rows, report, ratios = [], "units", []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(n):
        raw = dataset[index]
        if scale is None:
            if "lr" not in raw:
                raise DepthSRError(f"{raw.get('name', 'sample')}: protocol 'real' needs a measured lr input")
            ratio = raw["depth"].shape[-1] / raw["lr"].shape[-1]
        else:
            ratio = scale
            if protocol != "real":
                _check_size(raw, scale)
        sample = degrade(raw, ratio, protocol, noise, torch.Generator().manual_seed(index))
        u = units(sample["units"])
        report = u.report
        depth, valid = sample["depth"][None], sample["valid"][None]
        depth_range = valid_range(depth, valid) if norm == "gt" else None
        pred = method(sample["lr"][None], sample["rgb"][None], depth_range)
        metric.update(pred * u.factor, depth * u.factor, valid)
        e = per_image_errors(pred, depth, valid, border, u.factor)
        count = float(e["count"][0])
        rows.append({"image": sample["name"], "rmse": float(per_image_rmse(e)[0]),
                     "mae": float(e["abs"][0]) / max(count, 1), "pixels": int(count)})
        ratios.append(ratio)
        if progress is not None:
            progress.update(1)
    values = {k: float(v) for k, v in metric.compute().items()}
    return Result(values["rmse"], values["rmse_pooled"], values["mae"], values["delta1"], int(values["images"]),
                  report, rows, sum(ratios) / max(len(ratios), 1))
