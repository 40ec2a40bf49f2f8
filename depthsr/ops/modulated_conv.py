"""Per-pixel, per-tap modulated convolution: the engine behind PAKA and PAC.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * m(c, t, i) * x_c(i + t)

Two modulations are supported:
  * ``paka``:   m(c, t, i) = 1 + tanh(a_ch[c](i) + a_sp[t](i))
  * ``kernel``: m(c, t, i) = kernel[t](i)              (shared by all channels, as in PAC)

``modulated_conv2d_reference`` unfolds the whole input (B x C*k*k x H*W: k*k times the input's
memory) and is kept for tests. ``modulated_conv2d`` computes the same sum one slab of output rows of
one image at a time: the slab is unfolded into a reused buffer, modulated in place and multiplied by
the weight in one GEMM, so the working set is a few megabytes whatever the image size. Backward
recomputes each slab instead of saving it.

For PAKA the per-tap tanh is replaced by the exact identity

    1 + tanh(a + b) = 2 / (1 + exp(-2a - s) * exp(-2b + s))

with one exponential per channel and one per tap (not per channel *and* tap); the per-pixel shift s
centres both exponents. It is used when every pixel's logits span less than ``FACTORISED_SPREAD``
(always, for trained layers: tanh saturates long before) and in float32/float64; otherwise that
slab takes the tanh directly.
"""
from __future__ import annotations

from typing import Literal

import torch

from depthsr.ops.validate import ConvGeometry

Mode = Literal["paka", "kernel"]

# Elements of one unfolded slab (C*k*k x rows*W_out) on the CPU: it stays in cache, and the GEMM per
# slab is still efficient. Accelerators prefer far larger launches.
SLAB_ELEMENTS = {"cpu": 1 << 20}
SLAB_ELEMENTS_DEFAULT = 1 << 24
# Largest (max - min of a_ch) + (max - min of a_sp) at one pixel for which the factorised exponentials
# stay within float32's range with a wide margin.
FACTORISED_SPREAD = 40.0


def modulation_reference(
    mode: Mode, a_ch: torch.Tensor | None, a_sp: torch.Tensor
) -> torch.Tensor:  # B x (C or 1) x k*k x H_out x W_out
    """The full modulation tensor m(c, t, i)."""
    if mode == "paka":
        assert a_ch is not None
        return 1 + torch.tanh(a_ch[:, :, None] + a_sp[:, None])
    return a_sp[:, None]


def modulated_conv2d_reference(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    modulation: torch.Tensor,  # B x (C or 1) x k*k x H_out x W_out
    geo: ConvGeometry,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Unfold the whole input, modulate, multiply: the definition, with k*k times the input's memory."""
    b, c, o, kk = geo.batch, geo.in_channels, geo.out_channels, geo.taps
    n = geo.out_height * geo.out_width
    cols = torch.nn.functional.unfold(x, geo.kernel_size, dilation=geo.dilation, padding=geo.padding)
    cols = cols.view(b, c, kk, n) * modulation.reshape(b, -1, kk, n)
    y = torch.matmul(weight.reshape(o, c * kk), cols.view(b, c * kk, n))
    if bias is not None:
        y = y + bias.view(1, o, 1)
    return y.view(b, o, geo.out_height, geo.out_width)


class _Slabs:
    """Slabs of output rows of one image, and the buffers that one pass over them reuses."""

    def __init__(self, x: torch.Tensor, geo: ConvGeometry, mode: Mode) -> None:
        self.geo, self.mode = geo, mode
        c, kk, wo = geo.in_channels, geo.taps, geo.out_width
        budget = SLAB_ELEMENTS.get(x.device.type, SLAB_ELEMENTS_DEFAULT)
        self.rows = max(1, min(geo.out_height, budget // (c * kk * wo)))
        n = self.rows * wo
        halo = geo.dilation * (geo.kernel_size - 1)
        self.pad = x.new_empty(c, self.rows + halo, x.shape[3] + 2 * geo.padding[1])
        self.cols = x.new_empty(c * kk * n)
        self.work = x.new_empty(c * kk * n)
        self.mod = x.new_empty(c * kk * n) if mode == "paka" else None
        self.exp_ch = x.new_empty(c * n) if mode == "paka" else None
        self.exp_sp = x.new_empty(kk * n) if mode == "paka" else None
        self.two = x.new_tensor(2.0)

    def __iter__(self):
        for i in range(self.geo.batch):
            for r0 in range(0, self.geo.out_height, self.rows):
                yield i, r0, min(r0 + self.rows, self.geo.out_height)

    def _padded(self, x: torch.Tensor, r0: int, r1: int) -> tuple[torch.Tensor, int, int, int]:
        """The padded buffer for the input rows that output rows [r0, r1) read, and which rows of x they are:
        (C x rows_in x W_pad view, first row lo, end row hi, buffer row 0's image row start)."""
        geo = self.geo
        ph = geo.padding[0]
        rows_in = (r1 - r0) + geo.dilation * (geo.kernel_size - 1)
        start = r0 - ph
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
        self, a_ch: torch.Tensor | None, a_sp: torch.Tensor, i: int, r0: int, r1: int
    ) -> torch.Tensor:  # paka: C x k*k x n (a reused buffer); kernel: 1 x k*k x n (a view of a_sp)
        geo = self.geo
        c, kk, n = geo.in_channels, geo.taps, (r1 - r0) * geo.out_width
        sp = a_sp[i, :, r0:r1].reshape(1, kk, n)
        if self.mode == "kernel":
            return sp
        assert a_ch is not None
        ch = a_ch[i, :, r0:r1].reshape(c, 1, n)
        m = self.mod[: c * kk * n].view(c, kk, n)
        lo_c, hi_c = torch.aminmax(ch, dim=0, keepdim=True)
        lo_s, hi_s = torch.aminmax(sp, dim=1, keepdim=True)
        spread = float(((hi_c - lo_c) + (hi_s - lo_s)).max())
        if m.dtype not in (torch.float32, torch.float64) or spread > FACTORISED_SPREAD:
            return torch.add(ch, sp, out=m).tanh_().add_(1)
        s = ((lo_s + hi_s) - (lo_c + hi_c)).mul_(0.5)  # centres both exponents' ranges
        e_ch = torch.mul(ch, -2, out=self.exp_ch[: c * n].view(c, 1, n)).sub_(s).exp_()
        e_sp = torch.mul(sp, -2, out=self.exp_sp[: kk * n].view(1, kk, n)).add_(s).exp_()
        torch.mul(e_ch, e_sp, out=m).add_(1)
        return torch.div(self.two, m, out=m)

    def scratch(self, n: int) -> torch.Tensor:  # C x k*k x n
        return self.work[: self.geo.in_channels * self.geo.taps * n].view(self.geo.in_channels, self.geo.taps, n)


def _forward(x, weight, bias, a_ch, a_sp, mode: Mode, geo: ConvGeometry) -> torch.Tensor:
    o, wo = geo.out_channels, geo.out_width
    w2 = weight.reshape(o, -1)
    y = x.new_empty(geo.batch, o, geo.out_height, wo)
    y_flat = y.view(geo.batch, o, -1)
    slabs = _Slabs(x, geo, mode)
    for i, r0, r1 in slabs:
        u = slabs.unfold(x, i, r0, r1)
        u.mul_(slabs.modulation(a_ch, a_sp, i, r0, r1))
        torch.mm(w2, u.view(w2.shape[1], -1), out=y_flat[i, :, r0 * wo : r1 * wo])
    if bias is not None:
        y += bias.view(1, o, 1, 1)
    return y


def _backward(grad_y, x, weight, a_ch, a_sp, mode: Mode, geo: ConvGeometry, needs: tuple[bool, ...]):
    c, o, kk, wo = geo.in_channels, geo.out_channels, geo.taps, geo.out_width
    need_x, need_w, need_b, need_ch, need_sp = needs
    w2 = weight.reshape(o, c * kk)
    grad_x = torch.zeros_like(x) if need_x else None
    grad_w = torch.zeros_like(w2) if need_w else None
    grad_ch = torch.empty_like(a_ch) if need_ch else None
    grad_sp = torch.empty_like(a_sp) if need_sp else None
    grad_y = grad_y.reshape(geo.batch, o, -1)
    slabs = _Slabs(x, geo, mode)
    for i, r0, r1 in slabs:
        n = (r1 - r0) * wo
        gy = grad_y[i, :, r0 * wo : r1 * wo]  # O x n
        cols = slabs.unfold(x, i, r0, r1)
        m = slabs.modulation(a_ch, a_sp, i, r0, r1)
        work = slabs.scratch(n)
        if need_w:
            grad_w.addmm_(gy, torch.mul(cols, m, out=work).view(c * kk, n).t())
        if not (need_x or need_ch or need_sp):
            continue
        gu = torch.mm(w2.t(), gy).view(c, kk, n)  # gradient of the modulated taps
        if need_x:
            slabs.fold_add(torch.mul(gu, m, out=work), grad_x, i, r0, r1)
        if need_ch or need_sp:
            gm = gu.mul_(cols)  # d loss / d m
            if mode == "paka":
                gm.mul_(m).mul_(m.neg_().add_(2))  # times d m / d z = m (2 - m)
                if need_ch:
                    grad_ch[i, :, r0:r1] = gm.sum(1).view(c, r1 - r0, wo)
            if need_sp:
                grad_sp[i, :, r0:r1] = gm.sum(0).view(kk, r1 - r0, wo)
    grad_w = grad_w.view_as(weight) if need_w else None
    grad_b = grad_y.sum((0, 2)) if need_b else None
    return grad_x, grad_w, grad_b, grad_ch, grad_sp


class _ModulatedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, a_ch, a_sp, mode: Mode, geo: ConvGeometry):
        ctx.save_for_backward(x, weight, a_ch, a_sp)
        ctx.mode, ctx.geo = mode, geo
        return _forward(x, weight, bias, a_ch, a_sp, mode, geo)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, a_ch, a_sp = ctx.saved_tensors
        grads = _backward(grad_y.contiguous(), x, weight, a_ch, a_sp, ctx.mode, ctx.geo, ctx.needs_input_grad[:5])
        return (*grads, None, None)


def _common_dtype(tensors: list[torch.Tensor | None], device: torch.device) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def modulated_conv2d(
    x: torch.Tensor,  # B x C x H x W
    weight: torch.Tensor,  # O x C x k x k
    bias: torch.Tensor | None,  # O
    a_ch: torch.Tensor | None,  # B x C x H_out x W_out (paka only)
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out
    mode: Mode,
    geo: ConvGeometry,
) -> torch.Tensor:  # B x O x H_out x W_out
    """Slab-wise modulated convolution with a recomputing backward; equal to the reference.

    Under autocast every input is cast to the autocast dtype, so mixed precision works unchanged.
    """
    tensors = [x, weight, bias, a_ch, a_sp]
    dtype = _common_dtype(tensors, x.device)
    x, weight, bias, a_ch, a_sp = (None if t is None else t.to(dtype).contiguous() for t in tensors)
    with torch.autocast(x.device.type, enabled=False):
        return _ModulatedConv2d.apply(x, weight, bias, a_ch, a_sp, mode, geo)
