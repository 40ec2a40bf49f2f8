"""`depthsr.load`: the README's example, run as written, gives exactly what `depthsr upsample` writes; tensors
in give tensors out, on the caller's device."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import depthsr
from depthsr.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_equals_the_upsample_command(tmp_path, monkeypatch):
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    depth = namespace["depth"]
    assert isinstance(depth, np.ndarray) and depth.dtype == np.float32 and depth.shape == (372, 448)
    out = tmp_path / "teddy.npy"  # 8-bit PNG depth: values as they are, so .npy holds the same units
    assert main(["upsample", "--rgb", "examples/teddy/rgb.png", "--depth", "examples/teddy/lr_x4.png",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert np.array_equal(depth, np.load(out))


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_in_tensors_out_in_real_units(device):
    """bicubic through the API equals the Bicubic method on the same tensors, in the caller's units (x1000:
    millimetres in, millimetres out), shaped like the input and on its device."""
    from depthsr.methods.baselines import Bicubic

    torch.manual_seed(0)
    lr = (torch.rand(12, 16) * 2 + 0.5).to(device)  # metres
    rgb = torch.rand(3, 48, 64, device=device)
    model = depthsr.load("bicubic", device=device)
    out = model(lr, rgb)
    assert out.shape == (48, 64) and out.device.type == device
    assert torch.equal(out, Bicubic()(lr[None, None], rgb[None])[0, 0])
    assert torch.allclose(model(lr * 1000, rgb), out * 1000, rtol=1e-5)
    assert model(lr[None], rgb).shape == (1, 48, 64)
    rgb8 = (rgb.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)  # H x W x 3 uint8
    from_numpy = model(lr.cpu().numpy(), rgb8)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.shape == (48, 64)
    expected = Bicubic()(lr.cpu()[None, None], torch.from_numpy(rgb8).permute(2, 0, 1)[None].float() / 255)
    assert np.array_equal(from_numpy, expected[0, 0].numpy())
