"""Trained networks as methods: the network a model file describes, built and run through the shared method
wrapper; `resolve_method` turns a name (baseline, a shipped model or a model file) into a method."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from depthsr import __version__
from depthsr.errors import DepthSRError
from depthsr.methods.baselines import BASELINES
from depthsr.methods.digests import read_sha256_record
from depthsr.methods.method import Method, normalise
from depthsr.methods.model_file import ModelFile, read_model_file
from depthsr.models import MODEL_NAMES, GuidedDSRNet, build_model
from depthsr.models.input_cleaner import gate_weight
from depthsr.models.noise_level import noise_level
from depthsr.models.self_check import blend, trust

# package data, so a non-editable install ships them; the repo's checkpoints/ links to the same files
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "depthsr_default.safetensors"
# the shipped models by name: 'default' (benchmark protocol) and 'tof' (depth from real time-of-flight sensors)
SHIPPED = {"default": DEFAULT_CHECKPOINT, "tof": CHECKPOINT_DIR / "depthsr_tof.safetensors"}


class NetworkMethod(Method):
    """A trained network under the method interface."""

    def __init__(self, model: nn.Module, name: str = "network", scales: tuple[float, ...] | None = None,
                 ratio_range: tuple[float, float] | None = None) -> None:
        self.model, self.name, self.scales, self.ratio_range = model.eval(), name, scales, ratio_range

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self._run(self.model, lr, rgb)

    @property
    def clean_gate(self) -> tuple[float, float] | None:
        cleaner = getattr(self.model, "cleaner", None)
        return None if cleaner is None else cleaner.gate

    def input_noise(self, lr: torch.Tensor) -> tuple[float, float] | None:
        gate = self.clean_gate
        if gate is None:
            return None
        seen = normalise(lr.reshape(1, 1, *lr.shape[-2:]).double())[0]  # as the network sees it
        noise = noise_level(seen)
        return float(noise[0]), float(gate_weight(noise, gate)[0])

    def _answer(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self._run(self.model.answer, lr, rgb)

    def _run(
        self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lr: torch.Tensor, rgb: torch.Tensor
    ) -> torch.Tensor:
        """`fn` on the inputs moved to the weights' device and dtype; the answer in the inputs' dtype."""
        param = next(self.model.parameters())
        return fn(lr.to(param), rgb.to(param)).to(lr.dtype)

    def _tiled(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """The input cleaned once, whole; the answer in tiles; with the self-check, every tile shares one weight,
        the whole image's: the repeated task runs on the whole input (itself in tiles where large), and the blend
        follows."""
        lr = self._run(self.model.clean, lr, rgb)
        answer = partial(self._in_tiles, self._answer)
        if not self.model.self_check:
            return answer(lr, rgb)
        return blend(answer(lr, rgb), lr, trust(answer, lr, rgb))


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
    """A method from a name: a baseline ('bicubic', 'jbu', 'guided'), a shipped model ('default', 'tof') or a
    checkpoint path."""
    if spec in BASELINES:
        return BASELINES[spec]()
    if spec in SHIPPED:
        path = SHIPPED[spec]
        if not path.is_file():
            raise DepthSRError(f"{path}: the shipped '{spec}' model is missing; reinstall depthsr or pass a model file")
        return network_method(path, spec, read_sha256_record(path))
    path = Path(spec)
    if not path.exists():
        raise DepthSRError(f"unknown method {spec!r}: not one of {', '.join([*BASELINES, *SHIPPED])} "
                           "and no such checkpoint file")
    return network_method(path, path.stem)


def network_method(path: Path, name: str, sha256: str | None = None) -> NetworkMethod:
    """The network of a model file under the method interface, with the ratios it was trained for."""
    source = read_model_file(path, sha256)
    ratio_range = source.info.get("ratio_range")
    return NetworkMethod(build_network(path, source), name, source.scales,
                         tuple(ratio_range) if ratio_range else None)
