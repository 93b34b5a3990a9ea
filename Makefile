# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs the first time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format clean

$(BIN)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

## demo: train a small U-Net on the bundled ISBI sample, then segment the example images
demo: $(BIN)/.installed
	$(BIN)/python train.py --data examples/isbi2012/train --out runs/demo \
		--epochs 5 --image-size 256 --base-channels 16 --lr 1e-4 --val-fraction 0.25
	$(BIN)/unet-hub predict runs/demo examples/isbi2012/test/*.png --out runs/demo-masks

## test: lint, then the whole test suite
test: $(BIN)/.installed lint
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
