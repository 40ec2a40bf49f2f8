# make demo  - set up the environment and upsample the example pair with the default model
# make test  - set up the environment and run the whole test suite
# make bench - PAKA operator and training-throughput benchmarks
# make wheel-check - build the wheel, install it into a clean venv and upsample the example with it
#
# TORCH is what pip installs for PyTorch when the venv has none: the CPU wheel by default.
# With a GPU: make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
# (or install your torch into .venv first; pip keeps it).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup test demo bench clean wheel-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(BIN)/ruff check depthsr tests scripts
	WANDB_MODE=offline $(BIN)/python -m pytest -q

demo: setup
	$(BIN)/depthsr upsample --rgb examples/teddy/rgb.png --depth examples/teddy/lr_x4.png \
		--out out/teddy_x4.png --preview out/teddy_x4_preview.png --gt examples/teddy/depth.png

wheel-check:
	TORCH="$(TORCH)" scripts/check_wheel.sh $(PYTHON)

bench: setup
	$(BIN)/python scripts/bench_paka.py
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) out .pytest_cache
