# hean: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: help venv install bins demo test test-unit test-e2e lint-chart clean

help:
	@echo "make demo   - build+start a local control plane, install the chart, apply examples/, watch it trade"
	@echo "make test   - run the whole test suite (unit + end-to-end on a real control plane)"

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q "scikit-build-core>=0.10" "nanobind>=2.4"
	touch $@

venv: $(VENV)/.deps

# Non-editable install of the one distribution (Python + the nanobind extension).
# scikit-build-core keeps its CMake build dir in build/ so rebuilds are incremental;
# ccache (if installed) makes fresh clones on the same machine reuse object files.
install: venv
	CMAKE_ARGS="$$(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)" \
	  $(PIP) install -q --no-build-isolation ".[test]"

# Build (or reuse from ~/.cache/hean/k8s) kube-apiserver, kube-controller-manager,
# kubectl, etcd and helm from the Go module proxy.
bins:
	bash hack/k8s-bins.sh

demo: install bins
	$(PY) -m hean.demo

test: install bins
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q tests/unit

test-e2e: install bins
	$(PY) -m pytest -q -m e2e

clean:
	rm -rf build $(VENV) .pytest_cache

# kind: build the image, load it into a fresh kind cluster, install the chart and
# run the same e2e suite against it (HEAN_E2E_KUBECONFIG). Needs docker (or podman)
# and kind on PATH -- NOT available on hean's dev/CI machines (no container engine),
# so this target is kept correct by review and tests/unit/test_helm_dockerfile.py.
KIND ?= kind
KIND_CLUSTER ?= hean
KIND_IMAGE ?= hean:dev
KIND_MARKETDATA ?= $(abspath ../shared/marketdata)
.PHONY: kind-e2e
kind-e2e: install
	@command -v docker >/dev/null || { echo "kind-e2e: docker is required (not available on hean's CI machines)"; exit 2; }
	@command -v $(KIND) >/dev/null || { echo "kind-e2e: kind is required: https://kind.sigs.k8s.io"; exit 2; }
	@test -d "$(KIND_MARKETDATA)" || { echo "kind-e2e: market data not found at $(KIND_MARKETDATA)"; exit 2; }
	docker build -t $(KIND_IMAGE) .
	printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts: [{hostPath: %s, containerPath: /var/lib/hean/marketdata, readOnly: true}]\n' \
	  "$(KIND_MARKETDATA)" > $(VENV)/kind-config.yaml
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER) --config $(VENV)/kind-config.yaml --wait 120s
	$(KIND) load docker-image $(KIND_IMAGE) --name $(KIND_CLUSTER)
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(VENV)/kind-kubeconfig
	HEAN_E2E_KUBECONFIG=$(abspath $(VENV)/kind-kubeconfig) \
	HEAN_HELM_ARGS="--set image.repository=$(firstword $(subst :, ,$(KIND_IMAGE))) --set image.tag=$(lastword $(subst :, ,$(KIND_IMAGE))) --set image.pullPolicy=Never --set worker.marketData.hostPath=/var/lib/hean/marketdata --set worker.marketData.mountPath=/var/lib/hean/marketdata --set redis.enabled=true --set tmpVolume.enabled=true" \
	  $(PY) -m pytest -q -m e2e
