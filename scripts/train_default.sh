#!/usr/bin/env bash
# Reproduce checkpoints/depthsr_default.pt on the CPU (under an hour on 2 cores): train with the project's own
# pipeline on procedural scenes + the Middlebury 2005 training pairs, then export the best checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
rm -rf runs/default_model
"$DEPTHSR" fit --config configs/default_model.yaml "$@"
best=$(ls -t runs/default_model/*/*/checkpoints/best-*.ckpt | head -n 1)
"$DEPTHSR" export --ckpt "$best" --out checkpoints/depthsr_default.pt --scales 4 8 16
