"""What an installed depthsr promises beyond its checkout: the default model as package data, `python -m depthsr`,
--version and --help, the true torch floor, an environment.yml that resolves, choices the CLI checks, one
schedule, PFM through OpenCV, profile's GFLOPs on every path, quiet commands."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (the dev extra installs it there)
    import tomli as tomllib

from depthsr.cli import main
from depthsr.methods.digests import file_sha256, read_sha256_record
from depthsr.methods.network import CHECKPOINT_DIR, DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TINY_FIT = ["fit", "--data.synthetic", "4", "--data.crop", "64", "--trainer.max_epochs", "1",
            "--trainer.logger", "false", "--trainer.accelerator", "cpu"]


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


# ------------------------------------------------------------------------------------- the default model


def test_default_model_is_package_data_and_the_repo_links_to_it():
    """One source of truth: the file lives in the package (depthsr/weights), checkpoints/ links to it."""
    assert CHECKPOINT_DIR == ROOT / "depthsr" / "weights" and DEFAULT_CHECKPOINT.is_file()
    assert file_sha256(DEFAULT_CHECKPOINT) == read_sha256_record(DEFAULT_CHECKPOINT)
    for name in ("depthsr_default.safetensors", "depthsr_default.safetensors.sha256"):
        link = ROOT / "checkpoints" / name
        assert link.is_symlink() and link.resolve() == (CHECKPOINT_DIR / name).resolve(), link
    assert {"*.safetensors", "*.sha256"} <= set(PYPROJECT["tool"]["setuptools"]["package-data"]["depthsr.weights"])


@pytest.mark.slow
def test_the_wheel_holds_the_default_model_and_its_record(tmp_path):
    """A non-editable install gets the model: the built wheel holds it and its sha256 record (built from the
    tracked files, as CI's `make wheel-check` does before it installs the wheel and upsamples the example)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    src = tmp_path / "src"
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    for name in ("depthsr/__main__.py", "depthsr/weights/__init__.py", "depthsr/weights/depthsr_default.safetensors",
                 "depthsr/weights/depthsr_default.safetensors.sha256"):
        assert (src / name).is_file(), f"{name} is not tracked"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("depthsr-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("depthsr/weights/depthsr_default.safetensors") == DEFAULT_CHECKPOINT.read_bytes()
    assert {"depthsr/weights/depthsr_default.safetensors.sha256", "depthsr/__main__.py",
            "depthsr/ops/csrc/modulated_conv.c"} <= names
    assert "make wheel-check" in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------------------------- the command


def test_python_m_depthsr_version_and_help_list_every_command(tmp_path):
    from depthsr import __version__

    version = _python("-m", "depthsr", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"depthsr {__version__}"
    helped = _python("-m", "depthsr", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    for command in ("fit", "validate", "test", "upsample", "compare", "export", "profile"):
        assert re.search(rf"^\s+{command}\s", helped.stdout, re.M), (command, helped.stdout)
    assert PYPROJECT["project"]["dynamic"] == ["version"]  # the version is written once, in depthsr/__init__


def _floor(requirement: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.search(r">=\s*([\d.]+)", requirement)[1].split("."))


def test_torch_floor_covers_the_api_the_code_uses():
    """torch.get_autocast_dtype(device) and torch.library.custom_op came with torch 2.4."""
    (torch_req,) = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"torch\b", d)]
    source = "\n".join(p.read_text() for p in (ROOT / "depthsr").rglob("*.py"))
    needs = {"get_autocast_dtype(": (2, 4), "custom_op(": (2, 4)}
    used = [v for k, v in needs.items() if k in source]
    assert used and _floor(torch_req) >= max(used), torch_req


def test_environment_yml_resolves_without_the_retired_channel_and_agrees_with_pyproject():
    text = (ROOT / "environment.yml").read_text()
    env = yaml.safe_load(text)
    assert "pytorch-cuda" not in yaml.safe_dump(env["dependencies"]) and env["channels"] == ["conda-forge"]
    assert "pytorch" not in env["channels"] and "nvidia" not in env["channels"]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert any(p.startswith("torch==") and _floor(p.replace("==", ">=")) >= _floor("torch>=2.4") for p in pip)
    for dep in PYPROJECT["project"]["dependencies"]:
        if not dep.startswith("torch"):
            assert dep.split("  ")[0] in pip, dep
    assert "CPU only" in text and "GPU" in text  # the choice is documented where it is made


def test_readme_says_which_opencv_and_what_to_do_with_both():
    readme = (ROOT / "README.md").read_text()
    assert "opencv-python-headless" in PYPROJECT["project"]["dependencies"][6]
    section = readme.split("opencv-python-headless", 1)[1][:1500]
    assert "opencv-python" in section and "uninstall" in section


@pytest.mark.parametrize("option,value", [("--model.loss", "L1"), ("--model.model", "unet"),
                                          ("--model.scheduler", "linear"), ("--model.norm", "minmax"),
                                          ("--model.preset", "large"), ("--data.protocol", "real")])
def test_unknown_choices_are_one_line_errors(option, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY_FIT, option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"depthsr: error: {option}: expected one of") and value in err, err
    assert not list(tmp_path.iterdir())  # nothing ran


@pytest.mark.parametrize("args", [["--optimizer", "Adam"], ["--optimizer.lr=0.1"], ["--lr_scheduler", "StepLR"]])
def test_optimizer_options_are_refused_not_silently_overridden(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY_FIT, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "its own schedule" in err and "--model.lr" in err, err


def test_optimizer_in_a_config_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("optimizer:\n  class_path: torch.optim.SGD\n")
    assert main([*TINY_FIT, "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "optimizer" in err, err


def test_learning_rate_is_logged_by_lightnings_monitor(tmp_path, monkeypatch):
    from pytorch_lightning.callbacks import LearningRateMonitor

    from depthsr.data.datamodule import DSRDataModule
    from depthsr.lit import DSRModule
    from depthsr.training import DepthSRCLI

    monkeypatch.chdir(tmp_path)
    cli = DepthSRCLI(DSRModule, DSRDataModule, run=False, auto_configure_optimizers=False,
                     args=["--data.synthetic", "4", "--trainer.logger", "true"])
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, LearningRateMonitor)]
    assert len(monitors) == 1
    assert "train/lr" not in (ROOT / "depthsr" / "lit.py").read_text().split("def configure_optimizers")[0]


# ------------------------------------------------------------------------------------- PFM through OpenCV


def _hand_written_pfm(depth: np.ndarray) -> bytes:  # the writer depthsr had before OpenCV did it
    h, w = depth.shape
    return b"Pf\n%d %d\n-1\n" % (w, h) + np.ascontiguousarray(depth.astype("<f4")[::-1]).tobytes()


def _hand_written_read(raw: bytes) -> np.ndarray:
    header, dims, scale, data = raw.split(b"\n", 3)
    w, h = map(int, dims.split())
    return np.frombuffer(data, "<f4" if float(scale) < 0 else ">f4").reshape(h, w)[::-1]


def _awkward(shape=(7, 9)) -> np.ndarray:
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 1000
    arr.flat[:7] = [np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38, 0.0]  # NaN, infinities, signed zero, denormal
    return arr


def test_pfm_written_by_opencv_is_the_hand_written_file_byte_for_byte(tmp_path):
    from depthsr.data.io import write_pfm

    arr = _awkward()
    write_pfm(tmp_path / "a.pfm", arr)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw == _hand_written_pfm(arr)
    assert _hand_written_read(raw).tobytes() == arr.tobytes()
    assert list(tmp_path.iterdir()) == [tmp_path / "a.pfm"]  # atomic: no temporary file left


@pytest.mark.parametrize("big_endian", [False, True])
def test_pfm_read_by_opencv_is_bit_identical(tmp_path, big_endian):
    from depthsr.data.io import read_pfm

    arr = _awkward((5, 11))
    if big_endian:
        raw = b"Pf\n11 5\n1.0\n" + arr[::-1].astype(">f4").tobytes()
    else:
        raw = _hand_written_pfm(arr)
    (tmp_path / "a.pfm").write_bytes(raw)
    got = read_pfm(tmp_path / "a.pfm")
    assert got.dtype == np.float32 and got.view(np.uint32).tobytes() == arr.view(np.uint32).tobytes()
    assert "def read_pfm" in (ROOT / "depthsr/data/io.py").read_text() and "frombuffer" not in \
        (ROOT / "depthsr/data/io.py").read_text()  # OpenCV does the format


def test_truncated_pfm_is_one_line_without_opencvs_log(tmp_path, capfd):
    from depthsr.data.io import read_depth
    from depthsr.errors import DepthSRError

    (tmp_path / "a.pfm").write_bytes(_hand_written_pfm(_awkward())[:-40])
    with pytest.raises(DepthSRError, match="a.pfm: damaged PFM file"):
        read_depth(tmp_path / "a.pfm")
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------------------------- quiet commands


def test_bundled_photographs_read_as_opencv_does_without_libpng_warnings(capfd):
    from depthsr.data.io import read_rgb8
    from depthsr.data.packaged import bundled_data_dir
    from depthsr.data.synthetic import PHOTOS, photo_bank

    root = bundled_data_dir()
    if root is None:
        pytest.skip("scikit-image's data folder not found")
    bank = photo_bank.__wrapped__()
    assert capfd.readouterr().err == ""
    names = [n for n in PHOTOS if (root / n).is_file()]
    assert len(bank) == len(names)
    for name in [*names, "motorcycle_left.png"]:
        assert np.array_equal(read_rgb8(root / name), cv2.imread(str(root / name), cv2.IMREAD_COLOR)[..., ::-1])


def test_lightning_tips_are_dropped_other_messages_kept(caplog):
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    from depthsr.runtime import quiet_libraries

    quiet_libraries()
    with caplog.at_level(logging.INFO):
        rank_zero_info("\N{ELECTRIC LIGHT BULB} Tip: For seamless cloud logging, try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_loader_workers_are_capped_at_the_cores(tmp_path, monkeypatch):
    from depthsr.data.datamodule import DSRDataModule
    from depthsr.lit import DSRModule
    from depthsr.training import DepthSRCLI, usable_cores

    monkeypatch.chdir(tmp_path)
    cli = DepthSRCLI(DSRModule, DSRDataModule, run=False, auto_configure_optimizers=False,
                     args=["--data.synthetic", "4", "--data.num_workers", str(usable_cores() + 3)])
    assert cli.datamodule.hparams.num_workers == usable_cores()


# ------------------------------------------------------------------------------------- profile


def test_profile_counts_the_same_work_on_the_native_and_portable_paths(monkeypatch):
    from depthsr.commands.profile import count

    monkeypatch.setenv("DEPTHSR_NATIVE", "1")
    native = count("paka", 64, 96, 4)
    monkeypatch.setenv("DEPTHSR_NATIVE", "0")
    assert count("paka", 64, 96, 4) == native
