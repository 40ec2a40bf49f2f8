"""The self-check (`depthsr.models.self_check`): the trust a network earns over bicubic on its own input, the
blend it sets, and the network keyword that adds it."""
from __future__ import annotations

import torch
from networks import perturbed

from depthsr.cli import main
from depthsr.methods.model_file import model_info, save_network
from depthsr.methods.network import load_network
from depthsr.models.self_check import MIN_PROXY_SIDE, blend, proxy_size, trust
from depthsr.ops.resize import bicubic_resize


def _pair(h: int = 64, w: int = 72, scale: int = 4, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(batch, 1, h, w, dtype=torch.float64), torch.rand(batch, 3, h * scale, w * scale,
                                                                        dtype=torch.float64)


def _overshooting(lr: torch.Tensor, factor: float):
    """A 'network' whose answer on the repeated task is bicubic + factor x (the truth - bicubic)."""
    def predict(small: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        assert small.shape[-2:] == proxy_size(lr.shape[-2:], (lr.shape[-2] * 4, lr.shape[-1] * 4))
        assert rgb.shape[-2:] == lr.shape[-2:]  # the RGB at the input's size guides the repeated task
        base = bicubic_resize(small, lr.shape[-2:])
        return base + factor * (lr - base)
    return predict


def test_trust_is_the_least_squares_weight_of_the_repeated_task():
    lr, rgb = _pair()
    for factor, weight in ((1.0, 1.0), (2.0, 0.5), (4.0, 0.25), (-1.0, 0.0), (0.5, 1.0)):  # clamped to 0..1
        torch.testing.assert_close(trust(_overshooting(lr, factor), lr, rgb),
                                   torch.full((1, 1, 1, 1), weight, dtype=torch.float64))


def test_trust_is_per_image():
    lr, rgb = _pair(batch=2)

    def predict(small, rgb_small):  # image 0: exact; image 1: twice the step
        base = bicubic_resize(small, lr.shape[-2:])
        return base + torch.tensor([1.0, 2.0], dtype=lr.dtype).view(2, 1, 1, 1) * (lr - base)

    torch.testing.assert_close(trust(predict, lr, rgb).flatten(), torch.tensor([1.0, 0.5], dtype=lr.dtype))


def test_a_repeated_task_too_small_to_say_anything_is_skipped():
    side = MIN_PROXY_SIDE * 4 - 3  # the input / 4 rounds to under MIN_PROXY_SIDE on one side
    lr, rgb = torch.rand(2, 1, side, 80), torch.rand(2, 3, side * 4, 320)

    def never(small, rgb_small):
        raise AssertionError("the network must not be asked")

    assert min(proxy_size(lr.shape[-2:], rgb.shape[-2:])) < MIN_PROXY_SIDE
    assert torch.equal(trust(never, lr, rgb), torch.ones(2, 1, 1, 1))


def test_blend_runs_from_bicubic_to_the_answer():
    lr, rgb = _pair()
    pred = torch.rand(1, 1, *rgb.shape[-2:], dtype=torch.float64)
    base = bicubic_resize(lr, pred.shape[-2:])
    one, zero = torch.ones(1, 1, 1, 1, dtype=lr.dtype), torch.zeros(1, 1, 1, 1, dtype=lr.dtype)
    torch.testing.assert_close(blend(pred, lr, one), pred)
    torch.testing.assert_close(blend(pred, lr, zero), base)
    torch.testing.assert_close(blend(pred, lr, one / 4), base + (pred - base) / 4)


def test_network_self_check_in_eval_mode_only():
    checked, plain = perturbed(0.2, self_check=True, consistency=1), perturbed(0.2, consistency=1)
    torch.manual_seed(0)
    lr, rgb = torch.rand(1, 1, 64, 72), torch.rand(1, 3, 256, 288)
    with torch.no_grad():
        weight = trust(plain.eval(), lr, rgb)
        assert 0 < float(weight) < 1  # a random network earns some trust, not all
        torch.testing.assert_close(checked.eval()(lr, rgb), blend(plain(lr, rgb), lr, weight))
        torch.testing.assert_close(checked.train()(lr, rgb), plain.train()(lr, rgb))  # training sees one pass
    assert checked.config["self_check"] and not plain.config["self_check"]


def test_export_adds_and_removes_the_self_check(tmp_path):
    net = perturbed(0.2)
    src = tmp_path / "trained.safetensors"
    save_network(src, net, "paka", net.config, [4])
    checked = tmp_path / "checked.safetensors"
    assert main(["export", "--ckpt", str(src), "--out", str(checked), "--self-check"]) == 0
    assert model_info(checked)["kwargs"] == {**net.config, "self_check": True}
    lr, rgb = torch.rand(1, 1, 64, 72), torch.rand(1, 3, 256, 288)
    with torch.no_grad():
        torch.testing.assert_close(load_network(checked)[0](lr, rgb), blend(net(lr, rgb), lr, trust(net, lr, rgb)))
    unchecked = tmp_path / "unchecked.safetensors"
    assert main(["export", "--ckpt", str(checked), "--out", str(unchecked), "--no-self-check"]) == 0
    with torch.no_grad():
        torch.testing.assert_close(load_network(unchecked)[0](lr, rgb), net(lr, rgb))


def test_tiles_share_the_whole_images_weight(shared):
    """A large image is answered in tiles; with the self-check every tile takes the weight the whole image earns
    (not one of its own), so the tiled answer is the unchecked tiled answer blended by that one weight (both on the
    input as the network sees it, after its cleaner where it has one)."""
    import copy

    from depthsr.data.degrade import evaluation_sample
    from depthsr.data.folder import FolderDataset
    from depthsr.methods.method import normalise
    from depthsr.methods.network import NetworkMethod, resolve_method

    checked = resolve_method("default").model
    assert checked.self_check
    unchecked = copy.deepcopy(checked)
    unchecked.self_check = False
    sample = evaluation_sample(FolderDataset(shared / "rgbdd")[0], 4, "bicubic", 0.01, 0)
    lr, rgb = sample["lr"][None], sample["rgb"][None]  # 96 x 128 -> 384 x 512, millimetres
    with_check, without = NetworkMethod(checked), NetworkMethod(unchecked)
    with_check.tile = without.tile = 256  # several tiles
    with torch.no_grad():
        normalised, lo, span = normalise(lr, None)
        seen = unchecked.clean(normalised, rgb)  # what the network sees
        weight = trust(unchecked.answer, seen, rgb)
        left = trust(unchecked.answer, seen[..., :64], rgb[..., :256])
        right = trust(unchecked.answer, seen[..., 64:], rgb[..., 256:])
        assert abs(float(left) - float(right)) > 0.05  # tiles of their own would take other weights
        # the blend is affine in the depth, so it holds in millimetres as well
        torch.testing.assert_close(with_check(lr, rgb), blend(without(lr, rgb), seen * span + lo, weight), rtol=1e-5,
                                   atol=1e-3)
    assert checked.self_check  # switched back on after the tiled answer
