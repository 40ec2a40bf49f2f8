"""``torch.compile(fullgraph=True)`` of the guided convolutions and of the whole network: no graph break
(fullgraph raises on one), forward and backward equal to eager.

The custom ops keep the native library, Triton and the value-dependent PAKA factorisation out of the graph.
``aot_eager`` traces forward and backward through the ops' fake and autograd registrations without code
generation (quick); the slow cases compile the whole network with the default backend (Inductor).
"""
from __future__ import annotations

import pytest
import torch
from op_inputs import DEVICES

from depthsr.models import build_model
from depthsr.models.layers import PACConv2d, PAKAConv2d


def _perturbed(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """The module in float64 on the device, every parameter nudged (a fresh PAKA layer is a plain conv)."""
    torch.manual_seed(0)
    module = module.to(device, torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


def _run(fn, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
    """fn(*inputs) (the module or its compiled form) and the gradients of its parameters."""
    module.zero_grad()
    y = fn(*inputs)
    y.square().mean().backward()
    return y.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


def _assert_compiled_equals_eager(module, inputs, backend: str) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    y_c, g_c = _run(compiled, module, inputs)
    y_e, g_e = _run(module, module, inputs)
    torch.testing.assert_close(y_c, y_e, rtol=1e-9, atol=1e-9)
    scale = max(g.abs().max().item() for g in g_e.values())  # some gradients are zero up to rounding
    for name, g in g_e.items():
        torch.testing.assert_close(g_c[name], g, rtol=1e-7, atol=1e-9 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", [PAKAConv2d, PACConv2d])
def test_guided_conv_compiles_to_one_graph(device, layer):
    conv = _perturbed(layer(6, 5, 3, dilation=2, guide_channels=4), device)
    g = torch.Generator().manual_seed(1)
    x, guide = (torch.randn(2, c, 9, 11, generator=g, dtype=torch.float64).to(device) for c in (6, 4))
    _assert_compiled_equals_eager(conv, (x, guide), "aot_eager")


def _network(name: str, device: str):
    model = _perturbed(build_model(name, width=16, blocks=1), device)
    g = torch.Generator().manual_seed(1)
    lr, rgb = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    return model, (lr.to(device, torch.float64), rgb.to(device, torch.float64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["paka", "pac"])
def test_network_traces_to_one_graph(device, name):
    _assert_compiled_equals_eager(*_network(name, device), "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["paka", "pac"])
def test_network_compiled_by_inductor_equals_eager(device, name):
    # Inductor's peak-memory reordering (torch 2.13) moves the PAC network's backward conv of the hierarchical
    # block's fuse layer ahead of the bilinear-upsampling scatter that feeds it: zero gradients upstream of the
    # block, although the traced graphs are right (aot_eager above). Off, the compiled network equals eager.
    with torch._inductor.config.patch(reorder_for_peak_memory=False):
        _assert_compiled_equals_eager(*_network(name, device), "inductor")
