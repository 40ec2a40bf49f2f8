"""The metric against hand-computed values."""
from __future__ import annotations

import math

import torch

from depthsr.metrics import DepthMetrics, per_image_errors


def test_per_image_mean_pooled_mae_delta_by_hand():
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])  # the 0 is invalid
    pred = torch.tensor([[[[2.0, 2.0], [4.0, 9.0]]], [[[2.0, 2.0], [2.0, 4.0]]]])
    m = DepthMetrics()
    m.update(pred, gt)
    out = m.compute()
    # image 1: errors 1, 0, 0 over 3 valid pixels -> rmse sqrt(1/3); image 2: 0, 0, 0, 2 -> rmse sqrt(4/4) = 1
    assert math.isclose(out["rmse"], (math.sqrt(1 / 3) + 1.0) / 2, rel_tol=1e-12)
    assert math.isclose(out["rmse_pooled"], math.sqrt(5 / 7), rel_tol=1e-12)
    assert math.isclose(out["mae"], 3 / 7, rel_tol=1e-12)
    # delta < 1.25: image 1: 2/1 no, 1 yes, 1 yes; image 2: three yes, 4/2 no -> 5 of 7
    assert math.isclose(out["delta1"], 5 / 7, rel_tol=1e-12)
    assert out["images"] == 2


def test_valid_mask_border_and_factor():
    gt = torch.full((1, 1, 5, 5), 2.0)
    pred = gt.clone()
    pred[..., 0, :] = 100.0  # only in the border
    pred[..., 2, 2] = 3.0  # the centre: error 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., 1, 1] = False
    e = per_image_errors(pred, gt, valid, border=1, factor=100.0)
    assert e["count"].item() == 8  # 3 x 3 interior less the masked pixel
    assert math.isclose(e["sq"].item(), 100.0**2)
    m = DepthMetrics(border=1)
    m.update(pred, gt, valid, factor=100.0)
    assert math.isclose(m.compute()["rmse"], math.sqrt(100.0**2 / 8))
    assert m.last["count"].tolist() == [8.0] and m.last["sq"].tolist() == [100.0**2]  # the batch's per-image sums


def test_accumulates_over_updates_like_one_batch():
    torch.manual_seed(0)
    pred, gt = torch.rand(4, 1, 6, 7) + 0.1, torch.rand(4, 1, 6, 7) + 0.1
    a, b = DepthMetrics(), DepthMetrics()
    a.update(pred, gt)
    b.update(pred[:1], gt[:1])
    b.update(pred[1:], gt[1:])
    for k, v in a.compute().items():
        assert torch.allclose(v, b.compute()[k])


def test_nonfinite_ground_truth_is_masked():
    gt = torch.tensor([[[[1.0, float("nan"), float("inf")]]]])
    pred = torch.tensor([[[[2.0, 5.0, 5.0]]]])
    m = DepthMetrics()
    m.update(pred, gt)
    assert m.compute()["rmse"].item() == 1.0
