# Thin wrappers. Every target bootstraps .venv through `setup` (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Local wheel directories (e.g. a CPU PyTorch build) configured for pip are passed on to uv.
FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint render render-serve-config lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade uv
	$(UV) pip install -q --python $(PY) --compile-bytecode $(FIND_LINKS) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

demo: setup
	$(PY) -m riskml demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.simulate --out out/bench/simulate.json

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Render every overlay offline, then validate it (schemas, CRDs, skaffold, serve config, policies).
render: setup
	@for o in k8s/overlays/*/; do echo "--- $$o"; kubectl kustomize $$o > /dev/null && echo ok; done
	$(PY) -m riskml k8s validate --out out/k8s-validate.json

# Copy serving/serve_config.yaml into the RayService's serveConfigV2 (tests fail on drift).
render-serve-config: setup
	$(PY) -m riskml k8s sync-serve-config

# Re-resolve the pinned dependency set after editing pyproject.toml.
lock: setup
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 $(FIND_LINKS) -q -o requirements.lock

clean:
	rm -rf $(VENV) .riskml out .pytest_cache .mypy_cache .ruff_cache
