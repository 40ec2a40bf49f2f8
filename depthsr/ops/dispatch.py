"""Which engine computes a modulated convolution, chosen per call inside the custom ops (``custom_ops``):

  * CPU, float32/float64, PAKA factors or PAC, a C compiler: the fused native kernels (``fused_cpu``);
  * CUDA, float32/float16/bfloat16, Triton installed: the fused Triton kernels (``triton_conv``);
  * anything else: the portable slab path (``slab_engine``). A call off the CPU that falls back says why, once.

Everything here runs inside the opaque custom ops, never in a traced graph: building or loading the native
library, importing Triton and reading the environment cost nothing to ``torch.compile``.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
from types import ModuleType

import torch

from depthsr.ops import fused_cpu, native, slab_engine
from depthsr.ops.engine import ConvCall, Engine

log = logging.getLogger(__name__)

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INDEX_LIMIT = 2**31  # the Triton kernels index with 32-bit integers
_said: set[str] = set()


def _say_once(reason: str) -> None:
    if reason not in _said:
        _said.add(reason)
        log.warning("depthsr: PAKA/PAC off the CPU take the portable slab path: %s", reason)


@functools.lru_cache(maxsize=None)
def _triton_module() -> ModuleType | str:
    """depthsr.ops.triton_conv, or why it cannot be imported."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install -e '.[gpu]')"
    try:
        from depthsr.ops import triton_conv
    except Exception as err:  # a Triton that does not fit this PyTorch
        return f"Triton failed to import ({type(err).__name__}: {err})"
    return triton_conv


def largest_tensor(call: ConvCall) -> int:
    """Elements of the largest tensor a call reads or writes (x, the modulation, y and dL/dy)."""
    geo = call.geo
    output = geo.batch * geo.out_channels * geo.out_height * geo.out_width
    return max(call.x.numel(), call.mod.sp.numel(), 0 if call.mod.ch is None else call.mod.ch.numel(), output)


def triton_reason(device: torch.device, dtype: torch.dtype, elements: int) -> str | None:
    """None when the Triton kernels apply to a call on `device` in `dtype` whose largest tensor has `elements`
    elements, else why not."""
    if device.type != "cuda":
        return f"no fused kernel for {device.type} tensors"
    if os.environ.get("DEPTHSR_TRITON", "1") == "0":
        return "DEPTHSR_TRITON=0"
    if dtype not in TRITON_DTYPES:
        return f"the Triton kernels take float32, float16 and bfloat16, not {dtype}"
    if elements >= _INDEX_LIMIT:
        return "a tensor of 2^31 elements or more (the Triton kernels index with 32 bits)"
    module = _triton_module()
    return module if isinstance(module, str) else None


def engine(call: ConvCall) -> Engine:
    """The engine for this call (the same for its forward and its backward)."""
    x = call.x
    if x.device.type == "cpu":
        native_ok = call.mod.kind != "logits" and native.kernels(x.dtype) is not None
        return fused_cpu if native_ok else slab_engine
    reason = triton_reason(x.device, x.dtype, largest_tensor(call))
    if reason is None:
        return _triton_module()
    _say_once(reason)
    return slab_engine
