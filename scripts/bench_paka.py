"""PAKA operator benchmark: F.conv2d vs the unfold reference vs the fast path, side by side on the CPU.

For each case, one process times conv and fast in alternating rounds of back-to-back calls (steady state
for each, while the machine's drift hits both alike), then the others: best wall time of forward and of
forward+backward. Peak extra resident memory
(VmHWM above the resident size once the inputs exist) of one forward+backward is measured in a fresh
process per implementation. Prints a table and the ratios fast/conv and fast/reference.

The timing process keeps freed memory as the ``depthsr`` command does (``depthsr.runtime``): with glibc's
default settings large blocks go back to the system and are faulted in again on the next call, which on
this VM costs conv and the fast path 15-50% at random. ``--system-malloc`` times without it.

Implementations: ``conv`` (F.conv2d, same shape), ``reference`` (unfold PAKA), ``portable`` (the slab
path in PyTorch operations, as used off the CPU or without a C compiler: DEPTHSR_NATIVE=0) and
``fast`` (what ``paka_conv2d`` runs here: the fused native kernels around oneDNN GEMMs).

    python scripts/bench_paka.py [--threads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

CASES = {  # name: (B, C, O, H, W, k)
    "B4 C64 128x128 k3": (4, 64, 64, 128, 128, 3),
    "B2 C32 256x256 k5": (2, 32, 32, 256, 256, 5),
}
IMPLS = ("conv", "reference", "portable", "fast")
ROUNDS = 3


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _setup(shape: tuple[int, ...], threads: int):
    """Inputs of one case and a forward function per implementation."""
    import torch
    import torch.nn.functional as F

    from depthsr.ops import paka_conv2d, paka_conv2d_reference

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    b, c, o, h, w, k = shape
    x = torch.randn(b, c, h, w, requires_grad=True)
    weight = (0.1 * torch.randn(o, c, k, k)).requires_grad_()
    bias = torch.zeros(o, requires_grad=True)
    a_ch = torch.randn(b, c, h, w, requires_grad=True)
    a_sp = torch.randn(b, k * k, h, w, requires_grad=True)

    def portable():
        os.environ["DEPTHSR_NATIVE"] = "0"
        try:
            return paka_conv2d(x, weight, bias, a_ch, a_sp)
        finally:
            del os.environ["DEPTHSR_NATIVE"]

    return {
        "conv": lambda: F.conv2d(x, weight, bias, padding=k // 2),
        "reference": lambda: paka_conv2d_reference(x, weight, bias, a_ch, a_sp),
        "portable": portable,
        "fast": lambda: paka_conv2d(x, weight, bias, a_ch, a_sp),
    }


def _times(shape: tuple[int, ...], threads: int, repeats: int, system_malloc: bool, queue) -> None:
    import torch

    from depthsr.runtime import keep_freed_memory

    if not system_malloc:
        keep_freed_memory()

    fns = _setup(shape, threads)
    best = {impl: [float("inf"), float("inf")] for impl in IMPLS}
    # the reference's gigabytes would evict and re-fault everything: it runs on its own, last
    for group in (("conv", "fast"), ("portable",), ("reference",)):
        for impl in group:  # warm-up: native build, oneDNN primitive caches, the allocator's pools
            fns[impl]().sum().backward()
        for _ in range(ROUNDS):
            for impl in group:
                with torch.no_grad():
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        fns[impl]()
                        best[impl][0] = min(best[impl][0], time.perf_counter() - t0)
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fns[impl]().sum().backward()
                    best[impl][1] = min(best[impl][1], time.perf_counter() - t0)
    queue.put(best)


def _memory(impl: str, shape: tuple[int, ...], threads: int, queue) -> None:
    fn = _setup(shape, threads)[impl]
    if impl in ("portable", "fast"):  # one-time costs (imports, the native library) before the baseline
        _setup((1, 1, 1, 4, 4, 3), threads)[impl]()
    base = _rss_kib("VmRSS")
    _reset_peak()
    fn().sum().backward()
    queue.put((_rss_kib("VmHWM") - base) / 1024)


def _in_fresh_process(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="back-to-back calls per round")
    parser.add_argument("--system-malloc", action="store_true", help="time with glibc's default malloc settings")
    args = parser.parse_args()
    print(f"threads={args.threads}, best of {ROUNDS} rounds x {args.repeats} calls, "
          f"{'system malloc' if args.system_malloc else 'malloc keeps freed memory'}; "
          "memory = peak extra RSS of one forward+backward")
    print(f"{'case':<20} {'impl':<10} {'fwd ms':>8} {'fwd+bwd ms':>11} {'peak MiB':>9}")
    for name, shape in CASES.items():
        times = _in_fresh_process(_times, shape, args.threads, args.repeats, args.system_malloc)
        mem = {impl: _in_fresh_process(_memory, impl, shape, args.threads) for impl in IMPLS}
        for impl in IMPLS:
            tf, tfb = times[impl]
            print(f"{name:<20} {impl:<10} {tf * 1e3:8.1f} {tfb * 1e3:11.1f} {mem[impl]:9.1f}")
        (cf, cfb), (rf, rfb), (ff, ffb) = times["conv"], times["reference"], times["fast"]
        print(f"{name:<20} ratios     fast/conv: fwd {ff / cf:.2f}x  fwd+bwd {ffb / cfb:.2f}x  "
              f"memory {mem['fast'] / mem['conv']:.2f}x | fast/reference: fwd {ff / rf:.2f}x  "
              f"fwd+bwd {ffb / rfb:.2f}x  memory {mem['fast'] / mem['reference']:.2f}x")


if __name__ == "__main__":
    main()
