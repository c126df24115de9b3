"""The feature store as a cluster runs it: a Redis that requires AUTH (and TLS), connect and
read timeouts, and the environment's feature_store.yaml (RISKML_FEAST_CONFIG) with Feast's SQL
registry on PostgreSQL, read by processes whose RISKML_HOME is empty.

The Redis (``redis-server --requirepass``, an ACL user, a TLS port) and the PostgreSQL database
are this session's own (conftest), gone at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from riskml.features import FeatureStoreAuthError, FeatureStoreUnavailable
from riskml.features.online import OnlineFeatures
from riskml.features.store import StoreConfig, apply, get_store, materialize
from riskml.settings import REPO_ROOT, get_settings

from .conftest import REPLAY_DAY, AuthRedis, need

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture(scope="module")
def auth_store(
    make_store: Callable[..., StoreConfig], auth_redis: AuthRedis
) -> Iterator[StoreConfig]:
    """Features applied and materialised into the AUTH'd Redis (password from the setting)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RISKML_REDIS_PASSWORD", auth_redis.password)
        get_settings.cache_clear()
        cfg = make_store("redis", redis_url=auth_redis.address)
        yield cfg
        get_settings.cache_clear()
        get_store(cfg).teardown()
    get_settings.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> None:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def _request(cfg: StoreConfig) -> dict[str, Any]:
    history = pl.read_parquet(Path(cfg.features_dir or "") / "customer_history.parquet")
    return {"ts": REPLAY_DAY, "customer_id": history["customer_id"][0], "terminal_id": "t",
            "device_id": "d", "amount": 5.0}  # fmt: skip


def _client_kwargs(online: OnlineFeatures) -> dict[str, Any]:
    return dict(online._redis_client.connection_pool.connection_kwargs)


def test_right_password_reads_and_writes_with_both_timeouts(
    auth_store: StoreConfig, auth_redis: AuthRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, RISKML_REDIS_PASSWORD=auth_redis.password)
    online = OnlineFeatures(auth_store)
    online.check()
    kwargs = _client_kwargs(online)
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (2, 1)
    request = _request(auth_store)
    _, flags = online.get(request)
    assert flags["unknown_customer"] == 0  # materialised through AUTH
    tx = {**request, "tx_id": f"auth-{uuid.uuid4().hex}", "merchant_category": "grocery",
          "channel": "pos", "terminal_risk": 0.0}  # fmt: skip
    assert online.write_back(tx) is True
    state, _ = online.history(request["customer_id"])
    assert tx["tx_id"] in state["hist_tx_id"].tolist()


def test_wrong_or_missing_password_is_a_clear_startup_error(
    auth_store: StoreConfig, auth_redis: AuthRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials refused: a typed error at start-up naming the Redis, never an "unavailable"
    store that serving would quietly answer from the rules."""
    where = f"authentication failed for Redis at {auth_redis.address}"
    for password in ("wrong-password", None):
        _use(monkeypatch, RISKML_REDIS_PASSWORD=password)
        with pytest.raises(FeatureStoreAuthError, match=where) as info:
            OnlineFeatures(auth_store)
        assert not isinstance(info.value, FeatureStoreUnavailable)
        assert "wrong-password" not in str(info.value)
        with pytest.raises(FeatureStoreAuthError, match=where):
            materialize(REPLAY_DAY, config=auth_store)
        with pytest.raises(FeatureStoreAuthError, match=where):
            apply(auth_store)


def test_acl_user_with_password_from_a_mounted_file(
    auth_store: StoreConfig, auth_redis: AuthRedis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(auth_redis.user_password + "\n")  # as a Secret volume holds it
    _use(monkeypatch, RISKML_REDIS_PASSWORD=None, RISKML_REDIS_PASSWORD_FILE=str(secret),
         RISKML_REDIS_USERNAME=auth_redis.username)  # fmt: skip
    online = OnlineFeatures(auth_store)
    assert online._redis_client.acl_whoami() == auth_redis.username
    assert online.get(_request(auth_store))[1]["unknown_customer"] == 0
    secret.write_text(auth_redis.password)  # the default user's password, not this user's
    _use(monkeypatch)
    with pytest.raises(FeatureStoreAuthError, match=auth_redis.address):
        OnlineFeatures(auth_store)


def test_read_timeout_bounds_a_stalled_redis(
    auth_store: StoreConfig, auth_redis: AuthRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that accepted the connection but does not answer (paused) costs the read
    timeout, not the client's default of waiting forever."""
    _use(monkeypatch, RISKML_REDIS_PASSWORD=auth_redis.password, RISKML_REDIS_READ_TIMEOUT_S="0.3")
    online = OnlineFeatures(auth_store)
    assert _client_kwargs(online)["socket_timeout"] == 0.3
    request = _request(auth_store)
    online.get(request)  # connected
    pause_ms = 4000
    auth_redis.client().execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    paused = time.monotonic()
    try:
        with pytest.raises(FeatureStoreUnavailable, match=auth_redis.address):
            online.get(request)
        assert time.monotonic() - paused < 2.0  # two reads of 0.3 s (one retry), not 4 s
    finally:
        time.sleep(max(0.0, pause_ms / 1e3 - (time.monotonic() - paused)) + 0.2)
    assert online.get(request)[1]["unknown_customer"] == 0  # and it recovers


def test_tls_from_settings(
    auth_store: StoreConfig, auth_redis: AuthRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    need(auth_redis.tls_port is not None, "openssl not installed: no TLS Redis")
    _use(monkeypatch, RISKML_REDIS_PASSWORD=auth_redis.password, RISKML_REDIS_SSL="true")
    url = f"{auth_redis.host}:{auth_redis.tls_port},ssl_ca_certs={auth_redis.ca_file}"
    online = OnlineFeatures(auth_store.model_copy(update={"redis_url": url}))
    assert online._redis_client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert online.get(_request(auth_store))[1]["unknown_customer"] == 0  # same server, over TLS


# -- the environment's feature_store.yaml: SQL registry on PostgreSQL, AUTH'd Redis -----------
FEAST_YAML = REPO_ROOT / "feature_repo" / "feature_store.redis.yaml"

#: the materialise task: apply + materialise up to the replay day (argv: features dir, day)
MATERIALISE = """
import datetime as dt, json, sys
from pathlib import Path
from riskml.features.store import apply, materialize, store_config
cfg = store_config(Path(sys.argv[1]))
applied = apply(cfg)
done = materialize(dt.datetime.fromisoformat(sys.argv[2]), config=cfg)
print(json.dumps({**applied, **done}))
"""

#: the training-set task: the replay day's point-in-time rows (argv: features dir, day, out)
TRAINING_SET = """
import datetime as dt, sys
from pathlib import Path
from riskml.features.store import store_config, training_set
day = dt.datetime.fromisoformat(sys.argv[2])
frame = training_set(day, day + dt.timedelta(days=1), config=store_config(Path(sys.argv[1])),
                     sequences=True)
frame.write_parquet(sys.argv[3])
"""

#: a serving replica: online vectors of each customer's first transaction that day (argv: the
#: training rows), Serve's FeastFeatureSource, one write-back
SERVE = """
import json, sys
import polars as pl
from riskml.features.online import OnlineFeatures
from serving.bundle import FeastFeatureSource
from tests.features.helpers import compare_vector
rows = pl.read_parquet(sys.argv[1]).sort("ts", "tx_id")
first = rows.unique("customer_id", keep="first", maintain_order=True).to_dicts()  # day's first
online = OnlineFeatures()                          # settings only: what a replica gets
online.check()
got = online.get_many(first)
source = FeastFeatureSource({})                    # the Serve app's feature source
served = source.get_many(first[:3])
tx = {**first[0], "tx_id": "written-back-through-auth"}
print(json.dumps({
    "compared": len(first),
    "mismatches": [bad for (vec, _), row in zip(got, first) if (bad := compare_vector(vec, row))],
    "known": sum(1 for _, flags in got if flags["unknown_customer"] == 0),
    "served": [r.flags["unknown_customer"] for r in served],
    "written": online.write_back(tx),
    "registry": str(online.store.config.registry.registry_type),
}))
"""


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _pod_env(home: Path, **extra: str) -> dict[str, str]:
    """A process environment as a pod gets it: no RISKML_* of this test run, an empty home."""
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKML_")}
    return {**env, "RISKML_HOME": str(home), **extra}


def _files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.mark.slow
def test_cluster_shaped_store_from_processes_with_empty_homes(
    auth_redis: AuthRedis, registry_db: str, features_dir: Path, tmp_path: Path
) -> None:
    """RISKML_FEAST_CONFIG = the shipped staging/prod-shaped yaml (SQL registry on PostgreSQL,
    Redis with AUTH). A materialise process, a training-set process and a serving process, each
    with its own empty RISKML_HOME, share the store only through PostgreSQL and Redis: the
    training set (offline) and the served vectors (online) agree, a write-back goes through
    AUTH, and no process leaves a file in its home. A wrong password fails the replica's start."""
    secret = tmp_path / "redis-password"
    secret.write_text(auth_redis.password + "\n")
    shared = {
        "RISKML_FEAST_CONFIG": str(FEAST_YAML),
        "FEAST_REGISTRY_PATH": registry_db,
        "REDIS_ADDRESS": auth_redis.address,
    }
    homes = {
        name: tmp_path / f"home-{name}" for name in ("materialise", "cli", "train", "serve", "bad")
    }

    env = _pod_env(homes["materialise"], **shared, RISKML_REDIS_PASSWORD=auth_redis.password)
    done = _run(MATERIALISE, env, str(features_dir), REPLAY_DAY.isoformat())
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["online_store"] == "redis" and "fraud_v1_online" in summary["feature_services"]
    assert summary["registry"].startswith("postgresql+psycopg://")

    # `riskml features` reads the same config (its home holds only the built features)
    env = _pod_env(homes["cli"], **shared, RISKML_REDIS_PASSWORD=auth_redis.password)
    (homes["cli"] / "features").symlink_to(features_dir, target_is_directory=True)
    cli = subprocess.run(
        [sys.executable, "-m", "riskml", "features", "materialize", "--incremental",
         "--end", REPLAY_DAY.isoformat()],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert "customer_history" in cli.stdout and _files(homes["cli"]) == ["features"]

    training = tmp_path / "training.parquet"
    env = _pod_env(homes["train"], **shared, RISKML_REDIS_PASSWORD_FILE=str(secret))
    done = _run(TRAINING_SET, env, str(features_dir), REPLAY_DAY.isoformat(), str(training))
    assert done.returncode == 0, done.stderr[-3000:]
    assert pl.read_parquet(training).height > 1000

    env = _pod_env(homes["serve"], **shared, RISKML_REDIS_PASSWORD_FILE=str(secret))
    done = _run(SERVE, env, str(training))
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["compared"] > 300 and served["mismatches"] == []
    assert served["known"] == served["compared"]  # every customer's history from Redis
    assert served["served"] == [0, 0, 0] and served["written"] is True
    assert served["registry"] == "sql"

    for name in ("materialise", "train", "serve"):
        assert _files(homes[name]) == [], name  # no pod-local registry or online store

    env = _pod_env(homes["bad"], **shared, RISKML_REDIS_PASSWORD="not-the-password")
    done = _run(SERVE, env, str(training))
    assert done.returncode != 0
    assert "FeatureStoreAuthError" in done.stderr
    assert f"authentication failed for Redis at {auth_redis.address}" in done.stderr
    assert "not-the-password" not in done.stderr


def test_unreachable_sql_registry_is_a_typed_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from .conftest import free_port

    need(importlib.util.find_spec("psycopg") is not None, "psycopg (3) is not installed")
    monkeypatch.setenv(
        "FEAST_REGISTRY_PATH", f"postgresql+psycopg://feast:topsecret@127.0.0.1:{free_port()}/x"
    )
    config = tmp_path / "feature_store.yaml"
    config.write_text(
        "project: riskml\nprovider: local\n"
        "registry: {registry_type: sql, path: '${FEAST_REGISTRY_PATH}',\n"
        "           sqlalchemy_config_kwargs: {connect_args: {connect_timeout: 2}}}\n"
        "online_store: {type: sqlite, path: online.db}\nentity_key_serialization_version: 3\n"
    )
    with pytest.raises(FeatureStoreUnavailable, match=r"feature registry \(sql\) at ") as info:
        get_store(StoreConfig(feast_config=config))
    assert "postgresql+psycopg://feast:***@127.0.0.1:" in str(info.value)
    assert "topsecret" not in str(info.value)
