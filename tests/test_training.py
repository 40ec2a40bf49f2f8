"""Training and evaluation end to end through the `depthsr` CLI on a tiny NYU-format file: a real Lightning
Trainer, a real offline W&B run, real DDP (gloo, 2 CPU processes)."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import pytorch_lightning as pl
import torch
import yaml
from op_inputs import DEVICES
from wandb_records import history_keys, run_config

from depthsr.cli import main
from depthsr.data.nyu import NYUv2Dataset
from depthsr.evaluate import evaluate
from depthsr.methods.baselines import Bicubic
from depthsr.methods.network import NetworkMethod, load_network

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

TINY = ["--model.preset", "small", "--model.model_kwargs", '{"width": 16, "blocks": 1}', "--data.crop", "64",
        "--data.batch_size", "4",
        "--data.num_workers", "0", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]


def fit(mat: Path, *extra: str) -> None:
    args = ["fit", "--config", str(ROOT / "configs" / "nyu_x4.yaml"), "--data.mat_path", str(mat), *TINY, *extra]
    assert main(args) == 0


def metrics_csv(run_root: Path, name: str = "nyu_x4") -> list[dict]:
    files = sorted((run_root / "runs" / name).glob("version_*/metrics.csv"))
    assert files, f"no CSV metrics under {run_root}"
    with open(files[-1]) as f:
        return list(csv.DictReader(f))


def test_fit_overfits_one_pair_logs_to_wandb_and_checkpoints(nyu_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(nyu_file, "--data.num_train", "2", "--data.val_count", "1", "--data.repeats", "100", "--data.crop", "96",
        "--trainer.max_epochs", "8", "--model.lr", "0.002", "--model.scheduler", "step", "--model.step_size", "100",
        "--trainer.gradient_clip_val", "0")
    rows = metrics_csv(tmp_path)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 150 and sum(losses[-10:]) / 10 < sum(losses[:10]) / 10

    assert list(tmp_path.glob("runs/depthsr/*/checkpoints/best-*.ckpt")), "ModelCheckpoint wrote no best"
    model, _ = load_network(next(tmp_path.glob("runs/depthsr/*/checkpoints/latest-*.ckpt")))
    train_pair = NYUv2Dataset(nyu_file, [0])
    net = evaluate(NetworkMethod(model), train_pair, 4, border=6)
    bicubic = evaluate(Bicubic(), train_pair, 4, border=6)
    assert net.rmse < bicubic.rmse, (net.rmse, bicubic.rmse)

    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_file = next(runs[0].glob("run-*.wandb"))
    config = run_config(run_file)  # the whole resolved CLI config, and the parameter count
    assert config["data"]["mat_path"] == str(nyu_file) and config["trainer"]["max_epochs"] == 8
    assert config["model"]["model"] == "paka" and config["model"]["model_kwargs"] == {"width": 16, "blocks": 1}
    assert config["parameters"] == sum(p.numel() for p in model.parameters())
    assert {"train/loss", "val/rmse", "val/nyu_val_x4/rmse", "val/nyu_val_x4/mae"} <= history_keys(run_file)
    panels = list((runs[0] / "files" / "media" / "images").rglob("panel_*.png"))
    assert panels and cv2.imread(str(panels[0])).shape[1] == 5 * 128  # rgb|lr|pred|gt|error


class Interrupt(pl.Callback):
    """Stops a run after its first epoch, as a killed job would (its checkpoint is written)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        trainer.should_stop = not trainer.sanity_checking


def test_resume_continues_exactly(nyu_file, tmp_path, monkeypatch):
    common = ["--data.num_train", "4", "--data.val_count", "1", "--trainer.logger", "false",
              "--trainer.limit_train_batches", "3", "--data.repeats", "8", "--trainer.max_epochs", "2"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    fit(nyu_file, *common, "--trainer.default_root_dir", ".")
    monkeypatch.chdir(tmp_path / "b")
    fit(nyu_file, *common, "--trainer.default_root_dir", ".", f"--trainer.callbacks+={__name__}.Interrupt")
    first = next(Path(".").rglob("latest-*.ckpt"))
    assert torch.load(first, weights_only=False)["epoch"] == 0
    fit(nyu_file, *common, "--trainer.default_root_dir", "resumed", "--ckpt_path", str(first))
    straight = torch.load(next((tmp_path / "a").rglob("latest-*.ckpt")), weights_only=False)
    resumed = torch.load(next((tmp_path / "b" / "resumed").rglob("latest-*.ckpt")), weights_only=False)
    assert resumed["epoch"] == straight["epoch"] == 1
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert resumed["lr_schedulers"] == straight["lr_schedulers"]


def _test_rmse(stdout: str) -> tuple[float, int]:
    for line in stdout.splitlines():
        if line.startswith("test nyu_test_x4: RMSE "):
            return float(line.split()[3]), int(line.split(", ")[3].split()[0])
    raise AssertionError(f"no test RMSE printed:\n{stdout[-2000:]}")


@pytest.fixture(scope="module")
def trained(nyu_file, tmp_path_factory) -> Path:
    """A checkpoint trained a few steps on 3 pairs (so the test part has 3 pairs: uneven over 2 ranks)."""
    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        fit(nyu_file, "--data.num_train", "3", "--data.val_count", "1", "--trainer.logger", "false",
            "--data.repeats", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.default_root_dir", ".")
    finally:
        os.chdir(cwd)
    return next(root.rglob("latest-*.ckpt"))


def _run_test(nyu_file: Path, ckpt: Path, cwd: Path, *extra: str) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "depthsr.cli", "test", "--config", str(ROOT / "configs" / "nyu_x4.yaml"),
           "--data.mat_path", str(nyu_file), "--data.num_train", "3", "--data.val_count", "1", *TINY[:-4],
           "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--ckpt_path", str(ckpt), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _test_rmse(proc.stdout)


def test_ddp_test_rmse_equals_single_process(nyu_file, trained, tmp_path):
    single = _run_test(nyu_file, trained, tmp_path, "--trainer.devices", "1")
    ddp = _run_test(nyu_file, trained, tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    spawn = _run_test(nyu_file, trained, tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn")
    assert single[1] == ddp[1] == spawn[1] == 3  # 3 test images over 2 ranks: none counted twice
    assert single[0] == pytest.approx(ddp[0], rel=1e-6) and single[0] == pytest.approx(spawn[0], rel=1e-6)


@pytest.mark.parametrize("kind", ["paka", "plain", "pac"])
def test_ddp_fit_two_processes(nyu_file, tmp_path, kind):
    cmd = [sys.executable, "-m", "depthsr.cli", "fit", "--config", str(ROOT / "configs" / "nyu_x4.yaml"),
           "--data.mat_path", str(nyu_file), "--data.num_train", "4", "--data.val_count", "1", *TINY[:-4],
           "--model.model", kind,
           "--data.repeats", "8", "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
           "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("latest-*.ckpt"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fit_steps_on_each_device_and_precision(nyu_file, tmp_path, monkeypatch, device, precision):
    """Two training steps and a validation pass on `device` under `precision`: the weights move, stay finite, and
    the validation metric is computed (on the module's device)."""
    monkeypatch.chdir(tmp_path)
    args = [a for a in TINY if a not in ("--trainer.accelerator", "cpu")]
    assert main(["fit", "--config", str(ROOT / "configs" / "nyu_x4.yaml"), "--data.mat_path", str(nyu_file), *args,
                 "--trainer.accelerator", "gpu" if device == "cuda" else "cpu", "--trainer.precision", precision,
                 "--data.num_train", "3", "--data.val_count", "1", "--data.repeats", "8", "--trainer.max_steps", "2",
                 "--trainer.val_check_interval", "2", "--trainer.logger", "false",
                 "--trainer.default_root_dir", "."]) == 0
    best = next(tmp_path.rglob("best-*.ckpt"))  # written only once val/rmse was logged
    assert int(torch.load(best, weights_only=True)["global_step"]) == 2
    model, _ = load_network(best)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.out.weight.abs().sum() > 0  # the zero-initialised head moved


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    (tmp_path / "x.mat").write_text("not hdf5")
    code = main(["fit", "--config", str(ROOT / "configs" / "nyu_x4.yaml"), "--data.mat_path",
                 str(tmp_path / "x.mat"), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"depthsr: error: {tmp_path / 'x.mat'}: not an HDF5 / MATLAB v7.3 file"


def test_print_config_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / "configs" / "nyu_x8.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["scales"] == [8] and config["model"]["model"] == "paka"
    json.dumps(config)


def _resolved_config(capsys, *names: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *(arg for name in names for arg in ("--config", str(ROOT / "configs" / name))), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def _recipe_stages() -> list[str]:
    """The configs scripts/train_default.sh stacks, in its order (its CONFIGS, then its LATER)."""
    script = (ROOT / "scripts" / "train_default.sh").read_text()
    lists = re.search(r"^CONFIGS=\((.*?)\)\s*$.*?^LATER=\((.*?)\)\s*#", script, re.M | re.S)
    return re.findall(r"configs/(\w+\.yaml)", lists[1] + lists[2])


LATER_STAGES = [
    ("default_finish.yaml", {"random_ratios": 0.0}, {}, 2024),
    ("default_downscaled.yaml", {"folder_downscales": [1, 2, 3, 4, 6]}, {}, 4048),
    ("default_rooms.yaml", {"rooms": 3000}, {}, 2024),
    ("default_larger_crops.yaml", {"crop": 176}, {}, 4048),
    ("default_rmse_loss.yaml", {}, {"loss": "rmse"}, 1012),
    ("tof_model.yaml", {"tof_share": 1.0},
     {"lr": 0.001, "model_kwargs": {"clean_input": True, "consistency": 2}, "train_only": ["cleaner"]}, 2024),
]


def test_the_later_stages_checked_are_the_recipes():
    assert ["default_model.yaml", *(stage for stage, *_ in LATER_STAGES)] == _recipe_stages()


def test_the_recipes_constraints_pin_what_made_the_shipped_models():
    """scripts/train_default_constraints.txt pins every package the training environment records, at the version
    recorded in the shipped default's file (torch without its local build label: the CPU or a CUDA wheel)."""
    from depthsr.environment import PACKAGES
    from depthsr.methods.model_file import model_info
    from depthsr.methods.network import DEFAULT_CHECKPOINT

    lines = (ROOT / "scripts" / "train_default_constraints.txt").read_text().splitlines()
    pinned = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    recorded = model_info(DEFAULT_CHECKPOINT)["source"]["environment"]
    assert set(pinned) == set(PACKAGES)
    assert pinned == {package: recorded[package].split("+")[0] for package in PACKAGES}


@pytest.mark.parametrize("stage, changed, model, steps", LATER_STAGES)
def test_each_later_stage_of_the_recipes_changes_only_its_own_part(capsys, stage, changed, model, steps):
    """scripts/train_default.sh's later stages, each a config on top of the ones before it (the tof model's, on top of
    all of the default's): the same model, loss and data but for the stage's own change, its own step count and run
    folder."""
    stages = _recipe_stages()
    before = _resolved_config(capsys, *stages[: stages.index(stage)])
    after = _resolved_config(capsys, *stages[: stages.index(stage) + 1])
    assert {k: v for k, v in after["data"].items() if before["data"][k] != v} == changed
    assert {k: v for k, v in after["model"].items() if before["model"][k] != v} == model
    assert after["trainer"]["max_steps"] == steps
    folder = "runs/tof_model" if stage == "tof_model.yaml" else f"runs/default_model/{stage[8:-5]}"
    assert after["trainer"]["logger"]["init_args"]["save_dir"] == folder
