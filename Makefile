PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Every install is constrained to the versions the suite last passed with; `make lock` rewrites the file.
LOCK := requirements.lock

.PHONY: demo test install install-dev lock clean speech

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed first, pinned to its CPU build, so that transformers does not pull CUDA packages.
install: $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) torch
	$(BIN)/pip install -q -c $(LOCK) -e ".[dev]"

# The test suite also needs libtpu (AOT compile), TensorFlow Datasets (builders) and Apache Beam.
install-dev: install
	$(BIN)/pip install -q -c $(LOCK) -e ".[dev,tpu,tfds,beam]"

# Regenerate the lock from the venv after a dependency changes in setup.py: install without the old lock
# (new packages resolve freely, installed ones stay), then freeze. Local version labels (torch's "+cpu")
# are dropped so the lock also installs from an index without them.
lock: $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,tpu,tfds,beam]"
	$(BIN)/pip freeze --exclude-editable | sed -E 's/^([^=]+==[^+]+)\+.*/\1/' > $(LOCK)

# The built-in corpus speaks a word with espeak-ng where it is installed: the demo's "word" column and the speech
# tests need it. Installed with apt only when missing and when we are root or have passwordless sudo.
speech:
	@if command -v espeak-ng >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "speech off: espeak-ng is missing and there is no apt-get here"; \
	elif [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null \
		&& echo "installed espeak-ng: speech on") || echo "speech off: apt-get install espeak-ng failed"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then (sudo apt-get update -qq \
		&& sudo apt-get install -y -qq espeak-ng >/dev/null && echo "installed espeak-ng: speech on") \
		|| echo "speech off: apt-get install espeak-ng failed"; \
	else echo "speech off: espeak-ng is missing and installing it needs root or passwordless sudo"; fi

demo: install speech
	$(BIN)/pegasus-jax demo --workdir runs/demo

# Whole files per worker, in collection order (not xdist's default most-tests-first): conftest.py puts the
# files with `slow` tests first, so the longest ones start at once instead of ending the run on one worker.
test: install-dev speech
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

clean:
	rm -rf $(VENV) runs *.egg-info
