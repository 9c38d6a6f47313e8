# Two commands on a fresh machine: `make run` (serve) and `make test` (whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,quality]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/swaprtc serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check server tests tools
	$(BIN)/ruff format --check server tests tools
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/swaprtc bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
