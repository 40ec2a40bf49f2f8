"""Lightning callbacks and helpers the CLI wires in."""
from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.cli import SaveConfigCallback


class RNGState(pl.Callback):
    """Saves the python, numpy and torch RNG states in every checkpoint and restores them on resume, so an
    interrupted run continues exactly as an uninterrupted one would. (Evaluation loaders draw from their
    own generators, so the sanity check of a resumed run does not shift the stream.)"""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_state"] = {  # plain types and tensors only: Lightning loads with weights_only=True
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state:
            random.setstate(state["python"])
            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            torch.set_rng_state(state["torch"])


class LogConfig(SaveConfigCallback):
    """Saves the resolved CLI config beside the run and puts all of it in the logger's run config (W&B)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
