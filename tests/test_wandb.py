"""W&B as its users expect it, read back from the real offline run files (W&B offline, into temp folders; never
the network): compare's tables and plot, fit's run name, group, config and val/rmse summary, test linked to the
run it evaluates, self-hosted servers not forced offline."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_records import history_keys, records, run_config

from depthsr.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model.preset", "small", "--model.model_kwargs", '{"width": 8, "blocks": 1}', "--data.crop", "64",
        "--data.batch_size", "4", "--data.num_workers", "4", "--data.num_train", "4", "--data.val_count", "1",
        "--data.repeats", "2", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
NOISE = ("Tip:", "args parameter", "LeafSpec", "libpng", "worker processes in total", "anonymous setting")


def _runs(root: Path) -> dict[str, tuple[Path, object]]:
    """The offline runs under `root` by job type ('' for fit): (run file, its run record)."""
    out = {}
    for run_dir in root.glob("offline-run-*"):
        run_file = next(run_dir.glob("run-*.wandb"))
        run = next(r.run for r in records(run_file) if r.WhichOneof("record_type") == "run")
        out[run.job_type] = (run_file, run)
    return out


def _run(root: Path) -> tuple[Path, object]:
    (only,) = _runs(root).values()
    return only


@pytest.mark.parametrize("netrc_host,base_url,offline", [
    ("api.wandb.ai", None, False), ("wandb.example.org", "https://wandb.example.org", False),
    ("wandb.example.org", None, True), (None, "https://wandb.example.org", True)])
def test_a_login_to_the_server_in_use_keeps_wandb_online(tmp_path, monkeypatch, netrc_host, base_url, offline):
    from depthsr.wandb_runs import offline_without_key

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    if netrc_host:
        (tmp_path / ".netrc").write_text(f"machine {netrc_host}\n  login user\n  password 0123456789abcdef\n")
        (tmp_path / ".netrc").chmod(0o600)
    offline_without_key()
    assert (os.environ.get("WANDB_MODE") == "offline") == offline


def test_a_login_saved_by_wandb_login_host_counts(tmp_path, monkeypatch):
    from depthsr.wandb_runs import offline_without_key

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".config" / "wandb").mkdir(parents=True)
    (tmp_path / ".config" / "wandb" / "settings").write_text("[default]\nbase_url = https://wandb.example.org\n")
    (tmp_path / ".netrc").write_text("machine wandb.example.org login user password 0123456789abcdef\n")
    (tmp_path / ".netrc").chmod(0o600)
    offline_without_key()
    assert "WANDB_MODE" not in os.environ


@pytest.mark.parametrize("mode,uploads", [("online", True), ("offline", False), ("disabled", False)])
def test_checkpoints_become_artifacts_only_online(monkeypatch, tmp_path, mode, uploads):
    from pytorch_lightning.loggers import WandbLogger

    from depthsr.training import configure_wandb

    monkeypatch.setenv("WANDB_MODE", mode)
    logger = WandbLogger(project="p", name="nyu_x4", save_dir=str(tmp_path))
    configure_wandb(logger, "fit", "paka", [4, 8], "nyu_x4")
    assert logger._log_model is uploads
    assert logger._wandb_init["group"] == "nyu_x4" and logger._wandb_init["name"].startswith("paka x4-8 nyu_x4 20")
    assert "anonymous" not in logger._wandb_init


@pytest.mark.slow
def test_fit_and_test_runs_read_back_from_their_files(nyu_file, tmp_path, monkeypatch, capfd):
    """fit: a run named by model, ratio, recipe and time in the recipe's group, the config's `model` section
    intact, val/rmse summarised as its minimum, train/lr from LearningRateMonitor, no noise on stderr.
    test of its checkpoint: a `test` run in the same group naming the training run."""
    monkeypatch.chdir(tmp_path)
    config = ["--config", str(ROOT / "configs" / "nyu_x4.yaml"), "--data.mat_path", str(nyu_file), *TINY]
    assert main(["fit", *config]) == 0
    err = capfd.readouterr().err
    assert not [n for n in NOISE if n in err], err[-3000:]
    fit_file, fit_run = _run(tmp_path / "runs" / "wandb")
    assert fit_run.display_name.startswith("paka x4 nyu_x4 20") and fit_run.run_group == "nyu_x4"
    cfg = run_config(fit_file)
    assert cfg["model"]["model"] == "paka" and cfg["model"]["loss"] == "l2" and cfg["data"]["scales"] == [4]
    metrics = {r.metric.name: r.metric for r in records(fit_file) if r.WhichOneof("record_type") == "metric"}
    assert metrics["val/rmse"].summary.min
    assert {"train/lr", "train/loss", "val/rmse"} <= history_keys(fit_file)

    best = next(tmp_path.glob("runs/depthsr/*/checkpoints/best-*.ckpt"))
    # a process of its own, as users run it (a second W&B run in one process is not always flushed to its file)
    done = subprocess.run([sys.executable, "-m", "depthsr", "test", *config, "--ckpt_path", str(best)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    runs = _runs(tmp_path / "runs" / "wandb")
    assert set(runs) == {"", "test"}
    test_file, test_run = runs["test"]
    assert test_run.job_type == "test" and test_run.run_group == "nyu_x4"
    assert test_run.display_name.startswith("test paka x4")
    linked = run_config(test_file)["evaluates_run"]
    assert linked["id"] == fit_run.run_id and linked["name"] == fit_run.display_name
    assert any(k.startswith("test/") for k in history_keys(test_file))


def test_compare_logs_its_tables_and_plot(shared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"folder:{shared / 'middlebury2003'}", "--scales", "4", "8", "--methods",
                 "bicubic,jbu", "--limit", "1", "--out", str(out), "--quiet", "--wandb-project", "depthsr-test"]) == 0
    assert "logged to W&B project depthsr-test" in capsys.readouterr().out
    run_file, run = _run(out / "wandb")
    assert run.job_type == "compare" and run.project == "depthsr-test"
    assert {"compare/results", "compare/per_image", "compare/rmse_vs_scale"} <= history_keys(run_file)
    media = run_file.parent / "files" / "media"
    for name in ("results", "per_image"):
        (table_file,) = list((media / "table" / "compare").glob(f"{name}_*.table.json"))
        table = json.loads(table_file.read_text())
        with open(out / f"{name}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert table["columns"] == rows[0] and len(table["data"]) == len(rows) - 1
        assert [str(v) for v in table["data"][0]][:3] == rows[1][:3]
    assert list((media / "images" / "compare").glob("rmse_vs_scale_*.png"))
    assert run_config(run_file)["methods"] == ["bicubic,jbu"]


def test_export_logs_the_model_file_as_an_artifact_of_its_training_run(tmp_path, monkeypatch):
    """`depthsr export` of a checkpoint that names its W&B run: online, the .safetensors and its sha256 record
    become a `model` artifact logged by an `export` run in that run's project and group (read back here from a
    real offline run file, which is what W&B syncs); a checkpoint without a run, or another format, logs nothing."""
    import torch

    from depthsr.methods.digests import write_sha256_record
    from depthsr.methods.model_file import save_network
    from depthsr.models import build_model
    from depthsr.wandb_runs import log_export, training_run

    trained_by = {"id": "abc123", "name": "paka x4 nyu_x4", "group": "nyu_x4", "project": "depthsr-test"}
    torch.save({"wandb_run": trained_by}, tmp_path / "run.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "none.ckpt")
    assert training_run(tmp_path / "run.ckpt") == trained_by
    assert training_run(tmp_path / "none.ckpt") is None and training_run(tmp_path / "m.safetensors") is None

    monkeypatch.setenv("WANDB_MODE", "offline")
    model = tmp_path / "my_model.safetensors"
    save_network(model, build_model("plain", width=8, blocks=1), "plain", {"width": 8, "blocks": 1}, [4])
    write_sha256_record(model)
    log_export(model, trained_by)
    run_file, run = _run(tmp_path / "wandb")
    assert run.run_group == "nyu_x4" and run.project == "depthsr-test" and run.job_type == "export"
    assert run_config(run_file)["exports_run"] == trained_by
    artifacts = [r.artifact for r in records(run_file) if r.WhichOneof("record_type") == "artifact"]
    assert [(a.name, a.type) for a in artifacts] == [("my_model", "model")]
    paths = {e.path for a in artifacts for e in a.manifest.contents}
    assert paths == {"my_model.safetensors", "my_model.safetensors.sha256"}


def test_export_without_a_wandb_login_writes_the_file_and_logs_nothing(tmp_path, monkeypatch, capsys):
    """A checkpoint that names its W&B run, exported where W&B has no API key or login (and WANDB_MODE is not
    set): the model file is written and no run is started (before, wandb.init stopped the command with a
    traceback asking for `wandb login`)."""
    import torch

    from depthsr.cli import main
    from depthsr.methods.model_file import model_info
    from depthsr.models import build_model

    net = build_model("plain", width=8, blocks=1)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"model": "plain", "model_kwargs": {"width": 8, "blocks": 1}},
                "wandb_run": {"id": "abc123", "project": "depthsr-test"}}, ckpt)
    for name in ("WANDB_MODE", "WANDB_API_KEY"):  # set first, so teardown restores what was there before
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "model.safetensors"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    assert model_info(out)["architecture"] == "plain" and "wrote" in capsys.readouterr().out
    assert not list(tmp_path.rglob("wandb"))
