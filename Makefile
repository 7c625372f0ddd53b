# Two entry points: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install faces clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The CPU build of torch is pinned first so that nothing pulls the multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,plots]"
	$(MAKE) faces
	touch $(STAMP)

# The DigiFace-1M face generator (13 MB of weights). --no-deps: its declared dependencies
# (torchvision, wandb) would pull the multi-GB CUDA build of torch, and only its weights are read.
faces: $(BIN)/python
	$(BIN)/pip install -q --no-deps gan-face-generate

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gradinv demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
