# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs the first time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format clean mutation

$(BIN)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

## demo: the web app on the bundled model (http://127.0.0.1:7860; GRADIO_SERVER_PORT to change)
demo: $(BIN)/.installed
	$(BIN)/python app.py

## test: lint, then the whole test suite
test: $(BIN)/.installed lint
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mutation: mutmut on the core modules with their fast tests (slow: not in CI; needs mutmut)
mutation: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet "mutmut>=3.8,<4"
	$(BIN)/python benchmarks/mutation.py

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info .mutation
