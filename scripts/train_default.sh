#!/usr/bin/env bash
# Reproduce checkpoints/depthsr_default.safetensors: fine-tune the previous default (stage 0: the model of commit
# b21d03f, re-exported as safetensors in e05aea1) with configs/default_model.yaml (about 20 minutes on 2 CPU cores;
# on a GPU: scripts/train_default.sh --trainer.accelerator gpu), measure it on the evaluation pairs of
# ../shared/data, and export the best checkpoint with its recipe, data and headline numbers.
# Stage 0 itself: `git worktree add /tmp/b21d03f b21d03f && /tmp/b21d03f/scripts/train_default.sh` (36 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
OUT=checkpoints/depthsr_default.safetensors
STAGE0=runs/default_model/stage0.safetensors
STAGE0_SHA256=6ae610bbe4cac85dc24e6fa7a951bd8fd0fde74e4211241b8b8b421e33e22d89
DATA="stage 0 (b21d03f): 500 procedural scenes, ../shared/data/middlebury2005 (role: train), bicubic x4/x8/x16, L1; \
fine-tune: procedural scenes (depthsr.data.synthetic, 3000 at 128 x 128, photo textures from scikit-image, random \
light), ../shared/data/middlebury2005 (role: train), Middlebury 2014 Motorcycle (bundled with scikit-image); bicubic \
degradations at x4/x8/x16 (70 %) and random ratios 2-16 (30 %), RGB moved up to 2 px against the depth in 50 % of \
batches; L2"
rm -rf runs/default_model
mkdir -p runs/default_model
git show e05aea1:checkpoints/depthsr_default.safetensors > "$STAGE0"
echo "$STAGE0_SHA256  $STAGE0" | sha256sum -c --quiet
"$DEPTHSR" fit --config configs/default_model.yaml --model.init_weights "$STAGE0" "$@"
best=$(ls -t runs/default_model/*/*/checkpoints/best-*.ckpt | head -n 1)
"$DEPTHSR" export --ckpt "$best" --out "$OUT" --scales 4 8 16 --recipe configs/default_model.yaml --data "$DATA"
rm -rf out/default_model_compare
"$DEPTHSR" compare --data folder:../shared/data --scales 4 8 16 --methods bicubic,default --norm gt \
    --out out/default_model_compare
"$DEPTHSR" export --ckpt "$best" --out "$OUT" --scales 4 8 16 --recipe configs/default_model.yaml --data "$DATA" \
    --results out/default_model_compare/results.csv
