"""Shared fixtures. Every test gets its own RISKML_HOME so nothing leaks between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riskml.settings import get_settings


@pytest.fixture(autouse=True)
def riskml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "riskml-home"
    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
