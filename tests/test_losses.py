"""The training losses against hand-computed values and the benchmark metric."""
from __future__ import annotations

import math

import pytest
import torch

from depthsr.losses import depth_loss
from depthsr.metrics import DepthMetrics

# image 1: errors 1, 0, 2 on its valid pixels (the fourth, error 5, is invalid); image 2: errors 0, 0, 0, 3
PRED = torch.tensor([[[[1.0, 0.0], [2.0, 5.0]]], [[[0.0, 0.0], [0.0, 3.0]]]])
TARGET = torch.zeros(2, 1, 2, 2)
VALID = torch.tensor([[[[True, True], [True, False]]], [[[True, True], [True, True]]]])


@pytest.mark.parametrize("kind,expected", [
    ("l1", (1 + 0 + 2 + 3) / 7),  # over the batch's 7 valid pixels
    ("l2", (1 + 0 + 4 + 9) / 7),
    ("rmse", (math.sqrt(5 / 3) + math.sqrt(9 / 4)) / 2),  # the mean of the two images' RMSE
])
def test_losses_by_hand(kind, expected):
    assert math.isclose(depth_loss(PRED, TARGET, VALID, kind, eps=0.0).item(), expected, rel_tol=1e-6)


def test_rmse_loss_is_the_benchmark_metric():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 9, 7, generator=gen, dtype=torch.float64) + 0.5  # positive: all valid for the metric
    pred = target + 0.1 * torch.randn(3, 1, 9, 7, generator=gen, dtype=torch.float64)
    metric = DepthMetrics()
    metric.update(pred, target)
    loss = depth_loss(pred, target, torch.ones_like(target, dtype=torch.bool), "rmse", eps=0.0)
    assert math.isclose(loss.item(), metric.compute()["rmse"].item(), rel_tol=1e-12)


def test_rmse_loss_gradient():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 1, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 1, 4, 5, generator=gen, dtype=torch.float64)
    valid = torch.rand(2, 1, 4, 5, generator=gen) > 0.3
    assert torch.autograd.gradcheck(lambda p: depth_loss(p, target, valid, "rmse"), (pred,))


def test_rmse_loss_finite_gradient_at_zero_error():
    pred = torch.zeros(1, 1, 3, 3, requires_grad=True)
    depth_loss(pred, torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 3, 3, dtype=torch.bool), "rmse").backward()
    assert torch.isfinite(pred.grad).all()


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        depth_loss(PRED, TARGET, VALID, "huber")
