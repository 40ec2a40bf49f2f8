"""Operators: each fast path with its reference beside it."""
from depthsr.ops.pac import gaussian_kernel, pac_conv2d, pac_conv2d_reference
from depthsr.ops.paka import paka_conv2d, paka_conv2d_reference

__all__ = ["gaussian_kernel", "pac_conv2d", "pac_conv2d_reference", "paka_conv2d", "paka_conv2d_reference"]
