# The README's first two commands: `make demo` and `make test`. Everything else is a step.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint llama-server clean

# The virtualenv with herd installed (editable) and the test tools.
$(BIN)/herd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,build,bench]'
	touch $@

# Builds llama-server into herd's cache the first time (~15 min on 2 cores); then a no-op.
llama-server: $(BIN)/herd
	$(BIN)/herd build

demo: llama-server
	$(BIN)/herd demo

lint: $(BIN)/herd
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: llama-server lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
