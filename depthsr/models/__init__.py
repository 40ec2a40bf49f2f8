"""Networks built from the ops; plain PyTorch, no Lightning."""
from __future__ import annotations

from torch import nn

from depthsr.models.dsr import PRESETS, GuidedDSRNet
from depthsr.models.layers import GUIDED_CONVS, HierarchicalPAKA, PACConv2d, PAKAConv2d, PlainConv2d, guided_conv

MODEL_NAMES = tuple(GUIDED_CONVS)  # 'paka', 'pac', 'plain': the same network with another guided conv


def build_model(name: str = "paka", preset: str = "small", **kwargs) -> nn.Module:
    """The guided DSR network with the named guided convolution ('paka', 'pac' or 'plain'), sized by a preset
    ('small': the CPU default, 'base': GPU-sized); keyword arguments override the preset's."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return GuidedDSRNet(conv=name, **{**PRESETS[preset], **kwargs})


__all__ = ["PRESETS", "GuidedDSRNet", "HierarchicalPAKA", "MODEL_NAMES", "PACConv2d", "PAKAConv2d", "PlainConv2d",
           "build_model", "guided_conv"]
