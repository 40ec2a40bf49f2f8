"""PAKA operator benchmark: F.conv2d vs the unfold reference vs the fast path, side by side on the CPU.

Each (case, implementation) runs in a fresh process: wall time (best of N) of forward and of
forward+backward, and peak extra resident memory (VmHWM above the resident size after the inputs
exist) of one forward+backward. Prints a table and the ratios fast/conv and fast/reference.

    python scripts/bench_paka.py [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

CASES = {  # name: (B, C, O, H, W, k)
    "B4 C64 128x128 k3": (4, 64, 64, 128, 128, 3),
    "B2 C32 256x256 k5": (2, 32, 32, 256, 256, 5),
}
IMPLS = ("conv", "reference", "fast")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _run(impl: str, shape: tuple[int, ...], threads: int, repeats: int, queue) -> None:
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
    if impl == "conv":
        fn = lambda: F.conv2d(x, weight, bias, padding=k // 2)  # noqa: E731
    else:
        op = paka_conv2d if impl == "fast" else paka_conv2d_reference
        fn = lambda: op(x, weight, bias, a_ch, a_sp)  # noqa: E731

    def fwd_bwd():
        fn().sum().backward()

    base = _rss_kib("VmRSS")
    _reset_peak()
    fwd_bwd()
    peak_mib = (_rss_kib("VmHWM") - base) / 1024

    def best(f) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    with torch.no_grad():
        fn()
        t_fwd = best(fn)
    t_fb = best(fwd_bwd)
    queue.put((t_fwd, t_fb, peak_mib))


def measure(impl: str, shape: tuple[int, ...], threads: int, repeats: int) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(impl, shape, threads, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"threads={args.threads}, best of {args.repeats}; memory = peak extra RSS of one forward+backward")
    print(f"{'case':<20} {'impl':<10} {'fwd ms':>8} {'fwd+bwd ms':>11} {'peak MiB':>9}")
    for name, shape in CASES.items():
        res = {impl: measure(impl, shape, args.threads, args.repeats) for impl in IMPLS}
        for impl, (tf, tfb, mem) in res.items():
            print(f"{name:<20} {impl:<10} {tf * 1e3:8.1f} {tfb * 1e3:11.1f} {mem:9.1f}")
        (cf, cfb, cm), (rf, rfb, rm), (ff, ffb, fm) = res["conv"], res["reference"], res["fast"]
        print(f"{name:<20} ratios     fast/conv: fwd {ff / cf:.2f}x  fwd+bwd {ffb / cfb:.2f}x  memory {fm / cm:.2f}x | "
              f"fast/reference: fwd {ff / rf:.2f}x  fwd+bwd {ffb / rfb:.2f}x  memory {fm / rm:.2f}x")


if __name__ == "__main__":
    main()
