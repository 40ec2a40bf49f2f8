"""The portable engine of the modulated convolution: PyTorch operations on one slab of output rows at a time.

Each slab of one image is unfolded into a reused buffer, modulated in place and multiplied by the weight
in one GEMM, so the working set is a few megabytes whatever the image size; backward recomputes each slab
instead of saving it. Runs on any device and dtype (the fused CPU path covers float32/float64 on the CPU,
the Triton kernels CUDA where they apply).

Off the CPU every operation is a kernel launch, so the path keeps them few: slabs are large, the PAKA
modulation is read as logits (no value-dependent choice, hence no wait for the device), and backward folds
a slab's tap gradients into dL/dx with one ``F.fold`` (on the CPU k*k strided additions are faster). Under
half precision the weight gradient is accumulated across slabs in float32.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from depthsr.ops.engine import ConvCall, Grads, Needs, accumulation_dtype
from depthsr.ops.modulation import Modulation
from depthsr.ops.validate import ConvGeometry

# Elements of one unfolded slab (C*k*k x rows*W_out) on the CPU: it stays in cache, and the GEMM per
# slab is still efficient. Accelerators prefer far larger launches.
SLAB_ELEMENTS = {"cpu": 1 << 20}
SLAB_ELEMENTS_DEFAULT = 1 << 24
# Devices on which backward folds a slab's tap gradients into dL/dx by k*k strided additions (faster on the
# CPU); elsewhere one ``F.fold`` per slab, one launch instead of k*k.
TAPWISE_FOLD = {"cpu"}


def slab_rows(geo: ConvGeometry, device: torch.device) -> int:
    """Output rows per slab: as many as fit the device's slab budget, at least one."""
    budget = SLAB_ELEMENTS.get(device.type, SLAB_ELEMENTS_DEFAULT)
    return max(1, min(geo.out_height, budget // (geo.in_channels * geo.taps * geo.out_width)))


def slabs(geo: ConvGeometry, rows: int) -> Iterator[tuple[int, int, int]]:
    """(image, first output row, end output row) of every slab."""
    for i in range(geo.batch):
        for r0 in range(0, geo.out_height, rows):
            yield i, r0, min(r0 + rows, geo.out_height)


class _Buffers:
    """The buffers one pass over the slabs reuses."""

    def __init__(self, x: torch.Tensor, geo: ConvGeometry, paka: bool) -> None:
        self.geo = geo
        c, kk, wo = geo.in_channels, geo.taps, geo.out_width
        self.rows = slab_rows(geo, x.device)
        n = self.rows * wo
        halo = geo.dilation * (geo.kernel_size - 1)
        self.pad = x.new_empty(c, self.rows + halo, x.shape[3] + 2 * geo.padding[1])
        self.cols = x.new_empty(c * kk * n)
        self.work = x.new_empty(c * kk * n)
        self.mod = x.new_empty(c * kk * n) if paka else None

    def _padded(self, x: torch.Tensor, r0: int, r1: int) -> tuple[torch.Tensor, int, int, int]:
        """The padded buffer for the input rows that output rows [r0, r1) read, and which rows of x they are:
        (C x rows_in x W_pad view, first row lo, end row hi, buffer row 0's image row start)."""
        geo = self.geo
        rows_in = (r1 - r0) + geo.dilation * (geo.kernel_size - 1)
        start = r0 - geo.padding[0]
        lo, hi = max(0, start), min(x.shape[2], start + rows_in)
        return self.pad[:, :rows_in], lo, hi, start

    def unfold(self, x: torch.Tensor, i: int, r0: int, r1: int) -> torch.Tensor:  # C x k*k x n
        """The taps of output rows [r0, r1) of image i, zero padded."""
        geo = self.geo
        pw = geo.padding[1]
        pad, lo, hi, start = self._padded(x, r0, r1)
        pad.zero_()
        pad[:, lo - start : hi - start, pw : pw + x.shape[3]].copy_(x[i, :, lo:hi])
        c, k, d, rows = geo.in_channels, geo.kernel_size, geo.dilation, r1 - r0
        s = pad.stride()
        taps = pad.as_strided((c, k, k, rows, geo.out_width), (s[0], d * s[1], d * s[2], s[1], s[2]))
        cols = self.cols[: c * k * k * rows * geo.out_width].view(c, k, k, rows, geo.out_width)
        cols.copy_(taps)
        return cols.view(c, k * k, rows * geo.out_width)

    def fold_add(self, gcols: torch.Tensor, grad_x: torch.Tensor, i: int, r0: int, r1: int) -> None:
        """grad_x[i] += the adjoint of ``unfold`` applied to gcols (C x k*k x n)."""
        geo = self.geo
        pw = geo.padding[1]
        pad, lo, hi, start = self._padded(grad_x, r0, r1)
        c, k, d, rows, wo = geo.in_channels, geo.kernel_size, geo.dilation, r1 - r0, geo.out_width
        if grad_x.device.type in TAPWISE_FOLD:
            pad.zero_()
            g = gcols.view(c, k, k, rows, wo)
            for ky in range(k):
                for kx in range(k):
                    pad[:, ky * d : ky * d + rows, kx * d : kx * d + wo] += g[:, ky, kx]
        else:  # one launch instead of k*k
            pad = F.fold(gcols.reshape(1, c * k * k, rows * wo), tuple(pad.shape[1:]), k, dilation=d)[0]
        grad_x[i, :, lo:hi] += pad[:, lo - start : hi - start, pw : pw + grad_x.shape[3]]

    def modulation(self, mod: Modulation, i: int, r0: int, r1: int) -> torch.Tensor:
        """m(c, t, i) of the slab: PAKA C x k*k x n (a reused buffer), PAC 1 x k*k x n (a view)."""
        geo = self.geo
        c, kk, n = geo.in_channels, geo.taps, (r1 - r0) * geo.out_width
        sp = mod.sp[i, :, r0:r1].reshape(1, kk, n)
        if mod.kind == "kernel":
            return sp
        ch = mod.ch[i, :, r0:r1].reshape(c, 1, n)
        m = self.mod[: c * kk * n].view(c, kk, n)
        if mod.kind == "logits":
            return torch.add(ch, sp, out=m).tanh_().add_(1)
        return torch.mul(ch, sp, out=m).add_(1).reciprocal_().mul_(2)  # 2 / (1 + e^(-2 a_ch) e^(-2 a_sp))

    def scratch(self, n: int) -> torch.Tensor:  # C x k*k x n
        return self.work[: self.geo.in_channels * self.geo.taps * n].view(self.geo.in_channels, self.geo.taps, n)


def forward(call: ConvCall, bias: torch.Tensor | None) -> torch.Tensor:  # B x O x H_out x W_out
    """y = W (m * taps) + b, one GEMM per slab."""
    x, weight, mod, geo = call
    o, wo = geo.out_channels, geo.out_width
    w2 = weight.reshape(o, -1)
    y = x.new_empty(geo.batch, o, geo.out_height, wo)
    y_flat = y.view(geo.batch, o, -1)
    buf = _Buffers(x, geo, mod.kind != "kernel")
    for i, r0, r1 in slabs(geo, buf.rows):
        u = buf.unfold(x, i, r0, r1)
        u.mul_(buf.modulation(mod, i, r0, r1))
        torch.mm(w2, u.view(w2.shape[1], -1), out=y_flat[i, :, r0 * wo : r1 * wo])
    if bias is not None:
        y += bias.view(1, o, 1, 1)
    return y


def backward(call: ConvCall, grad_y: torch.Tensor, needs: Needs) -> Grads:  # grad_y: B x O x H_out x W_out
    """The gradients in ``needs``, each slab recomputed; the weight's summed over slabs in float32 for half
    precision (each slab's product rounded once)."""
    x, weight, mod, geo = call
    c, o, kk, wo = geo.in_channels, geo.out_channels, geo.taps, geo.out_width
    need_x, need_w, need_ch, need_sp = needs
    paka = mod.kind != "kernel"
    need_ch = need_ch and paka
    w2 = weight.reshape(o, c * kk)
    grad_x = torch.zeros_like(x) if need_x else None
    acc = accumulation_dtype(x.dtype)
    grad_w = torch.zeros(w2.shape, dtype=acc, device=x.device) if need_w else None
    grad_ch = x.new_empty(geo.batch, c, geo.out_height, wo) if need_ch else None
    grad_sp = x.new_empty(geo.batch, kk, geo.out_height, wo) if need_sp else None
    grad_y = grad_y.reshape(geo.batch, o, -1)
    buf = _Buffers(x, geo, paka)
    for i, r0, r1 in slabs(geo, buf.rows):
        n = (r1 - r0) * wo
        gy = grad_y[i, :, r0 * wo : r1 * wo]  # O x n
        cols = buf.unfold(x, i, r0, r1)
        m = buf.modulation(mod, i, r0, r1)
        work = buf.scratch(n)
        if need_w:
            u = torch.mul(cols, m, out=work).view(c * kk, n)
            if acc == x.dtype:
                grad_w.addmm_(gy, u.t())
            else:
                grad_w += torch.mm(gy, u.t())
        if not (need_x or need_ch or need_sp):
            continue
        gu = torch.mm(w2.t(), gy).view(c, kk, n)  # gradient of the modulated taps
        if need_x:
            buf.fold_add(torch.mul(gu, m, out=work), grad_x, i, r0, r1)
        if need_ch or need_sp:
            gm = gu.mul_(cols)  # d loss / d m
            if paka:
                gm.mul_(m).mul_(m.neg_().add_(2))  # times d m / d z = m (2 - m)
                if need_ch:
                    grad_ch[i, :, r0:r1] = gm.sum(1).view(c, r1 - r0, wo)
            if need_sp:
                grad_sp[i, :, r0:r1] = gm.sum(0).view(kk, r1 - r0, wo)
    grad_w = grad_w.view(weight.shape) if need_w else None
    return grad_x, grad_w, grad_ch, grad_sp
