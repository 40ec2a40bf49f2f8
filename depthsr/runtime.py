"""Process-wide settings the ``depthsr`` command applies at start-up (never on importing the library)."""
from __future__ import annotations

import ctypes
import logging
import os
import warnings

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB for reuse instead of returning them to the system.

    PyTorch on the CPU allocates and frees tensors of megabytes every step; by default glibc unmaps or trims
    them and the next step faults the pages in again, which costs CPU training a third or more of its time
    (``scripts/bench_train.py``). Returns whether the setting took (glibc only); ``DEPTHSR_MALLOC=system``
    leaves malloc as it is.
    """
    if os.environ.get("DEPTHSR_MALLOC") == "system":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def quiet_libraries() -> None:
    """The user sees their own output: Lightning's advertising tips (litlogger, litmodels) and the deprecation
    warning Lightning's own code triggers under newer torch are dropped; real warnings stay."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning_utilities.core.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
