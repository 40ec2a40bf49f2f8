#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU (issue 10): set up an environment with a CUDA torch and Triton, run
# the CUDA tests, benchmark PAKA on the GPU (scripts/bench_gpu.py: fused Triton kernels vs cuDNN's conv vs the
# unfold reference, at B8 C64 256x256 k3 and at the network's shapes; training throughput beside the plain twin;
# 480x640 x4 inference), train the default recipe for two minutes in bf16, run `depthsr upsample` and
# `depthsr compare` with --device cuda, and end with one summary table (also written to $WORK/summary.md).
#
#   scripts/gpu_check.sh                                  # environment in .venv-gpu (made once)
#   PYTHON=/path/to/env/bin/python scripts/gpu_check.sh   # an environment that already has a CUDA torch
#   TORCH="torch==2.13.0 --index-url <a CUDA wheel index>" scripts/gpu_check.sh   # another CUDA build
#   WORK=/some/dir scripts/gpu_check.sh                   # logs and outputs (default: a new temporary folder)
#   DEVICE=cpu PYTHON=.venv/bin/python scripts/gpu_check.sh   # every step on the CPU, tiny: checks the script
#   SKIP="tests compare" scripts/gpu_check.sh             # leave steps out (tests bench train upsample compare)
#
# Every step runs whatever the one before did, so the table shows them all; exits 1 when a step failed,
# 2 when there is no environment or no GPU to check.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
VENV=${VENV:-.venv-gpu}
TORCH=${TORCH:-torch==2.13.0}  # the Linux x86-64 wheels of the default package index are CUDA builds
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/depthsr-gpu-check.XXXXXX")}
mkdir -p "$WORK"
export WANDB_MODE=offline WANDB_SILENT=true WANDB_DIR="$WORK"
if [ "$DEVICE" = cpu ]; then  # the smoke run: the same steps at sizes that finish on a laptop
    TRAIN_TIME=${TRAIN_TIME:-00:00:00:30} ACCELERATOR=cpu WORKERS=0 BENCH_ARGS=(--device cpu --quick)
else
    TRAIN_TIME=${TRAIN_TIME:-00:00:02:00} ACCELERATOR=gpu WORKERS=4 BENCH_ARGS=(--device "$DEVICE")
fi

ROWS=()   # "step|status|seconds|result"
FAILED=0
row() { ROWS+=("$1|$2|$3|$4"); [ "$2" = ok ] || [ "$2" = skipped ] || FAILED=1; }

# run NAME CMD...: the command's output into $WORK/NAME.log (and on screen), its time into $ELAPSED
run() {
    local name=$1 start status
    shift
    echo "== $name: $*"
    start=$(date +%s)
    "$@" 2>&1 | tee "$WORK/$name.log"
    status=${PIPESTATUS[0]}
    ELAPSED=$(( $(date +%s) - start ))
    return "$status"
}

# ---- 1. environment --------------------------------------------------------------------------------------
ELAPSED=0
if [ -z "${PYTHON:-}" ]; then
    PYTHON=$VENV/bin/python
    # a CPU torch already in the venv satisfies `torch==X` (its +cpu local version matches): remove it first
    if ! run setup bash -c "
        set -e
        [ -x '$PYTHON' ] || python3 -m venv '$VENV'
        '$PYTHON' -m pip install --quiet --upgrade pip
        if ! '$PYTHON' -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
            '$PYTHON' -m pip uninstall --quiet --yes torch 2>/dev/null || true
            '$PYTHON' -m pip install --quiet $TORCH
        fi
        '$PYTHON' -m pip install --quiet -e '.[dev,gpu]'"; then
        echo "gpu_check: setting up $VENV failed (see $WORK/setup.log); stopping"
        exit 2
    fi
fi
BIN=$(dirname "$PYTHON")
if [ "$DEVICE" != cpu ] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: $PYTHON has no usable CUDA device (torch.cuda.is_available() is False); stopping"
    exit 2
fi
ENV_INFO=$("$PYTHON" -c "
import torch
from depthsr.ops import dispatch
device = torch.device('$DEVICE')
name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU (smoke run)'
reason = dispatch.triton_reason(device, torch.float32, 0)
print(f'{name}, torch {torch.__version__} (CUDA {torch.version.cuda}), fused kernels: {reason or \"Triton\"}')")
row setup ok "$ELAPSED" "$ENV_INFO"


# ---- 2. the CUDA tests -----------------------------------------------------------------------------------
# every test parametrised over device has a `cuda` case (skipped without a GPU): -k cuda selects them and the
# CUDA-only tests, slow ones included
step_tests() {
    local status=ok
    run tests "$PYTHON" -m pytest -q -rs -p no:cacheprovider -k cuda tests || status=FAILED
    row "CUDA tests" "$status" "$ELAPSED" \
        "$(grep -E '[0-9]+ (passed|failed|skipped)' "$WORK/tests.log" | tail -n 1 | tr -d '=')"
}

# ---- 3. operator and network benchmark -------------------------------------------------------------------
BENCH_SUMMARY='
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda v: "-" if v is None else f"{v:.2f}x"
parts = []
for key, q in r["operator"].items():
    if key.startswith(("B8 C64 256x256 k3", "B2 C8 16x16 k3")):  # the issue shape (--quick: its stand-in)
        case, ratio = key.replace(" | ", ", "), q["fused/conv"]
        parts.append(case + ": fwd+bwd " + f(ratio["fwdbwd"]) + ", memory " + f(ratio["memory"]) + " of conv")
net = r.get("network", {})
if net:
    parts.append("training paka/plain %.2f" % net["train_paka/plain"])
    parts += ["%s %.1f ms" % (k[len("infer_"):-3], v) for k, v in net.items() if k.startswith("infer_")]
print("; ".join(parts) + " (targets: 2x, 1.5x, >= 0.5, < 10 ms)")
'
step_bench() {
    if run bench "$PYTHON" scripts/bench_gpu.py "${BENCH_ARGS[@]}" --out "$WORK/bench.json"; then
        row benchmark ok "$ELAPSED" "$("$PYTHON" -c "$BENCH_SUMMARY" "$WORK/bench.json"); all cases in $WORK/bench.log"
    else
        row benchmark FAILED "$ELAPSED" "see $WORK/bench.log"
    fi
}

# ---- 4. two minutes of bf16 training ---------------------------------------------------------------------
# short epochs with a validation after each, so that checkpoints exist when the time is up; max_steps stays
# finite (it sets the cosine schedule's length: an unbounded run has none)
TRAIN_SUMMARY='
import sys
import torch
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
d, h, m, s = (int(v) for v in sys.argv[2].split(":"))
steps, batch, seconds = ckpt["global_step"], int(sys.argv[3]), 86400 * d + 3600 * h + 60 * m + s
print("%d steps of batch %d in %s with validations (bf16-mixed): %.1f samples/s"
      % (steps, batch, sys.argv[2], batch * steps / seconds))
'
CKPT=""
step_train() {
    local batch=8
    local args=(fit --config configs/default_model.yaml --trainer.accelerator "$ACCELERATOR" --trainer.devices 1
                --trainer.precision bf16-mixed --trainer.max_time "$TRAIN_TIME" --trainer.max_steps 100000
                --trainer.limit_train_batches 100 --trainer.limit_val_batches 4 --trainer.check_val_every_n_epoch 1
                --trainer.default_root_dir "$WORK/train" --trainer.logger.init_args.save_dir "$WORK/train"
                --data.synthetic 400 --data.batch_size "$batch" --data.num_workers "$WORKERS")
    [ -d ../shared/data/middlebury2005 ] || args+=(--data.train_folders "[]")  # procedural scenes only
    run train "$BIN/depthsr" "${args[@]}" && CKPT=$(ls -t "$WORK"/train/*/*/checkpoints/*.ckpt 2>/dev/null | head -n 1)
    if [ -n "$CKPT" ]; then
        row "train bf16" ok "$ELAPSED" "$("$PYTHON" -c "$TRAIN_SUMMARY" "$CKPT" "$TRAIN_TIME" "$batch")"
    else
        row "train bf16" FAILED "$ELAPSED" "no checkpoint (see $WORK/train.log)"
    fi
}

# ---- 5. upsample and compare on the device (the shipped default model, and the one just trained) ---------
step_upsample() {
    if run upsample "$BIN/depthsr" upsample --rgb examples/teddy/rgb.png --depth examples/teddy/lr_x4.png \
            --out "$WORK/teddy_x4.png" --gt examples/teddy/depth.png --device "$DEVICE"; then
        row "upsample --device $DEVICE" ok "$ELAPSED" \
            "$(grep 'RMSE vs ground truth' "$WORK/upsample.log") (the whole command)"
    else
        row "upsample --device $DEVICE" FAILED "$ELAPSED" "see $WORK/upsample.log"
    fi
}

step_compare() {
    if run compare "$BIN/depthsr" compare --data folder:examples --scales 4 --methods "bicubic,default${CKPT:+,$CKPT}" \
            --device "$DEVICE" --out "$WORK/compare" --quiet; then
        row "compare --device $DEVICE" ok "$ELAPSED" \
            "$WORK/compare/results.md (bicubic, the default model${CKPT:+, the 2-minute model})"
    else
        row "compare --device $DEVICE" FAILED "$ELAPSED" "see $WORK/compare.log"
    fi
}

for step in tests bench train upsample compare; do
    if [[ " ${SKIP:-} " == *" $step "* ]]; then
        row "$step" skipped 0 "SKIP"
    else
        "step_$step"
    fi
done

# ---- summary ---------------------------------------------------------------------------------------------
{
    echo
    echo "## gpu_check: $ENV_INFO"
    echo
    echo "| step | status | s | result |"
    echo "|---|---|---|---|"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r step status secs result <<< "$r"
        echo "| $step | $status | $secs | $result |"
    done
    echo
    echo "logs and outputs: $WORK"
} | tee "$WORK/summary.md"
exit "$FAILED"
