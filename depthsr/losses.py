"""Training losses on normalised depth, over the valid pixels only."""
from __future__ import annotations

from typing import Literal

import torch

LossKind = Literal["l1", "l2", "rmse"]


def depth_loss(
    pred: torch.Tensor,  # B x 1 x H x W
    target: torch.Tensor,  # B x 1 x H x W
    valid: torch.Tensor,  # B x 1 x H x W bool
    kind: LossKind,
    eps: float = 1e-8,
) -> torch.Tensor:  # scalar
    """'l1': the mean absolute error over the batch's valid pixels; 'l2': the mean squared error; 'rmse': the mean
    over images of each image's RMSE (what the benchmarks report: an image's error counts as much at x4 as at x16,
    however smaller it is; `eps` under the root keeps the gradient finite at zero error)."""
    err = pred - target
    if kind == "l1":
        return err[valid].abs().mean()
    if kind == "l2":
        return err[valid].square().mean()
    if kind == "rmse":
        weight = valid.to(err.dtype)
        mse = (err.square() * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)  # B
        return (mse + eps).sqrt().mean()
    raise ValueError(f"unknown loss {kind!r}; choose from l1, l2, rmse")
