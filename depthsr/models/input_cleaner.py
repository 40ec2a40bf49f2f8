"""The input cleaner: a raw sensor's depth made fit for the network before it is upsampled.

Time-of-flight sensors lose pixels at depth edges (too little signal) and fill them with the far side's depth; a
network trained on clean inputs draws such a pixel as a notch in the edge, and back-projection puts it back into
any answer. The cleaner corrects the low-resolution depth where it does not fit its neighbours and the colour
there (a small residual CNN at the input's own size, guided by the RGB area-averaged to that size, its correction
gated per image), so that the network and back-projection see depth as a clean input would show it. Its last
layer starts at zero: a fresh cleaner is the identity, and a network that gains one starts with the same answers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
GATE_SHARPNESS = 10.0  # the gate's logit scale: Adam moves each weight by about the learning rate per step, and a
# sharp decision needs logits of +-10, not +-1


def _second_differences(lr: torch.Tensor) -> torch.Tensor:  # B x 1 x h x w -> 4 x B x 1 x h x w
    """Second differences along the rows, the columns and the two diagonals, border pixels repeated."""
    p = F.pad(lr, (1, 1, 1, 1), mode="replicate")
    centre = p[..., 1:-1, 1:-1]
    pairs = (((1, 0), (1, 2)), ((0, 1), (2, 1)), ((0, 0), (2, 2)), ((0, 2), (2, 0)))
    h, w = lr.shape[-2:]
    return torch.stack([p[..., a:a + h, b:b + w] + p[..., c:c + h, d:d + w] - 2 * centre
                        for (a, b), (c, d) in pairs])


def _quantiles(values: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:  # B x n -> B x len(quantiles)
    ranks = [max(1, round(q * values.shape[1])) for q in quantiles]
    return torch.stack([values.kthvalue(k, 1).values for k in ranks], 1)


def roughness(lr: torch.Tensor) -> torch.Tensor:  # B x 1 x h x w -> B x 5
    """How rough each input's surfaces are, for the size of its steps: log10 of the 10th, 25th and 50th percentiles
    of |Laplacian| and the 25th and 50th of the smallest |second difference| over four directions (zero along an
    edge or a plane however steep; not for noise), each over the 75th percentile of |first difference| (so neither
    the depth range nor the crop matters). A sensor's noise and quantisation make every surface rough; a clean
    (bicubic) input is smooth except at its edges."""
    second = _second_differences(lr)  # 4 x B x 1 x h x w
    laplacian = (second[0] + second[1]).abs().flatten(1)
    smallest = second.abs().min(0).values.flatten(1)
    steps = torch.cat([lr.diff(dim=-1).abs().flatten(1), lr.diff(dim=-2).abs().flatten(1)], 1)
    stats = torch.cat([_quantiles(laplacian, (0.1, 0.25, 0.5)), _quantiles(smallest, (0.25, 0.5))], 1)
    return torch.log10(stats + 1e-6) - torch.log10(_quantiles(steps, (0.75,)) + 1e-6)


class InputCleaner(nn.Module):
    """lr + gate x a correction: the correction per pixel, predicted from (lr, RGB area-averaged to lr's size); the
    gate in 0..1 per image, predicted from how rough the input's surfaces are (`roughness`) and the ratio, so that
    an input without a sensor's traces is left as it is even where one pixel alone looks like an outlier.

    Args:
        width: channels of the hidden layers.
        layers: 3 x 3 convolutions (a (2 * layers + 1)-pixel square of the input decides each correction).
    """

    def __init__(self, width: int = 32, layers: int = 4) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"an input cleaner needs at least 2 layers, got {layers}")
        convs: list[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(width, 1, 3, padding=1))
        self.correction = nn.Sequential(*convs)
        self.gate = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 1))
        nn.init.zeros_(self.correction[-1].weight)  # the correction starts at zero: a fresh cleaner is the identity
        nn.init.zeros_(self.correction[-1].bias)
        nn.init.zeros_(self.gate[-1].weight)  # the gate starts half open, undecided
        nn.init.zeros_(self.gate[-1].bias)

    def open_to(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:  # B x 1 x h x w, B x 3 x H x W
        """The gate, B x 1 x 1 x 1 in 0..1: how far each input's correction is applied (in training, also taught
        which inputs come from a sensor: `depthsr.lit`)."""
        ratio = torch.full_like(lr[:, 0, 0, :1], rgb.shape[-1] / lr.shape[-1])  # B x 1
        signs = torch.cat([roughness(lr), torch.log2(ratio)], 1)  # B x 6
        return torch.sigmoid(GATE_SHARPNESS * self.gate(signs))[..., None, None]

    def forward(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W (any H >= h, W >= w)
    ) -> torch.Tensor:  # B x 1 x h x w
        guide = F.adaptive_avg_pool2d(rgb, lr.shape[-2:])  # the colour each input pixel sees
        return lr + self.open_to(lr, rgb) * self.correction(torch.cat([lr, guide], 1))
