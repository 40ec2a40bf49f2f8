"""Issue 11, case by case through the real `depthsr` command: every failure a new user ran into ends in a
non-zero exit and one line naming the file and the problem, with no traceback, nothing written and the inputs
byte-identical. One table; each row builds its real files in a folder of its own and runs the command there
(in-process through `depthsr.cli.main`; rows marked `proc` run the installed console script in a subprocess,
as Lightning's commands and Ctrl-C must). Exact resume (case 10) closes the file."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from depthsr.cli import main
from depthsr.data.nyu import write_nyu_file

ROOT = Path(__file__).resolve().parent.parent
DEPTHSR = Path(sys.executable).parent / "depthsr"
CONFIG = ROOT / "configs" / "nyu_x4.yaml"


# ------------------------------------------------------------------------------------------------ inputs


def _scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (uint8) and its depth in millimetres (uint16): a slanted wall and a box in front."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 2000 + 4 * xx + 2 * yy
    box = (yy > height // 4) & (yy < 3 * height // 4) & (xx > width // 3) & (xx < 2 * width // 3)
    depth[box] = 900
    rgb = (rng.uniform(0, 40, (height, width, 3)) + np.where(box[..., None], 180, 60)).astype(np.uint8)
    return rgb, depth.astype(np.uint16)


def make_pair(folder: Path, name: str = "", rgb_size: tuple[int, int] = (96, 128), ratio: int = 4) -> None:
    """rgb.png, lr.png (16-bit mm, RGB size / ratio) and gt.png (16-bit mm) in `folder` (prefixed by `name`)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb, depth = _scene(*rgb_size)
    lr = cv2.resize(depth, (rgb_size[1] // ratio, rgb_size[0] // ratio), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / f"{name}rgb.png"), rgb)
    cv2.imwrite(str(folder / f"{name}lr.png"), lr)
    cv2.imwrite(str(folder / f"{name}gt.png"), depth)


@pytest.fixture(scope="session")
def tiny_nyu(tmp_path_factory) -> Path:
    """A 6-pair NYU-format file (MATLAB v7.3 header + HDF5) of generated scenes, 96 x 128, metres."""
    scenes = [_scene(96, 128, seed) for seed in range(6)]
    path = tmp_path_factory.mktemp("nyu") / "nyu6.mat"
    write_nyu_file(path, np.stack([s[0] for s in scenes]), np.stack([s[1] / 1000.0 for s in scenes]).astype(np.float32))
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------------------------------------ the table


@dataclass
class Ctx:
    d: Path  # the row's own folder (also the working directory)
    nyu: Path  # a valid 6-pair NYU-format file, copied into d


def upsample(c: Ctx, *extra: str, depth: str = "lr.png", checkpoint: str = "bicubic") -> list[str]:
    return ["upsample", "--rgb", str(c.d / "rgb.png"), "--depth", str(c.d / depth), "--out", str(c.d / "out.png"),
            "--checkpoint", checkpoint, *extra]


def compare(c: Ctx, *extra: str, data: str | None = None) -> list[str]:
    return ["compare", "--data", data or f"nyu:{c.nyu}", "--methods", "bicubic", "--out", str(c.d / "cmp"),
            "--quiet", *extra]


FIT = ["--trainer.logger", "false", "--data.crop", "64", "--data.num_workers", "0", "--trainer.accelerator", "cpu",
       "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"]


def fit(c: Ctx, *extra: str, command: str = "fit") -> list[str]:
    return [command, "--config", str(CONFIG), *FIT, *extra]


def save(c: Ctx, name: str, array: np.ndarray) -> str:
    path = c.d / name
    if name.endswith(".npy"):
        np.save(path, array)
    else:
        assert cv2.imwrite(str(path), array)
    return name


def truncated(c: Ctx) -> str:
    data = c.nyu.read_bytes()
    (c.d / "t.mat").write_bytes(data[: len(data) * 6 // 10])
    return str(c.d / "t.mat")


def read_only_out(c: Ctx) -> list[str]:
    (c.d / "ro").mkdir()
    (c.d / "ro").chmod(0o555)
    return ["upsample", "--rgb", str(c.d / "rgb.png"), "--depth", str(c.d / "lr.png"), "--out",
            str(c.d / "ro" / "out.png"), "--checkpoint", "bicubic"]


def folders(c: Ctx, rgb_names: list[str], depth_names: list[str]) -> list[str]:
    (c.d / "rgbs").mkdir()
    (c.d / "depths").mkdir()
    for name in rgb_names:
        (c.d / "rgbs" / name).write_bytes((c.d / "rgb.png").read_bytes())
    for name in depth_names:
        (c.d / "depths" / name).write_bytes((c.d / "lr.png").read_bytes())
    return ["upsample", "--rgb", str(c.d / "rgbs"), "--depth", str(c.d / "depths"), "--out", str(c.d / "outs"),
            "--checkpoint", "bicubic"]


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    message: str  # a regular expression the one error line matches
    code: int = 2
    proc: bool = False  # run the installed console script in a subprocess
    skip: str = ""


ZEROS = np.zeros((24, 32))
CASES = [
    # 1. an input overwritten by --preview, or the result by the preview
    Case("1 preview = rgb input", lambda c: upsample(c, "--preview", str(c.d / "rgb.png")),
         r"rgb.png: refusing to overwrite an input file with the preview", proc=True),
    Case("1 preview = depth input", lambda c: upsample(c, "--preview", str(c.d / "lr.png")),
         r"lr.png: refusing to overwrite an input file with the preview"),
    Case("1 preview = out", lambda c: upsample(c, "--preview", str(c.d / "out.png")),
         r"out.png: the preview and the output are the same file"),
    Case("1 out = gt input", lambda c: upsample(c, "--gt", str(c.d / "gt.png"), "--out", str(c.d / "gt.png")),
         r"gt.png: refusing to overwrite an input file with the output"),
    # 2. too little valid depth, whatever marks it invalid (0, NaN, inf: one rule)
    Case("2 all-zero 8-bit png", lambda c: upsample(c, depth=save(c, "z8.png", ZEROS.astype(np.uint8))),
         r"z8.png: only 0.0% of its 768 depth values are valid"),
    Case("2 all-zero 16-bit png", lambda c: upsample(c, depth=save(c, "z16.png", ZEROS.astype(np.uint16))),
         r"z16.png: only 0.0% of its 768 depth values are valid"),
    Case("2 all-zero npy", lambda c: upsample(c, depth=save(c, "z.npy", ZEROS.astype(np.float32))),
         r"z.npy: only 0.0% of its 768 depth values are valid"),
    Case("2 all-NaN npy", lambda c: upsample(c, depth=save(c, "nan.npy", np.full((24, 32), np.nan, np.float32))),
         r"nan.npy: only 0.0% of its 768 depth values are valid"),
    Case("2 inf, NaN and 0 leave 4%", lambda c: upsample(c, depth=save(c, "few.npy", np.concatenate(
        [np.full((8, 32), np.inf), np.full((8, 32), np.nan), np.zeros((7, 32)), np.full((1, 32), 2.0)]).astype(
        np.float32))), r"few.npy: only 4.2% of its 768 depth values are valid"),
    # 3. every argument checked before any work
    Case("3 gt missing", lambda c: upsample(c, "--gt", str(c.d / "nope.png")), r"nope.png: no such file"),
    Case("3 gt of the wrong size", lambda c: upsample(c, "--gt", str(c.d / "lr.png")),
         r"lr.png is 24 x 32, the result 96 x 128"),
    Case("3 preview extension", lambda c: upsample(c, "--preview", str(c.d / "p.xyz")),
         r"p.xyz: unknown preview format; use one of .png"),
    Case("3 out extension", lambda c: upsample(c, "--out", str(c.d / "o.tiff")), r"o.tiff: unknown output format"),
    # 4. compare over no images
    Case("4 compare --limit 0", lambda c: compare(c, "--limit", "0"), r"--limit 0: must be at least 1 image"),
    # 5. tiles
    Case("5 --tile -5", lambda c: upsample(c, "--tile", "-5"), r"--tile -5: a tile must be at least 32 pixels"),
    # 6. an output that cannot be written, found before any work
    Case("6 out in a read-only folder", read_only_out, r"out.png: cannot write the output: no write permission",
         skip="root writes into read-only folders" if os.geteuid() == 0 else ""),
    Case("6 out below a file", lambda c: upsample(c, "--out", str(c.d / "rgb.png" / "out.png")),
         r"out.png: cannot write the output: .*rgb.png is a file, not a folder"),
    Case("6 preview below a file", lambda c: upsample(c, "--preview", str(c.d / "lr.png" / "p.png")),
         r"p.png: cannot write the preview: .*lr.png is a file, not a folder"),
    # 7. compare's arguments
    Case("7 --scales 0", lambda c: compare(c, "--scales", "0"), r"--scales 0: a ratio must be above 1 and at most 64"),
    Case("7 --scales -4", lambda c: compare(c, "--scales", "4", "-4"), r"--scales -4: a ratio must be above 1"),
    Case("7 --scales 512", lambda c: compare(c, "--scales", "512"), r"--scales 512: a ratio must be above 1 and at"),
    Case("7 --scales 50 on 96 x 128", lambda c: compare(c, "--scales", "50"),
         r"nyu_0000: 96 x 128 is too small for x50"),
    Case("7 --methods ''", lambda c: ["compare", "--data", f"nyu:{c.nyu}", "--methods", "", "--out",
                                       str(c.d / "cmp")],
         r"--methods: no method given"),
    Case("7 --out is a file", lambda c: compare(c, "--out", str(c.d / "rgb.png")),
         r"rgb.png: --out names a file; give a folder"),
    Case("7 --protocol real without measured inputs", lambda c: compare(c, "--protocol", "real"),
         r"nyu: protocol 'real' needs measured inputs"),
    # 8. a truncated HDF5 file
    Case("8 compare on a truncated NYU file", lambda c: compare(c, data=f"nyu:{truncated(c)}"),
         r"t.mat: cannot be read: truncated or damaged"),
    Case("8 fit on a truncated NYU file", lambda c: fit(c, "--data.mat_path", truncated(c)),
         r"t.mat: cannot be read: truncated or damaged", proc=True),
    # 12. folder mode: ambiguous names, nothing to do
    Case("12 a.png beside a.jpg", lambda c: folders(c, ["a.png", "a.jpg"], ["a.png"]),
         r"no RGB-D pairs to upsample \(.*a\.\*: ambiguous: a.jpg and a.png have the same name"),
    Case("12 empty folders", lambda c: folders(c, [], []), r"no RGB-D pairs to upsample \(the folders hold no images"),
    Case("12 out is an input folder", lambda c: folders(c, ["a.png"], ["a.png"]) + ["--out", str(c.d / "rgbs")],
         r"rgbs: write the results to a folder of their own"),
    # 14. fit checks its data before the Trainer starts
    Case("14 fit without --data.mat_path", lambda c: fit(c), r"no training data: give --data.mat_path", proc=True),
    Case("14 fit: missing NYU file", lambda c: fit(c, "--data.mat_path", str(c.d / "missing.mat")),
         r"missing.mat: no such file", proc=True),
    Case("14 fit: fewer crops than a batch", lambda c: fit(c, "--data.mat_path", str(c.nyu), "--data.num_train", "4",
                                                          "--data.val_count", "1", "--data.batch_size", "8"),
         r"only 3 training crops per epoch, fewer than the batch size 8", proc=True),
    Case("14 fit: val_count takes most pairs", lambda c: fit(c, "--data.mat_path", str(c.nyu), "--data.num_train", "4"),
         r"--data.val_count 50 would validate on 3 of the 4 training pairs: give --data.val_count 2 or less",
         proc=True),
    Case("14 test without a test set", lambda c: fit(c, "--data.synthetic", "4", command="test"),
         r"no test set: give --data.mat_path", proc=True),
    # issue 14: any ratio, but one view
    Case("aspect ratios 6% apart", lambda c: upsample(c, depth=save(c, "wide.npy", np.ones((24, 34), np.float32))),
         r"wide.npy is 24 x 34 and .*rgb.png is 96 x 128: their aspect ratios differ by 5.9% \(more than 2%\): "
         r"register the depth to the rgb's view first"),
    Case("depth larger than rgb", lambda c: upsample(c, depth=save(c, "big.npy", np.ones((192, 256), np.float32))),
         r"big.npy is 192 x 256 and .*rgb.png is 96 x 128: the depth must not be larger than the rgb"),
    Case("--scale contradicts the sizes", lambda c: upsample(c, "--scale", "2.5"),
         r"--scale 2.5 does not match the sizes: .*lr.png is 24 x 32, .*rgb.png is 96 x 128 \(x4\)"),
    Case("--depth-scale 0", lambda c: upsample(c, "--depth-scale", "0"), r"--depth-scale 0: must be a positive number"),
    Case("--device nonsense", lambda c: upsample(c, "--device", "tpu"), r"--device 'tpu': expected auto, cpu, cuda"),
    Case("--device cuda without a GPU", lambda c: upsample(c, "--device", "cuda"), r"--device cuda: no CUDA GPU",
         skip="a GPU is present" if torch.cuda.is_available() else ""),
    Case("compare --device cuda:7", lambda c: compare(c, "--device", "cuda:7"), r"--device cuda:7: no (CUDA GPU|such)"),
]


def _run(argv: list[str], cwd: Path, proc: bool, capsys) -> tuple[int, str, str]:
    if proc:
        result = subprocess.run([str(DEPTHSR), *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        return result.returncode, result.stdout, result.stderr
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.proc else [])
                                  for c in CASES])
def test_failure_is_one_line_and_changes_nothing(case: Case, tmp_path, tiny_nyu, monkeypatch, capsys):
    if case.skip:
        pytest.skip(case.skip)
    ctx = Ctx(tmp_path / "case", tmp_path / "case" / "nyu6.mat")
    make_pair(ctx.d)
    ctx.nyu.write_bytes(tiny_nyu.read_bytes())
    argv = case.argv(ctx)
    before = snapshot(ctx.d)
    monkeypatch.chdir(ctx.d)
    code, out, err = _run(argv, ctx.d, case.proc, capsys)
    assert code == case.code, (out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("depthsr")]
    others = [line for line in err.splitlines() if not line.startswith("depthsr") and line.strip()]
    assert len(errors) == 1 and errors[0].startswith("depthsr: error: "), err
    assert all(line.startswith("Seed set to") for line in others), others  # Lightning's one info line, if any
    import re

    assert re.search(case.message, errors[0]), errors[0]
    assert "GPU available" not in err  # Lightning's commands stopped before the Trainer started
    assert snapshot(ctx.d) == before  # nothing written, nothing changed, no temporary file left


# ------------------------------------------------------------------------------------------------ case 9: Ctrl-C


@pytest.mark.slow
def test_ctrl_c_exits_130_in_one_line_and_leaves_no_partial_file(tmp_path):
    """SIGINT while `upsample` works through a folder (a network, so each pair takes a while): exit 130, one
    line, no traceback, and every result present is complete (no temporary file left)."""
    from depthsr.methods.model_file import save_network
    from depthsr.models import build_model

    net = build_model("paka")
    save_network(tmp_path / "net.safetensors", net, "paka", {"preset": "small"}, [4])
    rgb, depth = _scene(384, 512)
    lr = cv2.resize(depth, (128, 96), interpolation=cv2.INTER_AREA)
    for folder in ("rgbs", "depths"):
        (tmp_path / folder).mkdir()
    for i in range(40):
        cv2.imwrite(str(tmp_path / "rgbs" / f"{i}.png"), rgb)
        cv2.imwrite(str(tmp_path / "depths" / f"{i}.png"), lr)
    before = snapshot(tmp_path)
    log = tmp_path.parent / f"{tmp_path.name}_stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([str(DEPTHSR), "upsample", "--rgb", str(tmp_path / "rgbs"), "--depth",
                                 str(tmp_path / "depths"), "--out", str(tmp_path / "out"), "--checkpoint",
                                 str(tmp_path / "net.safetensors"), "--tile", "256"], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while "upsample:" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the progress bar appears once the model is loaded and work begins
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    err = log.read_text()
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and lines[-1] == "depthsr: interrupted (no file was left half-written)"
    written = {k: v for k, v in snapshot(tmp_path).items() if k not in before}
    assert set(written) <= {"out", *(f"out/{i}.png" for i in range(40))}, written  # no temporary file
    for name in written:
        if name != "out":
            assert cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED).shape == (384, 512)  # complete


# ------------------------------------------------------------------------------------------------ case 10: resume


class SigintAt(pl.Callback):
    """Ctrl-C (SIGINT to the process itself) when training reaches `step`, in the middle of an epoch."""

    def __init__(self, step: int = 4) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def _fit(nyu: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    """A tiny step-bounded fit (3 batches per epoch, 9 steps), logged to CSV, in a process of its own."""
    cwd.mkdir(parents=True, exist_ok=True)
    logger = '{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "runs"}}'
    cmd = [str(DEPTHSR), *fit(None, "--data.mat_path", str(nyu), "--data.num_train", "4", "--data.val_count", "1",
                              "--data.repeats", "8", "--data.batch_size", "4", "--trainer.limit_train_batches", "3",
                              "--trainer.max_steps", "9", "--model.model_kwargs", '{"width": 8, "blocks": 1}',
                              "--trainer.log_every_n_steps", "1", "--trainer.enable_model_summary", "false",
                              "--trainer.default_root_dir", ".", *extra), "--trainer.logger", logger]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def _log(run: Path) -> list[dict]:
    with open(next(run.rglob("metrics.csv"))) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_resume_after_sigint_is_exact_under_max_steps(tiny_nyu, tmp_path):
    """Bounded by --trainer.max_steps, interrupted by SIGINT in the middle of the second epoch and resumed from
    latest-*.ckpt (the end of the first): the same steps, losses, validation RMSE and final weights as the
    uninterrupted run. (The max_epochs case is tests/test_training.py::test_resume_continues_exactly.)"""
    straight = _fit(tiny_nyu, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    cut = _fit(tiny_nyu, tmp_path / "cut", f"--trainer.callbacks+={__name__}.SigintAt")
    assert cut.returncode != 0 and "Detected KeyboardInterrupt" in cut.stderr
    latest = next((tmp_path / "cut").rglob("latest-*.ckpt"))
    assert torch.load(latest, weights_only=True)["global_step"] == 3  # the end of the first epoch
    resumed = _fit(tiny_nyu, tmp_path / "resumed", "--ckpt_path", str(latest))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = [r for r in _log(tmp_path / "straight") if int(r["step"]) >= 3]
    got = _log(tmp_path / "resumed")
    assert [(r["epoch"], r["step"]) for r in got] == [(r["epoch"], r["step"]) for r in expected]
    for a, b in zip(expected, got):
        for key in ("train/loss", "train/lr", "val/rmse"):
            assert a.get(key) == b.get(key), (key, a, b)
    a = torch.load(next((tmp_path / "straight").rglob("latest-*.ckpt")), weights_only=True)
    b = torch.load(next((tmp_path / "resumed").rglob("latest-*.ckpt")), weights_only=True)
    assert a["global_step"] == b["global_step"] == 9
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["lr_schedulers"] == b["lr_schedulers"]
    (opt_a,), (opt_b,) = a["optimizer_states"], b["optimizer_states"]
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_b["state"][index][key]), (index, key)
