"""The fused CPU engine of the modulated convolution: native slab kernels around oneDNN GEMMs.

The same slabs as ``slab_engine``, with its elementwise work fused: per slab of output rows a native kernel
builds the modulated taps u (C*k*k x n) in one pass, and in backward one pass turns dL/du into dL/da_ch,
dL/da_sp and the modulated gradient, which a second folds into dL/dx. The three products (W @ u,
W.T @ dL/dy, u @ dL/dy.T) go through ``cpu_gemm``. Nothing of size C*k*k x H x W is ever held.
The kernels read PAKA's modulation as factors and PAC's kernel as it is (``modulation.Modulation``); float32
and float64 only (``native.kernels``).
"""
from __future__ import annotations

import torch

from depthsr.ops import native
from depthsr.ops.cpu_gemm import matmul
from depthsr.ops.engine import ConvCall, Grads, Needs
from depthsr.ops.native import Kernels, Slab
from depthsr.ops.slab_engine import slab_rows, slabs
from depthsr.ops.validate import ConvGeometry


def _slab(geo: ConvGeometry, x: torch.Tensor, r0: int, r1: int) -> Slab:
    h, w = x.shape[2:]
    return Slab(h, w, geo.in_channels, geo.out_height, geo.out_width, geo.kernel_size, geo.dilation, *geo.padding,
                r0, r1)


def _rows(t: torch.Tensor | None, i: int, r0: int, r1: int) -> torch.Tensor | None:  # F planes from row r0
    return None if t is None else t[i, :, r0:r1]


def _kernels(call: ConvCall) -> Kernels:
    kernels = native.kernels(call.x.dtype)
    assert kernels is not None and call.mod.kind in ("factors", "kernel"), "dispatch sends only what the kernels take"
    return kernels


def forward(call: ConvCall, bias: torch.Tensor | None) -> torch.Tensor:  # B x O x H_out x W_out
    """y = W u + b per slab, u (C*k*k x n) built by one native pass."""
    x, weight, mod, geo = call
    kernels = _kernels(call)
    o, kkc = geo.out_channels, geo.taps * geo.in_channels
    w = weight.reshape(o, kkc)
    y = x.new_empty(geo.batch, o, geo.out_height, geo.out_width)
    rows = slab_rows(geo, x.device)
    u = x.new_empty(kkc * rows * geo.out_width)
    for i, r0, r1 in slabs(geo, rows):
        n = (r1 - r0) * geo.out_width
        u_slab = u[: kkc * n].view(kkc, n)
        kernels.modulate(_slab(geo, x, r0, r1), x[i], _rows(mod.ch, i, r0, r1), _rows(mod.sp, i, r0, r1), u_slab)
        y_slab = y[i, :, r0:r1].view(o, n)
        if bias is None:
            y_slab.copy_(matmul(w, u_slab))
        else:
            torch.add(matmul(w, u_slab), bias.view(o, 1), out=y_slab)
    return y


def backward(call: ConvCall, grad_y: torch.Tensor, needs: Needs) -> Grads:  # grad_y: B x O x H_out x W_out
    """The gradients in ``needs``: per slab dL/du = W^T dL/dy, one native pass to the modulation gradients
    (and u again), one fold into dL/dx."""
    x, weight, mod, geo = call
    kernels = _kernels(call)
    need_x, need_w, need_ch, need_sp = needs
    o, kkc, wo = geo.out_channels, geo.taps * geo.in_channels, geo.out_width
    w_t = weight.reshape(o, kkc).t()
    grad_x = torch.empty_like(x) if need_x else None  # fold writes every row
    grad_w_t = weight.new_zeros(kkc, o) if need_w else None  # transposed: oneDNN's faster product
    # the kernel writes both modulation gradients (only PAKA's a_ch has one) whether or not they are wanted
    grad_ch = None if mod.ch is None else torch.empty_like(mod.ch)
    grad_sp = torch.empty_like(mod.sp)
    rows = slab_rows(geo, x.device)
    u = x.new_empty(kkc * rows * wo)
    fresh = 0  # grad_x[i]'s rows from `fresh` on are still unwritten
    for i, r0, r1 in slabs(geo, rows):
        n = (r1 - r0) * wo
        slab = _slab(geo, x, r0, r1)
        fresh = 0 if r0 == 0 else fresh
        gy = grad_y[i, :, r0:r1].reshape(o, n).contiguous()  # oneDNN reads dense operands in place
        ech, esp = _rows(mod.ch, i, r0, r1), _rows(mod.sp, i, r0, r1)
        u_slab = u[: kkc * n].view(kkc, n)
        if need_x or need_ch or need_sp:
            gu = matmul(w_t, gy)  # C*k*k x n: dL/du
            kernels.modulate_backward(slab, x[i], ech, esp, gu, u_slab, _rows(grad_ch, i, r0, r1),
                                      _rows(grad_sp, i, r0, r1))
            if need_x:
                fresh = kernels.fold(slab, gu, grad_x[i], fresh)
        elif need_w:
            kernels.modulate(slab, x[i], ech, esp, u_slab)
        if need_w:
            grad_w_t += matmul(u_slab, gy.t())
    grad_w = grad_w_t.t().reshape(weight.shape) if need_w else None
    return grad_x, grad_w, grad_ch if need_ch else None, grad_sp if need_sp else None
