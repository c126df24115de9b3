# Thin wrappers. Every target bootstraps .venv through `setup` (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Local wheel directories (e.g. a CPU PyTorch build) configured for pip are passed on to uv.
FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
PYTEST_ARGS ?=

.PHONY: setup demo test bench bench-serving bench-faults bench-monitor bench-quality lint render render-serve-config lock clean

setup: $(VENV)/.installed

# Every file the lock names is checked against its sha256 (--require-hashes); the project itself
# is built with the lock's setuptools (no build isolation: nothing unpinned is fetched for it).
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade uv
	$(UV) pip install -q --python $(PY) --compile-bytecode --require-hashes $(FIND_LINKS) \
	  -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
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

# ~30 min on 2 cores: the benchmark preset backtested twice (before/after #25) and a six-column import
bench-quality: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.model_quality --out out/bench/model_quality.json

bench-serving: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.serving --rps 100 --duration 30 --out out/bench/serving.json

# ~10 min: the serving fault targets of #21 (store down, a slow model, a replica killed at
# 200 rps for 60 s, with and without retries), through direct ingress and through the proxy
bench-faults: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.faults --routes direct,proxy --out out/bench/faults.json

# ~10 min (#22): the monitor's cost per 10,000 logged decisions against reading the same log,
# and the Serve app's latency alone vs beside a monitor loop (nice 0 and nice 10)
bench-monitor: setup
	mkdir -p out/bench
	$(PY) -m benchmarks.monitor --out out/bench/monitor.json

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

# Re-resolve the pinned, hashed dependency sets after editing pyproject.toml. Pins already in a
# lock are kept (uv prefers its output file's versions); LOCK_ARGS=--upgrade (or
# --upgrade-package NAME) moves them. Three locks, one set of versions:
#   requirements.lock              dev + runtime, CPU PyTorch (.venv, CI)
#   requirements.runtime.lock      runtime only, constrained to requirements.lock (the CPU image)
#   requirements.runtime-gpu.lock  runtime only with PyPI's CUDA PyTorch of the same version and
#                                  its CUDA wheels; every other pin as in the runtime lock (GPU image)
LOCK_ARGS ?=
LOCK_OPTS = --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -q $(LOCK_ARGS)
lock: setup
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_OPTS) $(FIND_LINKS) -o requirements.lock
	$(UV) pip compile pyproject.toml $(LOCK_OPTS) $(FIND_LINKS) -c requirements.lock \
	  -o requirements.runtime.lock
	set -o pipefail; \
	sed -nE 's/^([A-Za-z0-9][A-Za-z0-9._-]*==[^ ]+).*/\1/p' requirements.runtime.lock \
	  | grep -v '^torch==' \
	  | $(UV) pip compile pyproject.toml $(LOCK_OPTS) -c - -o requirements.runtime-gpu.lock

clean:
	rm -rf $(VENV) .riskml out .pytest_cache .mypy_cache .ruff_cache
