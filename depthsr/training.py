"""Lightning callbacks and helpers the CLI wires in."""
from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from depthsr.errors import DepthSRError
from depthsr.methods.torch_file import read_torch_file


def rng_state() -> dict:
    """This process's generators: python, numpy, torch's CPU one and, once CUDA is in use, the current GPU's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {  # plain types and tensors only: Lightning loads with weights_only=True
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the device this process (rank) works on
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class RNGState(pl.Callback):
    """Saves every generator of every process (python, numpy, torch CPU and CUDA; one entry per rank, gathered to
    the rank that writes the checkpoint) and on resume gives each rank back its own, so an interrupted run
    continues exactly as an uninterrupted one would. A run resumed on a different number of processes restores
    the ranks the checkpoint has and warns. (Evaluation loaders draw from their own generators, so the sanity
    check of a resumed run does not shift the stream.)"""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        states = [rng_state()]
        if _distributed():  # every rank saves a checkpoint at the same points (ModelCheckpoint), so all meet here
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, rng_state())
        checkpoint["rng_state"] = {"ranks": states}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if not state:
            return
        states = state.get("ranks", [state])  # checkpoints before per-rank states held one process's
        rank = torch.distributed.get_rank() if _distributed() else 0
        world = torch.distributed.get_world_size() if _distributed() else 1
        if len(states) != world:
            warnings.warn(f"the checkpoint holds the random state of {len(states)} process(es), this run has {world}: "
                          "the resumed run will not repeat the interrupted one exactly", stacklevel=2)
        if rank < len(states):
            set_rng_state(states[rank])


def resume_at_next_epoch(checkpoint: dict, step_bounded: bool) -> None:
    """Make a checkpoint saved at the end of an epoch (where ModelCheckpoint saves) resume at the start of the
    next epoch, bounded by epochs or by steps alike.

    Lightning (2.x) resumes a run bounded by ``max_steps`` as a restart inside the saved epoch: it re-enters the
    finished epoch, fetches a batch and draws the data order once more, and runs one empty iteration that
    shifts the logged step by one, so the resumed run drifts from the uninterrupted one. Marking the saved
    epoch completed and the next one unstarted is what an epoch-bounded resume does itself; under
    ``max_steps`` the empty iteration's step is taken back."""
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs, batches = loop.get("epoch_progress"), loop.get("epoch_loop.batch_progress")
    if not epochs or not batches:
        return
    now = epochs["current"]
    if not (batches["is_last_batch"] and now["ready"] == now["started"] == now["processed"] == now["completed"] + 1):
        return  # saved inside an epoch: Lightning's own restart logic applies
    for part in ("current", "total"):
        epochs[part]["completed"] = epochs[part]["processed"]
    batches["current"] = dict.fromkeys(batches["current"], 0)
    batches["is_last_batch"] = False
    if step_bounded:
        loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


class LogConfig(SaveConfigCallback):
    """Saves the resolved CLI config beside the run and puts all of it in the logger's run config (W&B)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class DepthSRCLI(LightningCLI):
    """LightningCLI reading `--ckpt_path` as depthsr reads every file: tensors and plain types only. A local file
    that needs full unpickling is refused in one line before Lightning opens it, and the trainer loads with
    weights_only=True whatever the installed torch's default (and for remote paths, where Lightning's is False)."""

    def parse_arguments(self, parser, args) -> None:
        with warnings.catch_warnings():  # the depthsr command passes its own argv on purpose: no warning for it
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if "weights_only" in config:  # Lightning >= 2.6
            if config["weights_only"] is False:
                raise DepthSRError("--weights_only false: depthsr loads checkpoints with tensors and plain types "
                                   "only (full unpickling can run code from the file)")
            config["weights_only"] = True
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            read_torch_file(ckpt_path)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        check = getattr(self.datamodule, "check", None)
        if check is not None and self.subcommand:
            check(self.subcommand)  # the data first: one line, before the Trainer starts
        return super().instantiate_trainer(**kwargs)
