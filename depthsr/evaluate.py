"""Evaluation in one place: `evaluation_step` is what `lit.py` (validation, test), `evaluate` (the loop
`depthsr compare` runs for every cell) and `upsample --gt` all call, so they cannot disagree.

The step takes a batch of degraded images (`depthsr.data.degrade.evaluation_sample`: the protocol with noise
seeded by the image's index), runs the method (which normalises by the LR's range, or the ground truth's for
`norm: gt`, and maps back to the data set's units) and updates the metric in the data set's report units
(`units(...).factor`), with the set's border left out (the metric's own, fixed per set).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from depthsr.data.degrade import TofParams, evaluation_sample
from depthsr.data.sample import Units, units, valid_range
from depthsr.methods.method import Method
from depthsr.metrics import DepthMetrics, per_image_rmse

NORMS = ("lr", "gt")


def batch_units(batch: dict) -> Units:
    """The units of a batch: one data set's (a name, or the collated list of the same name)."""
    name = batch.get("units", "")
    return units(name if isinstance(name, str) else name[0])


def evaluation_step(method: Method, batch: dict, metric: DepthMetrics, norm: str = "lr") -> torch.Tensor:
    """Predict a batch (`lr` B x 1 x h x w, `rgb` B x 3 x H x W; `depth`, `valid` B x 1 x H x W; `units`) and add
    its errors to `metric`; returns the prediction, B x 1 x H x W in the data set's units."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    depth, valid = batch["depth"], batch["valid"]
    depth_range = valid_range(depth, valid) if norm == "gt" else None
    pred = method(batch["lr"], batch["rgb"], depth_range)
    metric.update(pred, depth, valid, batch_units(batch).factor)
    return pred


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


def evaluate(method: Method, dataset: Dataset, scale: float | None, protocol: str = "bicubic", norm: str = "lr",
             border: int = 0, noise: float = 0.01, limit: int | None = None, progress=None,
             tof: TofParams | None = None) -> Result:
    """Per-image and overall errors of `method` on `dataset` at ratio `scale` (in the data set's report
    units). `scale` None: protocol 'real' with each pair's measured `lr` at its own ratio. `tof`: the `tof`
    protocol's parameters (None: its defaults)."""
    metric = DepthMetrics(border)
    rows, report, ratios = [], "units", []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(n):
        sample = evaluation_sample(dataset[index], scale, protocol, noise, index, tof)
        batch = {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in sample.items()}
        evaluation_step(method, batch, metric, norm)
        report = batch_units(batch).report
        e = metric.last
        count = float(e["count"][0])
        rows.append({"image": sample["name"], "rmse": float(per_image_rmse(e)[0]),
                     "mae": float(e["abs"][0]) / max(count, 1), "pixels": int(count)})
        ratios.append(float(sample["scale"]))
        if progress is not None:
            progress.update(1)
    values = {k: float(v) for k, v in metric.compute().items()}
    return Result(values["rmse"], values["rmse_pooled"], values["mae"], values["delta1"], int(values["images"]),
                  report, rows, sum(ratios) / max(len(ratios), 1))
