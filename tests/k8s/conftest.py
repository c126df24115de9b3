"""Fixtures for the offline Kubernetes checks: each overlay is rendered once per session."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from riskml.k8s.manifests import OVERLAYS, find_kubectl, overlay_path, render_overlay
from riskml.settings import Settings

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_kubectl()
    if path is None:
        pytest.skip("kubectl is not on PATH (needed for `kubectl kustomize`)")
    return path


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Doc]]:
    """{overlay: rendered objects}. Tests must not mutate these: use ``mutable``."""
    return {name: render_overlay(overlay_path(name)) for name in OVERLAYS}


@pytest.fixture
def mutable(rendered: dict[str, list[Doc]]) -> Callable[[str], list[Doc]]:
    """A deep copy of an overlay's objects, safe to mutate in a negative test."""

    def make(overlay: str = "prod") -> list[Doc]:
        return copy.deepcopy(rendered[overlay])

    return make


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    path = Settings().crd_dir
    if path is None or not Path(path).is_dir():
        pytest.skip(f"CRD directory unset or missing (RISKML_CRD_DIR={path}); point it at the CRDs")
    return Path(path)


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    path = Settings().schema_dir
    if path is None or not (Path(path) / "skaffold-v4beta14.json").is_file():
        pytest.skip(f"skaffold schema unset or missing (RISKML_SCHEMA_DIR={path})")
    return Path(path)


@pytest.fixture(scope="session")
def crd_schemas(crd_dir: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    from riskml.k8s.validate import load_crd_schemas

    return load_crd_schemas(crd_dir)


@pytest.fixture(scope="session")
def ray_version() -> str:
    import ray

    return str(ray.__version__)
