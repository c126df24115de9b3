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


# -- the environment contract ----------------------------------------------------------------
def test_unknown_riskml_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings drops unknown prefixed variables even with extra="forbid" (it checks
    dotenv files only): riskml refuses them, with the closest valid names."""
    from riskml.settings import SettingsError

    monkeypatch.setenv("RISKML_REDIS_PASWORD", "leaky-value")
    with pytest.raises(SettingsError) as info:
        Settings()
    message = str(info.value)
    assert "RISKML_REDIS_PASWORD (did you mean RISKML_REDIS_PASSWORD" in message
    assert "leaky-value" not in message
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="RISKML_REDIS_PASWORD"):
        get_settings()
    monkeypatch.delenv("RISKML_REDIS_PASWORD")
    monkeypatch.setenv("riskml_nonsense", "1")  # names are matched case-insensitively
    with pytest.raises(SettingsError, match=r"riskml_nonsense\n"):
        Settings()


def test_every_riskml_variable_the_project_sets_is_a_setting() -> None:
    """Manifests, docs and code only name variables riskml reads (an unknown one would stop
    every process at start-up)."""
    import re

    from riskml.settings import REPO_ROOT, env_names

    valid = set(env_names())
    used: dict[str, str] = {}
    roots = ["k8s", "riskml", "serving", "components", "pipelines", "docs", "feature_repo"]
    files = [p for r in roots for p in (REPO_ROOT / r).rglob("*") if p.is_file()]
    files += [REPO_ROOT / n for n in ("README.md", "Makefile", "Dockerfile", "skaffold.yaml")]
    for path in files:
        if path.suffix not in {".py", ".yaml", ".yml", ".md", ".json", ""} or not path.exists():
            continue
        for name in re.findall(r"\bRISKML_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="ignore")):
            used.setdefault(name, str(path.relative_to(REPO_ROOT)))
    used.pop("RISKML_RESULT", None)  # the result marker of a job's log, not a variable
    unknown = {name: where for name, where in used.items() if name not in valid}
    assert unknown == {}
    assert {"RISKML_HOME", "RISKML_FEAST_CONFIG", "RISKML_REDIS_PASSWORD"} <= set(used)


def test_secret_from_a_mounted_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from riskml.settings import SECRET_FIELDS, SettingsError

    assert "redis_password" in SECRET_FIELDS
    secret = tmp_path / "password"
    secret.write_text("s3cret value\n")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD_FILE", str(secret))
    s = Settings()
    assert s.redis_password is not None
    assert s.redis_password.get_secret_value() == "s3cret value"  # one trailing newline off
    assert "s3cret" not in repr(s) and "s3cret" not in str(s) and "s3cret" not in f"{s!r}"
    secret.write_text("crlf\r\n\n")
    assert Settings().redis_password.get_secret_value() == "crlf\r\n"  # type: ignore[union-attr]

    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "other")
    with pytest.raises(SettingsError, match="both RISKML_REDIS_PASSWORD and RISKML_REDIS_PASSWOR"):
        Settings()
    monkeypatch.delenv("RISKML_REDIS_PASSWORD")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"RISKML_REDIS_PASSWORD_FILE=.*missing: cannot read"):
        Settings()
    monkeypatch.delenv("RISKML_REDIS_PASSWORD_FILE")
    monkeypatch.setenv("RISKML_HOME_FILE", str(secret))  # only secrets come from files
    with pytest.raises(SettingsError, match="RISKML_HOME_FILE"):
        Settings()


def test_secret_from_the_environment_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "from-env")
    s = Settings()
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "from-env"
    assert "from-env" not in repr(s)
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "")  # an optional Secret key that is absent
    assert Settings().redis_password is None


def test_cluster_settings_and_their_defaults(
    monkeypatch: pytest.MonkeyPatch, riskml_home: Path
) -> None:
    s = Settings()
    assert s.feast_config is None and s.redis_username is None and s.redis_ssl is False
    assert (s.redis_connect_timeout_s, s.redis_read_timeout_s) == (2.0, 1.0)
    assert s.model_cache_dir == riskml_home / "model-cache"
    assert s.tracking_uri == f"sqlite:///{riskml_home.resolve() / 'mlflow.db'}"
    assert s.registry_uri == s.tracking_uri
    assert s.mlflow_artifacts_uri == (riskml_home / "mlartifacts").resolve().as_uri()
    assert s.storage_uri is None and s.ray_storage_uri.startswith("file://")
    for name, value in {
        "RISKML_FEAST_CONFIG": "/etc/riskml/feast/feature_store.yaml",
        "RISKML_REDIS_USERNAME": "riskml",
        "RISKML_REDIS_SSL": "true",
        "RISKML_REDIS_CONNECT_TIMEOUT_S": "0.5",
        "RISKML_REDIS_READ_TIMEOUT_S": "0.25",
        "RISKML_MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "RISKML_MLFLOW_REGISTRY_URI": "http://registry:5000",
        "RISKML_STORAGE_URI": "s3://bucket/ray",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.feast_config == Path("/etc/riskml/feast/feature_store.yaml")
    assert (s.redis_username, s.redis_ssl) == ("riskml", True)
    assert (s.redis_connect_timeout_s, s.redis_read_timeout_s) == (0.5, 0.25)
    assert (s.tracking_uri, s.registry_uri) == ("http://mlflow:5000", "http://registry:5000")
    assert s.ray_storage_uri == "s3://bucket/ray"
    monkeypatch.setenv("RISKML_REDIS_READ_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="redis_read_timeout_s"):
        Settings()


def test_every_setting_is_documented_in_operations_md() -> None:
    """docs/operations.md lists every setting by its variable: a new field without a line fails."""
    from riskml.settings import Settings

    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    missing = [n for n in Settings.model_fields if f"`RISKML_{n.upper()}`" not in doc]
    assert missing == []


def test_cli_reports_an_unknown_variable_without_a_traceback_and_exits_2(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "RISKML_HOME": str(tmp_path), "RISKML_REDIS_PASWORD": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "riskml", "serve", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("riskml: invalid settings: unknown riskml environment variable")
    assert "RISKML_REDIS_PASWORD (did you mean RISKML_REDIS_PASSWORD" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 4
