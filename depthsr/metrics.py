"""The depth metric, in one place: masked, per image, in the data set's units (times a report factor).

Headline: the mean over images of per-image RMSE (the convention of DKN/JIIF/DCTNet tables); beside it the
pooled RMSE over all valid pixels, MAE and the delta < 1.25 accuracy. A border of `border` pixels is left
out (6 for the NYU protocol). Valid ground truth is `depthsr.data.sample.valid_mask`'s (finite, non-zero).
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

from depthsr.data.sample import valid_mask


def crop_border(t: torch.Tensor, border: int) -> torch.Tensor:  # ... x H x W -> ... x (H-2b) x (W-2b)
    return t[..., border : t.shape[-2] - border, border : t.shape[-1] - border] if border > 0 else t


def per_image_errors(
    pred: torch.Tensor,  # B x 1 x H x W
    target: torch.Tensor,  # B x 1 x H x W
    valid: torch.Tensor | None = None,  # B x 1 x H x W bool
    border: int = 0,
    factor: float = 1.0,
) -> dict[str, torch.Tensor]:  # each B, float64
    """Per-image sums over valid pixels: squared error, absolute error, delta hits, pixel count."""
    pred, target = crop_border(pred, border).double() * factor, crop_border(target, border).double() * factor
    mask = valid_mask(target)
    if valid is not None:
        mask &= crop_border(valid, border)
    err = torch.where(mask, pred - target, torch.zeros_like(pred))
    ratio = torch.where(mask, torch.maximum(pred / target, target / pred), torch.full_like(pred, torch.inf))
    dims = tuple(range(1, pred.dim()))
    return {
        "sq": err.square().sum(dims),
        "abs": err.abs().sum(dims),
        "delta": ((ratio < 1.25) & mask).sum(dims).double(),
        "count": mask.sum(dims).double(),
    }


def per_image_rmse(errors: dict[str, torch.Tensor]) -> torch.Tensor:  # B
    """RMSE of each image from `per_image_errors` (0 for an image without valid pixels)."""
    return (errors["sq"] / errors["count"].clamp_min(1)).sqrt()


class DepthMetrics(Metric):
    """Accumulates per-image errors over one evaluation set, leaving out a `border` of pixels (fixed per set);
    `update` takes the data set's report factor (units.factor) and keeps the batch's per-image errors in
    `last` (for per-image reports); `compute()` gives rmse (per-image mean), rmse_pooled, mae, delta1, images."""

    full_state_update = False

    def __init__(self, border: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border = border
        self.last: dict[str, torch.Tensor] = {}
        for name in ("rmse_sum", "sq", "abs", "delta", "count", "images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
               factor: float = 1.0) -> None:
        e = per_image_errors(pred, target, valid, self.border, factor)
        has = e["count"] > 0
        self.rmse_sum += per_image_rmse(e)[has].sum()
        self.images += has.sum()
        for key in ("sq", "abs", "delta", "count"):
            getattr(self, key).add_(e[key].sum())
        self.last = e

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp_min(1)
        return {
            "rmse": self.rmse_sum / self.images.clamp_min(1),
            "rmse_pooled": (self.sq / count).sqrt(),
            "mae": self.abs / count,
            "delta1": self.delta / count,
            "images": self.images,
        }
