# kubeinfer: `make test` sets everything up and runs the whole suite;
# `make demo` sets up and runs local mode with the example endpoints.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0

# The repository root holds a folder named "operator": never let Python put the
# current directory first on sys.path, or it would shadow the standard library.
export PYTHONSAFEPATH := 1

.PHONY: test demo install tools crds lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[server,dev]" "torch==$(TORCH_VERSION)"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -P -m pytest -q

demo: install
	$(BIN)/kubeinfer local -f examples/local/

crds: install
	$(BIN)/kubeinfer crds > crds/inferenceendpoints.kubeinfer.io.yaml

clean:
	rm -rf $(VENV) .pytest_cache
