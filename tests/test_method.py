"""The method wrapper: normalisation, invalid pixels, tiling; the baselines under it."""
from __future__ import annotations

import pytest
import torch
from op_inputs import DEVICES

from depthsr.errors import DepthSRError
from depthsr.methods.baselines import BASELINES, Bicubic
from depthsr.methods.method import check_ratio, check_valid, fill_invalid, normalise, ratio_label, resolve_device
from depthsr.methods.model_file import save_network
from depthsr.methods.network import NetworkMethod, load_network
from depthsr.methods.tiling import _axis_tiles
from depthsr.models import build_model
from depthsr.ops.resize import bicubic_resize


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("paka", width=8, blocks=1, dilations=(1,))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


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
    method = NetworkMethod(_net())
    lr, rgb = torch.rand(1, 1, 32, 96), torch.rand(1, 3, 128, 384)
    whole = method(lr, rgb)
    method.tile, method.overlap = 256, 128  # two tiles: columns [0, 256) and [128, 384), blended in [128, 256)
    tiled = method(lr, rgb)
    assert not torch.equal(whole, tiled)  # it really tiled
    margin = 48  # beyond this network's receptive field: a tile's edge cannot reach these pixels
    for c0, c1 in ((0, 128 - margin), (128 + margin, 256 - margin), (256 + margin, 384)):
        torch.testing.assert_close(tiled[..., c0:c1], whole[..., c0:c1], rtol=1e-4, atol=1e-5)


def test_tiles_at_a_non_integer_ratio_sit_on_the_exact_grid():
    """lr 48 x 144 beside rgb 128 x 384 (8/3): every 3 LR pixels are exactly 8 output pixels, so the tiles sit on
    that grid and a tile's inside equals the untiled network's."""
    assert _axis_tiles(144, 384, 256, 128) == [(0, 96, 0, 256), (48, 144, 128, 384)]
    method = NetworkMethod(_net())
    lr, rgb = torch.rand(1, 1, 48, 144), torch.rand(1, 3, 128, 384)
    whole = method(lr, rgb)
    method.tile, method.overlap = 256, 128
    tiled = method(lr, rgb)
    assert not torch.equal(whole, tiled)
    margin = 48
    for c0, c1 in ((0, 128 - margin), (128 + margin, 256 - margin), (256 + margin, 384)):
        torch.testing.assert_close(tiled[..., c0:c1], whole[..., c0:c1], rtol=1e-4, atol=1e-5)


def test_tiles_without_an_exact_grid_show_no_seams():
    """A ratio with no small common grid (61 x 83 LR for 400 x 544): tile edges are rounded to whole output
    pixels, at most half a pixel off; on smooth depth the tiled result stays within a hair of the whole one."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 61), torch.linspace(0, 1, 83), indexing="ij")
    lr = (2 + torch.sin(3 * xx) + yy ** 2)[None, None]
    rgb = torch.rand(1, 3, 400, 544)
    method = Bicubic()
    whole = method(lr, rgb)
    method.tile, method.overlap = 128, 64
    tiled = method(lr, rgb)
    assert torch.isfinite(tiled).all()
    step = float((whole[..., 1:] - whole[..., :-1]).abs().max())  # the largest change between neighbours
    assert float((tiled - whole).abs().max()) < step  # under a pixel's worth anywhere: no seam


@pytest.mark.parametrize("lr_size,size", [(1000, 4000), (144, 384), (192, 1440), (533, 4000)])
@pytest.mark.parametrize("tile", [64, 144, 1024])
def test_tiles_cost_in_proportion(lr_size, size, tile):
    """Small tiles work (--tile 64), and the tiles' total length stays under twice the image's: overlaps are
    at most a quarter of a tile, whatever --tile is."""
    tiles = _axis_tiles(lr_size, size, tile, 128)
    assert tiles[0][0] == tiles[0][2] == 0 and tiles[-1][1] == lr_size and tiles[-1][3] == size
    assert all(t[2] < n[2] < t[3] <= n[3] for t, n in zip(tiles, tiles[1:]))  # each overlaps the next
    assert sum(t[3] - t[2] for t in tiles) < 1.5 * size + tile


def test_small_tiles_work_on_a_network():
    method = NetworkMethod(_net())
    lr, rgb = torch.rand(1, 1, 24, 32) + 1, torch.rand(1, 3, 96, 128)
    method.tile = 32
    out = method(lr, rgb)
    assert out.shape == (1, 1, 96, 128) and torch.isfinite(out).all()


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


def test_any_ratio_but_one_view():
    assert check_ratio(torch.rand(1, 1, 144, 192), torch.rand(1, 3, 384, 512)) == (384 / 144, 512 / 192)
    assert check_ratio(torch.rand(1, 1, 145, 192), torch.rand(1, 3, 384, 512))  # a size that rounded
    assert check_ratio(torch.rand(1, 1, 192, 256), torch.rand(1, 3, 1440, 1920)) == (7.5, 7.5)
    assert ratio_label(384 / 144, 512 / 192) == "x2.667" and ratio_label(4, 4.036) == "x4 (height) / x4.036 (width)"
    with pytest.raises(DepthSRError, match="depth is 5 x 7 and rgb is 20 x 21: their aspect ratios differ by 25.0%"
                                           r" \(more than 2%\): register the depth to the rgb's view first"):
        Bicubic()(torch.rand(1, 1, 5, 7), torch.rand(1, 3, 20, 21))
    with pytest.raises(DepthSRError, match="depth is 150 x 192 .* differ by 4.2%"):
        check_ratio(torch.rand(1, 1, 150, 192), torch.rand(1, 3, 384, 512))
    with pytest.raises(DepthSRError, match="the depth must not be larger than the rgb"):
        check_ratio(torch.rand(1, 1, 40, 40), torch.rand(1, 3, 20, 20))


def test_bicubic_method_at_a_non_integer_ratio():
    lr, rgb = torch.rand(2, 1, 144, 192) + 1, torch.rand(2, 3, 384, 512)
    torch.testing.assert_close(Bicubic()(lr, rgb), bicubic_resize(lr, (384, 512)), rtol=1e-5, atol=1e-5)
    out = NetworkMethod(_net())(lr, rgb)
    assert out.shape == (2, 1, 384, 512) and torch.isfinite(out).all()


def test_too_little_valid_depth_is_refused():
    lr = torch.zeros(1, 1, 20, 20)
    lr[..., :1, :18] = 1.0  # 18 of 400 valid: 4.5 %
    with pytest.raises(DepthSRError, match="lr.png: only 4.5% of its 400 depth values are valid"):
        check_valid(lr, "lr.png")
    lr[..., 1, :1] = float("inf")  # still invalid
    lr[..., 1, 1:3] = 1.0  # 20 of 400: 5 %
    assert check_valid(lr, "lr.png") == 380


@pytest.mark.parametrize("device", DEVICES)
def test_method_runs_on_a_device_and_answers_on_the_callers(device):
    """`to(device)` moves a network's weights; inputs go there and results come back where they came from."""
    lr, rgb = torch.rand(1, 1, 24, 32) + 1, torch.rand(1, 3, 96, 128)
    reference = NetworkMethod(_net())(lr, rgb)
    method = NetworkMethod(_net()).to(device)
    assert next(method.model.parameters()).device.type == device
    out = method(lr, rgb)
    assert out.device == lr.device
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    moved = NetworkMethod(_net())
    moved.model.to(device)  # a network moved by hand: inputs still follow its weights
    torch.testing.assert_close(moved(lr, rgb), reference, rtol=1e-4, atol=1e-4)
    method.tile = 64  # tiles too
    assert method(lr, rgb).device == lr.device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DepthSRError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DepthSRError, match="--device cuda:1: no CUDA GPU"):
            resolve_device("cuda:1")


def test_shipped_format_round_trip(tmp_path):
    net = build_model("plain", width=8, blocks=1)
    save_network(tmp_path / "m.safetensors", net, "plain", net.config, [4, 8])
    back, scales = load_network(tmp_path / "m.safetensors")
    assert scales == (4, 8)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    (tmp_path / "bad.pt").write_text("nope")
    with pytest.raises(DepthSRError, match="not a readable checkpoint"):
        load_network(tmp_path / "bad.pt")


def test_trained_for_listed_scales_and_a_trained_range():
    from depthsr.methods.baselines import Bicubic

    method = Bicubic()
    assert method.trained_for(7.5)  # no scales: any ratio
    method.scales, method.ratio_range = (4, 8, 16), None
    assert method.trained_for(4) and method.trained_for(8.05) and not method.trained_for(7.5)
    method.ratio_range = (2.0, 16.0)
    assert method.trained_for(7.5) and method.trained_for(2.0) and not method.trained_for(32)
