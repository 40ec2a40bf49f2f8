"""The LightningModule: thin glue between the network, the loss, the optimiser and the metric."""
from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch

from depthsr.environment import training_environment
from depthsr.errors import DepthSRError
from depthsr.evaluate import batch_units, evaluation_step
from depthsr.losses import LossKind, depth_loss
from depthsr.methods.method import normalise
from depthsr.methods.model_file import read_model_file
from depthsr.methods.network import NetworkMethod
from depthsr.metrics import DepthMetrics
from depthsr.models import build_model
from depthsr.training import resume_at_next_epoch
from depthsr.visualize import error_panel


def freeze_all_but(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Only the parameters whose names start with one of `prefixes` are trained; one clear error for a prefix
    that names none."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            parts = sorted({name.split(".")[0] for name in names})
            raise DepthSRError(f"--model.train_only {prefix!r}: no parameter of the network starts with it "
                               f"(its parts: {', '.join(parts)})")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))


class DSRModule(pl.LightningModule):
    """Trains and evaluates a guided DSR network. Validation and test run `depthsr.evaluate.evaluation_step`, as
    `compare` does; each batch says which evaluation set it belongs to, its border and protocol (`Degraded`).

    Names: `lr` is the low-resolution depth everywhere in depthsr (batches, `forward`); the argument `lr` (the
    CLI's `--model.lr`, kept for the recipes) is the learning rate, read once as `learning_rate`.

    Args:
        model: 'paka', 'pac' or 'plain'.
        preset: network size, 'small' (the CPU default) or 'base' (GPU-sized, for NYU).
        model_kwargs: passed to the network, overriding the preset (width, blocks, dilations).
        lr: AdamW learning rate (`--model.lr`).
        weight_decay: AdamW weight decay.
        scheduler: 'cosine' (per step, to 1% of lr at the end of training) or 'step' (x0.5 every step_size epochs).
        step_size: epochs per step of the step schedule.
        loss: 'l1', 'l2' or 'rmse' (the mean of per-image RMSE), on depth normalised by the LR input's range, valid
            pixels only (`depthsr.losses.depth_loss`).
        norm: 'lr' (per-image LR min-max, what a user has) or 'gt' (ground truth's, as published tables do).
        log_images: how many validation images to log as panels per epoch.
        init_weights: a model file (.safetensors, .pt or .ckpt) whose weights the network starts from (weights only:
            the keywords, inference steps included, are `model`, `preset` and `model_kwargs`).
        train_only: the parts of the network to train, by parameter-name prefix (e.g. ``[cleaner]``: only the input
            cleaner); the rest stays exactly as loaded. None: all of it.
    """

    def __init__(self, model: Literal["paka", "pac", "plain"] = "paka", preset: Literal["small", "base"] = "small",
                 model_kwargs: dict | None = None, lr: float = 2e-4, weight_decay: float = 1e-4,
                 scheduler: Literal["cosine", "step"] = "cosine", step_size: int = 30, loss: LossKind = "l1",
                 norm: Literal["lr", "gt"] = "lr", log_images: int = 2, init_weights: str | None = None,
                 train_only: list[str] | None = None) -> None:
        super().__init__()
        # not logged by Lightning: the CLI logs the whole config, where `model` is this section (depthsr.training)
        self.save_hyperparameters(logger=False)
        self.model = build_model(model, preset, **(model_kwargs or {}))
        if init_weights is not None:  # fine-tuning: start from a model file's weights (read without unpickling),
            self.model.load_grown(read_model_file(init_weights).state)  # maybe of the network without full_guided
        if train_only is not None:
            freeze_all_but(self.model, train_only)
        self.val_metrics = torch.nn.ModuleList()  # one per evaluation set, in the order the sets first appear
        self.test_metrics = torch.nn.ModuleList()
        self._eval_sets: dict[str, list[str]] = {"val": [], "test": []}  # their names
        self._reports: dict[str, tuple[str, str]] = {}  # evaluation set -> (report units, protocol)

    def forward(self, lr_depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:  # normalised depth in and out
        return self.model(lr_depth, rgb)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        lr_norm, lo, span = normalise(batch["lr"])
        pred = self.model(lr_norm, batch["rgb"])
        loss = depth_loss(pred, (batch["depth"] - lo) / span, batch["valid"], self.hparams.loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    def _metric(self, stage: str, batch: dict) -> DepthMetrics:
        """The metric of the batch's evaluation set, made on the module's device when the set first appears."""
        names, metrics = self._eval_sets[stage], self.val_metrics if stage == "val" else self.test_metrics
        name = batch["eval_set"][0]
        if name not in names:
            names.append(name)
            metrics.append(DepthMetrics(int(batch["border"][0])).to(self.device))
            self._reports[name] = (batch_units(batch).report, batch["protocol"][0])
        return metrics[names.index(name)]

    def _eval_step(self, batch: dict, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        method = NetworkMethod(self.model)  # the network as compare and upsample run it
        pred = evaluation_step(method, batch, self._metric(stage, batch), self.hparams.norm)
        if stage == "val" and batch_idx < self.hparams.log_images and dataloader_idx == 0:
            self._log_panel(batch, pred, batch_idx)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, batch_idx, dataloader_idx, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, batch_idx, dataloader_idx, "test")

    def _epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        rmses = []
        for name, metric in zip(self._eval_sets[stage], metrics):
            values = metric.compute()
            for key in ("rmse", "rmse_pooled", "mae", "delta1"):
                self.log(f"{stage}/{name}/{key}", values[key], sync_dist=False)
            if stage == "test" and self.global_rank == 0:
                unit, protocol = self._reports[name]
                print(f"test {name}: RMSE {float(values['rmse']):.8g} {unit} "
                      f"(pooled {float(values['rmse_pooled']):.6g}, "
                      f"MAE {float(values['mae']):.6g}, delta<1.25 {float(values['delta1']):.4f}, "
                      f"{int(values['images'])} images, protocol {protocol}, norm {self.hparams.norm})")
            rmses.append(values["rmse"])
            metric.reset()
        if rmses:
            self.log(f"{stage}/rmse", torch.stack(rmses).mean(), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _log_panel(self, batch: dict, pred: torch.Tensor, index: int) -> None:
        logger = self.logger
        if logger is None or not hasattr(logger, "log_image") or self.global_rank != 0:
            return
        panel = error_panel(batch["rgb"][0], batch["lr"][0], pred[0], batch["depth"][0], batch["valid"][0])
        logger.log_image(key=f"val/panel_{index}", images=[panel], step=self.global_step,
                         caption=["rgb | lr | prediction | ground truth | |error|"])

    def configure_optimizers(self):
        hp = self.hparams
        learning_rate = hp.lr
        trained = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=hp.weight_decay)
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch", "name": "train/lr"}}
        if hp.scheduler != "cosine":
            raise ValueError(f"unknown scheduler {hp.scheduler!r}; choose 'cosine' or 'step'")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, int(self.trainer.estimated_stepping_batches)), eta_min=learning_rate * 0.01)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "train/lr"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["environment"] = training_environment()  # what decides the bits (`depthsr export` records it)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._trainer  # None when loaded without a Trainer (load_from_checkpoint)
        resume_at_next_epoch(checkpoint, trainer is not None and trainer.max_steps != -1)  # exact under max_steps

    def on_fit_start(self) -> None:
        if self.logger is not None:
            n = sum(p.numel() for p in self.model.parameters())
            self.logger.log_hyperparams({"parameters": n})
