"""depthsr: colour-guided depth map super-resolution with pixel adaptive kernel attention."""
from depthsr.errors import DepthSRError

__version__ = "0.1.0"
__all__ = ["DepthSRError", "__version__"]
