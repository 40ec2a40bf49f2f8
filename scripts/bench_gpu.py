"""PAKA on the GPU: the fused Triton kernels vs cuDNN's F.conv2d vs the slab path vs the unfold reference,
side by side in one run, then the network: training throughput of PAKA beside its plain twin, and inference.

Operator cases: B8 C64 256x256 k3, and every PAKA layer shape of the network at a training batch (preset
``base`` of the NYU recipes by default, batch 8, 256 x 256 crops: the body at H/4 with dilations 1, 2, 4, the
refinements at H/2 and H).
For each: median forward and forward+backward time (CUDA events, after warm-up) and the peak memory one
forward+backward allocates beyond its inputs, in float32 (TF32 allowed, as cuDNN's convolutions do by
default) and under bfloat16 autocast; ratios fused/conv. Targets (issue 10): fwd+bwd within 2x of conv,
memory within 1.5x; PAKA training at least 0.5x the plain twin's samples/s; 480 x 640 x4 inference < 10 ms.

    python scripts/bench_gpu.py [--out results.json] [--repeats 20] [--skip-network]
    python scripts/bench_gpu.py --device cpu --quick   # a smoke run of the script itself, tiny shapes

Without a CUDA device (and no --device cpu) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from depthsr.models import PRESETS, build_model
from depthsr.ops import dispatch, paka_conv2d, paka_conv2d_reference

IMPLS = ("conv", "fused", "slab", "reference")


def operator_cases(quick: bool, preset: str) -> dict[str, tuple[int, ...]]:
    """name: (B, C, H, W, k, dilation), output channels = C."""
    if quick:
        return {"B2 C8 16x16 k3": (2, 8, 16, 16, 3, 1), "net H/4 C8 d2": (2, 8, 8, 8, 3, 2)}
    cases = {"B8 C64 256x256 k3": (8, 64, 256, 256, 3, 1)}
    width, batch, crop = PRESETS[preset]["width"], 8, 256
    c2, c1, c0 = width, width * 3 // 4, width // 2
    for d in (1, 2, 4):
        cases[f"net body H/4 C{c2} d{d}"] = (batch, c2, crop // 4, crop // 4, 3, d)
    cases[f"net refine H/2 C{c1}"] = (batch, c1, crop // 2, crop // 2, 3, 1)
    cases[f"net refine H C{c0}"] = (batch, c0, crop, crop, 3, 1)
    return cases


@contextmanager
def env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class Timer:
    """Wall time of a callable on the device: CUDA events there, perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:  # seconds
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3


def peak_extra_mib(fn, device: torch.device) -> float | None:
    """Memory one call allocates at its peak beyond what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def bench_operator(shape, device, precision: str, repeats: int) -> dict[str, dict[str, float | None]]:
    b, c, h, w, k, d = shape
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(device).requires_grad_()  # noqa: E731
    x, weight, bias = mk(b, c, h, w), mk(c, c, k, k), mk(c)
    a_ch, a_sp = mk(b, c, h, w), mk(b, k * k, h, w)
    params = (x, weight, bias, a_ch, a_sp)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-autocast" else nullcontext()
    fns = {
        "conv": lambda: F.conv2d(x, weight, bias, padding=d * (k // 2), dilation=d),
        "fused": lambda: paka_conv2d(x, weight, bias, a_ch, a_sp, dilation=d),
        "reference": lambda: paka_conv2d_reference(x, weight, bias, a_ch, a_sp, dilation=d),
    }
    timer = Timer(device)
    out: dict[str, dict[str, float | None]] = {}
    for impl in IMPLS:
        fn = fns.get(impl, fns["fused"])
        guard = env("DEPTHSR_TRITON", "0") if impl == "slab" else nullcontext()

        def forward():
            with cast, torch.no_grad():
                fn()

        def forward_backward():
            for p in params:
                p.grad = None
            with cast:
                y = fn()
            y.float().square().mean().backward()

        try:
            with guard:
                forward_backward()  # warm-up: compilation, cuDNN's algorithm search, the allocator
                fwd = statistics.median(timer(forward) for _ in range(repeats))
                fwdbwd = statistics.median(timer(forward_backward) for _ in range(repeats))
                for p in params:
                    p.grad = None
                mem = peak_extra_mib(forward_backward, device)
            out[impl] = {"fwd_ms": fwd * 1e3, "fwdbwd_ms": fwdbwd * 1e3, "peak_mib": mem}
        except torch.OutOfMemoryError:
            out[impl] = {"fwd_ms": None, "fwdbwd_ms": None, "peak_mib": None}
        finally:
            for p in params:
                p.grad = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def bench_network(device, quick: bool, seconds: float, preset: str) -> dict[str, float]:
    """Training samples/s (bf16 autocast, batch 8, 256 x 256, x4) of PAKA and its plain twin at `preset`;
    inference time of the PAKA network at 480 x 640 (x4), presets small (the shipped default) and base, in
    float32 and under bf16 autocast."""
    batch, crop, size = (2, 32, (48, 64)) if quick else (8, 256, (480, 640))
    timer, result = Timer(device), {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    for name in ("paka", "plain"):
        torch.manual_seed(0)
        model = build_model(name, preset).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        lr, rgb = torch.rand(batch, 1, crop // 4, crop // 4, device=device), torch.rand(batch, 3, crop, crop,
                                                                                        device=device)
        target = torch.rand(batch, 1, crop, crop, device=device)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = (model(lr, rgb) - target).abs().mean()
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        steps, spent = 0, 0.0
        while spent < seconds or steps < 3:
            spent += timer(step)
            steps += 1
        result[f"train_{name}_samples_per_s"] = batch * steps / spent
    lr, rgb = torch.rand(1, 1, size[0] // 4, size[1] // 4, device=device), torch.rand(1, 3, *size, device=device)
    for infer_preset in ("small", "base"):
        model = build_model("paka", infer_preset).to(device).eval()
        for label, cast in (("fp32", nullcontext()), ("bf16", autocast)):
            def infer():
                with torch.no_grad(), cast:
                    model(lr, rgb)

            for _ in range(3):
                infer()
            key = f"infer_{infer_preset}_{size[0]}x{size[1]}_x4_{label}_ms"
            result[key] = statistics.median(timer(infer) for _ in range(10)) * 1e3
    return result


def fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a smoke run of the script)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16-autocast"])
    parser.add_argument("--train-seconds", type=float, default=10.0, help="timed training per network")
    parser.add_argument("--preset", default="base", help="network preset of the layer shapes and the training "
                        "throughput (base: the NYU GPU recipes)")
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (checks the script, measures nothing)")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (--device cpu --quick runs the script itself)")
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    if device.type == "cuda":
        reason = dispatch.triton_reason(device, torch.float32, 0)
        print(f"device: {name}; torch {torch.__version__}; fused kernels: {reason or 'Triton'}")
    results = {"device": name, "torch": torch.__version__, "operator": {}, "network": {}}

    print(f"\n| case | precision | impl | fwd ms | fwd+bwd ms | peak extra MiB |\n|{'---|' * 6}")
    for case, shape in operator_cases(args.quick, args.preset).items():
        for precision in args.precisions:
            r = bench_operator(shape, device, precision, args.repeats)
            results["operator"][f"{case} | {precision}"] = r
            for impl in IMPLS:
                m = r[impl]
                print(f"| {case} | {precision} | {impl} | {fmt(m['fwd_ms'])} | {fmt(m['fwdbwd_ms'])} | "
                      f"{fmt(m['peak_mib'])} |")
            conv, fused = r["conv"], r["fused"]
            ratio = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
            t, mem = ratio(fused["fwdbwd_ms"], conv["fwdbwd_ms"]), ratio(fused["peak_mib"], conv["peak_mib"])
            r["fused/conv"] = {"fwdbwd": t, "memory": mem}
            print(f"| {case} | {precision} | **fused/conv** | {fmt(ratio(fused['fwd_ms'], conv['fwd_ms']), 'x')} | "
                  f"**{fmt(t, 'x')}** | **{fmt(mem, 'x')}** |")
            sys.stdout.flush()

    if not args.skip_network:
        net = bench_network(device, args.quick, 1.0 if args.quick else args.train_seconds, args.preset)
        net["train_paka/plain"] = net["train_paka_samples_per_s"] / net["train_plain_samples_per_s"]
        results["network"] = net
        print("\n| network | value |\n|---|---|")
        for key, value in net.items():
            print(f"| {key} | {value:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
