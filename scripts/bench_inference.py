"""Inference cost of the default network at 480 x 640 (x4) on the CPU: the network's forward time beside
bicubic upsampling's and F.conv2d-only plain twin's, and the peak memory of the whole `depthsr upsample`
command (a fresh process), measured side by side in one run.

    python scripts/bench_inference.py [--threads 2] [--rounds 5] [--checkpoint default]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depthsr.data.io import write_depth
from depthsr.methods.network import resolve_method
from depthsr.models import build_model
from depthsr.ops.resize import bicubic_resize
from depthsr.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent


def best_time(fn, rounds: int) -> float:
    """Best wall time of `rounds` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# Runs the command given and prints its peak RSS in KiB. A child started from this benchmark's own process would
# report at least the benchmark's peak (Python starts children with vfork, and Linux carries the parent's peak RSS
# into the child's at exec); started from this small process, it reports its own.
PEAK_RSS_KIB = ("import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def upsample_peak_rss_mb(checkpoint: str, threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `depthsr upsample` on a 120 x 160 -> 480 x 640 pair, in a fresh process."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        import cv2

        rgb = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
        cv2.imwrite(f"{tmp}/rgb.png", cv2.GaussianBlur(rgb, (0, 0), 3))
        write_depth(Path(tmp) / "lr.png", torch.linspace(500, 3000, 120 * 160).reshape(120, 160))
        cmd = [str(Path(sys.executable).parent / "depthsr"), "upsample", "--rgb", f"{tmp}/rgb.png",
               "--depth", f"{tmp}/lr.png", "--out", f"{tmp}/out.png", "--checkpoint", checkpoint]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the user's PATH: the native kernels need its C compiler
        start = time.perf_counter()
        peak = subprocess.run([sys.executable, "-c", PEAK_RSS_KIB, *cmd], check=True, env=env, stdout=subprocess.PIPE,
                              text=True).stdout
        seconds = time.perf_counter() - start
    return seconds, int(peak) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    lr, rgb = torch.rand(1, 1, 120, 160), torch.rand(1, 3, 480, 640)
    network = resolve_method(args.checkpoint).model
    plain = build_model("plain", **network.config).eval()
    with torch.no_grad():
        t_net = best_time(lambda: network(lr, rgb), args.rounds)
        t_plain = best_time(lambda: plain(lr, rgb), args.rounds)
        t_bicubic = best_time(lambda: bicubic_resize(lr, (480, 640)), args.rounds)
    seconds, peak = upsample_peak_rss_mb(args.checkpoint, args.threads)
    print(f"480 x 640 output, x4, {args.threads} threads, best of {args.rounds}")
    print("| what | time | ratio to the network |")
    print("|---|---|---|")
    print(f"| network forward ({network.conv_kind}, {sum(p.numel() for p in network.parameters()):,} parameters) "
          f"| {t_net:.3f} s | 1.00x |")
    print(f"| plain twin forward | {t_plain:.3f} s | {t_plain / t_net:.2f}x |")
    print(f"| bicubic upsampling | {t_bicubic * 1000:.1f} ms | {t_bicubic / t_net:.3f}x |")
    print(f"| `depthsr upsample` whole command | {seconds:.2f} s, peak RSS {peak:.0f} MB | |")


if __name__ == "__main__":
    main()
