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
