"""Model files, read without running code from them and written as shareable .safetensors with their
provenance.

Model files:
- `.safetensors` (what `depthsr export` writes, the shipped default): weights, and in the metadata (JSON
  values) the architecture and its keywords, trained scales, units convention, the depthsr version that wrote
  it, recipe, training data, headline numbers and a digest of the weights. A `NAME.safetensors.sha256` beside
  it (`sha256sum` format) is checked when present; the shipped default must have one.
- `.pt` (earlier exports) and Lightning `.ckpt` (`depthsr fit`): read with `torch.load(weights_only=True)`,
  tensors and plain types only. A file that needs full unpickling is refused, since unpickling can run code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from depthsr import __version__
from depthsr.data.io import atomic_write
from depthsr.errors import DepthSRError
from depthsr.methods.digests import file_sha256, read_sha256_record, sha256_record, verify_sha256, weights_sha256
from depthsr.methods.torch_file import read_torch_file

FORMAT = "depthsr-model/1"  # the metadata layout below; a reader refuses any other
UNITS = ("depth in and out in the caller's own units; the network sees the LR depth min-max normalised per "
         "image (norm: lr), done by depthsr.methods, and its output is mapped back")
_CORE = ("format", "architecture", "kwargs", "scales", "units", "depthsr_version", "weights_sha256")


@dataclass
class ModelFile:
    """What a model file holds, before a network is built from it."""

    name: str
    kwargs: dict
    state: dict[str, torch.Tensor]
    scales: tuple[float, ...] | None
    writer: str  # the depthsr version that wrote it, or a phrase saying it is not recorded
    info: dict = field(default_factory=dict)  # provenance: recipe, training_data, results, source, units


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
                           "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                           **({"environment": _plain(ckpt["environment"])} if ckpt.get("environment") else {})}}
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
