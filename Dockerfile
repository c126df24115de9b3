# syntax=docker/dockerfile:1.7
#
# The one riskml runtime image: kfp components, KubeRay RayJobs (training) and the RayService
# (scoring) all run it. The Ray base image must carry the same Ray as the locks
# (ray==2.60.0); tests/k8s check RAY_VERSION against the installed Ray and the overlays' tags.
#
#   docker build -t riskml:0.1.0-ray2.60.0 .                                    # CPU
#   docker build --build-arg VARIANT=gpu -t riskml:0.1.0-ray2.60.0-gpu .       # CUDA (GPU workers)
#
# skaffold builds both (artifacts `riskml` and `riskml-gpu`).
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
ARG VARIANT=cpu
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}

ARG RAY_VERSION
ARG VARIANT=cpu
# requirements.runtime.lock pins the CPU build of PyTorch (torch==X+cpu, from the PyTorch CPU
# index); requirements.runtime-gpu.lock pins the CUDA build of the same version from PyPI.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# 0) OS packages, the one layer built as root: Tesseract for the OCR of scanned dispute evidence
#    (riskml.features.disputes.text; without it a scanned page gets a clear error).
USER root
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tesseract-ocr; \
    rm -rf /var/lib/apt/lists/*; \
    tesseract --version

# The Ray base image runs as the non-root user `ray` (uid 1000, gid 100) with conda under
# /home/ray/anaconda3; stay that user for every other layer so nothing in the image is
# root-owned and writable at runtime.
USER 1000:100
WORKDIR /home/ray/app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RISKML_HOME=/tmp/riskml \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.matplotlib

# 1) Third-party dependencies from the runtime lock of the variant only (no dev tools; cached
#    until the locks change). Every file is checked against the lock's sha256 (--require-hashes;
#    an index, the extra one included, can only serve the exact files locked). Each lock is the
#    whole resolved set (`make lock`), so pip installs it as it is (--no-deps) instead of
#    resolving again.
COPY --chown=1000:100 requirements.runtime.lock requirements.runtime-gpu.lock ./
RUN set -eux; \
    if [ "${VARIANT}" = "gpu" ]; then \
      pip install --require-hashes --no-deps -r requirements.runtime-gpu.lock; \
    else \
      pip install --require-hashes --no-deps --extra-index-url "${TORCH_CPU_INDEX}" \
        -r requirements.runtime.lock; \
    fi; \
    python -c "import ray; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

# 2) The project itself, without touching the resolved dependency set, built with the lock's
#    setuptools (no build isolation: nothing unpinned is downloaded to build it).
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 riskml ./riskml
COPY --chown=1000:100 serving ./serving
COPY --chown=1000:100 components ./components
COPY --chown=1000:100 pipelines ./pipelines
COPY --chown=1000:100 feature_repo ./feature_repo
RUN pip install --no-deps --no-build-isolation . && python -m riskml version

# Runtime writes go to /tmp only (the pods mount emptyDirs there and keep the root filesystem
# read-only). KubeRay supplies the command (`ray start ...`); kfp supplies its own.
USER 1000:100
