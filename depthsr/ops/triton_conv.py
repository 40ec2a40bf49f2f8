"""The fused GPU kernels of the modulated convolution, in Triton: forward and backward, never unfolding.

    y_o(i) = b_o + sum_c sum_t W[o, c, t] * m(c, t, i) * x_c(i + t)

Each kernel builds tiles of the modulated taps u(c, t, i) = m(c, t, i) x_c(i + t) in registers, straight from
x and the modulation, and multiplies them on the tensor cores; nothing of size C*k*k x H x W exists anywhere.
PAKA's m = 1 + tanh(a_ch + a_sp) is taken per element as 2 / (1 + exp(-2 (a_ch + a_sp))), exact for every
logit (an overflowing exponential gives 0, an underflowing one 2: the limits of 1 + tanh), so no call
depends on the values; PAC's m is the kernel. Four kernels:

  * ``_forward``: y, tiles of (output channels x pixels), the sum over channels and taps in registers;
  * ``_backward_modulation``: dL/da_ch and dL/da_sp (PAC: dL/dkernel) per pixel tile, from
    dL/du = W^T dL/dy recomputed per channel block and tap;
  * ``_backward_input``: dL/dx per input pixel tile, gathering the taps that read each pixel (no atomics);
  * ``_backward_weight``: dL/dW per (output, input) channel block and tap, the sum over pixels split into
    chunks whose partial sums (float32) are added afterwards (deterministic, no atomics).

Arithmetic is float32 (float64 for float64 tensors, which the dispatcher keeps off the GPU; the tests use them
through Triton's interpreter, ``TRITON_INTERPRET=1``, on CPU tensors); the products take the inputs' dtype
(bf16/fp16 tensor cores, TF32 for float32 when ``torch.backends.cudnn.allow_tf32`` allows it, as cuDNN's
convolutions do) and accumulate in float32. Indices are 32-bit: the dispatcher keeps tensors of 2^31 elements
or more away. Block sizes are fixed, not autotuned.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from depthsr.ops.engine import ConvCall, Grads, Needs, accumulation_dtype
from depthsr.ops.modulation import Modulation
from depthsr.ops.validate import ConvGeometry

PAKA, KERNEL = 0, 1  # MODE: m = 1 + tanh(a_ch + a_sp), or m = kernel (a_sp)
BLOCK_P = 64  # pixels per tile
WEIGHT_PROGRAMS_PER_SM = 4  # the weight gradient's pixel sum is split until the GPU has this many programs per SM


@triton.jit
def _paka(ach, sp):
    """1 + tanh(ach + sp), exact at both ends (exp overflows to inf: 0; underflows to 0: 2)."""
    return 2.0 / (1.0 + tl.exp(-2.0 * (ach + sp)))


@triton.jit
def _tap(x_ptr, b, c, c_ok, oy, ox, p_ok, t, C, H, W, PH, PW, D, K: tl.constexpr, ACC: tl.constexpr):
    """x_c(i + t): tap t of output pixels (oy, ox) of image(s) b, channels c, zero outside the image and where
    not p_ok: BLOCK_C x BLOCK_P. b is one image or one per pixel."""
    iy, ix = oy - PH + (t // K) * D, ox - PW + (t % K) * D
    inside = p_ok & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    return tl.load(x_ptr + (b * C + c[:, None]) * (H * W) + (iy * W + ix)[None, :],
                   mask=c_ok[:, None] & inside[None, :], other=0.0).to(ACC)


@triton.jit
def _forward(
    x_ptr, w_ptr, b_ptr, ch_ptr, sp_ptr, y_ptr,
    C, H, W, OC, HO, WO, PH, PW, D,
    K: tl.constexpr, MODE: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
):
    KK = K * K
    b = tl.program_id(2)
    n = HO * WO
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output pixels
    p_ok = p < n
    oy, ox = p // WO, p % WO
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = o < OC
    acc = tl.zeros((BLOCK_O, BLOCK_P), dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_ok = c < C
        if MODE == 0:
            ach = tl.load(ch_ptr + (b * C + c[:, None]) * n + p[None, :], mask=c_ok[:, None] & p_ok[None, :],
                          other=0.0).to(ACC)
        for t in range(KK):
            xv = _tap(x_ptr, b, c, c_ok, oy, ox, p_ok, t, C, H, W, PH, PW, D, K, ACC)  # BLOCK_C x BLOCK_P
            sp = tl.load(sp_ptr + (b * KK + t) * n + p, mask=p_ok, other=0.0).to(ACC)
            if MODE == 0:
                u = xv * _paka(ach, sp[None, :])
            else:
                u = xv * sp[None, :]
            wv = tl.load(w_ptr + (o[:, None] * C + c[None, :]) * KK + t, mask=o_ok[:, None] & c_ok[None, :],
                         other=0.0)  # BLOCK_O x BLOCK_C
            acc += tl.dot(wv.to(DOT), u.to(DOT), input_precision=PRECISION, out_dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=o_ok, other=0.0).to(ACC)[:, None]
    tl.store(y_ptr + (b * OC + o[:, None]) * n + p[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=o_ok[:, None] & p_ok[None, :])


@triton.jit
def _grad_taps(w_ptr, gy_ptr, b, c, c_ok, t, p, p_ok, C, OC, n,
               KK: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """dL/du(c, t, p) = sum_o W[o, c, t] dL/dy(o, p) for a channel block and pixel tile: BLOCK_C x BLOCK_P."""
    gu = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for o0 in range(0, OC, BLOCK_O):
        o = o0 + tl.arange(0, BLOCK_O)
        o_ok = o < OC
        wt = tl.load(w_ptr + (o[None, :] * C + c[:, None]) * KK + t, mask=c_ok[:, None] & o_ok[None, :],
                     other=0.0)  # BLOCK_C x BLOCK_O
        gy = tl.load(gy_ptr + (b * OC + o[:, None]) * n + p[None, :], mask=o_ok[:, None] & p_ok[None, :],
                     other=0.0)  # BLOCK_O x BLOCK_P
        gu += tl.dot(wt.to(DOT), gy.to(DOT), input_precision=PRECISION, out_dtype=ACC)
    return gu


@triton.jit
def _backward_modulation(
    x_ptr, w_ptr, ch_ptr, sp_ptr, gy_ptr, gch_ptr, gsp_ptr,
    C, H, W, OC, HO, WO, PH, PW, D,
    K: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
    KK_P2: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
):
    KK = K * K
    b = tl.program_id(1)
    n = HO * WO
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < n
    oy, ox = p // WO, p % WO
    taps = tl.arange(0, KK_P2)
    gsp = tl.zeros((KK_P2, BLOCK_P), dtype=ACC)  # dL/da_sp (PAC: dL/dkernel), summed over all channels here
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_ok = c < C
        cp_ok = c_ok[:, None] & p_ok[None, :]
        if MODE == 0:
            ach = tl.load(ch_ptr + (b * C + c[:, None]) * n + p[None, :], mask=cp_ok, other=0.0).to(ACC)
            gch = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
        for t in range(KK):
            gu = _grad_taps(w_ptr, gy_ptr, b, c, c_ok, t, p, p_ok, C, OC, n, KK, ACC, DOT, PRECISION,
                            BLOCK_O, BLOCK_C, BLOCK_P)
            xv = _tap(x_ptr, b, c, c_ok, oy, ox, p_ok, t, C, H, W, PH, PW, D, K, ACC)
            if MODE == 0:
                sp = tl.load(sp_ptr + (b * KK + t) * n + p, mask=p_ok, other=0.0).to(ACC)
                m = _paka(ach, sp[None, :])
                gz = gu * xv * (m * (2.0 - m))  # d(1 + tanh z)/dz = m (2 - m)
                gch += gz
            else:
                gz = gu * xv
            gsp += tl.where(taps[:, None] == t, tl.sum(gz, axis=0)[None, :], 0.0)
        if MODE == 0:
            tl.store(gch_ptr + (b * C + c[:, None]) * n + p[None, :], gch.to(gch_ptr.dtype.element_ty), mask=cp_ok)
    tl.store(gsp_ptr + (b * KK + taps[:, None]) * n + p[None, :], gsp.to(gsp_ptr.dtype.element_ty),
             mask=(taps[:, None] < KK) & p_ok[None, :])


@triton.jit
def _backward_input(
    w_ptr, ch_ptr, sp_ptr, gy_ptr, gx_ptr,
    C, H, W, OC, HO, WO, PH, PW, D,
    K: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
):
    KK = K * K
    b = tl.program_id(2)
    n = HO * WO
    q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # input pixels
    q_ok = q < H * W
    qy, qx = q // W, q % W
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for t in range(KK):
        oy, ox = qy + PH - (t // K) * D, qx + PW - (t % K) * D  # the output pixel whose tap t reads q
        ok = q_ok & (oy >= 0) & (oy < HO) & (ox >= 0) & (ox < WO)
        p = oy * WO + ox
        gu = _grad_taps(w_ptr, gy_ptr, b, c, c_ok, t, p, ok, C, OC, n, KK, ACC, DOT, PRECISION,
                        BLOCK_O, BLOCK_C, BLOCK_P)
        sp = tl.load(sp_ptr + (b * KK + t) * n + p, mask=ok, other=0.0).to(ACC)
        if MODE == 0:
            ach = tl.load(ch_ptr + (b * C + c[:, None]) * n + p[None, :], mask=c_ok[:, None] & ok[None, :],
                          other=0.0).to(ACC)
            acc += gu * _paka(ach, sp[None, :])
        else:
            acc += gu * sp[None, :]
    tl.store(gx_ptr + (b * C + c[:, None]) * (H * W) + q[None, :], acc.to(gx_ptr.dtype.element_ty),
             mask=c_ok[:, None] & q_ok[None, :])


@triton.jit
def _backward_weight(
    x_ptr, ch_ptr, sp_ptr, gy_ptr, gw_ptr,
    B, C, H, W, OC, HO, WO, PH, PW, D, CHUNK,
    K: tl.constexpr, MODE: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Partial sums gw[s, o, c, t] over pixels [s * CHUNK, (s + 1) * CHUNK) of all B * H_out * W_out."""
    KK = K * K
    n = HO * WO
    o_blocks = tl.cdiv(OC, BLOCK_O)
    o = (tl.program_id(0) % o_blocks) * BLOCK_O + tl.arange(0, BLOCK_O)
    c = (tl.program_id(0) // o_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    o_ok, c_ok = o < OC, c < C
    t = tl.program_id(1)
    s = tl.program_id(2)
    end = tl.minimum((s + 1) * CHUNK, B * n)
    acc = tl.zeros((BLOCK_O, BLOCK_C), dtype=ACC)
    for j0 in range(s * CHUNK, end, BLOCK_P):
        j = j0 + tl.arange(0, BLOCK_P)  # pixels of the whole batch
        j_ok = j < end
        b, p = j // n, j % n
        oy, ox = p // WO, p % WO
        xv = _tap(x_ptr, b, c, c_ok, oy, ox, j_ok, t, C, H, W, PH, PW, D, K, ACC)  # BLOCK_C x BLOCK_P
        sp = tl.load(sp_ptr + (b * KK + t) * n + p, mask=j_ok, other=0.0).to(ACC)
        if MODE == 0:
            ach = tl.load(ch_ptr + (b[None, :] * C + c[:, None]) * n + p[None, :],
                          mask=c_ok[:, None] & j_ok[None, :], other=0.0).to(ACC)
            u = xv * _paka(ach, sp[None, :])
        else:
            u = xv * sp[None, :]
        gy = tl.load(gy_ptr + (b[None, :] * OC + o[:, None]) * n + p[None, :], mask=o_ok[:, None] & j_ok[None, :],
                     other=0.0)  # BLOCK_O x BLOCK_P
        acc += tl.dot(gy.to(DOT), tl.trans(u.to(DOT)), input_precision=PRECISION, out_dtype=ACC)
    tl.store(gw_ptr + ((s * OC + o[:, None]) * C + c[None, :]) * KK + t, acc, mask=o_ok[:, None] & c_ok[None, :])


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float64: tl.float64}


def _block(size: int, most: int) -> int:
    """A power-of-two block of at least 16 (the smallest tl.dot) covering `size`, at most `most`."""
    return min(most, max(16, triton.next_power_of_2(size)))


def _config(x: torch.Tensor, mod: Modulation, geo: ConvGeometry) -> dict:
    """The constexpr arguments shared by the kernels."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    tf32 = x.dtype == torch.float32 and x.is_cuda and torch.backends.cudnn.allow_tf32
    return dict(
        K=geo.kernel_size, MODE=PAKA if mod.kind == "logits" else KERNEL, ACC=_TL[acc], DOT=_TL[x.dtype],
        PRECISION="tf32" if tf32 else "ieee", BLOCK_P=BLOCK_P, BLOCK_C=_block(geo.in_channels, 32),
    )


def _sizes(x: torch.Tensor, geo: ConvGeometry) -> tuple[int, ...]:
    """C, H, W, O, H_out, W_out, pad_top, pad_left, dilation: the kernels' runtime sizes."""
    return (geo.in_channels, x.shape[2], x.shape[3], geo.out_channels, geo.out_height, geo.out_width,
            *geo.padding, geo.dilation)


def _on(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it x's (nothing to do for the interpreter's CPU tensors)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _weight_split(pixels: int, tiles: int, device: torch.device) -> int:
    """Into how many chunks the weight gradient's sum over `pixels` is split (`tiles` programs per chunk)."""
    if device.type == "cuda":
        target = WEIGHT_PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    else:  # the interpreter: a few chunks, so that the split is exercised
        target = 3 * tiles
    return max(1, min(triton.cdiv(target, tiles), triton.cdiv(pixels, BLOCK_P)))


def forward(call: ConvCall, bias: torch.Tensor | None) -> torch.Tensor:  # B x O x H_out x W_out
    """y in one kernel: tiles of (output channels x pixels)."""
    x, weight, mod, geo = call
    assert mod.kind in ("logits", "kernel")
    cfg = _config(x, mod, geo)
    block_o = _block(geo.out_channels, 64)
    y = x.new_empty(geo.batch, geo.out_channels, geo.out_height, geo.out_width)
    grid = (triton.cdiv(geo.out_height * geo.out_width, BLOCK_P), triton.cdiv(geo.out_channels, block_o), geo.batch)
    ch = mod.sp if mod.ch is None else mod.ch  # an unused pointer for PAC
    with _on(x):
        _forward[grid](x, weight, y if bias is None else bias, ch, mod.sp, y, *_sizes(x, geo),
                       HAS_BIAS=bias is not None, BLOCK_O=block_o, **cfg)
    return y


def backward(call: ConvCall, grad_y: torch.Tensor, needs: Needs) -> Grads:  # grad_y: B x O x H_out x W_out
    """The gradients in ``needs``, one kernel each for the modulation's (both at once), x's and the weight's;
    the weight's partial sums (float32 for half precision) added afterwards."""
    x, weight, mod, geo = call
    need_x, need_w, need_ch, need_sp = needs
    cfg = _config(x, mod, geo)
    grad_y = grad_y.contiguous()
    ch = mod.sp if mod.ch is None else mod.ch
    sizes = _sizes(x, geo)
    b, c, o, kk = geo.batch, geo.in_channels, geo.out_channels, geo.taps
    pixels = geo.out_height * geo.out_width
    block_o = _block(o, 32)
    grad_x = grad_w = grad_ch = grad_sp = None
    with _on(x):
        if need_ch or need_sp:
            grad_sp = torch.empty_like(mod.sp)
            grad_ch = torch.empty_like(mod.ch) if mod.ch is not None else grad_sp  # PAC: an unused pointer
            _backward_modulation[(triton.cdiv(pixels, BLOCK_P), b)](
                x, weight, ch, mod.sp, grad_y, grad_ch, grad_sp, *sizes, KK_P2=triton.next_power_of_2(kk),
                BLOCK_O=block_o, **cfg)
            grad_ch = grad_ch if need_ch and mod.ch is not None else None
            grad_sp = grad_sp if need_sp else None
        if need_x:
            grad_x = torch.empty_like(x)
            grid = (triton.cdiv(x.shape[2] * x.shape[3], BLOCK_P), triton.cdiv(c, cfg["BLOCK_C"]), b)
            _backward_input[grid](weight, ch, mod.sp, grad_y, grad_x, *sizes, BLOCK_O=block_o, **cfg)
        if need_w:
            block_ow = _block(o, 64)
            tiles = triton.cdiv(o, block_ow) * triton.cdiv(c, cfg["BLOCK_C"])
            split = _weight_split(b * pixels, tiles * kk, x.device)
            chunk = triton.cdiv(triton.cdiv(b * pixels, split), BLOCK_P) * BLOCK_P
            split = triton.cdiv(b * pixels, chunk)
            partial = torch.empty(split, o, c, kk, dtype=accumulation_dtype(x.dtype), device=x.device)
            _backward_weight[(tiles, kk, split)](x, ch, mod.sp, grad_y, partial, b, *sizes, chunk,
                                                 BLOCK_O=block_ow, **cfg)
            grad_w = partial.sum(0).view(weight.shape)
    return grad_x, grad_w, grad_ch, grad_sp
