"""Reading PyTorch files (.pt of earlier exports, Lightning .ckpt) without running code from them:
`torch.load(weights_only=True)`, tensors and plain types only; a file that needs full unpickling is refused in
one line before anything in it runs."""
from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch

from depthsr.errors import DepthSRError


def _well_formed_pickle(path: Path) -> bool:
    """Whether the file's pickle (a torch zip's data.pkl, or the file itself) parses as one; only its opcodes
    are read, nothing is built or run."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            data = path.read_bytes()
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
        return True
    except Exception:  # noqa: BLE001 - not a pickle we can parse: an unreadable file, not a refused one
        return False


def _refusal(path: Path, err: Exception) -> DepthSRError:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f"it references {found.group(1)}" if found else "it holds more than tensors and plain values"
    return DepthSRError(f"{path}: refused: loading it needs full unpickling ({what}), which can run code from the "
                        "file; nothing was run. Ask its author to re-export it with `depthsr export` (.safetensors)")


def read_torch_file(path: str | Path) -> object:
    """A .pt/.ckpt loaded with tensors and plain types only (torch.load weights_only=True); a file that needs
    full unpickling is refused with one line, before anything in it runs."""
    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol it then refuses: one line, ours
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if _well_formed_pickle(path):
            raise _refusal(path, err) from None
        raise DepthSRError(f"{path}: not a readable checkpoint (not a PyTorch file, or damaged)") from None
    except Exception as err:  # noqa: BLE001 - any other failure is a bad file to the user
        raise DepthSRError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
