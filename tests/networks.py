"""Small networks with every branch open (weights drawn at random from a fixed seed), shared by the tests of the
network's inference steps."""
from __future__ import annotations

import torch

from depthsr.models import build_model


def perturbed(std: float = 0.1, **kwargs) -> torch.nn.Module:
    """A width-8, one-block PAKA network (keywords as `build_model`'s) whose weights are N(0, std) from seed 5."""
    torch.manual_seed(5)
    net = build_model("paka", width=8, blocks=1, **kwargs)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=std)
    return net
