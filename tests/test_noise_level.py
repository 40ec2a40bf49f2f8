"""The noise estimate (`depthsr.models.noise_level`) against known noise, and the input cleaner's gate by it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthsr.data.degrade import TofParams, downsample
from depthsr.data.synthetic import synthetic_scene
from depthsr.models.input_cleaner import InputCleaner, check_gate, gate_weight
from depthsr.models.noise_level import MIN_RESPONSES, noise_level


def _smooth_surface(h: int = 60, w: int = 80) -> torch.Tensor:  # 1 x 1 x h x w, float64
    """A slanted plane bent quadratically along both axes: no white noise at all."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (2 + 0.01 * xx - 0.02 * yy + 3e-4 * xx**2 - 2e-4 * yy**2 + 1e-4 * xx * yy)[None, None]


def test_a_smooth_surface_has_no_noise():
    """The mask is zero on surfaces at most quadratic along an axis, whatever their slope or depth range."""
    surface = _smooth_surface()
    torch.testing.assert_close(noise_level(surface), torch.zeros(1, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(noise_level(surface * 1000 + 5), torch.zeros(1, dtype=torch.float64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.002, 0.01, 0.05])
def test_white_noise_is_measured_as_a_fraction_of_the_depth_range(sigma):
    """On a smooth surface with white noise of standard deviation sigma x the range, and with an occluding object
    whose edges give large responses, the estimate is sigma within the sampling error of a 5 % quantile."""
    torch.manual_seed(0)
    depth = _smooth_surface(120, 160)
    depth[..., 30:70, 40:90] = 1.2  # an object in front: its edges are no noise
    span = depth.max() - depth.min()
    noisy = depth + sigma * span * torch.randn_like(depth)
    estimate = noise_level(noisy).item() * float(noisy.max() - noisy.min()) / float(span)  # noise widens the range
    assert estimate == pytest.approx(sigma, rel=0.15)


def test_noise_level_is_per_image_and_zero_for_small_or_flat_images():
    torch.manual_seed(1)
    smooth, noisy = _smooth_surface(), _smooth_surface() + 0.01 * torch.randn(1, 1, 60, 80, dtype=torch.float64)
    both = noise_level(torch.cat([smooth, noisy]))
    assert both[0] < 1e-12 < 1e-3 < both[1]
    assert torch.equal(noise_level(torch.ones(2, 1, 10, 10)), torch.zeros(2))  # one depth: no range
    assert torch.equal(noise_level(torch.rand(3, 1, 2, 40)), torch.zeros(3))  # under 3 x 3: nothing to filter
    tiny = noisy[..., :24, :25]  # 22 x 23 = 506 responses: too few to tell noise from clutter
    assert tiny.shape[-2:] == (24, 25) and (24 - 2) * (25 - 2) < MIN_RESPONSES <= (24 - 2) * (26 - 2)
    assert noise_level(tiny).item() == 0 < 1e-3 < noise_level(noisy[..., :24, :26]).item()


def test_the_tof_protocol_is_noisy_and_bicubic_is_not():
    """The case the default's gate is for: a procedural scene downsampled by the benchmark protocol measures as
    smooth, the same scene under the tof protocol as noisy, at x4 and at x16."""
    scene = synthetic_scene(3, (384, 512))["depth"][None].double()
    for scale in (4, 16):
        clean = downsample(scene, scale, "bicubic")
        tof = downsample(scene, scale, "tof", units="m", generator=torch.Generator().manual_seed(0))
        assert noise_level(clean).item() < 0.001 < 0.003 < noise_level(tof).item(), scale
    assert TofParams().noise == 0.005  # the protocol these bounds are for


def test_gate_weight_is_linear_between_its_two_levels():
    noise = torch.tensor([0.0, 0.002, 0.0025, 0.003, 0.01])
    torch.testing.assert_close(gate_weight(noise, (0.002, 0.003)), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert check_gate([0.001, 0.002]) == (0.001, 0.002) and check_gate(None) is None
    for bad in ((0.003, 0.002), (-0.1, 0.2), (0.1,)):
        with pytest.raises(ValueError, match="gate"):
            InputCleaner(gate=bad)


def test_a_gated_cleaner_leaves_a_smooth_input_exactly_and_corrects_a_noisy_one_fully():
    """Per image in one batch: the smooth input comes out bit for bit, the noisy one as the ungated cleaner makes it."""
    torch.manual_seed(2)
    ungated = InputCleaner(width=8, layers=3).double()
    for p in ungated.parameters():
        torch.nn.init.normal_(p, std=0.1)
    gated = InputCleaner(width=8, layers=3, gate=(0.002, 0.003)).double()
    gated.load_state_dict(ungated.state_dict())
    smooth = _smooth_surface(30, 40)
    noisy = smooth + 0.01 * (smooth.max() - smooth.min()) * torch.randn_like(smooth)
    lr, rgb = torch.cat([smooth, noisy]), torch.rand(2, 3, 120, 160, dtype=torch.float64)
    out = gated(lr, rgb)
    assert torch.equal(out[0], smooth[0])
    torch.testing.assert_close(out[1], ungated(lr, rgb)[1], rtol=0, atol=0)
    assert (out[1] - noisy[0]).abs().max() > 1e-3  # it did correct


def test_half_open_gate_weighs_the_correction():
    """Between its levels the gate adds that share of the correction, by hand."""
    torch.manual_seed(3)
    cleaner = InputCleaner(width=4, layers=2).double()
    for p in cleaner.parameters():
        torch.nn.init.normal_(p, std=0.1)
    smooth = _smooth_surface(30, 40)
    lr = smooth + 0.004 * (smooth.max() - smooth.min()) * torch.randn_like(smooth)
    rgb = torch.rand(1, 3, 60, 80, dtype=torch.float64)
    level = noise_level(lr).item()
    cleaner.gate = (level - 0.003, level + 0.001)  # three quarters open
    guide = F.adaptive_avg_pool2d(rgb, lr.shape[-2:])
    torch.testing.assert_close(cleaner(lr, rgb), lr + 0.75 * cleaner.correction(torch.cat([lr, guide], 1)),
                               rtol=0, atol=1e-12)
