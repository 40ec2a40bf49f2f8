"""Building, caching and falling back from the native kernels (a real compiler, a real shared library)."""
from __future__ import annotations

import logging

import pytest
import torch
from op_inputs import paka_inputs

from depthsr.ops import fused_cpu, native, paka_conv2d, paka_conv2d_reference


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """An empty build cache, and no library loaded yet in this process (restored afterwards)."""
    monkeypatch.setenv("DEPTHSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEPTHSR_NATIVE", raising=False)
    native._library.cache_clear()
    yield tmp_path / "cache"
    native._library.cache_clear()


def test_builds_once_into_the_cache_and_reuses_it(fresh_library):
    assert native.kernels(torch.float32) is not None
    (built,) = fresh_library.glob("modulated_conv-*.so")
    mtime = built.stat().st_mtime_ns
    native._library.cache_clear()  # as a new process would
    assert native.kernels(torch.float64) is not None
    assert [p.name for p in fresh_library.iterdir()] == [built.name]  # no second build, no temp file left
    assert built.stat().st_mtime_ns == mtime


def test_failed_build_falls_back_to_the_portable_path(fresh_library, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    with caplog.at_level(logging.WARNING, logger="depthsr.ops.native"):
        assert native.kernels(torch.float64) is None
    assert "native kernels unavailable" in caplog.text
    assert not list(fresh_library.glob("*.so"))  # nothing half-written

    def fused(*args):
        raise AssertionError("the fused path ran without a library")

    monkeypatch.setattr(fused_cpu, "forward", fused)
    args = paka_inputs(2, 3, 4, 6, 7, 3, 1, None)
    torch.testing.assert_close(paka_conv2d(*args), paka_conv2d_reference(*args), rtol=1e-12, atol=1e-12)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("DEPTHSR_NATIVE", "0")
    assert native.kernels(torch.float32) is None


def test_only_float32_and_float64(monkeypatch):
    monkeypatch.delenv("DEPTHSR_NATIVE", raising=False)
    assert native.kernels(torch.bfloat16) is None and native.kernels(torch.float16) is None
