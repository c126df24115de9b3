"""Where the feature store lives: Redis connection strings from settings, the environment's
feature_store.yaml (RISKML_FEAST_CONFIG), the shipped staging/prod configs. No services."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from riskml.features import FeatureStoreError
from riskml.features.store import (
    StoreConfig,
    load_feature_store_yaml,
    redact,
    redis_connection_string,
    repo_config,
)
from riskml.settings import REPO_ROOT, Settings, get_settings

SHIPPED = {
    "feature_repo": REPO_ROOT / "feature_repo" / "feature_store.redis.yaml",
    "staging": REPO_ROOT / "k8s" / "base" / "feast" / "feature_store.yaml",
    "prod": REPO_ROOT / "k8s" / "overlays" / "prod" / "feature_store.yaml",
}


def _params(conn: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in conn.split(",") if "=" in part)


def test_redis_connection_string_carries_auth_tls_and_both_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = redis_connection_string("redis-host:6380,db=2", Settings())
    assert plain.split(",")[0] == "redis-host:6380"
    assert _params(plain) == {"db": "2", "socket_connect_timeout": "2", "socket_timeout": "1"}

    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "123")  # would reach redis-py as a number
    monkeypatch.setenv("RISKML_REDIS_USERNAME", "riskml")
    monkeypatch.setenv("RISKML_REDIS_SSL", "true")
    monkeypatch.setenv("RISKML_REDIS_READ_TIMEOUT_S", "0.25")
    s = Settings()
    got = _params(redis_connection_string("redis-host:6380", s))
    assert got == {
        "password": '"123"',  # JSON-quoted: Feast json-decodes each value
        "username": '"riskml"',
        "ssl": "true",
        "socket_connect_timeout": "2",
        "socket_timeout": "0.25",
    }
    # what the address says wins over the settings
    url = _params(redis_connection_string("rediss://u:p%40ss@h:7000/3", s))
    assert (url["password"], url["username"], url["db"], url["ssl"]) == (
        '"p@ss"',
        '"u"',
        "3",
        "true",
    )
    own = _params(redis_connection_string("h:1,password=mine,socket_timeout=5", s))
    assert (own["password"], own["socket_timeout"]) == ("mine", "5")

    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "a,b")
    with pytest.raises(FeatureStoreError, match="contains ','"):
        redis_connection_string("h:1", Settings())
    with pytest.raises(FeatureStoreError, match="redis:// or rediss://"):
        redis_connection_string("http://h:1", s)


def test_settings_built_config_when_no_feast_config(
    monkeypatch: pytest.MonkeyPatch, riskml_home: Path
) -> None:
    rc = repo_config()
    assert rc.registry.registry_type == "file"
    assert Path(rc.registry.path) == riskml_home.resolve() / "feast" / "registry.db"
    assert rc.online_store.type == "sqlite"
    monkeypatch.setenv("RISKML_ONLINE_STORE", "redis")
    monkeypatch.setenv("RISKML_REDIS_URL", "redis-host:6379")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "pw")
    get_settings.cache_clear()
    conn = repo_config().online_store.connection_string
    assert _params(conn)["password"] == '"pw"' and _params(conn)["socket_timeout"] == "1"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_feast_config_is_read_with_variables_expanded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _write(
        tmp_path / "feature_store.yaml",
        "# comments may mention ${NOT_SET_ANYWHERE}\n"
        "project: from_yaml\nprovider: local\n"
        "registry: {registry_type: file, path: reg/registry.db, cache_ttl_seconds: 5}\n"
        "online_store: {type: redis,\n"
        "  connection_string: '${REDIS_ADDR},password=${RISKML_REDIS_PASSWORD}'}\n"
        "offline_store: {type: file}\nentity_key_serialization_version: 3\n",
    )
    monkeypatch.setenv("RISKML_FEAST_CONFIG", str(config))
    get_settings.cache_clear()
    with pytest.raises(FeatureStoreError, match=r"not set: REDIS_ADDR, RISKML_REDIS_PASSWORD$"):
        repo_config()
    monkeypatch.setenv("REDIS_ADDR", "redis-a:6379")
    secret = _write(tmp_path / "pw", "from-a-file\n")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD_FILE", str(secret))
    get_settings.cache_clear()
    rc = repo_config()
    assert rc.project == "from_yaml" and rc.registry.cache_ttl_seconds == 5
    assert rc.repo_path == tmp_path.resolve()
    conn = rc.online_store.connection_string
    assert conn.startswith("redis-a:6379,")
    params = _params(conn)
    assert params["password"] == "from-a-file"  # ${RISKML_REDIS_PASSWORD} from the file
    assert (params["socket_connect_timeout"], params["socket_timeout"]) == ("2", "1")

    # explicit overrides: project and TTL; a conflicting online store is an error
    rc = repo_config(StoreConfig(project="tests_x", registry_ttl_s=0))
    assert (rc.project, rc.registry.cache_ttl_seconds) == ("tests_x", 0)
    assert repo_config(StoreConfig(online_store="redis")).online_store.type == "redis"
    with pytest.raises(FeatureStoreError, match="RISKML_FEAST_CONFIG"):
        repo_config(StoreConfig(online_store="sqlite"))
    with pytest.raises(FeatureStoreError, match="connection_string there"):
        repo_config(StoreConfig(redis_url="elsewhere:6379"))
    # StoreConfig(feast_config=...) wins over the setting
    other = _write(tmp_path / "other.yaml", config.read_text().replace("from_yaml", "other"))
    assert repo_config(StoreConfig(feast_config=other)).project == "other"


def test_feast_config_errors_name_the_problem_not_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(FeatureStoreError, match="cannot be read"):
        load_feature_store_yaml(tmp_path / "absent.yaml")
    monkeypatch.setenv("SECRET_URL", "postgresql+psycopg://u:topsecret@db:5432/feast")
    bad = _write(  # an invalid value that holds a secret: pydantic would print it
        tmp_path / "bad.yaml",
        "project: riskml\nprovider: local\n"
        "registry: {registry_type: sql, path: '${SECRET_URL}'}\n"
        "online_store: {type: sqlite, path: online.db}\n"
        "entity_key_serialization_version: '${SECRET_URL}'\n",
    )
    with pytest.raises(FeatureStoreError) as info:
        repo_config(StoreConfig(feast_config=bad))
    assert "entity_key_serialization_version" in str(info.value)
    assert "topsecret" not in str(info.value)
    assert redact("postgresql+psycopg://u:topsecret@db:5432/feast") == (
        "postgresql+psycopg://u:***@db:5432/feast"
    )
    assert redact("h:1,password=topsecret,db=0") == "h:1,password=***,db=0"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_cluster_configs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging/prod: SQL registry on PostgreSQL (psycopg 3), Redis with AUTH, connect and read
    timeouts, secrets only as ${VAR}s; prod over TLS."""
    path = SHIPPED[name]
    text = path.read_text()
    raw = yaml.safe_load(text)
    assert raw["registry"]["registry_type"] == "sql"
    assert raw["registry"]["path"] == "${FEAST_REGISTRY_PATH}"
    conn = raw["online_store"]["connection_string"]
    assert raw["online_store"]["type"] == "redis" and "password=${RISKML_REDIS_PASSWORD}" in conn
    assert "socket_connect_timeout=" in conn and "socket_timeout=" in conn
    assert ("ssl=true" in conn) == (name == "prod")
    monkeypatch.setenv("FEAST_REGISTRY_PATH", "postgresql+psycopg://feast:pw@pg:5432/feast")
    monkeypatch.setenv("REDIS_ADDRESS", "redis:6379")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "redis-pw")
    get_settings.cache_clear()
    rc = repo_config(StoreConfig(feast_config=path))
    assert rc.registry.path.startswith("postgresql+psycopg://")
    assert rc.online_store.type == "redis"
    assert _params(rc.online_store.connection_string)["password"] == "redis-pw"
    assert rc.offline_store.type == "riskml.features.offline.PolarsOfflineStore"
