#!/usr/bin/env bash
# The model card's tables: the default model beside bicubic, joint bilateral and guided filtering on every
# evaluation set of ../shared/data (bicubic protocol, under DCTNet's `norm: gt` and the users' `norm: lr`), and on
# the real ToF pairs of rgbdd at integer and non-integer ratios under the bicubic and tof protocols, there beside the
# shipped `tof` model as well.
#     scripts/eval_default.sh [METHOD]        # METHOD: default (the shipped model) or a model file
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTHSR=${DEPTHSR:-.venv/bin/depthsr}
METHOD=${1:-default}
rm -rf out/eval_gt out/eval_lr out/eval_rgbdd_bicubic out/eval_rgbdd_tof
"$DEPTHSR" compare --data folder:../shared/data --scales 4 8 16 --methods "bicubic,jbu,guided,$METHOD" --norm gt \
    --out out/eval_gt
"$DEPTHSR" compare --data folder:../shared/data --scales 4 8 16 --methods "bicubic,$METHOD" --norm lr --out out/eval_lr
for protocol in bicubic tof; do
    "$DEPTHSR" compare --data folder:../shared/data/rgbdd --scales 2.5 4 7.5 8 16 --methods "bicubic,$METHOD,tof" \
        --protocol "$protocol" --out "out/eval_rgbdd_$protocol"
done
