from pathlib import Path

import pytest

from riskml.settings import Settings, get_settings


def test_env_prefix_and_lazy_cache(monkeypatch: pytest.MonkeyPatch, riskml_home: Path) -> None:
    assert get_settings().home == riskml_home
    monkeypatch.setenv("RISKML_ONLINE_STORE", "redis")
    assert get_settings().online_store == "sqlite"  # cached until cleared
    get_settings.cache_clear()
    assert get_settings().online_store == "redis"


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKML_RAY_MODE", "carrier-pigeon")
    with pytest.raises(ValueError, match="ray_mode"):
        Settings()


def test_importing_riskml_does_no_heavy_imports() -> None:
    import subprocess
    import sys

    code = (
        "import sys, riskml, riskml.cli, riskml.settings, riskml.data.schema, riskml.data.io;"
        "heavy = {'ray', 'torch', 'kfp', 'feast', 'xgboost', 'kubernetes', 'polars', 'pandas'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
