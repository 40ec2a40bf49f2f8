"""Lightning callbacks and helpers the CLI wires in."""
from __future__ import annotations

import os
import random
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from depthsr.errors import DepthSRError
from depthsr.methods.torch_file import read_torch_file
from depthsr.wandb_runs import training_run, wandb_online


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
    """Saves the resolved CLI config beside the run and puts all of it in the logger's run config (W&B): the
    sections as they are (`model` is the model section; Lightning's own flat hyper-parameter logging is off).
    In W&B, `val/rmse` is summarised as its minimum."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
            if isinstance(logger, WandbLogger):
                logger.experiment.define_metric("val/rmse", summary="min")


class WandbRunInfo(pl.Callback):
    """Records the W&B run (id, name, group, project) in every checkpoint, so `depthsr test|validate` of that
    checkpoint can link its own run to the one that trained it."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.global_rank == 0:
                run = logger.experiment
                checkpoint["wandb_run"] = {"id": run.id, "name": run.name, "group": run.group or "",
                                           "project": run.project}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_wandb(logger: WandbLogger, subcommand: str, model: str, scales: list, recipe: str,
                    trained_by: dict | None = None) -> None:
    """Before the run starts: a group per recipe (the configured group, else the configured name, else the
    config file's stem), a run name that says model, scales and time, checkpoints uploaded as artifacts when
    online, and for test/validate the training run it evaluates (group, and `evaluates_run` in the config)."""
    init = logger._wandb_init  # read by wandb.init when the run starts (first use of logger.experiment)
    group = init.get("group") or init.get("name") or recipe
    ratios = "-".join(f"{float(s):g}" for s in scales)
    name = f"{model} x{ratios} {group} {datetime.now():%Y-%m-%d %H:%M:%S}"
    if subcommand != "fit":
        init["job_type"] = subcommand
        name = f"{subcommand} {name}"
        if trained_by:
            group = trained_by.get("group") or group
            init["config"] = {**(init.get("config") or {}), "evaluates_run": trained_by}
            init["notes"] = f"evaluates W&B run {trained_by.get('id')} ({trained_by.get('name')})"
    elif wandb_online() and not logger._offline and not logger._log_model:
        logger._log_model = True  # best and latest checkpoints, uploaded when training ends
    init["group"], init["name"] = group, name
    logger._name = name
    if init.get("dir"):  # W&B's service keeps the cwd of the first run in a process: relative dirs would follow it
        init["dir"] = logger._save_dir = os.path.abspath(init["dir"])
    if init.get("anonymous") is None:
        init.pop("anonymous", None)  # wandb warns about the key even when it is None


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

    def before_instantiate_classes(self) -> None:
        data = (self.config[self.subcommand] if self.subcommand else self.config).get("data")
        if data is not None and data.get("num_workers", 0) > usable_cores():
            data["num_workers"] = usable_cores()  # more loader workers than cores only slows training down

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        check = getattr(self.datamodule, "check", None)
        if check is not None and self.subcommand:
            check(self.subcommand)  # the data first: one line, before the Trainer starts
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.loggers and not any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks):
            trainer.callbacks.append(LearningRateMonitor(logging_interval="step"))  # logged as train/lr
        config = self.config[self.subcommand] if self.subcommand else self.config
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger) and lg._experiment is None]
        if wandb_loggers:
            trainer.callbacks.append(WandbRunInfo())
            recipe = Path(str(config["config"][-1])).stem if config.get("config") else "depthsr"
            trained_by = None
            if self.subcommand != "fit" and config.get("ckpt_path") and Path(config["ckpt_path"]).is_file():
                trained_by = training_run(config["ckpt_path"])
            for logger in wandb_loggers:
                configure_wandb(logger, self.subcommand or "fit", config["model"]["model"],
                                config["data"]["scales"] or [4], recipe, trained_by)
        return trainer
