"""Stage 0 of the shipped models, taken from the git history: the default of commit b21d03f, re-exported unchanged as
safetensors in e05aea1. `scripts/train_default.sh` fine-tunes it; `scripts/ratio_options.py` measures it.

    python scripts/stage0.py OUT.safetensors
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE0 = "e05aea1:checkpoints/depthsr_default.safetensors"
STAGE0_SHA256 = "6ae610bbe4cac85dc24e6fa7a951bd8fd0fde74e4211241b8b8b421e33e22d89"


def write_stage0(out: Path) -> Path:
    """Write stage 0 to `out` (a one-line error, nothing written, where the history does not give its digest)."""
    data = subprocess.run(["git", "show", STAGE0], cwd=ROOT, check=True, capture_output=True).stdout
    digest = hashlib.sha256(data).hexdigest()
    if digest != STAGE0_SHA256:
        sys.exit(f"{STAGE0}: sha256 {digest}, expected {STAGE0_SHA256}")
    part = out.with_name(out.name + ".part")
    part.write_bytes(data)
    part.replace(out)  # whole or not at all
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/stage0.py OUT.safetensors")
    write_stage0(Path(sys.argv[1]))
