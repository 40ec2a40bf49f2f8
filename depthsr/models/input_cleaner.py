"""The input cleaner: a raw sensor's depth made fit for the network before it is upsampled.

Time-of-flight sensors lose pixels at depth edges (too little signal) and fill them with the far side's depth; a
network trained on clean inputs draws such a pixel as a notch in the edge, and back-projection puts it back into
any answer. The cleaner corrects the low-resolution depth where it does not fit its neighbours and the colour
there (a small residual CNN at the input's own size, guided by the RGB area-averaged to that size), so that the
network and back-projection see depth as a clean input would show it. Its last layer starts at zero: a fresh
cleaner is the identity, and a network that gains one starts with the same answers.

With a `gate`, the correction is weighed per image by how noisy the input is (`depthsr.models.noise_level`): none
for a smooth input, all of it for one as noisy as a sensor's, so one network can take both a clean input and a raw
sensor's. The gate has no parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthsr.models.noise_level import noise_level


def gate_weight(
    noise: torch.Tensor, gate: tuple[float, float]  # B, (low, high) noise levels
) -> torch.Tensor:  # B in 0..1
    """0 at or below the noise level `low`, 1 at or above `high`, linear between."""
    low, high = gate
    return ((noise - low) / (high - low)).clamp(0.0, 1.0)


class InputCleaner(nn.Module):
    """lr + a correction predicted from (lr, RGB area-averaged to lr's size).

    Args:
        width: channels of the hidden layers.
        layers: 3 x 3 convolutions (a (2 * layers + 1)-pixel square of the input decides each correction).
        gate: (low, high) noise levels (`depthsr.models.noise_level.noise_level`: standard deviation as a fraction
            of the depth range): the correction is weighed by 0 on an input no noisier than `low`, by 1 on one at
            least as noisy as `high`, linearly between; None: always corrected.
    """

    def __init__(self, width: int = 32, layers: int = 4, gate: tuple[float, float] | None = None) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"an input cleaner needs at least 2 layers, got {layers}")
        self.gate = check_gate(gate)
        convs: list[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(width, 1, 3, padding=1))
        self.correction = nn.Sequential(*convs)
        nn.init.zeros_(self.correction[-1].weight)  # the correction starts at zero: a fresh cleaner is the identity
        nn.init.zeros_(self.correction[-1].bias)

    def forward(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W (any H >= h, W >= w)
    ) -> torch.Tensor:  # B x 1 x h x w
        guide = F.adaptive_avg_pool2d(rgb, lr.shape[-2:])  # the colour each input pixel sees
        correction = self.correction(torch.cat([lr, guide], 1))
        if self.gate is None:
            return lr + correction
        return lr + gate_weight(noise_level(lr), self.gate)[:, None, None, None] * correction


def check_gate(gate: tuple[float, float] | list[float] | None) -> tuple[float, float] | None:
    """`gate` as a (low, high) pair of floats; ValueError unless 0 <= low < high."""
    if gate is None:
        return None
    if len(gate) != 2 or not 0 <= gate[0] < gate[1]:
        raise ValueError(f"an input cleaner's gate is (low, high) noise levels with 0 <= low < high, got {gate}")
    return float(gate[0]), float(gate[1])
