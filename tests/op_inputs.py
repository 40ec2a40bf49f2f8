"""Random inputs of a modulated convolution, and the devices the operator tests run on, shared by those tests."""
from __future__ import annotations

import pytest
import torch

# the `device` parameter of every test that runs tensors: the CPU, and CUDA where there is one
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def paka_inputs(b, c, o, h, w, k, d, padding, dtype=torch.float64, scale=1.0, seed=0, device="cpu"):
    """x (B x C x H x W), weight, bias, a_ch and a_sp (scaled by `scale`) for the given geometry."""
    g = torch.Generator().manual_seed(seed)
    ph, pw = (d * (k - 1) // 2,) * 2 if padding is None else ((padding,) * 2 if isinstance(padding, int) else padding)
    ho, wo = h + 2 * ph - d * (k - 1), w + 2 * pw - d * (k - 1)
    t = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device)  # noqa: E731
    return t(b, c, h, w), t(o, c, k, k), t(o), scale * t(b, c, ho, wo), scale * t(b, k * k, ho, wo)
