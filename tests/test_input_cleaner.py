"""The input cleaner (`depthsr.models.input_cleaner`): the identity when fresh, what the network answers with one,
the one-pass path through tiles, and training it alone (`--model.train_only`)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthsr.errors import DepthSRError
from depthsr.lit import DSRModule, freeze_all_but
from depthsr.methods.model_file import save_network
from depthsr.methods.network import NetworkMethod, load_network
from depthsr.models import build_model
from depthsr.models.input_cleaner import InputCleaner, roughness


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


def test_roughness_is_quantiles_of_the_curvature_by_hand():
    """By hand: with the border pixels repeated, the second differences along rows, columns and both diagonals;
    |Laplacian| (rows + columns) and the smallest |second difference| per pixel, sorted, at rank round(q * n); over
    the 75th percentile of |first difference| along rows and columns, in log10."""
    lr = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    p = np.pad(lr.numpy()[:, 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
    centre = p[:, 1:-1, 1:-1]
    rows, cols = p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 2 * centre, p[:, :-2, 1:-1] + p[:, 2:, 1:-1] - 2 * centre
    diagonal, anti = p[:, :-2, :-2] + p[:, 2:, 2:] - 2 * centre, p[:, :-2, 2:] + p[:, 2:, :-2] - 2 * centre
    laplacian = np.sort(np.abs(rows + cols).reshape(2, -1), 1)
    smallest = np.sort(np.abs(np.stack([rows, cols, diagonal, anti])).min(0).reshape(2, -1), 1)
    expected = np.concatenate([laplacian[:, [2, 7, 14]], smallest[:, [7, 14]]], 1)  # ranks 3, 8, 15 of 30
    x = lr.numpy()[:, 0]
    steps = np.sort(np.concatenate([np.abs(np.diff(x, axis=2)).reshape(2, -1), np.abs(np.diff(x, axis=1)).reshape(
        2, -1)], 1), 1)[:, round(0.75 * 49) - 1]  # 25 + 24 steps
    np.testing.assert_allclose(roughness(lr).numpy(), np.log10(expected + 1e-6) - np.log10(steps[:, None] + 1e-6),
                               rtol=0, atol=1e-12)
    ramp = (torch.arange(6, dtype=torch.float64) ** 1.5).expand(1, 1, 6, 6)  # steep, curved along the rows only
    step = 3 ** 1.5 - 2 ** 1.5  # the 45th of its 60 steps: 30 zero (columns), then 6 of each of the rows' five
    assert roughness(ramp)[0, 3:].tolist() == pytest.approx([-6 - np.log10(step + 1e-6)] * 2)  # no curvature
    # along the columns: the smallest second difference is zero everywhere


def test_the_correction_is_guided_by_the_colour_and_gated_per_image():
    """What the cleaner adds is its correction on (lr, the RGB's mean over each input pixel's footprint), times
    one gate per image from the input's roughness and the ratio, by hand."""
    cleaner = _opened(InputCleaner(width=8, layers=3), seed=5).double()
    lr, rgb = torch.rand(2, 1, 5, 6, dtype=torch.float64), torch.rand(2, 3, 20, 24, dtype=torch.float64)
    footprint_mean = rgb.reshape(2, 3, 5, 4, 6, 4).mean((3, 5))
    correction = cleaner.correction(torch.cat([lr, footprint_mean], 1))
    signs = torch.cat([roughness(lr), torch.full((2, 1), 2.0, dtype=torch.float64)], 1)  # log2 of the ratio 4
    first, _, last = cleaner.gate
    gate = torch.sigmoid(10 * (torch.relu(signs @ first.weight.T + first.bias) @ last.weight.T + last.bias))
    assert 0.01 < float(gate.detach().min()) and float(gate.detach().max()) < 0.99
    torch.testing.assert_close(cleaner(lr, rgb), lr + gate[..., None, None] * correction, rtol=0, atol=1e-14)
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
        seen = (lr - lr.min()) / (lr.max() - lr.min())  # what the network sees (per-image min-max)
        cleaned = net.cleaner(seen, rgb)
        expected = without(cleaned * (lr.max() - lr.min()) + lr.min(), rgb,
                           (lr.min().reshape(1, 1, 1, 1), lr.max().reshape(1, 1, 1, 1)))
        torch.testing.assert_close(with_cleaner(lr, rgb), expected, rtol=1e-5, atol=1e-5)


def test_a_model_file_keeps_its_cleaner(tmp_path):
    net = _opened(build_model("paka", width=8, blocks=1, clean_input=True), seed=3).eval()
    save_network(tmp_path / "m.safetensors", net, "paka", net.config, [4])
    back, _ = load_network(tmp_path / "m.safetensors")
    assert back.cleaner is not None
    lr, rgb = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(lr, rgb), net(lr, rgb), rtol=0, atol=0)


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


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("sensor", [0.0, 1.0])
def test_training_teaches_the_gate_which_batches_come_from_a_sensor(sensor):
    """The training loss of a network with a cleaner is its L2 plus the gate's binary cross-entropy against the
    batch's `sensor` flag, a shut gate's mistake on a clean batch weighing CLEAN_GATE_WEIGHT times (by hand)."""
    import math

    from depthsr.lit import CLEAN_GATE_WEIGHT

    module = DSRModule("paka", model_kwargs={"width": 8, "blocks": 1, "clean_input": True}, loss="l2")
    _opened(module.model.cleaner, seed=6)
    torch.manual_seed(7)
    depth = 1 + torch.rand(2, 1, 24, 28)
    batch = {"lr": F.avg_pool2d(depth, 4), "rgb": torch.rand(2, 3, 24, 28), "depth": depth,
             "valid": torch.ones(2, 1, 24, 28, dtype=torch.bool), "sensor": torch.tensor(sensor)}
    lo = batch["lr"].amin((1, 2, 3), keepdim=True)
    span = batch["lr"].amax((1, 2, 3), keepdim=True) - lo
    seen = (batch["lr"] - lo) / span
    with torch.no_grad():
        l2 = (module.model(seen, batch["rgb"]) - (depth - lo) / span).square().mean()
        gates = module.model.cleaner.open_to(seen, batch["rgb"]).flatten().tolist()
        loss = module.training_step(batch, 0)
    bce = [-math.log(g) if sensor else -CLEAN_GATE_WEIGHT * math.log(1 - g) for g in gates]
    assert float(loss) == pytest.approx(float(l2) + sum(bce) / 2, rel=1e-5)
