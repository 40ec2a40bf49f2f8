#!/usr/bin/env bash
# Reproduce depthsr/weights/depthsr_default.safetensors (the package data checkpoints/ links to): train with the project's own pipeline on procedural scenes
# textured with photographs, the Middlebury 2005 training pairs and the Motorcycle pair bundled with scikit-image
# (about 1 hour 50 minutes on 2 CPU cores; on a GPU: scripts/train_default.sh --trainer.accelerator gpu), measure it on the
# evaluation pairs of ../shared/data, and export the best checkpoint with its recipe, data and headline numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
OUT=depthsr/weights/depthsr_default.safetensors  # not checkpoints/: export would replace the link
DATA="procedural scenes (depthsr.data.synthetic, 3000 at 128 x 128, photo textures from scikit-image), \
../shared/data/middlebury2005 (role: train), Middlebury 2014 Motorcycle (bundled with scikit-image); \
stage 1: bicubic (70 %) and tof (30 %) degradations, stage 2: bicubic only; x4/x8/x16 (70 %) and random ratios \
2-16 (30 %)"
rm -rf runs/default_model runs/default_finetune
"$DEPTHSR" fit --config configs/default_model.yaml "$@"                       # stage 1: 8000 steps
stage1=$(ls -t runs/default_model/*/*/checkpoints/best-*.ckpt | head -n 1)
"$DEPTHSR" export --ckpt "$stage1" --out runs/default_model/stage1.safetensors --scales 4 8 16
"$DEPTHSR" fit --config configs/default_model.yaml --config configs/default_finetune.yaml \
    --model.init_weights runs/default_model/stage1.safetensors "$@"            # stage 2: 1012 steps, bicubic only
best=$(ls -t runs/default_finetune/*/*/checkpoints/best-*.ckpt | head -n 1)
"$DEPTHSR" export --ckpt "$best" --out "$OUT" --scales 4 8 16 --recipe configs/default_model.yaml --data "$DATA"
rm -rf out/default_model_compare
"$DEPTHSR" compare --data folder:../shared/data --scales 4 8 16 --methods bicubic,default --norm gt \
    --out out/default_model_compare
"$DEPTHSR" export --ckpt "$best" --out "$OUT" --scales 4 8 16 --recipe configs/default_model.yaml --data "$DATA" \
    --results out/default_model_compare/results.csv
