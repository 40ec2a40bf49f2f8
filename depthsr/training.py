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
    interrupted run continues exactly as an uninterrupted one would."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {"python": random.getstate(), "numpy": np.random.get_state(),
                                   "torch": torch.get_rng_state()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state:
            random.setstate(state["python"])
            np.random.set_state(state["numpy"])
            torch.set_rng_state(state["torch"])


class LogConfig(SaveConfigCallback):
    """Saves the resolved CLI config beside the run and puts all of it in the logger's run config (W&B)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
