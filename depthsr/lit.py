"""The LightningModule: thin glue between the network, the loss, the optimiser and the metric."""
from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch

from depthsr.checkpoint import read_model_file
from depthsr.data.sample import units, valid_range
from depthsr.method import normalise
from depthsr.metrics import DepthMetrics
from depthsr.models import build_model
from depthsr.training import resume_at_next_epoch
from depthsr.visualize import error_panel


class DSRModule(pl.LightningModule):
    """Trains and evaluates a guided DSR network.

    Args:
        model: 'paka', 'pac' or 'plain'.
        preset: network size, 'small' (the CPU default) or 'base' (GPU-sized, for NYU).
        model_kwargs: passed to the network, overriding the preset (width, blocks, dilations).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: 'cosine' (per step, to 1% of lr at the end of training) or 'step' (x0.5 every step_size epochs).
        step_size: epochs per step of the step schedule.
        loss: 'l1' or 'l2', on depth normalised by the LR input's range, valid pixels only.
        norm: 'lr' (per-image LR min-max, what a user has) or 'gt' (ground truth's, as published tables do).
        log_images: how many validation images to log as panels per epoch.
        init_weights: a model file (.safetensors, .pt or .ckpt) whose weights the network starts from.
    """

    def __init__(self, model: Literal["paka", "pac", "plain"] = "paka", preset: Literal["small", "base"] = "small",
                 model_kwargs: dict | None = None, lr: float = 2e-4, weight_decay: float = 1e-4,
                 scheduler: Literal["cosine", "step"] = "cosine", step_size: int = 30, loss: Literal["l1", "l2"] = "l1",
                 norm: Literal["lr", "gt"] = "lr", log_images: int = 2, init_weights: str | None = None) -> None:
        super().__init__()
        # not logged by Lightning: the CLI logs the whole config, where `model` is this section (depthsr.training)
        self.save_hyperparameters(logger=False)
        self.model = build_model(model, preset, **(model_kwargs or {}))
        if init_weights is not None:  # fine-tuning: start from a model file's weights (read without unpickling)
            self.model.load_state_dict(read_model_file(init_weights).state)
        self.val_metrics = torch.nn.ModuleList()
        self.test_metrics = torch.nn.ModuleList()
        self._report_units: dict[int, str] = {}

    def forward(self, lr: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.model(lr, rgb)

    def _predict(self, batch: dict) -> torch.Tensor:  # B x 1 x H x W in the data set's units
        depth_range = valid_range(batch["depth"], batch["valid"]) if self.hparams.norm == "gt" else None
        lr_norm, lo, span = normalise(batch["lr"], depth_range)
        return self.model(lr_norm, batch["rgb"]) * span + lo

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        lr_norm, lo, span = normalise(batch["lr"])
        pred = self.model(lr_norm, batch["rgb"])
        target, valid = (batch["depth"] - lo) / span, batch["valid"]
        err = (pred - target)[valid]
        loss = err.abs().mean() if self.hparams.loss == "l1" else err.square().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    def _metrics(self, stage: str) -> torch.nn.ModuleList:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        names = self.trainer.datamodule.eval_names(stage)
        while len(metrics) < len(names):
            metrics.append(DepthMetrics())
        return metrics

    def _eval_step(self, batch: dict, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        pred = self._predict(batch)
        u = units(batch["units"][0])
        self._report_units[dataloader_idx] = u.report
        factor = u.factor
        crop = int(batch["crop"][0])
        metric = self._metrics(stage)[dataloader_idx]
        metric.crop = crop
        metric.update(pred * factor, batch["depth"] * factor, batch["valid"])
        if stage == "val" and batch_idx < self.hparams.log_images and dataloader_idx == 0:
            self._log_panel(batch, pred, batch_idx)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, batch_idx, dataloader_idx, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, batch_idx, dataloader_idx, "test")

    def _epoch_end(self, stage: str) -> None:
        names = self.trainer.datamodule.eval_names(stage)
        metrics = self._metrics(stage)
        rmses = []
        for index, (name, metric) in enumerate(zip(names, metrics)):
            values = metric.compute()
            for key in ("rmse", "rmse_pooled", "mae", "delta1"):
                self.log(f"{stage}/{name}/{key}", values[key], sync_dist=False)
            if stage == "test" and self.global_rank == 0:
                unit = self._report_units.get(index, "")
                print(f"test {name}: RMSE {float(values['rmse']):.8g} {unit} "
                      f"(pooled {float(values['rmse_pooled']):.6g}, "
                      f"MAE {float(values['mae']):.6g}, delta<1.25 {float(values['delta1']):.4f}, "
                      f"{int(values['images'])} images, protocol {self.trainer.datamodule.hparams.protocol}, "
                      f"norm {self.hparams.norm})")
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
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch", "name": "train/lr"}}
        if hp.scheduler != "cosine":
            raise ValueError(f"unknown scheduler {hp.scheduler!r}; choose 'cosine' or 'step'")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, int(self.trainer.estimated_stepping_batches)), eta_min=hp.lr * 0.01)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "train/lr"}}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._trainer  # None when loaded without a Trainer (load_from_checkpoint)
        resume_at_next_epoch(checkpoint, trainer is not None and trainer.max_steps != -1)  # exact under max_steps

    def on_fit_start(self) -> None:
        if self.logger is not None:
            n = sum(p.numel() for p in self.model.parameters())
            self.logger.log_hyperparams({"parameters": n})
