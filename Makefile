# Two commands on a fresh machine: `make run` (serve) and `make test` (whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint bench venv triton-venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,quality]'
	touch $(STAMP)

venv: $(STAMP)

# A real Triton server for tests/test_triton.py: nvidia-pytriton's tritonserver binary needs a
# Python with a shared libpython (Debian's python3.11; pyenv builds are static), in its own venv.
TRITON_BASE_PYTHON ?= /usr/bin/python3.11
TRITON_VENV := .cache/triton-venv
TRITON_STAMP := $(TRITON_VENV)/.installed-pytriton-0.7.0

$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(TRITON_BASE_PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --disable-pip-version-check -q nvidia-pytriton==0.7.0 onnxruntime numpy
	touch $(TRITON_STAMP)

triton-venv: $(TRITON_STAMP)

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
