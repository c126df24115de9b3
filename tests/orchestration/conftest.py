"""The fake Kubernetes API server (fake_k8s.py) as fixtures: bare, or holding the shipped
RayService."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from riskml.k8s.manifests import RAYSERVICE_PATH
from tests.orchestration.fake_k8s import FakeKube


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture
def kube(fake_kube: FakeKube) -> FakeKube:
    """The fake API server with k8s/base/serving/rayservice.yaml applied."""
    fake_kube.add_rayservice(yaml.safe_load(RAYSERVICE_PATH.read_text()))
    return fake_kube
