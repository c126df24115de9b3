"""Fixtures for the offline Kubernetes checks: each overlay is rendered once per session."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from riskml.k8s.manifests import OVERLAYS, find_kubectl, overlay_path, render_overlay
from riskml.settings import Settings
from tests.support.services import need

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_kubectl()
    need(path is not None, "kubectl is not on PATH (needed for `kubectl kustomize`)")
    assert path is not None
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
    need(
        path is not None and Path(path).is_dir(),
        f"CRD directory unset or missing (RISKML_CRD_DIR={path}); point it at the CRDs",
    )
    assert path is not None
    return Path(path)


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    path = Settings().schema_dir
    need(
        path is not None and (Path(path) / "skaffold-v4beta14.json").is_file(),
        f"skaffold schema unset or missing (RISKML_SCHEMA_DIR={path})",
    )
    assert path is not None
    return Path(path)


@pytest.fixture(scope="session")
def crd_schemas(crd_dir: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    from riskml.k8s.validate import load_crd_schemas

    return load_crd_schemas(crd_dir)


@pytest.fixture(scope="session")
def ray_version() -> str:
    import ray

    return str(ray.__version__)
