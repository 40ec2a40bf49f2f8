"""The method wrapper: normalisation, invalid pixels, tiling; the baselines under it."""
from __future__ import annotations

import pytest
import torch

from depthsr.baselines import BASELINES, Bicubic
from depthsr.checkpoint import NetworkMethod, load_network, save_network
from depthsr.errors import DepthSRError
from depthsr.method import fill_invalid, normalise
from depthsr.models import build_model
from depthsr.ops.resize import bicubic_resize


def test_fill_invalid_fills_from_neighbours_only():
    lr = torch.tensor([[[[1.0, 0.0, 3.0], [1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]]]])
    filled, valid = fill_invalid(lr)
    assert valid.sum() == 7 and torch.isfinite(filled).all()
    assert filled[0, 0, 0, 1] == pytest.approx((1 + 3 + 1 + 3) / 4)  # its valid 3x3 neighbours
    assert torch.equal(filled[valid], lr[valid])


def test_normalise_uses_the_lr_range():
    lr = torch.tensor([[[[2.0, 4.0], [6.0, 0.0]]]])
    norm, lo, span = normalise(lr)
    assert lo.item() == 2.0 and span.item() == 4.0
    assert norm[0, 0, 0].tolist() == [0.0, 0.5]


def test_bicubic_method_is_bicubic_in_real_units():
    torch.manual_seed(0)
    lr, rgb = torch.rand(2, 1, 6, 8) * 7 + 3, torch.rand(2, 3, 24, 32)
    torch.testing.assert_close(Bicubic()(lr, rgb), bicubic_resize(lr, (24, 32)), rtol=1e-5, atol=1e-5)
    assert Bicubic()(lr[0], rgb[0]).shape == (1, 24, 32)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_follow_edges_better_than_nothing(name):
    rgb = torch.zeros(1, 3, 64, 64)
    rgb[..., 32:] = 1.0
    gt = torch.ones(1, 1, 64, 64)
    gt[..., 32:] = 3.0
    lr = bicubic_resize(gt, (16, 16))
    out = BASELINES[name]()(lr, rgb)
    assert out.shape == gt.shape and float((out - gt).abs().mean()) < 0.2


def test_tiled_equals_untiled_away_from_tile_borders():
    torch.manual_seed(0)
    net = build_model("paka", width=8, blocks=1, dilations=(1,))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    method = NetworkMethod(net)
    lr, rgb = torch.rand(1, 1, 32, 96), torch.rand(1, 3, 128, 384)
    whole = method(lr, rgb)
    method.tile, method.overlap = 256, 128  # two tiles: columns [0, 256) and [128, 384), blended in [128, 256)
    tiled = method(lr, rgb)
    assert not torch.equal(whole, tiled)  # it really tiled
    margin = 48  # beyond this network's receptive field: a tile's edge cannot reach these pixels
    for c0, c1 in ((0, 128 - margin), (128 + margin, 256 - margin), (256 + margin, 384)):
        torch.testing.assert_close(tiled[..., c0:c1], whole[..., c0:c1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width", [384, 392, 408])
def test_tiles_cover_every_pixel(width):
    """Sizes whose remainder after a tile is no multiple of the tile grid's unit are covered to the edge."""
    method = Bicubic()
    method.tile, method.overlap = 256, 64
    lr, rgb = torch.rand(1, 1, 16, width // 4) + 1, torch.rand(1, 3, 64, width)
    out = method(lr, rgb)
    assert torch.isfinite(out).all()
    # bicubic reads 8 pixels around each output pixel, less than the tiles' halo: tiling changes nothing
    torch.testing.assert_close(out, bicubic_resize(lr, (64, width)), rtol=1e-5, atol=1e-5)


def test_scale_mismatch_is_one_clear_error():
    with pytest.raises(DepthSRError, match="depth is 5 x 7 and rgb is 20 x 21: not an integer scale"):
        Bicubic()(torch.rand(1, 1, 5, 7), torch.rand(1, 3, 20, 21))


def test_shipped_format_round_trip(tmp_path):
    net = build_model("plain", width=8, blocks=1)
    save_network(tmp_path / "m.pt", net, "plain", net.config, [4, 8])
    back, scales = load_network(tmp_path / "m.pt")
    assert scales == (4, 8)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    (tmp_path / "bad.pt").write_text("nope")
    with pytest.raises(DepthSRError, match="not a readable checkpoint"):
        load_network(tmp_path / "bad.pt")
