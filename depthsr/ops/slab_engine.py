"""The portable path of the modulated convolution: PyTorch operations on one slab of output rows at a time.

Each slab of one image is unfolded into a reused buffer, modulated in place and multiplied by the weight
in one GEMM, so the working set is a few megabytes whatever the image size; backward recomputes each slab
instead of saving it. Runs on any device and dtype (the fused CPU path covers float32/float64 on the CPU).
"""
from __future__ import annotations

import torch

from depthsr.ops.validate import ConvGeometry

# Elements of one unfolded slab (C*k*k x rows*W_out) on the CPU: it stays in cache, and the GEMM per
# slab is still efficient. Accelerators prefer far larger launches.
SLAB_ELEMENTS = {"cpu": 1 << 20}
SLAB_ELEMENTS_DEFAULT = 1 << 24


def slab_rows(geo: ConvGeometry, device: torch.device) -> int:
    """Output rows per slab: as many as fit the device's slab budget, at least one."""
    budget = SLAB_ELEMENTS.get(device.type, SLAB_ELEMENTS_DEFAULT)
    return max(1, min(geo.out_height, budget // (geo.in_channels * geo.taps * geo.out_width)))


def slabs(geo: ConvGeometry, rows: int):
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
        self.two = x.new_tensor(2.0)

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
        pad.zero_()
        c, k, d, rows, wo = geo.in_channels, geo.kernel_size, geo.dilation, r1 - r0, geo.out_width
        g = gcols.view(c, k, k, rows, wo)
        for ky in range(k):
            for kx in range(k):
                pad[:, ky * d : ky * d + rows, kx * d : kx * d + wo] += g[:, ky, kx]
        grad_x[i, :, lo:hi] += pad[:, lo - start : hi - start, pw : pw + grad_x.shape[3]]

    def modulation(
        self, mod: tuple[torch.Tensor | None, torch.Tensor, bool], i: int, r0: int, r1: int
    ) -> torch.Tensor:  # paka: C x k*k x n (a reused buffer); kernel: 1 x k*k x n (a view)
        """m(c, t, i) of the slab from (e_ch or a_ch or None, e_sp or a_sp or kernel, factorised)."""
        ch, sp, factorised = mod
        geo = self.geo
        c, kk, n = geo.in_channels, geo.taps, (r1 - r0) * geo.out_width
        sp = sp[i, :, r0:r1].reshape(1, kk, n)
        if ch is None:
            return sp
        ch = ch[i, :, r0:r1].reshape(c, 1, n)
        m = self.mod[: c * kk * n].view(c, kk, n)
        if not factorised:
            return torch.add(ch, sp, out=m).tanh_().add_(1)
        torch.mul(ch, sp, out=m).add_(1)
        return torch.div(self.two, m, out=m)

    def scratch(self, n: int) -> torch.Tensor:  # C x k*k x n
        return self.work[: self.geo.in_channels * self.geo.taps * n].view(self.geo.in_channels, self.geo.taps, n)


def _forward(x, weight, bias, mod, geo: ConvGeometry) -> torch.Tensor:
    o, wo = geo.out_channels, geo.out_width
    w2 = weight.reshape(o, -1)
    y = x.new_empty(geo.batch, o, geo.out_height, wo)
    y_flat = y.view(geo.batch, o, -1)
    buf = _Buffers(x, geo, mod[0] is not None)
    for i, r0, r1 in slabs(geo, buf.rows):
        u = buf.unfold(x, i, r0, r1)
        u.mul_(buf.modulation(mod, i, r0, r1))
        torch.mm(w2, u.view(w2.shape[1], -1), out=y_flat[i, :, r0 * wo : r1 * wo])
    if bias is not None:
        y += bias.view(1, o, 1, 1)
    return y


def _backward(grad_y, x, weight, mod, geo: ConvGeometry, needs: tuple[bool, ...]):
    c, o, kk, wo = geo.in_channels, geo.out_channels, geo.taps, geo.out_width
    need_x, need_w, need_b, need_ch, need_sp = needs
    paka = mod[0] is not None
    w2 = weight.reshape(o, c * kk)
    grad_x = torch.zeros_like(x) if need_x else None
    grad_w = torch.zeros_like(w2) if need_w else None
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
            grad_w.addmm_(gy, torch.mul(cols, m, out=work).view(c * kk, n).t())
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
    grad_w = grad_w.view_as(weight) if need_w else None
    grad_b = grad_y.sum((0, 2)) if need_b else None
    return grad_x, grad_w, grad_b, grad_ch, grad_sp


class SlabModulatedConv2d(torch.autograd.Function):
    """apply(x, weight, bias, a_ch, a_sp, e_ch, e_sp, geo): the slab path; e_ch/e_sp are the PAKA factors
    (None: PAKA by tanh of the logits, or PAC when a_ch is None)."""

    @staticmethod
    def forward(ctx, x, weight, bias, a_ch, a_sp, e_ch, e_sp, geo: ConvGeometry):
        ch, sp, factorised = (e_ch, e_sp, True) if e_ch is not None else (a_ch, a_sp, False)
        ctx.save_for_backward(x, weight, ch, sp)
        ctx.geo, ctx.factorised = geo, factorised
        return _forward(x, weight, bias, (ch, sp, factorised), geo)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, ch, sp = ctx.saved_tensors
        mod = (ch, sp, ctx.factorised)
        grads = _backward(grad_y.contiguous(), x, weight, mod, ctx.geo, ctx.needs_input_grad[:5])
        return (*grads, None, None, None)
