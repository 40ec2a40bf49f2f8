"""The modulation m(c, t, i) of the modulated convolution, and the forms in which the engines read it.

  * PAKA:  m(c, t, i) = 1 + tanh(a_ch[c](i) + a_sp[t](i)), read as
      - ``factors``: (exp(-2 a_ch), exp(-2 a_sp)), since 1 + tanh(a + b) = 2 / (1 + e^(-2a) e^(-2b)): one
        exponential per channel and one per tap. CPU float32/float64 only, and only when every logit lies
        within +-``FACTORISED_LIMIT`` (always, for trained layers: tanh saturates long before);
      - ``logits``: (a_ch, a_sp) themselves, the tanh taken per channel and tap (everywhere else: CUDA, half
        precision, huge logits). No decision depends on the values there, so nothing waits for the device.
  * PAC:   m(c, t, i) = kernel[t](i), shared by all channels: ``kernel`` (ch is None).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch

Kind = Literal["factors", "logits", "kernel"]

# Largest |logit| for which the factors exp(-2 a) are normal float32 numbers (e^-80 > 1.2e-38, e^80 < 3.4e38).
# Their product may over- or underflow: then 2 / (1 + product) is 0 or 2, the limits 1 + tanh(z) has there.
FACTORISED_LIMIT = 40.0


class Modulation(NamedTuple):
    """What an engine reads of the modulation: ``kind`` says how ``ch`` and ``sp`` define m."""

    kind: Kind
    ch: torch.Tensor | None  # B x C x H_out x W_out (PAKA), None (PAC)
    sp: torch.Tensor  # B x k*k x H_out x W_out


def modulation_reference(
    mode: Literal["paka", "kernel"], a_ch: torch.Tensor | None, a_sp: torch.Tensor
) -> torch.Tensor:  # B x (C or 1) x k*k x H_out x W_out
    """The full modulation tensor m(c, t, i), for the reference."""
    if mode == "paka":
        assert a_ch is not None
        return 1 + torch.tanh(a_ch[:, :, None] + a_sp[:, None])
    return a_sp[:, None]


def factorisable(x: torch.Tensor) -> bool:
    """Whether PAKA on tensors like x may read its modulation as factors (CPU, float32/float64)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def paka_modulation(
    a_ch: torch.Tensor,  # B x C x H_out x W_out
    a_sp: torch.Tensor,  # B x k*k x H_out x W_out
) -> Modulation:
    """PAKA's modulation as factors where ``factorisable`` and every logit is within range, else as logits.

    The range check reads the values (one comparison on the CPU); off the CPU it is never made.
    """
    if not factorisable(a_ch):
        return Modulation("logits", a_ch, a_sp)
    if float(torch.stack([*torch.aminmax(a_ch), *torch.aminmax(a_sp)]).abs().max()) > FACTORISED_LIMIT:
        return Modulation("logits", a_ch, a_sp)
    return Modulation("factors", torch.mul(a_ch, -2).exp_(), torch.mul(a_sp, -2).exp_())
