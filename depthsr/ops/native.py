"""The fused CPU kernels of ``csrc/modulated_conv.c``: built with the system C compiler on first use, cached.

The shared library is compiled for this machine's CPU (``-march=native``) into
``$DEPTHSR_CACHE_DIR`` (default ``~/.cache/depthsr``), keyed by the source, the compiler and the CPU, and
loaded with ctypes; its OpenMP threads are PyTorch's own (the same ``libgomp``). When no compiler is found,
the build fails, or ``DEPTHSR_NATIVE=0`` is set, :func:`kernels` returns None and callers use the portable
PyTorch path; the reason is logged once.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from depthsr.environment import cpu_description

log = logging.getLogger(__name__)

SOURCES = Path(__file__).with_name("csrc")
SOURCE = SOURCES / "modulated_conv.c"  # includes modulated_conv_kernels.h
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class Slab(ctypes.Structure):
    """``slab_t`` of the C source: one image's input size and output rows [r0, r1)."""

    _fields_ = [(name, ctypes.c_int64) for name in (
        "height", "width", "channels", "out_height", "out_width", "kernel", "dilation", "pad_top", "pad_left",
        "r0", "r1",
    )]


def enabled() -> bool:
    """False when ``DEPTHSR_NATIVE=0`` asks for the portable PyTorch path."""
    return os.environ.get("DEPTHSR_NATIVE", "1") != "0"


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    sources = b"".join(p.read_bytes() for p in sorted(SOURCES.iterdir()) if p.suffix in (".c", ".h"))
    machine = platform.machine() + cpu_description()
    key = hashlib.sha256(sources + " ".join(FLAGS).encode() + version.encode() + machine.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("DEPTHSR_CACHE_DIR", Path.home() / ".cache" / "depthsr"))
    target = cache / f"modulated_conv-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, check=True)
        os.replace(tmp, target)  # atomic: concurrent builders (DDP ranks) each leave a whole library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    ptr, slab, threads = ctypes.c_void_p, ctypes.POINTER(Slab), ctypes.c_int
    for suffix in _SUFFIX.values():
        getattr(lib, f"modulate_{suffix}").argtypes = [slab, ptr, ptr, ptr, ptr, threads]
        getattr(lib, f"modulate_backward_{suffix}").argtypes = [slab, ptr, ptr, ptr, ptr, ptr, ptr, ptr, threads]
        getattr(lib, f"fold_{suffix}").argtypes = [slab, ptr, ptr, ctypes.c_int64, threads]
        getattr(lib, f"fold_{suffix}").restype = ctypes.c_int64
        for name in ("modulate", "modulate_backward"):
            getattr(lib, f"{name}_{suffix}").restype = None
    return lib


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("depthsr: no C compiler found; PAKA/PAC use the portable PyTorch path on the CPU")
        return None
    try:
        return _declare(ctypes.CDLL(str(_build(compiler))))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        log.warning("depthsr: native kernels unavailable (%s); using the portable PyTorch path",
                    detail.strip().splitlines()[-1] if detail.strip() else type(err).__name__)
        return None


class Kernels:
    """The three slab kernels for one dtype, taking tensors (laid out as the C source says) for pointers."""

    def __init__(self, lib: ctypes.CDLL, dtype: torch.dtype) -> None:
        suffix = _SUFFIX[dtype]
        self._modulate = getattr(lib, f"modulate_{suffix}")
        self._backward = getattr(lib, f"modulate_backward_{suffix}")
        self._fold = getattr(lib, f"fold_{suffix}")

    @staticmethod
    def _ptr(t: torch.Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    def modulate(self, slab: Slab, x, e_ch, e_sp, u) -> None:
        self._modulate(ctypes.byref(slab), x.data_ptr(), self._ptr(e_ch), e_sp.data_ptr(), u.data_ptr(),
                       torch.get_num_threads())

    def modulate_backward(self, slab: Slab, x, e_ch, e_sp, gu, u, g_ch, g_sp) -> None:
        p = self._ptr
        self._backward(ctypes.byref(slab), x.data_ptr(), p(e_ch), e_sp.data_ptr(), gu.data_ptr(), p(u), p(g_ch),
                       p(g_sp), torch.get_num_threads())

    def fold(self, slab: Slab, gu, gx, fresh: int) -> int:
        """Returns the next slab's ``fresh``: gx's rows from there on are still unwritten."""
        return self._fold(ctypes.byref(slab), gu.data_ptr(), gx.data_ptr(), fresh, torch.get_num_threads())


def kernels(dtype: torch.dtype) -> Kernels | None:
    """The fused kernels for float32/float64 CPU tensors, or None when they cannot be used."""
    if dtype not in _SUFFIX or not enabled():
        return None
    lib = _library()
    return None if lib is None else Kernels(lib, dtype)
