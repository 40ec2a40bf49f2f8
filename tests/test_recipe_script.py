"""scripts/train_default.sh's order of steps, and where `--from` starts it. The steps themselves (`depthsr fit`,
`export`, `compare`) are tested on their own elsewhere; here a recording stand-in for the `depthsr` command (the
script's DEPTHSR and PYTHON) takes their place, in a copy of the script outside the repository (the script empties
its run folders)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LATER = ["configs/default_finish.yaml", "configs/default_downscaled.yaml", "configs/default_rooms.yaml",
         "configs/default_larger_crops.yaml", "configs/default_rmse_loss.yaml", "configs/tof_model.yaml"]

# each `fit` leaves a checkpoint in a run folder of its own, numbered
RECORDER = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [[ $1 == fit ]]; then
    run=runs/default_model/$(grep -c '^fit' "$CALLS"); mkdir -p $run
    echo "$run" > $run/latest-000.ckpt; cp $run/latest-000.ckpt $run/best-000.ckpt
fi
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """The script, copied into tmp_path/repo, run from tmp_path with `args`; the commands it ran, split."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scripts" / "train_default.sh", repo / "scripts")
    recorder = tmp_path / "recorder"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.unlink(missing_ok=True)
    env = {**os.environ, "DEPTHSR": str(recorder), "PYTHON": str(recorder), "CALLS": str(calls)}
    done = subprocess.run(["bash", str(repo / "scripts" / "train_default.sh"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    return done, [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []


def _configs(call: list[str]) -> list[str]:
    return [call[i + 1] for i, arg in enumerate(call) if arg == "--config"]


def _init(call: list[str]) -> str:
    return call[call.index("--model.init_weights") + 1]


def test_the_whole_recipe_runs_every_stage_from_the_one_before(tmp_path):
    done, calls = _run(tmp_path, "--trainer.max_steps", "3")
    assert done.returncode == 0, done.stderr
    assert calls[0] == ["scripts/stage0.py", "runs/default_model/stage0.safetensors"]
    fits = [call for call in calls if call[0] == "fit"]
    assert [_configs(fit) for fit in fits] == [["configs/default_model.yaml", *LATER[:n]] for n in range(7)]
    assert _init(fits[0]) == "runs/default_model/stage0.safetensors"
    assert _init(fits[1]).endswith("runs/default_model/1/best-000.ckpt")  # the fine-tune's best
    assert [_init(fit).split("runs/")[-1] for fit in fits[2:]] == [f"default_model/{n}/latest-000.ckpt"
                                                                    for n in range(2, 7)]
    assert all(fit[-2:] == ["--trainer.max_steps", "3"] for fit in fits)
    assert [call[0] for call in calls[8:]] == ["export", "export", "compare", "compare", "export", "export"]
    assert all(call[call.index("--ckpt") + 1].endswith("default_model/7/latest-000.ckpt") for call in calls[8:]
               if call[0] == "export")


def test_from_a_later_stage_runs_it_and_the_rest_from_the_checkpoint_given(tmp_path):
    rooms = tmp_path / "repo" / "runs" / "default_model" / "rooms" / "latest-000.ckpt"  # in a folder emptied first
    rooms.parent.mkdir(parents=True)
    rooms.write_text("the rooms stage's last")
    done, calls = _run(tmp_path, "--from", "configs/default_larger_crops.yaml", str(rooms.relative_to(tmp_path)),
                       "--seed_everything", "1")
    assert done.returncode == 0, done.stderr
    fits = [call for call in calls if call[0] == "fit"]
    assert [_configs(fit) for fit in fits] == [["configs/default_model.yaml", *LATER[:n]] for n in (4, 5, 6)]
    assert (tmp_path / "repo" / _init(fits[0])).read_text() == "the rooms stage's last"  # a copy, kept
    assert [_init(fit).split("runs/")[-1] for fit in fits[1:]] == ["default_model/1/latest-000.ckpt",
                                                                    "default_model/2/latest-000.ckpt"]
    assert all(fit[-2:] == ["--seed_everything", "1"] for fit in fits)
    assert "scripts/stage0.py" not in [call[0] for call in calls]
    assert [call[0] for call in calls[3:]] == ["export", "export", "compare", "compare", "export", "export"]


@pytest.mark.parametrize("stage, ckpt, message", [
    ("configs/default_model.yaml", "rooms.ckpt", "--from: 'configs/default_model.yaml' is not a later stage"),
    ("configs/default_rooms.yaml", "missing.ckpt", "--from configs/default_rooms.yaml: '{tmp}/missing.ckpt' is not a "
                                                   "checkpoint file"),
])
def test_from_a_wrong_stage_or_a_missing_checkpoint_is_one_line_and_runs_nothing(tmp_path, stage, ckpt, message):
    (tmp_path / "rooms.ckpt").write_text("")
    done, calls = _run(tmp_path, "--from", stage, ckpt)
    assert done.returncode == 2 and calls == []
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path))
