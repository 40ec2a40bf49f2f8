"""One evaluation path: `depthsr test` and `depthsr compare` report the same RMSE for the same model, data and
protocol; validation's metric lives on the module's device and equals `evaluate` on the same images."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from depthsr.cli import main
from depthsr.data.datamodule import DSRDataModule
from depthsr.data.nyu import NUM_TRAIN, NYUv2Dataset, write_nyu_file
from depthsr.data.synthetic import held_out_scenes
from depthsr.evaluate import evaluate
from depthsr.lit import DSRModule
from depthsr.methods.model_file import model_info
from depthsr.methods.network import DEFAULT_CHECKPOINT, NetworkMethod

ROOT = Path(__file__).resolve().parent.parent
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_validation_metric_is_on_the_module_device_and_equals_evaluate(device, tmp_path):
    torch.manual_seed(0)
    module = DSRModule(model_kwargs={"width": 8, "blocks": 1}, log_images=0)
    data = DSRDataModule(synthetic=2, crop=32, scales=[4], num_workers=0, batch_size=2)
    trainer = pl.Trainer(accelerator=device, devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=2, default_root_dir=tmp_path)
    (logged,) = trainer.validate(module, datamodule=data, verbose=False)
    (metric,) = module.val_metrics
    assert metric.border == 0 and metric.rmse_sum.device.type == device and metric.images.device.type == device
    reference = evaluate(NetworkMethod(module.model.cpu()), held_out_scenes(), 4, "bicubic", limit=2)
    assert logged["val/synthetic_val_x4/rmse"] == pytest.approx(reference.rmse, rel=1e-6)
    if device == "cpu":
        assert logged["val/synthetic_val_x4/rmse"] == np.float32(reference.rmse)  # the same float, logged as float32


@pytest.fixture(scope="module")
def nyu_with_test_part(nyu_file, tmp_path_factory) -> Path:
    """An NYU-layout file of NUM_TRAIN + 3 pairs: the standard split's test part (the pairs after NUM_TRAIN) is
    three real pairs of the tiny NYU file (96 x 128, metres); the training part repeats its first pair."""
    real = NYUv2Dataset(nyu_file)
    rgb = [(real[i]["rgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for i in range(6)]
    depth = [real[i]["depth"][0].numpy() for i in range(6)]
    order = [0] * NUM_TRAIN + [3, 4, 5]
    path = tmp_path_factory.mktemp("nyu_split") / "nyu_split.mat"
    write_nyu_file(path, np.stack([rgb[i] for i in order]), np.stack([depth[i] for i in order]))
    return path


@pytest.mark.slow
def test_depthsr_test_and_compare_report_the_same_rmse(nyu_with_test_part, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(DEFAULT_CHECKPOINT)  # the shipped model's weights, in `test` through --model.init_weights, and its
    kwargs = json.dumps(model_info(DEFAULT_CHECKPOINT)["kwargs"])  # keywords (inference steps too) as model_kwargs
    assert main(["test", "--config", str(ROOT / "configs" / "nyu_x4.yaml"), "--data.mat_path", str(nyu_with_test_part),
                 "--model.preset", "small", "--model.model_kwargs", kwargs,
                 "--model.init_weights", model, "--data.val_count", "1", "--data.num_workers", "0",
                 "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test nyu_test_x4: RMSE "))
    tested = float(line.split()[3])
    assert "3 images, protocol bicubic, norm lr" in line and line.split()[4] == "cm"
    assert main(["compare", "--data", f"nyu:{nyu_with_test_part}", "--scales", "4", "--methods", model,
                 "--protocol", "bicubic", "--out", str(tmp_path / "cmp"), "--device", "cpu", "--quiet"]) == 0
    with open(tmp_path / "cmp" / "results.csv") as f:
        (row,) = [r for r in csv.DictReader(f) if r["method"] == model]
    assert (row["dataset"], row["scale"], row["units"], row["images"]) == ("nyu", "4", "cm", "3")
    assert float(row["rmse"]) == round(tested, 6)
    assert tested > 0
