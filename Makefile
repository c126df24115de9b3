# Thin wrappers. Every target bootstraps .venv through `setup` (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Local wheel directories (e.g. a CPU PyTorch build) configured for pip are passed on to uv.
FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
PYTEST_ARGS ?=

.PHONY: setup demo test bench bench-serving lint render render-serve-config lock clean

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

# The unit tier for the edit loop (no Ray, Serve, kfp runs, Redis or Feast stores): <= 2 min.
test-fast: setup
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

# Benchmarks, each writing JSON under out/bench/ (index and dated figures: benchmarks/README.md).
# `bench` runs the six that take a few minutes each; the serving benchmark runs ~11 min (a Serve
# app per store and topology, 30 s of replay each), so it has a target of its own. features,
# write_back, streaming and serving also measure the local Redis (localhost:6379).
bench: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.simulate --out out/bench/simulate.json
	$(PY) -m benchmarks.features --out out/bench/features.json
	$(PY) -m benchmarks.training --out out/bench/training.json
	$(PY) -m benchmarks.pipeline --size tiny --out out/bench/pipeline.json
	$(PY) -m benchmarks.write_back --out out/bench/write_back.json
	$(PY) -m benchmarks.streaming --out out/bench/streaming.json

bench-serving: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.serving --rps 100 --duration 30 --out out/bench/serving.json

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

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
