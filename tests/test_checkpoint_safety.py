"""Model files are data, never code. Crafted pickles (.pt, Lightning .ckpt, a bare pickle) whose unpickling
would run `touch MARKER` are refused by every reader (the Python API, `upsample`, `compare`, `export`,
`validate`/`test --ckpt_path`) in one line, and the marker never appears. Exports are .safetensors with their
provenance and round-trip exactly; a corrupt, altered or too-new file is a one-line error."""
from __future__ import annotations

import csv
import json
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from depthsr import __version__
from depthsr.cli import main
from depthsr.data.io import write_depth
from depthsr.errors import DepthSRError
from depthsr.methods.digests import file_sha256, read_sha256_record, sha256_record
from depthsr.methods.model_file import FORMAT, model_info
from depthsr.methods.network import CHECKPOINT_DIR, DEFAULT_CHECKPOINT, load_network
from depthsr.models import build_model

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """What a malicious checkpoint carries: unpickling it runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def tiny_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model("plain", width=8, blocks=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def legacy_pt(path: Path, net: torch.nn.Module, extra: dict | None = None) -> Path:
    """The .pt an earlier `depthsr export` wrote (plain dict of tensors and plain types)."""
    torch.save({"model": "plain", "kwargs": net.config, "scales": [4, 8], "info": extra or {},
                "state_dict": {k: v.clone() for k, v in net.state_dict().items()}}, path)
    return path


def craft(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """(a malicious file of `kind`, the marker its payload would create)."""
    marker = tmp_path / "ran"
    net = tiny_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if kind == "ckpt":  # shaped as a checkpoint of `depthsr fit`, the payload among the callback states
        ckpt = {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.0",
                "state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {"model": "plain", "model_kwargs": net.config},
                "callbacks": {"Evil": Payload(marker)}}
    else:
        ckpt = {"model": "plain", "kwargs": net.config, "scales": [4], "state_dict": state,
                "info": {"note": Payload(marker)}}
    path = tmp_path / f"evil.{'pth' if kind == 'pickle' else kind}"
    if kind == "pickle":  # a bare pickle, not torch's zip layout
        path.write_bytes(pickle.dumps(ckpt))
    else:
        torch.save(ckpt, path)
    if kind == "pickle":  # the control: full unpickling does run the payload
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists(), "the crafted file is not malicious: the tests below would prove nothing"
    marker.unlink()
    return path, marker


@pytest.fixture(params=["pt", "ckpt", "pickle"])
def evil(tmp_path, request) -> tuple[Path, Path]:
    return craft(tmp_path, request.param)


@pytest.fixture()
def pair(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    write_depth(tmp_path / "lr.npy", torch.rand(1, 8, 8) + 1.0)
    return tmp_path / "rgb.png", tmp_path / "lr.npy"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("depthsr: error: "), err
    return err[0]


def assert_refused(message: str, path: Path) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert str(path) in message and "refused" in message and "nothing was run" in message
    assert "depthsr export" in message  # what to do


# ------------------------------------------------------------------------------------- refusal, every reader


def test_python_api_refuses_without_running(evil):
    path, marker = evil
    with pytest.raises(DepthSRError) as info:
        load_network(path)
    assert_refused(str(info.value), path)
    assert not marker.exists()


def test_upsample_refuses_without_running(evil, pair, capsys):
    path, marker = evil
    rgb, lr = pair
    out = rgb.parent / "out.npy"
    code = main(["upsample", "--rgb", str(rgb), "--depth", str(lr), "--out", str(out), "--checkpoint", str(path)])
    assert code == 2
    assert_refused(one_line_error(capsys), path)
    assert not marker.exists() and not out.exists()


def test_compare_refuses_without_running(evil, tmp_path, capsys, shared):
    path, marker = evil
    code = main(["compare", "--data", f"folder:{shared / 'middlebury2003'}", "--scales", "4", "--methods",
                 f"bicubic,{path}", "--out", str(tmp_path / "cmp"), "--quiet"])
    assert code == 2
    assert_refused(one_line_error(capsys), path)
    assert not marker.exists() and not (tmp_path / "cmp").exists()


def test_export_refuses_without_running(evil, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "m.safetensors"
    assert main(["export", "--ckpt", str(path), "--out", str(out)]) == 2
    assert_refused(one_line_error(capsys), path)
    assert not marker.exists() and not out.exists() and not sha256_record(out).exists()


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["validate", "test"])
@pytest.mark.parametrize("kind", ["ckpt", "pt"])
def test_lightning_ckpt_path_refuses_without_running(tmp_path, subcommand, kind):
    """`depthsr validate/test --ckpt_path` in a real process: exit 2, one line on stderr, no payload."""
    path, marker = craft(tmp_path, kind)
    cmd = [sys.executable, "-m", "depthsr.cli", subcommand, "--data.synthetic", "2", "--data.num_workers", "0",
           "--trainer.logger", "false", "--ckpt_path", str(path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("depthsr: error: ")
    assert_refused(err[0], path)
    assert not marker.exists()


def test_lightning_weights_only_false_is_refused(tmp_path, capsys):
    path, marker = craft(tmp_path, "ckpt")
    code = main(["validate", "--data.synthetic", "2", "--trainer.logger", "false", "--weights_only", "false",
                 "--ckpt_path", str(path)])
    assert code == 2 and "--weights_only false" in one_line_error(capsys)
    assert not marker.exists()


def test_unreadable_file_is_not_called_malicious(tmp_path):
    (tmp_path / "junk.pt").write_text("nope")
    with pytest.raises(DepthSRError, match=r"junk.pt: not a readable checkpoint"):
        load_network(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------- what still loads


@pytest.mark.slow
def test_fit_checkpoints_load_resume_and_export_under_weights_only(tmp_path, monkeypatch):
    """A real `depthsr fit` checkpoint (RNG state callback, hyper-parameters, optimiser, loops) loads with
    weights_only=True: `validate --ckpt_path`, resuming `fit --ckpt_path`, load_network and export."""
    monkeypatch.chdir(tmp_path)
    common = ["--model.model", "plain", "--model.model_kwargs", '{"width": 8, "blocks": 1}', "--data.synthetic", "4",
              "--data.crop", "32", "--data.scales", "[4]", "--data.batch_size", "2", "--data.num_workers", "0",
              "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.limit_val_batches",
              "1", "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks+=depthsr.training.RNGState"]
    assert main(["fit", *common, "--trainer.max_steps", "2"]) == 0
    ckpt = next(tmp_path.rglob("*.ckpt"))
    raw = torch.load(ckpt, weights_only=True)
    assert "rng_state" in raw and raw["hyper_parameters"]["model"] == "plain"
    assert main(["validate", *common, "--ckpt_path", str(ckpt)]) == 0
    assert main(["fit", *common, "--trainer.max_steps", "3", "--ckpt_path", str(ckpt)]) == 0

    model, scales = load_network(ckpt)
    assert scales == (4,)
    out = tmp_path / "fit.safetensors"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    back, back_scales = load_network(out)
    lr, rgb = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(lr, rgb), back(lr, rgb)) and back_scales == (4,)
    info = model_info(out)
    assert info["source"]["file"] == ckpt.name and info["source"]["sha256"] == file_sha256(ckpt)
    assert info["training_data"]["datamodule"]["synthetic"] == 4 and info["recipe"]["model"]["model"] == "plain"
    env = info["source"]["environment"]  # what ran the training: two runs of a recipe can be told apart
    assert env == raw["environment"] and env["torch"] == torch.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["threads"] == torch.get_num_threads() and env["cpu"]


def test_export_round_trip_with_provenance(tmp_path, capsys):
    net = tiny_net()
    src = legacy_pt(tmp_path / "old.pt", net)  # an earlier .pt still reads (weights_only) and converts
    (tmp_path / "recipe.yaml").write_text("model:\n  model: plain\n  lr: 0.001\ndata:\n  synthetic: 3000\n")
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "dataset", "scale", "protocol", "units", "images", "rmse", "mae"])
        writer.writerow(["bicubic", "crops256", "4", "bicubic", "units", "3", "4.409", "1.499"])
        writer.writerow(["old", "crops256", "4", "bicubic", "units", "3", "2.773", "0.612"])
    out = tmp_path / "m.safetensors"
    args = ["export", "--ckpt", str(src), "--out", str(out), "--scales", "4", "8", "16",
            "--recipe", str(tmp_path / "recipe.yaml"), "--data", "3000 procedural scenes",
            "--results", str(tmp_path / "results.csv")]
    assert main(args) == 0
    sha = file_sha256(out)
    assert f"sha256 {sha}" in capsys.readouterr().out
    assert sha256_record(out).read_text() == f"{sha}  m.safetensors\n" and read_sha256_record(out) == sha

    back, scales = load_network(out)
    assert scales == (4, 8, 16)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    lr, rgb = torch.rand(2, 1, 8, 8) + 1, torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(lr, rgb), back(lr, rgb))

    with safe_open(out, framework="pt") as f:
        raw = f.metadata()
    assert all(isinstance(v, str) for v in raw.values()) and json.loads(raw["format"]) == FORMAT
    info = model_info(out)
    assert info["architecture"] == "plain" and info["kwargs"] == net.config and info["scales"] == [4, 8, 16]
    assert info["depthsr_version"] == __version__ and "normalised per image" in info["units"]
    assert info["recipe"]["config"] == {"model": {"model": "plain", "lr": 0.001}, "data": {"synthetic": 3000}}
    assert info["training_data"]["description"] == "3000 procedural scenes"
    assert info["results"]["rows"][1] == {"method": "old", "dataset": "crops256", "scale": 4, "protocol": "bicubic",
                                          "units": "units", "images": 3, "rmse": 2.773, "mae": 0.612}
    assert info["source"] == {"file": "old.pt", "sha256": file_sha256(src), "kind": "depthsr .pt"}

    again = tmp_path / "again.safetensors"  # the same input gives the same bytes: the hash is reproducible
    assert main([*args[:4], str(again), *args[5:]]) == 0 and file_sha256(again) == sha


def test_export_records_a_ratio_range_an_earlier_stage_trained(tmp_path, capsys):
    """`--ratio-range LOW HIGH` records ratios trained by an earlier stage (the default's finish trains x4 / x8 /
    x16 only, after random ratios 2-16): the loaded method counts them as trained; a bad range is one line."""
    from depthsr.methods.network import network_method

    src = legacy_pt(tmp_path / "old.pt", tiny_net())
    out = tmp_path / "m.safetensors"
    assert main(["export", "--ckpt", str(src), "--out", str(out), "--scales", "4", "8"]) == 0
    assert "ratio_range" not in model_info(out) and not network_method(out, "m").trained_for(7.5)
    ranged = ["--scales", "4", "8", "--ratio-range", "2", "16"]
    assert main(["export", "--ckpt", str(src), "--out", str(out), *ranged]) == 0
    method = network_method(out, "m")
    assert model_info(out)["ratio_range"] == [2.0, 16.0] and method.trained_for(7.5) and not method.trained_for(17)
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    assert main(["export", "--ckpt", str(src), "--out", str(bad), "--ratio-range", "16", "2"]) == 2
    assert "--ratio-range 16 2" in one_line_error(capsys) and not bad.exists()


def test_export_writes_only_safetensors(tmp_path, capsys):
    src = legacy_pt(tmp_path / "old.pt", tiny_net())
    assert main(["export", "--ckpt", str(src), "--out", str(tmp_path / "new.pt")]) == 2
    assert "writes .safetensors" in one_line_error(capsys) and not (tmp_path / "new.pt").exists()


# ------------------------------------------------------------------------------------- integrity and versions


@pytest.fixture()
def exported(tmp_path) -> Path:
    src = legacy_pt(tmp_path / "old.pt", tiny_net())
    out = tmp_path / "m.safetensors"
    assert main(["export", "--ckpt", str(src), "--out", str(out), "--scales", "4", "8"]) == 0
    return out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_byte_is_one_line_error(exported, pair, capsys):
    rgb, lr = pair
    recorded = read_sha256_record(exported)
    flip(exported, -1)  # one bit of the last weight
    with pytest.raises(DepthSRError, match=r"m.safetensors: sha256 [0-9a-f]{16}\.\.\. is not the recorded .* "
                                           r"corrupt or was altered"):
        load_network(exported)
    code = main(["upsample", "--rgb", str(rgb), "--depth", str(lr), "--out", str(rgb.parent / "o.npy"),
                 "--checkpoint", str(exported)])
    assert code == 2 and "corrupt or was altered" in one_line_error(capsys)
    with pytest.raises(DepthSRError, match="corrupt or was altered"):  # an expected hash given by the caller
        load_network(exported, sha256=recorded)                       # (as the shipped default's is)
    sha256_record(exported).unlink()  # without the record, the digest inside the file still catches it
    with pytest.raises(DepthSRError, match="weights do not match the digest recorded in it"):
        load_network(exported)


def test_altered_metadata_is_caught_by_the_record(exported):
    data = exported.read_bytes()
    assert data.count(b"[4, 8]") == 1
    exported.write_bytes(data.replace(b"[4, 8]", b"[4, 9]"))  # same length: a valid file claiming other scales
    with pytest.raises(DepthSRError, match="corrupt or was altered"):
        load_network(exported)


def test_truncated_file_is_one_line_error(exported):
    sha256_record(exported).unlink()
    exported.write_bytes(exported.read_bytes()[:100])
    with pytest.raises(DepthSRError, match=r"m.safetensors: not a readable .safetensors file \(.*\)$"):
        load_network(exported)


def rewrite_metadata(src: Path, dst: Path, **changes) -> Path:
    """A copy of `src` whose metadata says what a later depthsr might write (weights and their digest kept)."""
    with safe_open(src, framework="pt") as f:
        meta = f.metadata()
    meta.update({k: json.dumps(v) for k, v in changes.items()})
    save_file(load_file(src), dst, metadata=meta)
    return dst


@pytest.mark.parametrize("changes,expected", [
    ({"architecture": "paka3"}, r"written by depthsr 9\.1\.0 for a network 'paka3' that this depthsr .* does not "
                                r"know .*; upgrade depthsr"),
    ({"kwargs": {"width": 8, "blocks": 1, "gates": 4}},
     r"written by depthsr 9\.1\.0 with network keyword\(s\) gates that this depthsr .* does not know"),
    ({"format": "depthsr-model/2"}, r"written by depthsr 9\.1\.0 in format 'depthsr-model/2'"),
])
def test_newer_incompatible_model_names_its_version(exported, pair, capsys, changes, expected):
    newer = rewrite_metadata(exported, exported.with_name("newer.safetensors"), depthsr_version="9.1.0", **changes)
    with pytest.raises(DepthSRError, match=expected) as info:
        load_network(newer)
    assert "\n" not in str(info.value) and __version__ in str(info.value)
    rgb, lr = pair
    code = main(["upsample", "--rgb", str(rgb), "--depth", str(lr), "--out", str(rgb.parent / "o.npy"),
                 "--checkpoint", str(newer)])
    assert code == 2 and "9.1.0" in one_line_error(capsys)


def test_foreign_safetensors_is_not_a_depthsr_model(tmp_path):
    save_file({"w": torch.ones(2)}, tmp_path / "hf.safetensors")
    with pytest.raises(DepthSRError, match="hf.safetensors: not a depthsr model"):
        load_network(tmp_path / "hf.safetensors")


def test_shipped_default_is_safetensors_verified_against_its_record_and_card():
    assert DEFAULT_CHECKPOINT == CHECKPOINT_DIR / "depthsr_default.safetensors"
    assert DEFAULT_CHECKPOINT.is_file(), f"{DEFAULT_CHECKPOINT}: not exported yet (scripts/train_default.sh)"
    sha = read_sha256_record(DEFAULT_CHECKPOINT)
    assert file_sha256(DEFAULT_CHECKPOINT) == sha
    assert sha in (ROOT / "checkpoints" / "README.md").read_text(), "the model card does not state the sha256"
    info = model_info(DEFAULT_CHECKPOINT)
    assert {"recipe", "training_data", "results"} <= info.keys()
    load_network(DEFAULT_CHECKPOINT, sha256=sha)
