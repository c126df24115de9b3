"""Static checks of the one runtime image: Ray base matching the installed Ray, non-root,
installed from the lock, GPU variant by build argument. (No Docker engine here: the build
itself runs in CI/skaffold.)"""

from __future__ import annotations

import re
import sys

import pytest

from riskml.settings import REPO_ROOT

pytestmark = pytest.mark.k8s

DOCKERFILE = REPO_ROOT / "Dockerfile"


def _args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def test_base_image_is_ray_matching_the_project(ray_version: str) -> None:
    text = DOCKERFILE.read_text()
    args = _args(text)
    assert args["RAY_VERSION"] == ray_version
    assert args["PYTHON_TAG"] == f"py{sys.version_info.major}{sys.version_info.minor}"
    assert args["VARIANT"] == "cpu"
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert base == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}"
    # The build fails if the lock's Ray drifts from the base image's.
    assert "assert ray.__version__ == '${RAY_VERSION}'" in text
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert re.search(rf"^ray==({re.escape(ray_version)})$", lock, flags=re.MULTILINE)


def test_gpu_variant_by_build_argument() -> None:
    text = DOCKERFILE.read_text()
    assert 'if [ "${VARIANT}" = "gpu" ]' in text
    # The GPU build swaps the lock's +cpu torch pin for the CUDA wheel of the same version.
    swap = re.search(r"sed -E '(s/[^']+)'", text)
    assert swap is not None
    lock = (REPO_ROOT / "requirements.lock").read_text()
    (torch_pin,) = re.findall(r"^torch==\S+$", lock, flags=re.MULTILINE)
    _, pattern, replacement, _ = swap.group(1).split("/")
    assert torch_pin.endswith("+cpu")
    assert re.sub(pattern, replacement, torch_pin) == torch_pin.removesuffix("+cpu")


def test_non_root_and_installed_from_the_lock() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    assert users[-1] == "1000:100"
    assert "-r requirements.lock" in text
    assert "pip install --no-deps ." in text
    assert ":latest" not in text
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "**"  # whitelist: nothing (.venv, .git, tests) unless listed
    for needed in ("!requirements.lock", "!riskml/", "!serving/", "!pyproject.toml"):
        assert needed in ignore
