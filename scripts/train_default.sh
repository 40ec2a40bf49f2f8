#!/usr/bin/env bash
# Reproduce a shipped model. The default: fine-tune the previous default (stage 0: the model of commit b21d03f,
# re-exported as safetensors in e05aea1) with configs/default_model.yaml (about 20 minutes on 2 CPU cores; on a GPU
# add --trainer.accelerator gpu), then two later stages: the finish at the benchmark ratios only, from the
# fine-tune's best checkpoint (configs/default_finish.yaml, about 9 minutes), then, from where the finish ended, the
# same with the Middlebury 2005 pairs also seen downscaled (configs/default_downscaled.yaml, about 16 minutes);
# measure it on the evaluation pairs of ../shared/data, and export the final checkpoint with its recipe, data and
# headline numbers. The default is exported with three parameter-free inference steps (`depthsr export --consistency
# 2 --flip-ensemble --self-check`): back-projection onto the input, the mirror average and the self-check (blended
# with bicubic by the trust it earns on its own input); the tof model with the same three, after its cleaner.
#     scripts/train_default.sh [default|tof] [fit options]
# default -> depthsr/weights/depthsr_default.safetensors (bicubic-protocol headline numbers);
# tof     -> depthsr/weights/depthsr_tof.safetensors: the shipped default's network with an input cleaner in front,
#            trained alone (configs/tof_model.yaml on top of the default's configs, every batch under the tof protocol,
#            from depthsr/weights/depthsr_default.safetensors: about 13 minutes); numbers on the real ToF pairs of
#            rgbdd under the tof protocol. Run it after the default when both are retrained.
# Stage 0 itself: `git worktree add /tmp/b21d03f b21d03f && /tmp/b21d03f/scripts/train_default.sh` (36 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
PYTHON=${PYTHON:-.venv/bin/python}
NAME=${1:-default}
[ $# -gt 0 ] && shift
OUT=depthsr/weights/depthsr_$NAME.safetensors  # package data (checkpoints/ links to it; export would replace a link)
RUNS=runs/${NAME}_model
DATA="stage 0 (b21d03f): 500 procedural scenes, ../shared/data/middlebury2005 (role: train), bicubic x4/x8/x16, L1; \
fine-tune: procedural scenes (depthsr.data.synthetic, 3000 at 128 x 128, photo textures from scikit-image, random \
light), ../shared/data/middlebury2005 (role: train), Middlebury 2014 Motorcycle (bundled with scikit-image); bicubic \
degradations at x4/x8/x16 (70 %) and random ratios 2-16 (30 %), RGB moved up to 2 px against the depth in 50 % of \
batches; L2; the default then 2024 steps at x4/x8/x16 only, and 4048 more with the Middlebury 2005 pairs also \
downscaled to 1/2, 1/3, 1/4 and 1/6 of their size"
case $NAME in
    default) START=$RUNS/stage0.safetensors FIRST='best-*.ckpt'  # by the held-out scenes' RMSE
             CONFIGS=(--config configs/default_model.yaml) RECIPE=configs/default_downscaled.yaml
             LATER=(configs/default_finish.yaml configs/default_downscaled.yaml)  # each on top of those before it
             COMPARE=(--data folder:../shared/data --scales 4 8 16 --norm gt)
             INFERENCE=(--consistency 2 --flip-ensemble --self-check  # LR-consistency, mirror average, self-check
                        --ratio-range 2 16) ;;  # the first stage's random ratios (the finish has none)
    tof) START=depthsr/weights/depthsr_default.safetensors FIRST='latest-*.ckpt'  # its schedule's last step
         CONFIGS=(--config configs/default_model.yaml --config configs/default_finish.yaml
                  --config configs/default_downscaled.yaml --config configs/tof_model.yaml) RECIPE=configs/tof_model.yaml
         LATER=()
         DATA="$DATA; then, from the shipped default, an input cleaner trained alone (the rest frozen) for 2024 steps \
of 176 x 176 crops, every batch under the tof protocol"
         COMPARE=(--data folder:../shared/data/rgbdd --protocol tof --scales 2.5 4 7.5 8 16)
         INFERENCE=(--consistency 2 --flip-ensemble --self-check --ratio-range 2 16) ;;  # the default's, onto the
         # cleaned input
    *) echo "usage: scripts/train_default.sh [default|tof] [fit options]" >&2; exit 2 ;;
esac
rm -rf "$RUNS"
mkdir -p "$RUNS"
if [ "$NAME" = default ]; then "$PYTHON" scripts/stage0.py "$START"; fi  # from the git history, its digest checked
"$DEPTHSR" fit "${CONFIGS[@]}" --model.init_weights "$START" "$@"
newest() { find "$RUNS" -name "$1" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-; }
ckpt=$(newest "$FIRST")  # where the first stage ends
for stage in "${LATER[@]}"; do  # each later stage starts where the one before ended
    CONFIGS+=(--config "$stage")
    "$DEPTHSR" fit "${CONFIGS[@]}" --model.init_weights "$ckpt" "$@"
    ckpt=$(newest 'latest-*.ckpt')  # and ends at its schedule's last step
done
"$DEPTHSR" export --ckpt "$ckpt" --out "$OUT" --scales 4 8 16 --recipe "$RECIPE" --data "$DATA" "${INFERENCE[@]}"
rm -rf "out/${NAME}_model_compare"
"$DEPTHSR" compare "${COMPARE[@]}" --methods "bicubic,$NAME" --out "out/${NAME}_model_compare"
"$DEPTHSR" export --ckpt "$ckpt" --out "$OUT" --scales 4 8 16 --recipe "$RECIPE" --data "$DATA" "${INFERENCE[@]}" \
    --results "out/${NAME}_model_compare/results.csv"
