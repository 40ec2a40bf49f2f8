"""Colour-mapped depth pictures: previews and the validation panel."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from depthsr.data.sample import valid_mask


def colorize(depth: torch.Tensor, lo: float, hi: float, valid: torch.Tensor | None = None) -> np.ndarray:
    """1 x H x W depth -> H x W x 3 uint8 RGB (turbo colour map; invalid pixels black)."""
    d = depth.detach().float().cpu()[0].numpy()
    norm = np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1].copy()
    if valid is not None:
        rgb[~valid.cpu()[0].numpy()] = 0
    return rgb


def _rgb8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def side_by_side(rgb: torch.Tensor, lr: torch.Tensor, *depths: torch.Tensor) -> np.ndarray:
    """RGB | LR (nearest-upsampled) | each depth, on one colour scale: H x (2+n)W x 3 uint8."""
    h, w = rgb.shape[-2:]
    finite = lr[valid_mask(lr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    lr_big = torch.nn.functional.interpolate(lr[None].float(), size=(h, w), mode="nearest")[0]
    tiles = [_rgb8(rgb), colorize(lr_big, lo, hi, lr_big != 0)] + [colorize(d, lo, hi) for d in depths]
    return np.concatenate(tiles, axis=1)


def error_panel(rgb: torch.Tensor, lr: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor,
                valid: torch.Tensor) -> np.ndarray:
    """RGB | LR | prediction | ground truth | absolute error (hot = large)."""
    err = (pred - gt).abs() * valid
    scale = float(err.max()) or 1.0
    return np.concatenate([side_by_side(rgb, lr, pred, gt), colorize(err, 0, scale)], axis=1)

