"""Fixtures for the orchestration / kfp tests: a private Ray head, a fake Kubernetes API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from riskml.orchestration.head import RayHead, start_head


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A private Ray head (1 CPU, dashboard on, free ports, own temp dir), stopped afterwards
    by its own process group — never `ray stop`, which would hit other Ray instances."""
    head = start_head(num_cpus=1, include_dashboard=True, timeout_s=180)
    try:
        yield head
    finally:
        head.stop()
