"""The project's exception: one clear line a user can act on."""
from __future__ import annotations


class DepthSRError(ValueError):
    """An error the user caused (bad file, wrong shape, bad option); its message is one line."""
