"""Networks as methods: loading checkpoints (Lightning .ckpt or the small shipped .pt) and running them
through the shared method wrapper (normalisation, invalid pixels, tiling)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from depthsr.baselines import BASELINES
from depthsr.errors import DepthSRError
from depthsr.method import Method
from depthsr.models import build_model

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "depthsr_default.pt"


class NetworkMethod(Method):
    """A trained network under the method interface."""

    def __init__(self, model: nn.Module, name: str = "network", scales: tuple[int, ...] | None = None) -> None:
        self.model, self.name, self.scales = model.eval(), name, scales

    def predict(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        return self.model(lr.to(param), rgb.to(param)).to(lr.dtype)


def save_network(path: str | Path, model: nn.Module, model_name: str, model_kwargs: dict,
                 scales: list[int], info: dict | None = None) -> None:
    """A small stand-alone checkpoint: architecture, weights, the scales it was trained for."""
    torch.save({"model": model_name, "kwargs": model_kwargs, "scales": list(scales),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "info": info or {}},
               path)


def load_network(path: str | Path) -> tuple[nn.Module, tuple[int, ...] | None]:
    """(model, trained scales) from a shipped .pt or a Lightning .ckpt of `depthsr fit`."""
    path = Path(path)
    if not path.is_file():
        raise DepthSRError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise DepthSRError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise DepthSRError(f"{path}: not a depthsr checkpoint")
    if "hyper_parameters" in ckpt:  # Lightning
        hp = ckpt["hyper_parameters"]
        name = hp.get("model", "paka")
        kwargs = {"preset": hp.get("preset", "small"), **dict(hp.get("model_kwargs") or {})}
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        scales = (ckpt.get("datamodule_hyper_parameters") or {}).get("scales")
    elif "state_dict" in ckpt and "model" in ckpt:
        name, kwargs, state, scales = ckpt["model"], ckpt.get("kwargs", {}), ckpt["state_dict"], ckpt.get("scales")
    else:
        raise DepthSRError(f"{path}: not a depthsr checkpoint (no model state)")
    model = build_model(name, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise DepthSRError(f"{path}: weights do not fit the '{name}' network {kwargs}") from None
    return model.eval(), tuple(scales) if scales else None


def resolve_method(spec: str) -> Method:
    """A method from a name: a baseline ('bicubic', 'jbu', 'guided'), 'default' or a checkpoint path."""
    if spec in BASELINES:
        return BASELINES[spec]()
    path = DEFAULT_CHECKPOINT if spec == "default" else Path(spec)
    if spec != "default" and not path.exists():
        raise DepthSRError(f"unknown method {spec!r}: not one of {', '.join([*BASELINES, 'default'])} "
                           "and no such checkpoint file")
    model, scales = load_network(path)
    return NetworkMethod(model, "default" if spec == "default" else path.stem, scales)
