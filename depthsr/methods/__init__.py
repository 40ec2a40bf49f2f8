"""Every upsampling method under one interface (`method.py`): the classical baselines (`baselines.py`) and
trained networks (`network.py`), whose model files are read and written by `model_file.py` (with
`digests.py` and `torch_file.py`); `api.py` is the short Python API behind `depthsr.load`."""
from __future__ import annotations

from depthsr.methods.baselines import BASELINES, Bicubic, GuidedFilter, JointBilateral
from depthsr.methods.method import Method, resolve_device
from depthsr.methods.network import NetworkMethod, load_network, resolve_method

__all__ = ["BASELINES", "Bicubic", "GuidedFilter", "JointBilateral", "Method", "NetworkMethod", "load_network",
           "resolve_device", "resolve_method"]
