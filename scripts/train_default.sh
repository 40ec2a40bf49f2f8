#!/usr/bin/env bash
# Reproduce the shipped models: depthsr/weights/depthsr_default.safetensors and depthsr_tof.safetensors, one network.
#   1. Fine-tune the previous default (stage 0: the model of commit b21d03f, re-exported as safetensors in e05aea1)
#      with configs/default_model.yaml (about 20 minutes on 2 CPU cores; on a GPU add --trainer.accelerator gpu).
#   2. The finish at the benchmark ratios only, from the fine-tune's best checkpoint (configs/default_finish.yaml,
#      about 9 minutes), then, from where it ended, the same with the Middlebury 2005 pairs also seen downscaled
#      (configs/default_downscaled.yaml, about 16 minutes), then with procedural rooms seen in perspective added
#      (configs/default_rooms.yaml, about 10 minutes), then on 176 x 176 crops instead of 128 x 128
#      (configs/default_larger_crops.yaml, 4048 steps, about 30 minutes), then with the mean of per-image RMSE as the
#      loss instead of L2 (configs/default_rmse_loss.yaml, 1012 steps, about 9 minutes).
#   3. An input cleaner in front of that network, trained alone (the rest frozen) on every batch under the tof
#      protocol (configs/tof_model.yaml, about 13 minutes).
# Both files hold the same weights and run three parameter-free inference steps (`depthsr export --consistency 2
# --flip-ensemble --self-check`): back-projection onto the cleaned input, the mirror average and the self-check
# (blended with bicubic by the trust the network earns on its own input). The tof model always applies its cleaner;
# the default weighs the cleaner's correction by how noisy each input is (`--clean-gate`,
# depthsr.models.noise_level): none on a smooth input (there it answers as the network alone), all of it on one as
# noisy as a sensor's. Each is measured (the default on the evaluation pairs of ../shared/data, bicubic protocol; the
# tof model on the real ToF pairs of rgbdd under the tof protocol) and exported with its recipe, data and numbers.
#     scripts/train_default.sh [--from STAGE CHECKPOINT] [fit options]
# --from starts at one of the later stages (its config, e.g. configs/default_larger_crops.yaml) from a checkpoint of
# the stage before it (its last, e.g. runs/default_model/rooms/.../latest-*.ckpt: the script keeps a copy of it in
# runs/default_model/from.ckpt, as it empties the run folders first), and runs the rest.
# The same bits need the same machine kind and packages: what made the shipped files is in their `source`, and the
# packages are pinned in scripts/train_default_constraints.txt (`pip install -c <that file> -e .`).
# Stage 0 itself: `git worktree add /tmp/b21d03f b21d03f && /tmp/b21d03f/scripts/train_default.sh` (36 minutes).
set -euo pipefail
CALLER=$PWD  # where relative paths on the command line start
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
PYTHON=${PYTHON:-.venv/bin/python}
WEIGHTS=depthsr/weights  # package data (checkpoints/ links to it; export would replace a link)
RUNS=(runs/default_model runs/tof_model)  # the stages' run folders (each config names its own)
START=${RUNS[0]}/stage0.safetensors
CONFIGS=(--config configs/default_model.yaml)
LATER=(configs/default_finish.yaml configs/default_downscaled.yaml configs/default_rooms.yaml  # each on top of
       configs/default_larger_crops.yaml configs/default_rmse_loss.yaml configs/tof_model.yaml)  # those before it
DATA="stage 0 (b21d03f): 500 procedural scenes, ../shared/data/middlebury2005 (role: train), bicubic x4/x8/x16, L1; \
fine-tune: procedural scenes (depthsr.data.synthetic, 3000 at 128 x 128, photo textures from scikit-image, random \
light), ../shared/data/middlebury2005 (role: train), Middlebury 2014 Motorcycle (bundled with scikit-image); bicubic \
degradations at x4/x8/x16 (70 %) and random ratios 2-16 (30 %), RGB moved up to 2 px against the depth in 50 % of \
batches; L2; then 2024 steps at x4/x8/x16 only, and 4048 more with the Middlebury 2005 pairs also downscaled to 1/2, \
1/3, 1/4 and 1/6 of their size; then 2024 steps with 3000 procedural rooms seen in perspective (depthsr.data.rooms) \
added; then 4048 steps on 176 x 176 crops (scenes and rooms drawn at that size) instead of 128 x 128; then 1012 \
steps with the mean of per-image RMSE as the loss; then an input cleaner trained alone (the rest frozen) for 2024 \
steps, every batch under the tof protocol"
INFERENCE=(--scales 4 8 16 --recipe configs/tof_model.yaml --data "$DATA"
           --consistency 2 --flip-ensemble --self-check  # LR-consistency, mirror average, self-check
           --ratio-range 2 16)  # the first stage's random ratios (the later stages have none)
GATE=(--clean-gate 0.002 0.003)  # noise levels (fractions of the depth range): see configs/tof_model.yaml
FROM=""  # the later stage to start at ("": stage 0 and the fine-tune first)
if [[ ${1:-} == --from ]]; then
    FROM=${2:-}; from_ckpt=${3:-}; shift $(( $# < 3 ? $# : 3 ))
    [[ -z $from_ckpt || $from_ckpt == /* ]] || from_ckpt=$CALLER/$from_ckpt
    [[ " ${LATER[*]} " == *" $FROM "* ]] || { echo "--from: '$FROM' is not a later stage (${LATER[*]})" >&2; exit 2; }
    [[ -f $from_ckpt ]] || { echo "--from $FROM: '$from_ckpt' is not a checkpoint file" >&2; exit 2; }
    START=${RUNS[0]}/from.ckpt  # kept beside the run, as stage 0 is
    kept=$(mktemp)
    cp "$from_ckpt" "$kept"  # before the run folders, where it may lie, are emptied
fi
rm -rf "${RUNS[@]}"
mkdir -p "${RUNS[@]}"
newest() { find "${RUNS[@]}" -name "$1" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-; }
if [[ -z $FROM ]]; then
    "$PYTHON" scripts/stage0.py "$START"  # from the git history, its digest checked
    "$DEPTHSR" fit "${CONFIGS[@]}" --model.init_weights "$START" "$@"
    ckpt=$(newest 'best-*.ckpt')  # the fine-tune's best, by the held-out scenes' RMSE
else
    mv "$kept" "$START"
    ckpt=$START
fi
for stage in "${LATER[@]}"; do  # each later stage starts where the one before ended
    CONFIGS+=(--config "$stage")
    if [[ -n $FROM && $stage != "$FROM" ]]; then continue; fi  # a stage before --from's: only its config
    FROM=""
    "$DEPTHSR" fit "${CONFIGS[@]}" --model.init_weights "$ckpt" "$@"
    ckpt=$(newest 'latest-*.ckpt')  # and ends at its schedule's last step
done
export_both() {  # the tof model and the default from the last checkpoint; $1: results of each, if measured
    "$DEPTHSR" export --ckpt "$ckpt" --out "$WEIGHTS/depthsr_tof.safetensors" "${INFERENCE[@]}" \
        ${1:+--results out/tof_model_compare/results.csv}
    "$DEPTHSR" export --ckpt "$ckpt" --out "$WEIGHTS/depthsr_default.safetensors" "${INFERENCE[@]}" "${GATE[@]}" \
        ${1:+--results out/default_model_compare/results.csv}
}
export_both ""
rm -rf out/default_model_compare out/tof_model_compare
"$DEPTHSR" compare --data folder:../shared/data --scales 4 8 16 --norm gt --methods bicubic,default \
    --out out/default_model_compare
"$DEPTHSR" compare --data folder:../shared/data/rgbdd --protocol tof --scales 2.5 4 7.5 8 16 \
    --methods bicubic,default,tof --out out/tof_model_compare
export_both measured
