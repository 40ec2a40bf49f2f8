"""Classical upsampling baselines, under the same interface as the networks. Kornia (whose import costs about
20 MB and pulls in Triton where installed) is imported by the filters that use it, not by every command."""
from __future__ import annotations

import torch

from depthsr.methods.method import Method
from depthsr.ops.resize import bicubic_resize


class Bicubic(Method):
    """PIL-style bicubic upsampling of the depth alone."""

    name = "bicubic"

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return bicubic_resize(lr, tuple(rgb.shape[-2:]))


class JointBilateral(Method):
    """Joint bilateral upsampling: the bicubic depth filtered with range weights from the RGB guide
    (kornia's joint bilateral filter; window and spatial sigma grow with the scale)."""

    name = "jbu"

    def __init__(self, sigma_color: float = 0.1) -> None:
        self.sigma_color = sigma_color

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        scale = rgb.shape[-1] // lr.shape[-1]
        k = min(2 * scale + 1, 17)
        up = bicubic_resize(lr, tuple(rgb.shape[-2:]))
        sigma = max(1.0, scale / 2)
        import kornia.filters as kf

        return kf.joint_bilateral_blur(up, rgb, (k, k), self.sigma_color, (sigma, sigma))


class GuidedFilter(Method):
    """Guided-filter upsampling: kornia's guided filter on the bicubic depth with the RGB guide."""

    name = "guided"

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        scale = rgb.shape[-1] // lr.shape[-1]
        k = 2 * min(scale, 8) + 1
        up = bicubic_resize(lr, tuple(rgb.shape[-2:]))
        import kornia.filters as kf

        return kf.guided_blur(rgb, up, (k, k), self.eps)


BASELINES: dict[str, type[Method]] = {"bicubic": Bicubic, "jbu": JointBilateral, "guided": GuidedFilter}
