"""PAKA and PAC as ``torch.library`` custom ops (namespace ``depthsr``), with fake and autograd registrations.

    depthsr::paka_conv2d(x, weight, bias?, a_ch, a_sp, pad_h, pad_w, dilation) -> (y, m_ch, m_sp, factorised)
    depthsr::paka_conv2d_backward(grad_y, x, weight, m_ch, m_sp, factorised?, pad_h, pad_w, dilation, needs)
        -> (grad_x, grad_weight, grad_a_ch, grad_a_sp)
    depthsr::pac_conv2d(x, weight, bias?, kernel, pad_h, pad_w, dilation) -> y
    depthsr::pac_conv2d_backward(grad_y, x, weight, kernel, pad_h, pad_w, dilation, needs)
        -> (grad_x, grad_weight, grad_kernel)

Each op is opaque to ``torch.compile``: the engine choice (``dispatch``), the native library, Triton and the
value-dependent PAKA factorisation all run inside it, and the fake registrations give the compiler shapes
and dtypes, so a network of these ops compiles to one graph. x, a_ch, a_sp (kernel) and the result share the
compute dtype; weight and bias may be wider (float32 parameters under autocast): they are cast inside, and
their gradients come back in their own dtype, accumulated in float32.

PAKA's forward also returns what its backward reads of the modulation, as batch norm returns its statistics:
on the CPU in float32/float64 the factors exp(-2 a_ch), exp(-2 a_sp) (``factorised`` true), or copies of the
logits when some logit is too large for them (false); elsewhere nothing (empty tensors): the backward then
reads a_ch and a_sp themselves. Gradients not asked for in ``needs`` come back as empty tensors.
"""
from __future__ import annotations

import contextlib

import torch

from depthsr.ops import dispatch
from depthsr.ops.engine import ConvCall, accumulation_dtype
from depthsr.ops.modulation import Modulation, factorisable, paka_modulation
from depthsr.ops.validate import ConvGeometry

Tensor = torch.Tensor


def _geometry(x: Tensor, weight: Tensor, pad_h: int, pad_w: int, dilation: int) -> ConvGeometry:
    b, c, h, w = x.shape
    o, k = weight.shape[0], weight.shape[-1]
    span = dilation * (k - 1)
    return ConvGeometry(b, c, o, k, dilation, (pad_h, pad_w), h + 2 * pad_h - span, w + 2 * pad_w - span)


def _call(x: Tensor, weight: Tensor, mod: Modulation, conv: tuple[int, int, int]) -> ConvCall:
    """What the engines take: contiguous tensors, the weight in x's dtype. conv: (pad_h, pad_w, dilation)."""
    mod = Modulation(mod.kind, None if mod.ch is None else mod.ch.contiguous(), mod.sp.contiguous())
    return ConvCall(x.contiguous(), weight.to(x.dtype).contiguous(), mod, _geometry(x, weight, *conv))


def _output(x: Tensor, weight: Tensor, pad_h: int, pad_w: int, dilation: int) -> Tensor:
    geo = _geometry(x, weight, pad_h, pad_w, dilation)
    return x.new_empty(geo.batch, geo.out_channels, geo.out_height, geo.out_width)


def _empty(x: Tensor) -> Tensor:
    return x.new_empty(0)


def _like(t: Tensor) -> Tensor:
    """A contiguous tensor of t's shape and dtype: the ops always return contiguous tensors."""
    return t.new_empty(t.shape)


def _fake_grads(x: Tensor, inputs: tuple[Tensor, ...], needs: list[bool]) -> tuple[Tensor, ...]:
    """The backward ops' fake results: each input's shape where its gradient is asked for, else empty."""
    return tuple(_like(t) if need else _empty(x) for t, need in zip(inputs, needs))


def _no_autocast(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off inside the ops (the engines choose their own precision) on devices that have autocast."""
    device = x.device.type
    if not torch.amp.is_autocast_available(device):  # meta tensors, for one
        return contextlib.nullcontext()
    return torch.autocast(device, enabled=False)


def _forward(call: ConvCall, bias: Tensor | None) -> Tensor:  # B x O x H_out x W_out
    bias = None if bias is None else bias.to(call.x.dtype).contiguous()
    with _no_autocast(call.x):
        return dispatch.engine(call).forward(call, bias)


def _backward(call: ConvCall, grad_y: Tensor, needs: list[bool], weight_dtype: torch.dtype) -> list[Tensor]:
    """The four gradients (x, weight, a_ch, a_sp) as the backward ops return them: empty where not needed,
    the weight's in the weight's own dtype (summed in float32 for half precision)."""
    with _no_autocast(call.x):
        grads = dispatch.engine(call).backward(call, grad_y.contiguous(), tuple(needs))
    grads = [_empty(call.x) if g is None else g.contiguous() for g in grads]
    if needs[1]:
        grads[1] = grads[1].to(weight_dtype)
    return grads


def _bias_grad(grad_y: Tensor, dtype: torch.dtype) -> Tensor:  # O
    return grad_y.sum((0, 2, 3), dtype=accumulation_dtype(grad_y.dtype)).to(dtype)


# PAKA ---------------------------------------------------------------------------------------------------------


def paka_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, a_ch: Tensor, a_sp: Tensor, pad_h: int, pad_w: int, dilation: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """depthsr::paka_conv2d: (y, m_ch, m_sp, factorised), see the module's docstring."""
    mod = paka_modulation(a_ch.contiguous(), a_sp.contiguous())
    y = _forward(_call(x, weight, mod, (pad_h, pad_w, dilation)), bias)
    if not factorisable(x):
        return y, _empty(x), _empty(x), x.new_zeros((), dtype=torch.bool)
    factorised = mod.kind == "factors"
    m_ch, m_sp = (mod.ch, mod.sp) if factorised else (a_ch.clone(), a_sp.clone())
    return y, m_ch, m_sp, x.new_full((), factorised, dtype=torch.bool)


def paka_backward(
    grad_y: Tensor, x: Tensor, weight: Tensor, m_ch: Tensor, m_sp: Tensor, factorised: Tensor | None,
    pad_h: int, pad_w: int, dilation: int, needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """depthsr::paka_conv2d_backward: (dL/dx, dL/dweight, dL/da_ch, dL/da_sp), empty where not in needs."""
    kind = "factors" if factorised is not None and bool(factorised) else "logits"  # the flag lives on the CPU
    call = _call(x, weight, Modulation(kind, m_ch, m_sp), (pad_h, pad_w, dilation))
    return tuple(_backward(call, grad_y, needs, weight.dtype))


paka_conv2d_op = torch.library.custom_op("depthsr::paka_conv2d", paka_forward, mutates_args=())
paka_conv2d_backward_op = torch.library.custom_op("depthsr::paka_conv2d_backward", paka_backward, mutates_args=())


@paka_conv2d_op.register_fake
def _(x, weight, bias, a_ch, a_sp, pad_h, pad_w, dilation):
    y = _output(x, weight, pad_h, pad_w, dilation)
    m_ch, m_sp = (_like(a_ch), _like(a_sp)) if factorisable(x) else (_empty(x), _empty(x))
    return y, m_ch, m_sp, x.new_empty((), dtype=torch.bool)


@paka_conv2d_backward_op.register_fake
def _(grad_y, x, weight, m_ch, m_sp, factorised, pad_h, pad_w, dilation, needs):
    return _fake_grads(x, (x, weight, m_ch, m_sp), needs)


def _paka_setup(ctx, inputs, output) -> None:
    x, weight, bias, a_ch, a_sp, pad_h, pad_w, dilation = inputs
    _, m_ch, m_sp, factorised = output
    ctx.mark_non_differentiable(m_ch, m_sp, factorised)
    ctx.set_materialize_grads(False)  # else backward gets zero tensors of their size (16 MiB at B4 C64 128^2)
    if factorisable(x):
        ctx.save_for_backward(x, weight, m_ch, m_sp, factorised)
    else:
        ctx.save_for_backward(x, weight, a_ch, a_sp, None)
    ctx.conv = (pad_h, pad_w, dilation)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _paka_backward(ctx, grad_y, *_):
    need_x, need_w, need_b, need_ch, need_sp = ctx.needs_input_grad[:5]
    needs = [need_x, need_w, need_ch, need_sp]
    grads = [None] * 4
    if grad_y is not None and any(needs):  # grad_y None: y took no part in the loss
        x, weight, m_ch, m_sp, factorised = ctx.saved_tensors
        grads = torch.ops.depthsr.paka_conv2d_backward(grad_y, x, weight, m_ch, m_sp, factorised, *ctx.conv, needs)
    gx, gw, gch, gsp = (g if need else None for g, need in zip(grads, needs))
    gb = _bias_grad(grad_y, ctx.bias_dtype) if need_b and grad_y is not None else None
    return gx, gw, gb, gch, gsp, None, None, None


paka_conv2d_op.register_autograd(_paka_backward, setup_context=_paka_setup)


# PAC ----------------------------------------------------------------------------------------------------------


def pac_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, kernel: Tensor, pad_h: int, pad_w: int, dilation: int
) -> Tensor:
    """depthsr::pac_conv2d: y."""
    return _forward(_call(x, weight, Modulation("kernel", None, kernel), (pad_h, pad_w, dilation)), bias)


def pac_backward(
    grad_y: Tensor, x: Tensor, weight: Tensor, kernel: Tensor, pad_h: int, pad_w: int, dilation: int,
    needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """depthsr::pac_conv2d_backward: (dL/dx, dL/dweight, dL/dkernel), empty where not in needs."""
    call = _call(x, weight, Modulation("kernel", None, kernel), (pad_h, pad_w, dilation))
    gx, gw, _, gk = _backward(call, grad_y, [needs[0], needs[1], False, needs[2]], weight.dtype)
    return gx, gw, gk


pac_conv2d_op = torch.library.custom_op("depthsr::pac_conv2d", pac_forward, mutates_args=())
pac_conv2d_backward_op = torch.library.custom_op("depthsr::pac_conv2d_backward", pac_backward, mutates_args=())


@pac_conv2d_op.register_fake
def _(x, weight, bias, kernel, pad_h, pad_w, dilation):
    return _output(x, weight, pad_h, pad_w, dilation)


@pac_conv2d_backward_op.register_fake
def _(grad_y, x, weight, kernel, pad_h, pad_w, dilation, needs):
    return _fake_grads(x, (x, weight, kernel), needs)


def _pac_setup(ctx, inputs, output) -> None:
    x, weight, bias, kernel, pad_h, pad_w, dilation = inputs
    ctx.save_for_backward(x, weight, kernel)
    ctx.conv = (pad_h, pad_w, dilation)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _pac_backward(ctx, grad_y):
    need_x, need_w, need_b, need_k = ctx.needs_input_grad[:4]
    needs = [need_x, need_w, need_k]
    grads = [None] * 3
    if any(needs):
        x, weight, kernel = ctx.saved_tensors
        grads = torch.ops.depthsr.pac_conv2d_backward(grad_y, x, weight, kernel, *ctx.conv, needs)
    gx, gw, gk = (g if need else None for g, need in zip(grads, needs))
    gb = _bias_grad(grad_y, ctx.bias_dtype) if need_b else None
    return gx, gw, gb, gk, None, None, None


pac_conv2d_op.register_autograd(_pac_backward, setup_context=_pac_setup)
