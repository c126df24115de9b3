"""Static checks of the one runtime image and the locks it is built from: Ray base matching the
installed Ray, non-root, installed from a hashed runtime lock (no dev tools) with
--require-hashes, GPU variant by build argument with its own hashed lock. (No Docker engine
here: the build itself runs in CI/skaffold.)"""

from __future__ import annotations

import re
import sys
import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from riskml.settings import REPO_ROOT

pytestmark = pytest.mark.k8s

DOCKERFILE = REPO_ROOT / "Dockerfile"
#: .venv and CI (dev + runtime); the CPU image; the GPU image.
MAIN_LOCK, RUNTIME_LOCK, GPU_LOCK = (
    "requirements.lock",
    "requirements.runtime.lock",
    "requirements.runtime-gpu.lock",
)
LOCKS = (MAIN_LOCK, RUNTIME_LOCK, GPU_LOCK)
#: Test, lint and type-check tools (and what only they pull in): never in an image.
DEV_ONLY = {
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "schemathesis",
    "ruff",
    "import-linter",
    "grimp",
    "kubernetes-validate",
    "types-pyyaml",
    "iniconfig",
    "pluggy",
}
#: dev-extra packages a runtime dependency needs too: feast requires ``SQLAlchemy[mypy]``, and
#: ray, mlflow and kfp require jsonschema.
DEV_AND_RUNTIME = {"mypy", "jsonschema"}
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined (Dockerfile RUN, requirements entries)."""
    return text.replace("\\\n", " ").splitlines()


def read_lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``{canonical name: (version, hashes)}`` of a hashed lock; asserts every requirement is an
    exact ``==`` pin carrying sha256 hashes."""
    entries = parse_lock((REPO_ROOT / name).read_text(), name)
    assert len(entries) > 100, name
    return entries


def parse_lock(text: str, name: str) -> dict[str, tuple[str, frozenset[str]]]:
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    for line in _logical_lines(text):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;@]+)", requirement)
        assert match, f"{name}: {requirement!r} is not an exact pin"
        assert options, f"{name}: {requirement} has no --hash"
        assert all(_HASH.match(o) for o in options), f"{name}: {requirement}: {options}"
        key = canonicalize_name(match.group(1))
        assert key not in entries, f"{name}: {key} twice"
        entries[key] = (match.group(2), frozenset(options))
    return entries


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {canonicalize_name(Requirement(r).name) for r in requirements}


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
    for lock in LOCKS:
        assert read_lock(lock)["ray"][0] == ray_version, lock


def _pip_installs(text: str) -> list[str]:
    """Every ``pip install ...`` command of the Dockerfile's RUN instructions."""
    commands = []
    for line in _logical_lines(text):
        if line.startswith("RUN "):
            commands += re.findall(r"pip install [^;&]+", line)
    return [" ".join(c.split()) for c in commands]


def test_gpu_variant_by_build_argument() -> None:
    text = DOCKERFILE.read_text()
    assert 'if [ "${VARIANT}" = "gpu" ]' in text
    # Each variant installs its own hashed lock as it is: nothing rewrites a pin (a rewritten
    # pin would no longer match its hashes).
    assert "sed " not in text
    run = next(line for line in _logical_lines(text) if "${VARIANT}" in line and "RUN" in line)
    gpu, cpu = run.split("else", 1)
    assert f"-r {GPU_LOCK}" in " ".join(gpu.split()) and RUNTIME_LOCK + ";" not in gpu
    assert f"-r {RUNTIME_LOCK};" in " ".join(cpu.split()) and GPU_LOCK not in cpu
    assert '--extra-index-url "${TORCH_CPU_INDEX}"' in cpu  # torch==X+cpu lives there


def test_the_image_installs_the_runtime_locks_with_require_hashes() -> None:
    text = DOCKERFILE.read_text()
    installs = _pip_installs(text)
    assert len(installs) == 3, installs
    lock_installs = [c for c in installs if " -r " in c]
    assert {c.rsplit(" -r ", 1)[1] for c in lock_installs} == {RUNTIME_LOCK, GPU_LOCK}
    for command in lock_installs:
        assert "--require-hashes" in command.split(), command
        assert "--no-deps" in command.split(), command  # the lock is the whole resolved set
    # the project: no dependencies, built with the lock's setuptools (nothing unpinned fetched)
    assert installs[-1] == "pip install --no-deps --no-build-isolation ."
    assert MAIN_LOCK not in text  # never the dev lock
    (copy,) = [line for line in text.splitlines() if line.startswith("COPY") and ".lock" in line]
    assert copy.split()[2:4] == [RUNTIME_LOCK, GPU_LOCK]


def test_non_root_and_installed_from_the_lock() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    # root for the OS packages' layer only (apt-get), before anything of the project
    assert (
        users[0] == "root"
        and users[1:]
        and all(u.split(":")[0] not in ("0", "root") for u in users[1:])
    ), users
    root_part = text.split("USER root", 1)[1].split("\nUSER ", 1)[0]
    assert re.findall(r"^(\w+) ", root_part, flags=re.MULTILINE) == ["RUN"], root_part
    assert "apt-get install" in root_part and "COPY" not in root_part
    assert users[-1] == "1000:100"
    assert ":latest" not in text
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "**"  # whitelist: nothing (.venv, .git, tests) unless listed
    for needed in (f"!{RUNTIME_LOCK}", f"!{GPU_LOCK}", "!riskml/", "!serving/", "!pyproject.toml"):
        assert needed in ignore
    assert f"!{MAIN_LOCK}" not in ignore  # the dev lock stays out of the build context


def test_the_image_has_tesseract_for_scanned_evidence() -> None:
    """The disputes endpoint OCRs scanned evidence (riskml.features.disputes.text): the image
    installs Tesseract and checks it runs, in the root layer before the project's own."""
    logical = _logical_lines(DOCKERFILE.read_text())
    (apt,) = [line for line in logical if "apt-get install" in line]
    assert "tesseract-ocr;" in apt.split() and "--no-install-recommends" in apt
    assert "tesseract --version" in apt and "rm -rf /var/lib/apt/lists/*" in apt
    assert logical.index(apt) < min(i for i, line in enumerate(logical) if "COPY" in line)


def test_every_lock_pins_every_requirement_with_sha256_hashes() -> None:
    (torch,) = [
        Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("torch")
    ]
    (pin,) = torch.specifier
    for lock in LOCKS:
        entries = read_lock(lock)  # asserts == pins with --hash=sha256 on every entry
        text = (REPO_ROOT / lock).read_text()
        assert "\n#    make lock\n" in text, f"{lock}: not written by `make lock`"
        assert not re.search(r"^\s*(-e|--editable|-i|--index-url|git\+|https?://)", text, re.M)
        # the CPU build (a local wheel / the PyTorch CPU index) except in the GPU image's lock
        cpu = "" if lock == GPU_LOCK else "+cpu"
        assert entries["torch"][0] == pin.version + cpu, lock
    good = "six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n"
    assert parse_lock(good, "good") == {"six": ("1.17.0", frozenset({"--hash=sha256:" + "0" * 64}))}
    for bad in (
        "six==1.17.0\n",
        "six>=1.17 \\\n    --hash=sha256:" + "0" * 64,
        "six==1 --hash=md5:0",
    ):
        with pytest.raises(AssertionError):
            parse_lock(bad, "bad")


def test_the_runtime_locks_carry_no_dev_tools() -> None:
    main = read_lock(MAIN_LOCK)
    assert set(main) >= DEV_ONLY  # the check below could fail
    dev_extra = _names(_pyproject()["project"]["optional-dependencies"]["dev"])
    runtime_deps = _names(_pyproject()["project"]["dependencies"])
    for lock in (RUNTIME_LOCK, GPU_LOCK):
        entries = read_lock(lock)
        assert not DEV_ONLY & set(entries), lock
        assert dev_extra & set(entries) == DEV_AND_RUNTIME, lock
        assert runtime_deps <= set(entries), f"{lock} is stale: {runtime_deps - set(entries)}"


def test_the_runtime_locks_pin_what_the_main_lock_pins() -> None:
    """One set of versions: the CPU runtime lock is a subset of requirements.lock (same versions,
    same hashes); the GPU lock differs only in torch's build and the CUDA stack it brings."""
    main = read_lock(MAIN_LOCK)
    runtime = read_lock(RUNTIME_LOCK)
    assert set(runtime) < set(main)
    assert {name: main[name] for name in runtime} == runtime
    gpu = read_lock(GPU_LOCK)
    cuda = set(gpu) - set(runtime)
    assert "nvidia-cublas" in cuda  # the CUDA build of torch brings its libraries
    assert all(re.match(r"^(nvidia-|cuda-|triton$)", name) for name in cuda), cuda
    assert set(runtime) <= set(gpu)
    for name in set(runtime) - {"torch"}:
        assert gpu[name] == runtime[name], name
    assert gpu["torch"][0] == runtime["torch"][0].removesuffix("+cpu")
    assert not gpu["torch"][1] & runtime["torch"][1]  # a different wheel: its own hashes


def test_setup_installs_the_lock_with_require_hashes() -> None:
    makefile = _logical_lines((REPO_ROOT / "Makefile").read_text())
    (install,) = [line for line in makefile if f"-r {MAIN_LOCK}" in line]
    assert "pip install" in install and "--require-hashes" in install.split()
    (opts,) = [line for line in makefile if line.startswith("LOCK_OPTS")]
    assert "--generate-hashes" in opts.split()
    lock_recipe = " ".join(makefile)
    for lock in LOCKS:
        assert f"-o {lock}" in lock_recipe
