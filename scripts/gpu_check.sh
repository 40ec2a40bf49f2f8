#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU: set up an environment with a CUDA torch and Triton, run the CUDA
# tests, benchmark PAKA on the GPU (scripts/bench_gpu.py: fused Triton kernels vs cuDNN's conv vs the unfold
# reference, and the network), train the default recipe for two minutes in bf16, run `depthsr upsample` and
# `depthsr compare` on the GPU, and end with one summary table (also written to $WORK/summary.md).
#
#   scripts/gpu_check.sh                       # environment in .venv-gpu (made once)
#   PYTHON=/path/to/env/bin/python scripts/gpu_check.sh   # an environment that already has a CUDA torch
#   TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" scripts/gpu_check.sh
#   WORK=/some/dir scripts/gpu_check.sh        # where logs and outputs go (default: a new temporary folder)
#
# Exits non-zero when a step failed; every step runs regardless, so the table shows them all.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
TORCH=${TORCH:-"torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"}
TRAIN_TIME=${TRAIN_TIME:-00:00:02:00}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/depthsr-gpu-check.XXXXXX")}
mkdir -p "$WORK"
export WANDB_MODE=offline WANDB_SILENT=true WANDB_DIR="$WORK"

ROWS=()   # "step|status|seconds|result"
FAILED=0
row() { ROWS+=("$1|$2|$3|$4"); [ "$2" = ok ] || FAILED=1; }

# run NAME CMD...: the command's output into $WORK/NAME.log (and on screen); its status and time into a row
# whose result column is filled by the caller through $RESULT
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
    if ! run setup bash -c "
        set -e
        [ -x '$PYTHON' ] || python3 -m venv '$VENV'
        '$PYTHON' -m pip install --quiet --upgrade pip
        '$PYTHON' -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null \
            || '$PYTHON' -m pip install --quiet $TORCH
        '$PYTHON' -m pip install --quiet -e '.[dev,gpu]'"; then
        echo "gpu_check: setting up $VENV failed (see $WORK/setup.log); stopping"
        exit 2
    fi
fi
BIN=$(dirname "$PYTHON")
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: $PYTHON has no usable CUDA device (torch.cuda.is_available() is False); stopping"
    exit 2
fi
ENV_INFO=$("$PYTHON" -c "
import torch
from depthsr.ops import dispatch
x = torch.zeros(1, device='cuda')
print(f'{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), '
      f'fused kernels: {dispatch.triton_reason(x, (x,)) or \"Triton\"}')")
row setup ok "$ELAPSED" "$ENV_INFO"

# ---- 2. the CUDA tests -----------------------------------------------------------------------------------
# every test parametrised over device has a `cuda` case (skipped elsewhere); -k cuda selects them and the
# CUDA-only tests, slow ones included
if run tests "$PYTHON" -m pytest -q -rs -k cuda tests; then status=ok; else status=FAILED; fi
row "CUDA tests" "$status" "$ELAPSED" "$(grep -E '[0-9]+ (passed|failed)' "$WORK/tests.log" | tail -n 1 | tr -d '=')"

# ---- 3. operator and network benchmark -------------------------------------------------------------------
if run bench "$PYTHON" scripts/bench_gpu.py --out "$WORK/bench.json"; then
    RESULT=$("$PYTHON" - "$WORK/bench.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
parts = []
for key in ("B8 C64 256x256 k3 | fp32", "B8 C64 256x256 k3 | bf16-autocast"):
    q = r["operator"].get(key, {}).get("fused/conv", {})
    f = lambda v: "-" if v is None else f"{v:.2f}x"
    parts.append(f"{key.split(' | ')[1]} fwd+bwd {f(q.get('fwdbwd'))} mem {f(q.get('memory'))} of conv")
net = r.get("network", {})
if net:
    parts.append(f"train paka/plain {net['train_paka/plain']:.2f}")
    for preset in ("small", "base"):
        parts.append(f"480x640 x4 inference ({preset}) {net[f'infer_{preset}_480x640_x4_bf16_ms']:.1f} ms bf16 / "
                     f"{net[f'infer_{preset}_480x640_x4_fp32_ms']:.1f} ms fp32")
print("B8 C64 256x256 k3: " + "; ".join(parts))
EOF
)
    row benchmark ok "$ELAPSED" "$RESULT (tables: $WORK/bench.log)"
else
    row benchmark FAILED "$ELAPSED" "see $WORK/bench.log"
fi

# ---- 4. two minutes of bf16 training ---------------------------------------------------------------------
TRAIN_ARGS=(fit --config configs/default_model.yaml --trainer.accelerator gpu --trainer.devices 1
            --trainer.precision bf16-mixed --trainer.max_time "$TRAIN_TIME" --trainer.max_steps -1
            --trainer.default_root_dir "$WORK/train" --trainer.logger.init_args.save_dir "$WORK/train"
            --data.num_workers 4)
[ -d ../shared/data/middlebury2005 ] || TRAIN_ARGS+=(--data.train_folders "[]")  # procedural scenes only
if run train "$BIN/depthsr" "${TRAIN_ARGS[@]}"; then
    CKPT=$(ls -t "$WORK"/train/*/*/checkpoints/*.ckpt 2>/dev/null | head -n 1)
    [ -n "$CKPT" ] || { row "train bf16" FAILED "$ELAPSED" "no checkpoint written (see $WORK/train.log)"; }
    [ -z "$CKPT" ] || RESULT=$("$PYTHON" - "$CKPT" "$TRAIN_TIME" <<'EOF'
import sys
import torch
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
h, m, s = (int(v) for v in sys.argv[2].split(":")[1:])
steps = ckpt["global_step"]
print(f"{steps} steps in {sys.argv[2]} (bf16-mixed, batch 8): {8 * steps / (3600 * h + 60 * m + s):.1f} samples/s")
EOF
)
    [ -z "$CKPT" ] || row "train bf16" ok "$ELAPSED" "$RESULT"
else
    CKPT=""
    row "train bf16" FAILED "$ELAPSED" "see $WORK/train.log"
fi
MODEL=${CKPT:-default}

# ---- 5. upsample and compare on the GPU ------------------------------------------------------------------
UPSAMPLE=(upsample --rgb examples/teddy/rgb.png --depth examples/teddy/lr_x4.png --out "$WORK/teddy_x4.png"
          --gt examples/teddy/depth.png --device cuda)
[ "$MODEL" = default ] || UPSAMPLE+=(--checkpoint "$MODEL")
if run upsample "$BIN/depthsr" "${UPSAMPLE[@]}"; then
    row "upsample --device cuda" ok "$ELAPSED" "$(grep -i rmse "$WORK/upsample.log" | tail -n 1) (whole command)"
else
    row "upsample --device cuda" FAILED "$ELAPSED" "see $WORK/upsample.log"
fi
if run compare "$BIN/depthsr" compare --data folder:examples --scales 4 --methods "bicubic,$MODEL" --device cuda \
        --out "$WORK/compare" --quiet; then
    row "compare --device cuda" ok "$ELAPSED" "RMSE table in $WORK/compare (method: $(basename "$MODEL"))"
else
    row "compare --device cuda" FAILED "$ELAPSED" "see $WORK/compare.log"
fi

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
