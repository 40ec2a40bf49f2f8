from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real RGB-D pairs not found at {SHARED} (CI provides ../shared/data)")
    return SHARED


@pytest.fixture(scope="session")
def nyu_file(tmp_path_factory, shared) -> Path:
    """A tiny NYU-format .mat (MATLAB v7.3 header + HDF5): the 6 Middlebury 2005 training pairs shrunk to
    96 x 128, depth in metres (the 8-bit levels mapped to 0.5..10 m)."""
    import cv2

    from depthsr.data.folder import read_pair
    from depthsr.data.nyu import write_nyu_file

    rgbs, depths = [], []
    for set_name, name in [("middlebury2005", n) for n in ("art", "books", "dolls", "laundry", "moebius", "reindeer")]:
        s = read_pair(shared / set_name / name, "disparity8")
        rgb = cv2.resize((s["rgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), (128, 96),
                         interpolation=cv2.INTER_AREA)
        d = cv2.resize(s["depth"][0].numpy(), (128, 96), interpolation=cv2.INTER_AREA)
        rgbs.append(rgb)
        depths.append(0.5 + 9.5 * (255 - d) / 255)
    path = tmp_path_factory.mktemp("nyu") / "nyu_tiny.mat"
    write_nyu_file(path, np.stack(rgbs), np.stack(depths).astype(np.float32))
    return path


@pytest.fixture(params=["native", "portable"])
def engine(request, monkeypatch) -> str:
    """The CPU engine of PAKA/PAC under test; 'native' must really be available (CI has a C compiler)."""
    from depthsr.ops import native

    if request.param == "portable":
        monkeypatch.setenv("DEPTHSR_NATIVE", "0")
    else:
        monkeypatch.delenv("DEPTHSR_NATIVE", raising=False)
        assert native.kernels(torch.float64) is not None, "the native kernels did not build"
    return request.param


@pytest.fixture(params=[1 << 20, 37], ids=["one-slab", "many-slabs"])
def slab_size(request, monkeypatch, engine) -> int:
    """Elements of one CPU slab: every image in one slab, or in many (each engine, see ``engine``)."""
    from depthsr.ops import slab_engine

    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", request.param)
    return request.param


@pytest.fixture
def one_slab(monkeypatch, engine) -> int:
    """Every image in one CPU slab (each engine): where gradcheck runs; many-slab cases compare gradients with
    the reference's instead (fast, and it catches the same kernel bugs)."""
    from depthsr.ops import slab_engine

    monkeypatch.setitem(slab_engine.SLAB_ELEMENTS, "cpu", 1 << 20)
    return 1 << 20
