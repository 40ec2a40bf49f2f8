"""The short Python API: `depthsr.load("default")` (or a model file, or a baseline name) -> an `Upsampler`
that takes depth and RGB as numpy arrays or tensors and returns depth in the same units and kind.

    lr:  h x w depth (any units; 0 / NaN / inf = invalid), or 1 x h x w / B x 1 x h x w tensors
    rgb: H x W x 3 uint8 (as images are read), or 3 x H x W / B x 3 x H x W float 0..1
    ->   H x W float32 (numpy in, numpy out), or a tensor shaped as `lr`, on `lr`'s device
"""
from __future__ import annotations

import numpy as np
import torch

from depthsr.methods.method import Method, check_ratio, check_valid, resolve_device
from depthsr.methods.network import resolve_method


def _rgb_tensor(rgb) -> torch.Tensor:  # -> B x 3 x H x W float 0..1
    t = torch.from_numpy(np.ascontiguousarray(rgb)) if isinstance(rgb, np.ndarray) else rgb
    if t.dim() == 3 and t.shape[-1] == 3 and t.shape[0] != 3:  # H x W x 3
        t = t.permute(2, 0, 1)
    if t.dtype == torch.uint8:
        t = t.float() / 255
    return (t[None] if t.dim() == 3 else t).float()


class Upsampler:
    """A method (network or baseline) that upsamples numpy arrays or tensors in real units."""

    def __init__(self, method: Method) -> None:
        self.method = method

    @property
    def name(self) -> str:
        return self.method.name

    def __call__(self, lr, rgb):
        as_numpy = isinstance(lr, np.ndarray)
        depth = torch.from_numpy(np.asarray(lr, dtype=np.float32)) if as_numpy else lr
        dims = depth.dim()
        depth = depth.reshape(1, 1, *depth.shape[-2:]) if dims < 4 else depth  # B x 1 x h x w
        rgb_t = _rgb_tensor(rgb).to(depth.device)
        check_ratio(depth, rgb_t)
        check_valid(depth)
        out = self.method(depth.float(), rgb_t)  # B x 1 x H x W, in lr's units
        if as_numpy:
            return out[0, 0].cpu().numpy()
        return out.reshape(*lr.shape[:-2], *out.shape[-2:]) if dims < 4 else out


def load(name: str = "default", device: str = "auto") -> Upsampler:
    """'default' or 'tof' (the shipped models), a model file (.safetensors, .ckpt, .pt) or a baseline ('bicubic', 'jbu',
    'guided'), run on `device` ('auto': a GPU when present)."""
    return Upsampler(resolve_method(name).to(resolve_device(device)))
