"""What a training run ran on: the machine and the package versions that decide its bits.

Training is deterministic on one machine; on another (another CPU's vector width, other package versions) the same
recipe makes other weights. A checkpoint records this (`depthsr.lit.DSRModule.on_save_checkpoint`) and
`depthsr export` carries it into the model file's `source`, so two runs of a recipe can be told apart."""
from __future__ import annotations

import platform
from importlib import metadata

import torch

PACKAGES = ("torch", "numpy", "pytorch-lightning", "kornia", "opencv-python-headless", "scikit-image", "h5py")


def cpu_description() -> str:
    """The first processor's `model name` and `flags` lines of /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return "".join([line for line in f if line.startswith(("model name", "flags"))][:2])
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in cpu_description().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def training_environment() -> dict[str, str | int]:
    """The CPU (model, vector instructions PyTorch uses, threads), the GPU if any, Python and the packages."""
    env: dict[str, str | int] = {
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = str(torch.version.cuda)
    return {**env, **{package: _version(package) for package in PACKAGES}}
