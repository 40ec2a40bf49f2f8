"""Networks built from the ops; plain PyTorch, no Lightning."""
from __future__ import annotations

from torch import nn

from depthsr.models.dsr import GuidedDSRNet
from depthsr.models.layers import GUIDED_CONVS, HierarchicalPAKA, PACConv2d, PAKAConv2d, PlainConv2d, guided_conv

MODEL_NAMES = tuple(GUIDED_CONVS)  # 'paka', 'pac', 'plain': the same network with another guided conv


def build_model(name: str = "paka", **kwargs) -> nn.Module:
    """The guided DSR network with the named guided convolution ('paka', 'pac' or 'plain')."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return GuidedDSRNet(conv=name, **kwargs)


__all__ = ["GuidedDSRNet", "HierarchicalPAKA", "MODEL_NAMES", "PACConv2d", "PAKAConv2d", "PlainConv2d",
           "build_model", "guided_conv"]
