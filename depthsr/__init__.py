"""depthsr: colour-guided depth map super-resolution with pixel adaptive kernel attention."""
from depthsr.errors import DepthSRError

__version__ = "0.1.0"
__all__ = ["DepthSRError", "__version__", "load"]


def load(name: str = "default", device: str = "auto"):
    """An upsampler: `depthsr.load("default")(lr, rgb)` -> depth in `lr`'s units (see depthsr.methods.api).
    `name`: 'default', a model file or a baseline; `device`: 'auto', 'cpu', 'cuda' or 'cuda:N'."""
    from depthsr.methods.api import load as _load  # torch is imported on first use, not with the package

    return _load(name, device)
