PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed first, pinned to its CPU build, so that transformers does not pull CUDA packages.
install: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"

# The test suite also needs libtpu (AOT compile), TensorFlow Datasets (builders) and Apache Beam.
install-dev: install
	$(BIN)/pip install -q -e ".[dev,tpu,tfds,beam]"

demo: install
	$(BIN)/pegasus-jax demo --workdir runs/demo

test: install-dev
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile --durations=15 tests

clean:
	rm -rf $(VENV) runs *.egg-info
