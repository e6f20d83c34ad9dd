PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

# torch is installed first, pinned, so that transformers does not pull a CUDA build.
install-dev: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,tpu,tfds,beam]"

demo: install-dev
	$(BIN)/pegasus-jax demo --workdir runs/demo

test: install-dev
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs *.egg-info
