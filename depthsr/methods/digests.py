"""Digests of model files: the file's sha256 and its `NAME.sha256` record (`sha256sum` format), and a digest
of the weights themselves (stored in a .safetensors, checked on load)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from depthsr.data.io import atomic_write
from depthsr.errors import DepthSRError


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes of the weights (stored in the file, checked on load)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{list(state[key].shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sha256_record(path: str | Path) -> Path:
    """Where the sha256 of a model file is recorded: NAME.sha256 beside it (`sha256sum -c` reads it)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_sha256_record(path: str | Path) -> str:
    """Record the sha256 of a model file beside it (NAME.sha256, `sha256sum` format); returns the hash."""
    path = Path(path)
    sha = file_sha256(path)
    atomic_write(sha256_record(path), lambda tmp: Path(tmp).write_text(f"{sha}  {path.name}\n"))
    return sha


def read_sha256_record(path: str | Path) -> str:
    """The sha256 recorded for a model file (by write_sha256_record)."""
    record = sha256_record(path)
    if not record.is_file():
        raise DepthSRError(f"{path}: no sha256 record ({record.name}) to verify it against")
    words = record.read_text(errors="replace").split()
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0].lower()):
        raise DepthSRError(f"{record}: not a sha256 record (expected '<64 hex digits>  {Path(path).name}')")
    return words[0].lower()


def verify_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if actual != expected.lower():
        raise DepthSRError(f"{path}: sha256 {actual[:16]}... is not the recorded {expected[:16]}...: the file is "
                           "corrupt or was altered; download or reinstall it")

