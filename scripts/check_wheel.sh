#!/usr/bin/env bash
# Build the wheel from the tracked files, install it (not editable) into a clean venv outside the repo with the
# CPU torch, and upsample the example pair with the shipped default model: what `pip install depthsr` users get.
#     scripts/check_wheel.sh [PYTHON]          (make wheel-check; CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
TORCH=${TORCH:-torch==2.13.0}
REPO=$PWD
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$TMP" --one-top-level=src  # tracked files only
"$PYTHON" -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --no-compile $TORCH  # no .pyc compiling: half the install time
"$TMP/venv/bin/pip" wheel --quiet --no-deps -w "$TMP/dist" "$TMP/src"
"$TMP/venv/bin/pip" install --quiet --no-compile "$TMP"/dist/depthsr-*.whl
cd "$TMP"  # away from the repo: the installed package, not the checkout, is imported
"$TMP/venv/bin/python" -c "import depthsr, sys; assert '$TMP/venv' in depthsr.__file__, depthsr.__file__"
"$TMP/venv/bin/depthsr" --version
"$TMP/venv/bin/python" -m depthsr --help | grep -q "fit"
"$TMP/venv/bin/depthsr" upsample --rgb "$REPO/examples/teddy/rgb.png" --depth "$REPO/examples/teddy/lr_x4.png" \
    --out "$TMP/teddy_x4.png" --gt "$REPO/examples/teddy/depth.png"
test -s "$TMP/teddy_x4.png"
echo "wheel check: the installed wheel upsampled the example with its own default model"
