"""The network's parameter-free inference steps: LR-consistency (back-projection) and the flip ensemble, and
`depthsr export` adding them to a trained network."""
from __future__ import annotations

import pytest
import torch
from networks import perturbed

from depthsr.cli import main
from depthsr.methods.model_file import model_info, save_network
from depthsr.methods.network import load_network
from depthsr.models import build_model
from depthsr.models.consistency import back_project
from depthsr.ops.resize import bicubic_resize


def _inconsistency(hr: torch.Tensor, lr: torch.Tensor) -> float:
    return float((bicubic_resize(hr, lr.shape[-2:]) - lr).abs().max())


@pytest.mark.parametrize("lr_size,hr_size", [((12, 16), (48, 64)), ((9, 13), (24, 35))])  # x4, and x2.67 / x2.69
def test_each_step_moves_the_prediction_towards_the_input(lr_size, hr_size):
    """Each step shrinks the gap between the prediction, downsampled as the protocol does, and the input."""
    torch.manual_seed(0)
    truth = torch.rand(2, 1, *hr_size, dtype=torch.float64)
    lr = bicubic_resize(truth, lr_size)
    hr = truth + 0.2 * torch.randn_like(truth)
    gaps = [_inconsistency(back_project(hr, lr, steps), lr) for steps in range(5)]
    assert all(later < 0.7 * earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < 0.15 * gaps[0]


def test_zero_steps_and_a_consistent_prediction_are_left_alone():
    torch.manual_seed(1)
    lr, hr = torch.rand(1, 1, 8, 8, dtype=torch.float64), torch.rand(1, 1, 32, 32, dtype=torch.float64)
    assert back_project(hr, lr, 0) is hr
    consistent = back_project(hr, lr, 60)  # the fixed point: a prediction whose downsampling is the input
    torch.testing.assert_close(back_project(consistent, lr, 1), consistent, rtol=0, atol=1e-9)


def test_back_projection_gradients():
    torch.manual_seed(2)
    hr = torch.rand(1, 1, 12, 15, dtype=torch.float64, requires_grad=True)
    lr = torch.rand(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, low: back_project(h, low, 2), (hr, lr))


def test_network_ends_in_its_consistency_steps():
    """A network with `consistency` steps is the same network without them, followed by back-projection; the
    steps are part of its config (what a model file records)."""
    torch.manual_seed(3)
    plain = build_model("paka", width=8, blocks=1)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    projected = build_model("paka", width=8, blocks=1, consistency=2)
    projected.load_state_dict(plain.state_dict())
    lr, rgb = torch.rand(1, 1, 7, 9), torch.rand(1, 3, 28, 36)
    torch.testing.assert_close(projected(lr, rgb), back_project(plain(lr, rgb), lr, 2))
    assert projected.config["consistency"] == 2 and plain.config["consistency"] == 0


def test_flip_ensemble_averages_the_mirrored_answer_in_eval_mode_only():
    single, ensemble = perturbed(), perturbed(flip_ensemble=True)
    lr, rgb = torch.rand(1, 1, 7, 9), torch.rand(1, 3, 28, 36)
    with torch.no_grad():
        mirrored = single(lr.flip(-1), rgb.flip(-1)).flip(-1)
        assert not torch.allclose(mirrored, single(lr, rgb), atol=1e-3)  # the network is not mirror-symmetric
        torch.testing.assert_close(ensemble.eval()(lr, rgb), (single(lr, rgb) + mirrored) / 2)
        torch.testing.assert_close(ensemble.train()(lr, rgb), single(lr, rgb))  # training sees one pass


def test_export_adds_the_inference_steps_to_a_trained_network(tmp_path):
    net = perturbed()
    src = tmp_path / "trained.safetensors"
    save_network(src, net, "paka", net.config, [4])
    out = tmp_path / "tuned.safetensors"
    assert main(["export", "--ckpt", str(src), "--out", str(out), "--consistency", "2", "--flip-ensemble"]) == 0
    assert model_info(out)["kwargs"] == {**net.config, "consistency": 2, "flip_ensemble": True}
    back, _ = load_network(out)
    lr, rgb = torch.rand(1, 1, 7, 9), torch.rand(1, 3, 28, 36)
    with torch.no_grad():
        mean = (net(lr, rgb) + net(lr.flip(-1), rgb.flip(-1)).flip(-1)) / 2
        torch.testing.assert_close(back(lr, rgb), back_project(mean, lr, 2))

    refused = tmp_path / "refused.safetensors"  # a negative step count is a one-line error, nothing written
    assert main(["export", "--ckpt", str(src), "--out", str(refused), "--consistency", "-1"]) == 2
    assert not refused.exists()
    fast = tmp_path / "fast.safetensors"  # and takes them off again: one pass, no back-projection
    assert main(["export", "--ckpt", str(out), "--out", str(fast), "--consistency", "0", "--no-flip-ensemble"]) == 0
    with torch.no_grad():
        torch.testing.assert_close(load_network(fast)[0](lr, rgb), net(lr, rgb))


def test_without_inference_steps_is_one_pass_of_the_network():
    net = perturbed(consistency=2, flip_ensemble=True, self_check=True).eval()
    lr, rgb = torch.rand(1, 1, 64, 72), torch.rand(1, 3, 256, 288)
    with torch.no_grad():
        stepped = net(lr, rgb)
        one = net.without_inference_steps()(lr, rgb)
        assert not torch.allclose(stepped, one, atol=1e-4)
        torch.testing.assert_close(one, net.predict_once(lr, rgb))
    assert net.config | {"consistency": 0, "flip_ensemble": False, "self_check": False} == net.config
