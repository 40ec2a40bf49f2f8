"""One interface for every upsampling method (network or classical baseline):

    method(lr, rgb, depth_range=None) -> depth      # B x 1 x h x w, B x 3 x H x W -> B x 1 x H x W

The depth may be any size up to the RGB's, at any ratio (integer or not; the two axes may differ a little, as
sensor sizes round), as long as it shows the same view: aspect ratios that differ by more than about 2 % are
refused (`check_ratio`). Callers see depth in real units. Inside, invalid (zero / non-finite) LR pixels are
filled from their neighbours, the LR is min-max normalised per image (``norm: lr``, the default; or with a
given ``depth_range``, e.g. the ground truth's for ``norm: gt``), the method's ``predict`` runs on 0..1 depth,
and the result is mapped back. Large outputs are processed in overlapping tiles blended with linear ramps, so
memory is bounded and no seams show. With `to(device)` the work runs there (a network's weights move with
it) and the result comes back on the caller's device.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F

from depthsr.data.sample import valid_mask, valid_range
from depthsr.errors import DepthSRError
from depthsr.methods.tiling import tiled

ASPECT_TOLERANCE = 0.02  # largest relative difference of the depth's and the RGB's aspect ratios
MIN_VALID_FRACTION = 0.05  # an input with fewer valid depth pixels is refused by `check_valid`
MIN_TILE = 32  # smallest tile side (output pixels)


def fill_invalid(lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # B x 1 x h x w, and its valid mask
    """Fill invalid pixels by repeatedly averaging valid 3x3 neighbours (all-invalid images become 0)."""
    valid = valid_mask(lr)
    if bool(valid.all()):
        return lr, valid
    filled = torch.where(valid, lr, torch.zeros_like(lr))
    known = valid.to(lr.dtype)
    ones = torch.ones(1, 1, 3, 3, dtype=lr.dtype, device=lr.device)
    for _ in range(max(lr.shape[-2:])):
        if bool(known.all()):
            break
        total = F.conv2d(filled * known, ones, padding=1)
        count = F.conv2d(known, ones, padding=1)
        grow = (known == 0) & (count > 0)
        filled = torch.where(grow, total / count.clamp_min(1), filled)
        known = torch.where(grow, torch.ones_like(known), known)
    return filled, valid


def normalise(
    lr: torch.Tensor, depth_range: tuple[torch.Tensor, torch.Tensor] | None = None  # B x 1 x h x w
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # lr in 0..1, lo (B x 1 x 1 x 1), span (B x 1 x 1 x 1)
    """Fill invalid pixels and min-max normalise per image by the LR's range (or `depth_range`)."""
    lr, valid = fill_invalid(lr)
    lo, hi = valid_range(lr, valid) if depth_range is None else depth_range
    span = (hi - lo).clamp_min(1e-6)
    return (lr - lo) / span, lo, span


def check_valid(lr: torch.Tensor, name: str = "depth") -> int:  # ... x h x w
    """The number of invalid (zero or non-finite: one rule for 0, NaN and inf) pixels; one clear error when
    fewer than MIN_VALID_FRACTION of them are valid, too little to fill the rest from."""
    valid = valid_mask(lr)
    fraction = float(valid.float().mean()) if valid.numel() else 0.0
    if fraction < MIN_VALID_FRACTION:
        raise DepthSRError(f"{name}: only {100 * fraction:.1f}% of its {valid.numel()} depth values are valid "
                           f"(non-zero and finite); at least {100 * MIN_VALID_FRACTION:g}% are needed")
    return int((~valid).sum())


def check_ratio(lr: torch.Tensor, rgb: torch.Tensor) -> tuple[float, float]:
    """(height ratio, width ratio) of the RGB over the LR depth, any real numbers >= 1; one clear error when the
    depth is larger than the RGB or does not show the same view (aspect ratios more than ~2 % apart, beyond
    what rounding a size to whole pixels explains)."""
    (h, w), (big_h, big_w) = lr.shape[-2:], rgb.shape[-2:]
    sizes = f"depth is {h} x {w} and rgb is {big_h} x {big_w}"
    if h == 0 or w == 0 or big_h == 0 or big_w == 0:
        raise DepthSRError(f"{sizes}: an image is empty")
    if h > big_h or w > big_w:
        raise DepthSRError(f"{sizes}: the depth must not be larger than the rgb (the result has the rgb's size)")
    expected_h = big_h * w / big_w  # the depth height the width's ratio implies
    if abs(h - expected_h) > max(1.0, ASPECT_TOLERANCE * expected_h):
        differ = abs((h / w) / (big_h / big_w) - 1)
        raise DepthSRError(f"{sizes}: their aspect ratios differ by {100 * differ:.1f}% (more than "
                           f"{100 * ASPECT_TOLERANCE:g}%): register the depth to the rgb's view first")
    return big_h / h, big_w / w


def ratio_label(ratio_h: float, ratio_w: float) -> str:
    """'x4', 'x2.667', or 'x2.648 x 2.667' when the two axes differ by more than 0.1 %."""
    if abs(ratio_h / ratio_w - 1) <= 1e-3:
        return f"x{(ratio_h + ratio_w) / 2:.4g}"
    return f"x{ratio_h:.4g} (height) / x{ratio_w:.4g} (width)"


def resolve_device(spec: str) -> torch.device:
    """'auto' (a GPU when one is present), 'cpu', 'cuda' or 'cuda:N'; one clear error for a device that is
    not there."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise DepthSRError(f"--device {spec}: no CUDA GPU is available to this PyTorch ({torch.__version__})")
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DepthSRError(f"--device {spec}: no such GPU (this machine has {torch.cuda.device_count()})")
        return torch.device("cuda", index)
    raise DepthSRError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


class Method(ABC):
    """An upsampling method. Subclasses implement `predict` on depth normalised to 0..1."""

    name: str = "method"
    scales: tuple[float, ...] | None = None  # ratios it was trained for; None: any
    ratio_range: tuple[float, float] | None = None  # a range of ratios it was trained on (random ratios)
    tile: int = 1024  # output tile side (pixels) beyond which the output is tiled
    overlap: int = 128  # tile overlap (output pixels, at most a quarter of a tile); its outer quarters are
    # left to the neighbouring tile
    device: torch.device | None = None  # where the work runs (None: where the model's weights or the inputs are)

    def trained_for(self, ratio: float) -> bool:
        """Whether `ratio` is one the method was trained for (a listed scale within 1 %, or inside its range)."""
        if self.scales is None:
            return True
        lo, hi = self.ratio_range or (0.0, 0.0)
        return lo <= ratio <= hi or any(abs(ratio / s - 1) < 0.01 for s in self.scales)

    @property
    def clean_gate(self) -> tuple[float, float] | None:
        """(low, high) noise levels of the method's input cleaner's gate (`depthsr.models.input_cleaner`); None for a
        method without a cleaner gated by noise."""
        return None

    def input_noise(self, lr: torch.Tensor) -> tuple[float, float] | None:  # 1 x h x w or 1 x 1 x h x w, real units
        """(the input's noise level as a fraction of its depth range, the share of the input cleaner's correction it
        gets) for a method whose cleaner is gated by noise (`clean_gate`); None for any other."""
        return None

    @abstractmethod
    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """B x 1 x h x w depth in 0..1, B x 3 x H x W rgb -> B x 1 x H x W depth in 0..1."""

    def to(self, device: str | torch.device) -> Method:
        """Run on `device` from now on (the weights of a network move there); results still come back on the
        device of the inputs."""
        self.device = torch.device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    def _work_device(self, fallback: torch.device) -> torch.device:
        if self.device is not None:
            return self.device
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                for param in value.parameters():
                    return param.device
        return fallback

    @torch.no_grad()
    def __call__(
        self, lr: torch.Tensor, rgb: torch.Tensor, depth_range: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:  # B x 1 x H x W, on lr's device
        if lr.dim() == 3:
            return self(lr[None], rgb[None], depth_range)[0]
        check_ratio(lr, rgb)
        home, device = lr.device, self._work_device(lr.device)
        lr, rgb = lr.to(device), rgb.to(device)
        if depth_range is not None:
            depth_range = (depth_range[0].to(device), depth_range[1].to(device))
        lr_norm, lo, span = normalise(lr, depth_range)
        return (self._tiled(lr_norm, rgb) * span + lo).to(home)

    def _tiled(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self._in_tiles(self.predict, lr, rgb)

    def _in_tiles(
        self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lr: torch.Tensor, rgb: torch.Tensor
    ) -> torch.Tensor:  # B x 1 x H x W
        """`fn(lr, rgb)` (as `predict`), answered in overlapping tiles where the output is larger than `tile`."""
        height, width = rgb.shape[-2:]
        if height <= self.tile and width <= self.tile:
            return fn(lr, rgb).to(lr.device)
        return tiled(fn, lr, rgb, max(MIN_TILE, self.tile), self.overlap)
