"""The input cleaner (`depthsr.models.input_cleaner`): the identity when fresh, what the network answers with one,
the one-pass path through tiles, and training it alone (`--model.train_only`)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from depthsr.cli import main
from depthsr.errors import DepthSRError
from depthsr.lit import DSRModule, freeze_all_but
from depthsr.methods.method import normalise
from depthsr.methods.model_file import model_info, save_network
from depthsr.methods.network import NetworkMethod, load_network
from depthsr.models import build_model
from depthsr.models.input_cleaner import InputCleaner


def _opened(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`module` with every parameter random (a trained one, not a fresh one whose correction is zero)."""
    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return module


def test_a_fresh_cleaner_is_the_identity_at_any_ratio():
    cleaner = InputCleaner()
    for (h, w), (big_h, big_w) in (((6, 7), (24, 28)), ((144, 192), (384, 512)), ((9, 13), (9, 13))):
        lr = torch.rand(2, 1, h, w)
        assert torch.equal(cleaner(lr, torch.rand(2, 3, big_h, big_w)), lr)


def test_the_correction_is_guided_by_the_colour_area_averaged_to_the_input():
    """What the cleaner adds is its CNN on (lr, the RGB's mean over each input pixel's footprint), by hand."""
    cleaner = _opened(InputCleaner(width=8, layers=3)).double()
    lr, rgb = torch.rand(2, 1, 5, 6, dtype=torch.float64), torch.rand(2, 3, 20, 24, dtype=torch.float64)
    footprint_mean = rgb.reshape(2, 3, 5, 4, 6, 4).mean((3, 5))
    torch.testing.assert_close(cleaner(lr, rgb), lr + cleaner.correction(torch.cat([lr, footprint_mean], 1)),
                               rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="at least 2 layers"):
        InputCleaner(layers=1)


def test_cleaner_gradients():
    cleaner = _opened(InputCleaner(width=4, layers=2)).double()
    lr = torch.rand(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    rgb = torch.rand(1, 3, 10, 12, dtype=torch.float64, requires_grad=True)  # a non-integer ratio
    assert torch.autograd.gradcheck(cleaner, (lr, rgb))


@pytest.mark.parametrize("name", ["paka", "plain"])
def test_a_network_with_a_cleaner_answers_the_cleaned_input(name):
    """Every step after the cleaner (one pass, flip ensemble, back-projection, self-check) sees the cleaned input:
    the network equals its twin without a cleaner given the cleaner's output."""
    net = _opened(build_model(name, width=8, blocks=1, clean_input=True, consistency=2, flip_ensemble=True,
                              self_check=True), seed=1).eval()
    twin = build_model(name, width=8, blocks=1, consistency=2, flip_ensemble=True, self_check=True).eval()
    twin.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("cleaner.")})
    lr, rgb = torch.rand(1, 1, 20, 24), torch.rand(1, 3, 80, 96)
    with torch.no_grad():
        cleaned = net.cleaner(lr, rgb)
        assert (cleaned - lr).abs().max() > 1e-3  # the cleaner does change the input
        torch.testing.assert_close(net(lr, rgb), twin(cleaned, rgb), rtol=0, atol=0)
    assert net.config["clean_input"] and not twin.config["clean_input"]


def test_tiles_clean_the_whole_input_once():
    """Answered in tiles, the input is cleaned whole, before tiling: the tiled answer is the cleaner-less twin's
    tiled answer to the cleaned input (a cleaner run per tile would see other borders)."""
    net = _opened(build_model("paka", width=8, blocks=1, clean_input=True, consistency=1), seed=2)
    twin = copy.deepcopy(net)
    twin.cleaner = None
    lr, rgb = torch.rand(1, 1, 24, 32) + 1, torch.rand(1, 3, 96, 128)
    with_cleaner, without = NetworkMethod(net), NetworkMethod(twin)
    with_cleaner.tile = without.tile = 48
    with torch.no_grad():
        seen, lo, span = normalise(lr)  # what the network sees
        expected = without(net.cleaner(seen, rgb) * span + lo, rgb, (lo, lo + span))  # the same range, not the
        # cleaned input's own
        torch.testing.assert_close(with_cleaner(lr, rgb), expected, rtol=1e-5, atol=1e-5)


def test_a_model_file_keeps_its_cleaner(tmp_path):
    net = _opened(build_model("paka", width=8, blocks=1, clean_input=True), seed=3).eval()
    save_network(tmp_path / "m.safetensors", net, "paka", net.config, [4])
    back, _ = load_network(tmp_path / "m.safetensors")
    assert back.cleaner is not None
    lr, rgb = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(lr, rgb), net(lr, rgb), rtol=0, atol=0)


def test_export_gates_the_cleaner_by_the_inputs_noise(tmp_path, capsys):
    """`depthsr export --clean-gate` writes the gate into the file's keywords (a file without one records none, so an
    older depthsr still reads it); the gated file answers a smooth input as the cleaner-less twin and a noisy one
    as the ungated file; a network without a cleaner, or levels out of order, are one-line errors."""
    net = _opened(build_model("paka", width=8, blocks=1, clean_input=True), seed=4).eval()
    src, gated = tmp_path / "m.safetensors", tmp_path / "gated.safetensors"
    save_network(src, net, "paka", net.config, [4])
    assert "clean_gate" not in model_info(src)["kwargs"]
    assert main(["export", "--ckpt", str(src), "--out", str(gated), "--clean-gate", "0.002", "0.003"]) == 0
    assert model_info(gated)["kwargs"] == {**net.config, "clean_gate": [0.002, 0.003]}
    back, _ = load_network(gated)
    assert NetworkMethod(back).clean_gate == (0.002, 0.003) and NetworkMethod(net).clean_gate is None
    twin = copy.deepcopy(net)
    twin.cleaner = None
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = (0.2 + 0.03 * xx + 0.01 * yy)[None, None]
    torch.manual_seed(5)
    noisy, rgb = smooth + 0.02 * torch.randn_like(smooth), torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(back(smooth, rgb), twin(smooth, rgb), rtol=0, atol=0)
        torch.testing.assert_close(back(noisy, rgb), net(noisy, rgb), rtol=0, atol=0)
    plain = build_model("paka", width=8, blocks=1)
    save_network(tmp_path / "plain.safetensors", plain, "paka", plain.config, [4])
    capsys.readouterr()
    for args in ((str(tmp_path / "plain.safetensors"), "0.002", "0.003"), (str(src), "0.003", "0.002")):
        assert main(["export", "--ckpt", args[0], "--out", str(tmp_path / "x.safetensors"), "--clean-gate",
                     *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert "--clean-gate" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_train_only_the_cleaner_leaves_the_rest_exactly_as_loaded():
    module = DSRModule("paka", model_kwargs={"width": 8, "blocks": 1, "clean_input": True}, scheduler="step",
                       train_only=["cleaner"], lr=1e-2)
    before = copy.deepcopy(module.model.state_dict())
    optimizer = module.configure_optimizers()["optimizer"]
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in module.model.cleaner.parameters()}
    lr, rgb, gt = torch.rand(2, 1, 6, 7), torch.rand(2, 3, 24, 28), torch.rand(2, 1, 24, 28)
    for _ in range(2):  # the zero last layer opens on the first step, the rest moves on the second
        optimizer.zero_grad()
        F.mse_loss(module.model(lr, rgb), gt).backward()
        optimizer.step()
    after = module.model.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved == {k for k in after if k.startswith("cleaner.")}


def test_train_only_a_part_the_network_lacks_is_one_clear_error():
    net = build_model("paka", width=8, blocks=1)
    message = r"--model.train_only 'cleaner': no parameter .* \(its parts: body, .*rgb2\)"
    with pytest.raises(DepthSRError, match=message):
        freeze_all_but(net, ["cleaner"])
