"""Exact resume: `RNGState` saves every generator (python, numpy, torch CPU, CUDA when in use) of every rank and
gives each rank back its own: checked in a real 2-process gloo group on the CPU, with a timeout."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depthsr.training import RNGState

ROOT = Path(__file__).resolve().parent.parent

WORKER = r'''
import json, os, random, sys
from pathlib import Path
import numpy as np
import torch
import torch.distributed as dist
from depthsr.training import RNGState

rank, out = int(sys.argv[1]), Path(sys.argv[2])
dist.init_process_group("gloo", rank=rank, world_size=2)
for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
    seed_fn(10 + rank)  # each rank its own stream, as Lightning seeds workers
random.random(), np.random.rand(), torch.rand(5)  # somewhere into the streams

def draws():
    return [random.random(), float(np.random.rand()), torch.rand(3).tolist()]

checkpoint = {}
RNGState().on_save_checkpoint(None, None, checkpoint)  # collective: every rank saves at the same point
expected = draws()
if rank == 0:  # only rank 0 writes the file, as Lightning does
    torch.save(checkpoint, out / "last.ckpt")
dist.barrier()
loaded = torch.load(out / "last.ckpt", weights_only=True)  # every rank resumes from rank 0's file
for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
    seed_fn(999)  # the resumed process starts from elsewhere
RNGState().on_load_checkpoint(None, None, loaded)
(out / f"rank{rank}.json").write_text(json.dumps({"expected": expected, "got": draws(),
                                                  "saved_ranks": len(loaded["rng_state"]["ranks"])}))
dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_each_rank_resumes_its_own_generators_under_ddp(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "OMP_NUM_THREADS": "1"}
    logs = [open(tmp_path / f"rank{rank}.log", "w") for rank in (0, 1)]
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path)], env=env, stdout=log,
                              stderr=subprocess.STDOUT) for rank, log in zip((0, 1), logs)]
    try:
        for p in procs:
            p.wait(timeout=300)  # a hang fails the test instead of blocking the suite
    finally:
        for p, log in zip(procs, logs):
            p.kill()
            log.close()
    for rank, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"rank{rank}.log").read_text()[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["saved_ranks"] == 2
        assert r["got"] == r["expected"]  # exactly the draws the uninterrupted process made
    assert ranks[0]["expected"] != ranks[1]["expected"]  # rank 1 got its own state, not rank 0's


def _draws(device: str) -> list:
    return [random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.rand(3, device=device).tolist()]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))])
def test_single_process_resume_restores_every_generator(device):
    torch.rand(1, device=device)  # CUDA in use (its generator is saved once it is)
    checkpoint: dict = {}
    RNGState().on_save_checkpoint(None, None, checkpoint)
    expected = _draws(device)
    for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
        seed_fn(123)  # torch.manual_seed reseeds the CUDA generators too
    RNGState().on_load_checkpoint(None, None, checkpoint)
    assert _draws(device) == expected
    assert ("cuda" in checkpoint["rng_state"]["ranks"][0]) == (device == "cuda")


def test_checkpoints_with_one_state_still_resume():
    """Checkpoints written before per-rank states held the one process's state at the top level."""
    checkpoint: dict = {}
    RNGState().on_save_checkpoint(None, None, checkpoint)
    legacy = {"rng_state": checkpoint["rng_state"]["ranks"][0]}
    expected = _draws("cpu")
    torch.manual_seed(5)
    RNGState().on_load_checkpoint(None, None, legacy)
    assert _draws("cpu") == expected
