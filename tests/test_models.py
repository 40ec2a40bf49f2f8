"""Guided convolution modules and the DSR network."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from op_inputs import DEVICES

from depthsr.models import HierarchicalPAKA, PACConv2d, PAKAConv2d, PlainConv2d, build_model
from depthsr.ops import paka_conv2d_reference
from depthsr.ops.resize import bicubic_resize


def test_fresh_paka_layer_is_plain_convolution():
    torch.manual_seed(0)
    layer = PAKAConv2d(6, 5, kernel_size=3, dilation=2, guide_channels=4).double()
    x, g = torch.randn(2, 6, 11, 9, dtype=torch.float64), torch.randn(2, 4, 11, 9, dtype=torch.float64)
    assert torch.count_nonzero(layer.channel_attention(g)) == 0 and torch.count_nonzero(layer.spatial_attention(g)) == 0
    torch.testing.assert_close(layer(x, g), F.conv2d(x, layer.weight, layer.bias, padding=2, dilation=2),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_trained_paka_layer_matches_reference_with_its_own_branches(device, dtype, tol):
    torch.manual_seed(1)
    layer = PAKAConv2d(4, 3, kernel_size=5).to(device, dtype)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 4, 8, 10, dtype=dtype, device=device)
    ref = paka_conv2d_reference(x, layer.weight, layer.bias, layer.channel_attention(x), layer.spatial_attention(x))
    torch.testing.assert_close(layer(x), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["paka", "plain", "pac"])
def test_network_on_a_device_equals_the_cpu_float64_network(device, name):
    """The whole network (every guided layer perturbed off its zero start) on `device` in float32 gives the
    float64 CPU network's output and input gradient."""
    torch.manual_seed(0)
    net = build_model(name, width=8, blocks=1).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    lr, rgb = torch.rand(1, 1, 6, 7, dtype=torch.float64) + 1, torch.rand(1, 3, 24, 28, dtype=torch.float64)
    lr.requires_grad_(True)
    ref = net(lr, rgb)
    ref.square().sum().backward()
    moved = build_model(name, width=8, blocks=1).to(device)
    moved.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    lr_d = lr.detach().float().to(device).requires_grad_(True)
    out = moved(lr_d, rgb.float().to(device))
    out.square().sum().backward()
    torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lr_d.grad.double().cpu(), lr.grad, rtol=1e-3, atol=1e-3)


def test_pac_layer_and_hpm_shapes_and_gradients():
    x, g = torch.randn(2, 8, 12, 12, requires_grad=True), torch.randn(2, 5, 12, 12)
    y = PACConv2d(8, 6, guide_channels=5)(x, g)
    assert y.shape == (2, 6, 12, 12)
    hpm = HierarchicalPAKA(8, 5, dilations=(1, 2, 4))
    out = hpm(x, g)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in hpm.parameters())


@pytest.mark.parametrize("name", ["paka", "plain", "pac"])
@pytest.mark.parametrize("scale,h,w", [(2, 9, 7), (4, 8, 10), (8, 5, 6), (16, 3, 4)])
def test_network_output_shape_for_every_scale(name, scale, h, w):
    torch.manual_seed(0)
    net = build_model(name, width=16, blocks=1)
    lr, rgb = torch.rand(2, 1, h, w), torch.rand(2, 3, h * scale, w * scale)
    out = net(lr, rgb)
    assert out.shape == (2, 1, h * scale, w * scale) and torch.isfinite(out).all()


def test_network_predicts_a_residual_over_bicubic_and_trains():
    torch.manual_seed(0)
    net = build_model("paka", width=16, blocks=1)
    lr, rgb, gt = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.fill_(0.25)
        torch.testing.assert_close(net(lr, rgb), bicubic_resize(lr, (32, 32)) + 0.25)
    net = build_model("paka", width=16, blocks=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):  # zero-initialised: the residual head opens on the first step, the attention layers next
        opt.zero_grad()
        F.l1_loss(net(lr, rgb), gt).backward()
        opt.step()
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("name", ["paka", "plain", "pac"])
@pytest.mark.parametrize("full_guided", [False, True])
def test_every_parameter_of_every_twin_gets_a_gradient(name, full_guided):
    """Each branch does work (and DDP needs no find_unused_parameters): after three steps (the
    zero-initialised residual head opens on the first, the attention layers on the second), every parameter has a
    non-zero gradient; one step more with the full-resolution guided conv, whose residual scale starts at zero."""
    torch.manual_seed(0)
    net = build_model(name, width=16, blocks=1, full_guided=full_guided)
    lr, rgb, gt = torch.rand(2, 1, 6, 7), torch.rand(2, 3, 24, 28), torch.rand(2, 1, 24, 28)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(4 if full_guided else 3):
        opt.zero_grad()
        F.l1_loss(net(lr, rgb), gt).backward()
        opt.step()
    unused = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not unused


def _grown_from_a_smaller_one(name: str, seed: int, **growth) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A small random network and one grown from it by `growth`, checked to answer exactly as the small one."""
    torch.manual_seed(seed)
    small = build_model(name, width=8, blocks=1)
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.1)
    grown = build_model(name, **{"width": 8, "blocks": 1, **growth})
    grown.load_grown(small.state_dict())
    lr, rgb = torch.rand(1, 1, 6, 7), torch.rand(1, 3, 24, 28)
    torch.testing.assert_close(grown(lr, rgb), small(lr, rgb), rtol=0, atol=0)
    return small, grown


@pytest.mark.parametrize("name", ["paka", "plain", "pac"])
def test_a_network_grown_at_full_resolution_starts_equal_to_the_smaller_one(name):
    small, grown = _grown_from_a_smaller_one(name, 4, full_guided=True)
    assert {"guide0.0.weight", "guided0.weight", "scale0"} <= set(grown.state_dict()) - set(small.state_dict())
    broken = {k: v for k, v in small.state_dict().items() if not k.startswith("refine0.")}
    with pytest.raises(RuntimeError, match="refine0"):  # only the no-op parts may be missing
        grown.load_grown(broken)


@pytest.mark.parametrize("name", ["paka", "plain"])
def test_a_network_grown_by_an_input_cleaner_starts_equal_to_the_smaller_one(name):
    small, grown = _grown_from_a_smaller_one(name, 6, clean_input=True)
    assert {k for k in grown.state_dict() if k.startswith("cleaner.")} == set(grown.state_dict()) - set(
        small.state_dict())


@pytest.mark.parametrize("name", ["paka", "plain", "pac"])
def test_a_network_grown_by_a_block_starts_equal_to_the_smaller_one(name):
    small, grown = _grown_from_a_smaller_one(name, 5, blocks=3)
    torch.testing.assert_close(grown.body[0].fuse.weight, small.body[0].fuse.weight, rtol=0, atol=0)
    assert not grown.body[2].fuse.weight.any() and grown.body[2].convs[0].weight.any()  # identity, not emptied
    gap = {k: v for k, v in grown.state_dict().items() if not k.startswith("body.1.")}
    with pytest.raises(RuntimeError, match="body.1"):  # new blocks come after the loaded ones, none in between
        build_model(name, width=8, blocks=3).load_grown(gap)


def test_plain_twin_reads_the_guidance_by_concatenation():
    torch.manual_seed(0)
    layer = PlainConv2d(4, 3, kernel_size=3, dilation=2, guide_channels=5)
    x, g = torch.randn(1, 4, 9, 8), torch.randn(1, 5, 9, 8)
    torch.testing.assert_close(layer(x, g), F.conv2d(torch.cat([x, g], 1), layer.weight, layer.bias, padding=2,
                                                     dilation=2))


@pytest.mark.parametrize("ratio_hw", [((37, 50), (100, 133)), ((144, 192), (384, 512)), ((20, 30), (150, 225))])
def test_network_takes_any_ratio(ratio_hw):
    (h, w), (big_h, big_w) = ratio_hw
    net = build_model("paka", width=16, blocks=1)
    out = net(torch.rand(1, 1, h, w), torch.rand(1, 3, big_h, big_w))
    assert out.shape == (1, 1, big_h, big_w) and torch.isfinite(out).all()


@pytest.mark.parametrize("preset,low,high", [("small", 100_000, 200_000), ("base", 500_000, 1_000_000)])
def test_presets_size_the_network(preset, low, high):
    net = build_model("paka", preset)
    assert low <= sum(p.numel() for p in net.parameters()) <= high
    assert net.config["width"] == {"small": 32, "base": 64}[preset]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_model("paka", "huge")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'foo'"):
        build_model("foo")
