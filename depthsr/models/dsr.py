"""The RGB-guided depth super-resolution network.

Data path (H x W is the output size, s the scale):

    lr (B x 1 x h x w) -> with `clean_input`: the input cleaner (`depthsr.models.input_cleaner`) corrects
    the outliers of a raw sensor's depth (the RGB area-averaged to h x w guides it; with `clean_gate`, only as much
    as the input is noisy); everything below sees its lr
    lr --bicubic--> up (B x 1 x H x W) ------------------------------------------------------+
    rgb (B x 3 x H x W) -> RGB encoder: e0 (H), e1 (H/2), e2 (H/4)                           |
    up -> depth encoder: pixel-unshuffled at H/2 and H/4 -> d1, d2                           |
    guidance g2 = fuse(e2, d2) at H/4 steers the body's PAKA convolutions (hierarchical blocks);
    the decoder climbs back to H with the RGB features at each level (at H, with `full_guided`, a guided conv
    steered by the RGB features and the bicubic depth) and predicts a residual ----------------+-> sum
    sum (with `flip_ensemble`, in eval mode: averaged with the answer for the mirrored inputs, mirrored back)
    -> `consistency` back-projection steps (the prediction, resized to h x w, moves towards lr)
    -> with `self_check`, in eval mode: blended with bicubic by the trust the network earns on the input itself
       (`depthsr.models.self_check`) -> out

The guidance sees depth features as well as RGB ones, so an RGB edge that is no depth edge (texture)
need not become one. Internally the size is padded to a multiple of 4, so any scale s >= 1 works;
nothing depends on s, so one model serves x2 to x16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthsr.models.consistency import back_project
from depthsr.models.input_cleaner import InputCleaner
from depthsr.models.layers import HierarchicalPAKA, guided_conv
from depthsr.models.self_check import blend, trust
from depthsr.ops.resize import bicubic_resize


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2), nn.ReLU(inplace=True))


def _merge_upsampled(
    merge: nn.Sequential,  # 1x1 conv over (coarse, fine) channels, then ReLU
    coarse: torch.Tensor,  # B x Cc x h x w
    fine: torch.Tensor,  # B x Cf x 2h x 2w
) -> torch.Tensor:  # B x Cout x 2h x 2w
    """`merge(cat([bilinear 2x upsampling of coarse, fine]))`, with the coarse channels mixed before upsampling:
    a 1x1 conv and bilinear upsampling commute, so the wide concatenation at the fine size is never built (at 480 x
    640 that is 80 MB less at the peak of the forward pass)."""
    conv = merge[0]
    w_coarse, w_fine = conv.weight.split([coarse.shape[1], fine.shape[1]], 1)
    mixed = F.interpolate(F.conv2d(coarse, w_coarse), scale_factor=2.0, mode="bilinear")
    return merge[1](mixed + F.conv2d(fine, w_fine, conv.bias))


PRESETS: dict[str, dict] = {
    "small": {"width": 32, "blocks": 2},  # the CPU default (480 x 640 x4 in about 0.25 s on 2 threads)
    "base": {"width": 64, "blocks": 4},  # GPU-sized, for the NYU recipes
}


class GuidedDSRNet(nn.Module):
    """Guided depth super-resolution with PAKA (or, for ablations, PAC or plain) convolutions.

    Args:
        conv: 'paka', 'pac' or 'plain': the kind of every guided convolution.
        width: channels at H/4 (H/2 uses 3/4 of it, H half of it).
        blocks: hierarchical blocks at H/4.
        dilations: dilations inside each hierarchical block.
        full_guided: a guided residual conv at full resolution, its residual scaled per channel from zero (a no-op to
            start from, so a network grown from one without it starts equal to it).
        consistency: back-projection steps at the end (0: none); each moves the prediction towards one whose
            bicubic downsampling to the input's size equals the input (the LR-consistency of the benchmark protocol).
        flip_ensemble: in eval mode, average the answers for the inputs and their mirror image (twice the time).
        self_check: in eval mode, repeat the task on the input downsampled by the same ratio and blend the answer
            with bicubic by the weight the network earns there (`depthsr.models.self_check`; 1/s^2 more time).
        clean_input: an input cleaner first (`depthsr.models.input_cleaner.InputCleaner`, about 20k parameters
            working at the input's size), which starts as the identity.
        clean_gate: with `clean_input`, (low, high) noise levels between which the cleaner's correction is weighed in
            from nothing to all of it (`depthsr.models.input_cleaner.InputCleaner`'s `gate`); None: always all of it.
    `consistency`, `flip_ensemble`, `self_check` and `clean_gate` have no parameters: `depthsr export --consistency/
    --flip-ensemble/--self-check/--clean-gate` can add them to a trained network.
    """

    def __init__(self, conv: str = "paka", width: int = 32, blocks: int = 2,
                 dilations: tuple[int, ...] = (1, 2, 4), full_guided: bool = False, consistency: int = 0,
                 flip_ensemble: bool = False, self_check: bool = False, clean_input: bool = False,
                 clean_gate: tuple[float, float] | None = None) -> None:
        super().__init__()
        if clean_gate is not None and not clean_input:
            raise ValueError("clean_gate needs clean_input (a gate weighs the input cleaner's correction)")
        c2, c1, c0 = width, width * 3 // 4, width // 2
        self.conv_kind, self.width, self.dilations, self.full_guided = conv, width, list(dilations), full_guided
        self.consistency, self.flip_ensemble, self.self_check = consistency, flip_ensemble, self_check
        self.cleaner = InputCleaner(gate=clean_gate) if clean_input else None
        self.rgb0 = _conv(3, c0)
        self.rgb1 = _conv(c0, c1, stride=2)
        self.rgb2 = _conv(c1, c2, stride=2)
        self.depth1 = _conv(4, c1)
        self.depth2 = _conv(16, c2)
        self.guide2 = _conv(2 * c2, c2, k=1)
        self.guide1 = _conv(2 * c1, c1, k=1)
        self.body = nn.ModuleList(HierarchicalPAKA(c2, c2, tuple(dilations), conv) for _ in range(blocks))
        self.merge1 = _conv(c2 + c1, c1, k=1)
        self.refine1 = guided_conv(conv, c1, c1, 3, 1, c1)
        self.merge0 = _conv(c1 + c0, c0, k=1)
        self.refine0 = _conv(c0, c0)
        if full_guided:
            self.guide0 = _conv(c0 + 1, c0, k=1)
            self.guided0 = guided_conv(conv, c0, c0, 3, 1, c0)
            self.scale0 = nn.Parameter(torch.zeros(1, c0, 1, 1))  # a residual scale from zero: a no-op to start from
        self.out = nn.Conv2d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the residual starts at zero: a fresh network is exactly bicubic
        nn.init.zeros_(self.out.bias)

    @property
    def config(self) -> dict:
        """The keywords that rebuild this network (what a model file records; `clean_gate` only when set, so that a
        file without one still loads in a depthsr that predates it)."""
        config = {"width": self.width, "blocks": len(self.body), "dilations": self.dilations,
                  "full_guided": self.full_guided, "consistency": self.consistency, "flip_ensemble": self.flip_ensemble,
                  "self_check": self.self_check, "clean_input": self.cleaner is not None}
        if self.cleaner is not None and self.cleaner.gate is not None:
            config["clean_gate"] = list(self.cleaner.gate)
        return config

    def without_inference_steps(self) -> GuidedDSRNet:
        """This network, its parameter-free inference steps switched off (one pass): for measuring the network alone."""
        self.consistency, self.flip_ensemble, self.self_check = 0, False, False
        return self

    def load_grown(self, state: dict[str, torch.Tensor]) -> None:
        """Load the weights of this network, or of a smaller one: without the parts that start as no-ops
        (`full_guided`, `clean_input`) or with fewer hierarchical blocks. What the smaller one lacks keeps its initial
        values, a new block (appended to the body) its fuse at zero, so the grown network starts with the smaller
        one's output."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        old_blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
        new_blocks = range(len(old_blocks), len(self.body))
        no_ops = ("guide0.", "guided0.", "scale0", "cleaner.", *(f"body.{i}." for i in new_blocks))
        grown = [k for k in missing if k.startswith(no_ops)]
        if unexpected or len(grown) != len(missing) or old_blocks != set(range(len(old_blocks))):
            self.load_state_dict(state)  # raises PyTorch's error naming the keys that do not fit
        for i in new_blocks:
            nn.init.zeros_(self.body[i].fuse.weight)  # the block's residual is zero: it is the identity
            nn.init.zeros_(self.body[i].fuse.bias)

    def forward(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W
    ) -> torch.Tensor:  # B x 1 x H x W
        lr = self.clean(lr, rgb)
        pred = self.answer(lr, rgb)
        if self.self_check and not self.training:
            pred = blend(pred, lr, trust(self.answer, lr, rgb))
        return pred

    def clean(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W
    ) -> torch.Tensor:  # B x 1 x h x w
        """The input as the network sees it: corrected by the input cleaner, if the network has one."""
        return lr if self.cleaner is None else self.cleaner(lr, rgb)

    def answer(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W
    ) -> torch.Tensor:  # B x 1 x H x W
        """The network's answer to a (cleaned) input before the self-check: one pass, the flip ensemble, the
        consistency steps."""
        pred = self.predict_once(lr, rgb)
        if self.flip_ensemble and not self.training:  # the mirrored inputs' answer, mirrored back
            pred = (pred + self.predict_once(lr.flip(-1), rgb.flip(-1)).flip(-1)) / 2
        return back_project(pred, lr, self.consistency)

    def predict_once(
        self, lr: torch.Tensor, rgb: torch.Tensor  # B x 1 x h x w, B x 3 x H x W
    ) -> torch.Tensor:  # B x 1 x H x W
        """One pass of the network, before the flip ensemble and the consistency steps."""
        height, width = rgb.shape[-2:]
        up = bicubic_resize(lr, (height, width))
        pad = (0, -width % 4, 0, -height % 4)
        up_p, rgb_p = F.pad(up, pad, mode="replicate"), F.pad(rgb, pad, mode="replicate")

        e0 = self.rgb0(rgb_p)
        e1 = self.rgb1(e0)
        e2 = self.rgb2(e1)
        d1 = self.depth1(F.pixel_unshuffle(up_p, 2))
        d2 = self.depth2(F.pixel_unshuffle(up_p, 4))

        g2 = self.guide2(torch.cat([e2, d2], 1))
        h = d2
        for block in self.body:
            h = block(h, g2)

        h = _merge_upsampled(self.merge1, h, d1)
        h = h + F.relu(self.refine1(h, self.guide1(torch.cat([e1, d1], 1))))
        h = _merge_upsampled(self.merge0, h, e0)
        h = self.refine0(h)
        if self.full_guided:
            h = h + self.scale0 * F.relu(self.guided0(h, self.guide0(torch.cat([e0, up_p], 1))))
        return up + self.out(h)[..., :height, :width]
