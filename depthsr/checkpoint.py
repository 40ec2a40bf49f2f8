"""Networks as methods: model files read without running code from them, shareable models written as
.safetensors with their provenance, and trained networks run through the shared method wrapper.

Model files:
- `.safetensors` (what `depthsr export` writes, the shipped default): weights, and in the metadata (JSON
  values) the architecture and its keywords, trained scales, units convention, the depthsr version that wrote
  it, recipe, training data, headline numbers and a digest of the weights. A `NAME.safetensors.sha256` beside
  it (`sha256sum` format) is checked when present; the shipped default must have one.
- `.pt` (earlier exports) and Lightning `.ckpt` (`depthsr fit`): read with `torch.load(weights_only=True)`,
  tensors and plain types only. A file that needs full unpickling is refused, since unpickling can run code.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from depthsr import __version__
from depthsr.baselines import BASELINES
from depthsr.data.io import atomic_write
from depthsr.errors import DepthSRError
from depthsr.method import Method
from depthsr.models import MODEL_NAMES, GuidedDSRNet, build_model

# package data, so a non-editable install ships it; the repo's checkpoints/ links to the same files
CHECKPOINT_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "depthsr_default.safetensors"
FORMAT = "depthsr-model/1"  # the metadata layout below; a reader refuses any other
UNITS = ("depth in and out in the caller's own units; the network sees the LR depth min-max normalised per "
         "image (norm: lr), done by depthsr.method, and its output is mapped back")
_CORE = ("format", "architecture", "kwargs", "scales", "units", "depthsr_version", "weights_sha256")


class NetworkMethod(Method):
    """A trained network under the method interface."""

    def __init__(self, model: nn.Module, name: str = "network", scales: tuple[float, ...] | None = None,
                 ratio_range: tuple[float, float] | None = None) -> None:
        self.model, self.name, self.scales, self.ratio_range = model.eval(), name, scales, ratio_range

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        return self.model(lr.to(param), rgb.to(param)).to(lr.dtype)


@dataclass
class ModelFile:
    """What a model file holds, before a network is built from it."""

    name: str
    kwargs: dict
    state: dict[str, torch.Tensor]
    scales: tuple[float, ...] | None
    writer: str  # the depthsr version that wrote it, or a phrase saying it is not recorded
    info: dict = field(default_factory=dict)  # provenance: recipe, training_data, results, source, units


# ---------------------------------------------------------------------------------------------- digests


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


# ---------------------------------------------------------------------------------------------- writing


def _plain(value):
    """A JSON-safe copy of hyper-parameters and the like (tensors and other objects become numbers/strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def as_scales(scales) -> tuple[float, ...] | None:
    """Scales as a tuple, whole numbers as ints (4.0 -> 4); None when there are none."""
    if not scales:
        return None
    return tuple(int(s) if float(s).is_integer() else float(s) for s in scales)


def save_network(path: str | Path, model: nn.Module, model_name: str, model_kwargs: dict,
                 scales: list[float], info: dict | None = None) -> str:
    """A shareable model file: the weights as .safetensors and, in its metadata (JSON strings), the
    architecture and keywords, the scales it was trained for, the units convention, this depthsr's version
    and `info` (recipe, training_data, results, source). Written atomically; returns the file's sha256."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise DepthSRError(f"{path}: depthsr writes models as .safetensors (name it NAME.safetensors)")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {**_plain(info or {}), "format": FORMAT, "architecture": model_name, "kwargs": _plain(model_kwargs),
            "scales": list(as_scales(scales) or []), "units": UNITS, "depthsr_version": __version__,
            "weights_sha256": weights_sha256(state)}
    blob = _sorted_header(save(state, metadata={k: json.dumps(v, sort_keys=True) for k, v in meta.items()}))
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return file_sha256(path)


def _sorted_header(blob: bytes) -> bytes:
    """The same .safetensors with its metadata in key order (safetensors writes it in hash order), so one
    model exported twice is the same bytes, with the same sha256."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format's padding: tensor data stays 8-byte aligned
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


# ---------------------------------------------------------------------------------------------- reading


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


def _from_torch(path: Path) -> ModelFile:
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict):
        raise DepthSRError(f"{path}: not a depthsr checkpoint")
    if "hyper_parameters" in ckpt:  # Lightning, from `depthsr fit`
        hp = dict(ckpt["hyper_parameters"] or {})
        kwargs = {"preset": hp.get("preset", "small"), **dict(hp.get("model_kwargs") or {})}
        state = {k[len("model."):]: v for k, v in (ckpt.get("state_dict") or {}).items() if k.startswith("model.")}
        data = dict(ckpt.get("datamodule_hyper_parameters") or {})
        info = {"recipe": {"model": _plain(hp), "data": _plain(data)}, "training_data": {"datamodule": _plain(data)},
                **({"ratio_range": _plain(data.get("ratio_range"))} if data.get("random_ratios") else {}),
                "source": {"file": path.name, "sha256": file_sha256(path), "kind": "lightning checkpoint",
                           "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}}
        return ModelFile(hp.get("model", "paka"), kwargs, state, as_scales(data.get("scales")),
                         "(version not recorded in Lightning checkpoints)", info)
    if "state_dict" in ckpt and "model" in ckpt:  # a .pt of an earlier `depthsr export`
        info = dict(ckpt.get("info") or {})
        writer = str(info.get("depthsr_version", "(an earlier version, not recorded)"))
        info = {**_plain(info), "source": {"file": path.name, "sha256": file_sha256(path), "kind": "depthsr .pt"}}
        return ModelFile(str(ckpt["model"]), dict(ckpt.get("kwargs") or {}), ckpt["state_dict"],
                         as_scales(ckpt.get("scales")), writer, info)
    raise DepthSRError(f"{path}: not a depthsr checkpoint (no model state)")


def model_info(path: str | Path) -> dict:
    """The metadata of a depthsr .safetensors, decoded (architecture, scales, version, provenance...)."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DepthSRError(f"{path}: not a readable .safetensors file ({reason})") from None
    try:
        meta = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError:
        raise DepthSRError(f"{path}: not a depthsr model (its metadata is not JSON)") from None
    if "format" not in meta or "depthsr_version" not in meta:
        raise DepthSRError(f"{path}: not a depthsr model (no depthsr metadata; write one with `depthsr export`)")
    return meta


def _from_safetensors(path: Path) -> ModelFile:
    meta = model_info(path)
    writer = str(meta["depthsr_version"])
    if meta["format"] != FORMAT:
        raise DepthSRError(f"{path}: written by depthsr {writer} in format {meta['format']!r}, which this depthsr "
                           f"{__version__} cannot read ({FORMAT!r}); upgrade depthsr")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DepthSRError(f"{path}: not a readable .safetensors file ({reason})") from None
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise DepthSRError(f"{path}: its weights do not match the digest recorded in it: the file is corrupt or "
                           "was altered")
    if not isinstance(meta.get("architecture"), str) or not isinstance(meta.get("kwargs"), dict):
        raise DepthSRError(f"{path}: written by depthsr {writer} without an architecture this depthsr "
                           f"{__version__} understands; upgrade depthsr")
    info = {k: v for k, v in meta.items() if k not in _CORE}
    return ModelFile(meta["architecture"], meta["kwargs"], state, as_scales(meta.get("scales")), writer, info)


def read_model_file(path: str | Path, sha256: str | None = None) -> ModelFile:
    """What a model file holds (.safetensors, .pt or Lightning .ckpt), checked against `sha256` if given, else
    against its NAME.sha256 record when one is beside it. Nothing in the file is run."""
    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such checkpoint")
    if sha256 is None and sha256_record(path).is_file():
        sha256 = read_sha256_record(path)
    if sha256 is not None:
        verify_sha256(path, sha256)
    return _from_safetensors(path) if path.suffix.lower() == ".safetensors" else _from_torch(path)


def _known_keywords() -> set[str]:
    params = inspect.signature(GuidedDSRNet).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {"preset", *(name for name, p in params.items() if p.kind in kinds)} - {"conv"}


def build_network(path: str | Path, source: ModelFile) -> nn.Module:
    """The network a model file describes, its weights loaded; one line naming the writer's version when this
    depthsr does not know the architecture or a keyword."""
    name, kwargs, writer = source.name, source.kwargs, source.writer
    if name not in MODEL_NAMES:
        raise DepthSRError(f"{path}: written by depthsr {writer} for a network {name!r} that this depthsr "
                           f"{__version__} does not know (it knows {', '.join(MODEL_NAMES)}); upgrade depthsr")
    unknown = sorted(set(kwargs) - _known_keywords())
    if unknown:
        raise DepthSRError(f"{path}: written by depthsr {writer} with network keyword(s) {', '.join(unknown)} that "
                           f"this depthsr {__version__} does not know; upgrade depthsr")
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise DepthSRError(f"{path}: written by depthsr {writer}: {str(err).splitlines()[0]} in this depthsr "
                           f"{__version__}; upgrade depthsr") from None
    try:
        model.load_state_dict(source.state)
    except RuntimeError:
        raise DepthSRError(f"{path}: weights do not fit the '{name}' network {kwargs} of this depthsr {__version__} "
                           f"(written by depthsr {writer})") from None
    return model.eval()


def load_network(path: str | Path, sha256: str | None = None) -> tuple[nn.Module, tuple[float, ...] | None]:
    """(model, trained scales) from a .safetensors of `depthsr export`, an earlier .pt or a Lightning .ckpt of
    `depthsr fit`; `sha256`, if given, must be the file's (else a NAME.sha256 beside it is checked)."""
    source = read_model_file(path, sha256)
    return build_network(path, source), source.scales


def resolve_method(spec: str) -> Method:
    """A method from a name: a baseline ('bicubic', 'jbu', 'guided'), 'default' or a checkpoint path."""
    if spec in BASELINES:
        return BASELINES[spec]()
    if spec == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            raise DepthSRError(f"{DEFAULT_CHECKPOINT}: the shipped default model is missing; reinstall depthsr "
                               "or pass a model file")
        return network_method(DEFAULT_CHECKPOINT, "default", read_sha256_record(DEFAULT_CHECKPOINT))
    path = Path(spec)
    if not path.exists():
        raise DepthSRError(f"unknown method {spec!r}: not one of {', '.join([*BASELINES, 'default'])} "
                           "and no such checkpoint file")
    return network_method(path, path.stem)


def network_method(path: Path, name: str, sha256: str | None = None) -> NetworkMethod:
    """The network of a model file under the method interface, with the ratios it was trained for."""
    source = read_model_file(path, sha256)
    ratio_range = source.info.get("ratio_range")
    return NetworkMethod(build_network(path, source), name, source.scales,
                         tuple(ratio_range) if ratio_range else None)
