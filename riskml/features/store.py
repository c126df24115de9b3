"""The Feast store: configuration, apply, materialise, point-in-time training sets.

Where the store lives comes from one of two places, for every process alike (``riskml features``,
the materialise and training-set tasks, serving's ``FeastFeatureSource``):

- ``RISKML_FEAST_CONFIG`` set: that ``feature_store.yaml`` — the environment's (staging/prod: SQL
  registry on PostgreSQL, Redis online store). It is loaded as Feast's ``load_repo_config``
  loads one (``${VAR}`` expanded from the environment, then ``RepoConfig``), with three
  additions: a ``${VAR}`` that is not set is an error naming it (Feast would keep the literal
  text), ``${RISKML_<SECRET>}`` also resolves a secret given as ``RISKML_<SECRET>_FILE``, and a
  Redis connection string gets the Redis settings it lacks (:func:`redis_connection_string`).
- unset: a config built from settings (``RISKML_ONLINE_STORE``, ``RISKML_REDIS_*``,
  ``RISKML_HOME``): file registry and SQLite online store under ``<RISKML_HOME>/feast/``, never
  in the repository. ``feature_repo/feature_store.yaml`` holds the same defaults for the
  ``feast`` CLI.

Every Redis connection gets a connect and a read (socket) timeout. A Redis that refuses our
credentials raises :class:`FeatureStoreAuthError` (never mistaken for an outage).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskml.features.definitions import (
    ENTITY_FLAGS,
    FEATURE_SERVICE,
    PROJECT,
    SEQ_FIELDS,
    SEQ_LEN,
    default_value,
    feature_contract,
)
from riskml.features.errors import (
    FeatureStoreAuthError,
    FeatureStoreError,
    FeatureStoreUnavailable,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    from feast import FeatureStore

    from riskml.settings import Settings

#: Columns of a training set before the features (in this order).
BASE_COLUMNS: tuple[str, ...] = (
    "tx_id",
    "ts",
    "customer_id",
    "terminal_id",
    "device_id",
    "amount",
    "merchant_category",
    "channel",
    "is_fraud",
    "fraud_scenario",
    "label_available_at",
)
OFFLINE_TYPES = {"polars": "riskml.features.offline.PolarsOfflineStore", "file": "file"}
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
#: ``$NAME`` / ``${NAME}`` as ``os.path.expandvars`` (Feast's expansion) finds them.
_VAR_RE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


class StoreConfig(BaseModel):
    """Where the feature store lives. Defaults come from :func:`riskml.settings.get_settings`.

    With a feature store config (``feast_config``, default ``RISKML_FEAST_CONFIG``) the YAML
    decides; ``project``, ``registry_ttl_s`` and ``offline_store`` given explicitly override
    it, and ``online_store``/``redis_url`` given explicitly must agree with it.
    """

    model_config = ConfigDict(extra="forbid")

    project: str = PROJECT
    online_store: Literal["sqlite", "redis"] | None = None
    redis_url: str | None = None
    home: Path | None = None
    features_dir: Path | None = None
    registry_ttl_s: int = Field(default=600, ge=0)
    #: ``polars`` (riskml.features.offline, as-of joins) or Feast's built-in ``file`` (dask).
    offline_store: Literal["polars", "file"] = "polars"
    #: the environment's feature_store.yaml (default: ``RISKML_FEAST_CONFIG``)
    feast_config: Path | None = None

    def resolved(self) -> StoreConfig:
        """Settings filled in; the fields given explicitly stay marked as such."""
        from riskml.settings import get_settings

        s = get_settings()
        if not _PROJECT_RE.match(self.project):
            raise FeatureStoreError(
                f"invalid Feast project {self.project!r}: letters, digits and '_', "
                "not starting with '_'"
            )
        home = Path(self.home or s.home).resolve()
        feast_config = self.feast_config or s.feast_config
        values: dict[str, Any] = {
            **{name: getattr(self, name) for name in type(self).model_fields},
            "home": home,
            "features_dir": Path(self.features_dir or home / "features").resolve(),
            "feast_config": None if feast_config is None else Path(feast_config).resolve(),
        }
        if feast_config is None:  # the settings-built store
            values["online_store"] = self.online_store or s.online_store
            values["redis_url"] = self.redis_url or s.redis_url
        return StoreConfig.model_construct(_fields_set=set(self.model_fields_set), **values)


# -- Redis -----------------------------------------------------------------------------------
def _split_connection(conn: str) -> tuple[list[str], dict[str, str]]:
    """Feast's ``host:port[,host:port...][,key=value...]`` as (nodes, params) (values raw)."""
    nodes, params = [], {}
    for part in conn.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            params[key.strip()] = value
        else:
            nodes.append(part)
    return nodes, params


def redis_connection_string(url: str, settings: Settings | None = None) -> str:
    """Feast's connection string ``host:port[,db=N,password=...,...]`` for ``url`` (that form,
    or ``redis[s]://[[user]:pw@]host:port/db``) with the Redis settings it lacks: password,
    username, ``ssl`` (``RISKML_REDIS_SSL``), ``socket_connect_timeout`` and ``socket_timeout``
    (the read timeout). What the URL says wins over the settings."""
    from urllib.parse import unquote, urlparse

    from riskml.settings import get_settings

    s = settings or get_settings()
    if "://" in url:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise FeatureStoreError(f"Redis URL scheme must be redis:// or rediss://, not {url!r}")
        nodes = [f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"]
        params: dict[str, str] = {}
        db = parsed.path.strip("/")
        if db:
            params["db"] = str(int(db))
        if parsed.username:
            params["username"] = json.dumps(unquote(parsed.username))
        if parsed.password:
            params["password"] = json.dumps(unquote(parsed.password))
        if parsed.scheme == "rediss":
            params["ssl"] = "true"
    else:
        nodes, params = _split_connection(url)
    if not nodes:
        raise FeatureStoreError("Redis connection string names no host:port")
    # JSON-quoted: Feast json-decodes each value (a password "123" would become a number)
    if s.redis_password is not None and "password" not in params:
        params["password"] = json.dumps(s.redis_password.get_secret_value())
    if s.redis_username and "username" not in params:
        params["username"] = json.dumps(s.redis_username)
    if s.redis_ssl and "ssl" not in params:
        params["ssl"] = "true"
    params.setdefault("socket_connect_timeout", _seconds(s.redis_connect_timeout_s))
    params.setdefault("socket_timeout", _seconds(s.redis_read_timeout_s))
    for key in ("password", "username"):
        value = params.get(key)
        if value is None:
            continue
        if "," in value:
            # Feast splits the connection string on ',': such a value cannot pass through it
            raise FeatureStoreError(f"the Redis {key} contains ',' which Feast cannot pass on")
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = value
        if not isinstance(decoded, str):  # Feast would pass 123 / true / null on as such
            params[key] = json.dumps(value)
    return ",".join([*nodes, *(f"{k}={v}" for k, v in params.items())])


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def redis_address(connection_string: str) -> str:
    """``host:port`` of a Feast Redis connection string (the first node)."""
    nodes, _ = _split_connection(connection_string)
    return nodes[0] if nodes else "?"


def redact(text: str) -> str:
    """``text`` with URL passwords (``scheme://user:***@``) and ``password=***`` masked."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)[^,\s]*", r"\1***", text)


# -- the Feast config ------------------------------------------------------------------------
def _variables(node: Any) -> set[str]:
    """Names of the ``$VAR``/``${VAR}`` referenced in the strings of a parsed YAML tree."""
    if isinstance(node, Mapping):
        return set().union(*(_variables(k) | _variables(v) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(*(_variables(v) for v in node))
    if isinstance(node, str):
        return {m.group(1).strip("{}") for m in _VAR_RE.finditer(node)}
    return set()


def _lookup(name: str) -> str | None:
    """``$name`` from the environment, or a riskml secret read from ``RISKML_<NAME>_FILE``."""
    if name in os.environ:
        return os.environ[name]
    from riskml.settings import ENV_PREFIX, SECRET_FIELDS, get_settings

    field = name.removeprefix(ENV_PREFIX).lower() if name.startswith(ENV_PREFIX) else None
    if field in SECRET_FIELDS:
        value = getattr(get_settings(), field)
        if value is not None:
            return str(value.get_secret_value())
    return None


def load_feature_store_yaml(path: Path) -> dict[str, Any]:
    """The environment's ``feature_store.yaml`` as a dict, ``${VAR}``s expanded as Feast's
    ``load_repo_config`` expands them (``os.path.expandvars`` over the text, then YAML). Raises
    :class:`FeatureStoreError` for a missing file or a variable that is not set."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeatureStoreError(
            f"feature store config {path} (RISKML_FEAST_CONFIG) cannot be read: {exc.strerror}"
        ) from exc
    try:
        referenced = _variables(yaml.safe_load(text))  # values only: comments may say $X
    except yaml.YAMLError as exc:
        raise FeatureStoreError(f"feature store config {path} is not valid YAML: {exc}") from exc
    values = {name: _lookup(name) for name in sorted(referenced)}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise FeatureStoreError(
            f"feature store config {path} uses environment variable(s) that are not set: "
            f"{', '.join(missing)}"
        )

    def expand(match: re.Match[str]) -> str:
        value = values.get(match.group(1).strip("{}"))
        return match.group(0) if value is None else value

    try:
        raw = yaml.safe_load(_VAR_RE.sub(expand, text))
    except yaml.YAMLError as exc:  # an expanded value broke the YAML (quote the ${VAR})
        raise FeatureStoreError(
            f"feature store config {path} is not valid YAML once ${{VAR}}s are expanded "
            f"(quote the values that hold them): {type(exc).__name__}"
        ) from None
    if not isinstance(raw, dict):
        raise FeatureStoreError(f"feature store config {path} is not a mapping")
    return raw


def _yaml_repo_config(cfg: StoreConfig) -> Any:
    from feast import RepoConfig
    from pydantic import ValidationError

    assert cfg.feast_config is not None
    path = cfg.feast_config
    raw = load_feature_store_yaml(path)
    explicit = cfg.model_fields_set
    online = raw.get("online_store") or {"type": "sqlite"}
    online = dict({"type": online} if isinstance(online, str) else online)
    kind = online.get("type", "sqlite")
    if "online_store" in explicit and cfg.online_store not in (None, kind):
        raise FeatureStoreError(
            f"online store {cfg.online_store!r} asked for, but the feature store config {path} "
            f"(RISKML_FEAST_CONFIG) configures {kind!r}"
        )
    if "redis_url" in explicit and cfg.redis_url is not None:
        raise FeatureStoreError(
            f"a Redis URL was given, but the feature store config {path} (RISKML_FEAST_CONFIG) "
            "decides the online store: set its connection_string there"
        )
    if kind == "redis":
        conn = redis_connection_string(str(online.get("connection_string", "localhost:6379")))
        nodes, _ = _split_connection(conn)
        if online.get("redis_type", "redis") == "redis" and len(nodes) > 1:
            raise FeatureStoreError(
                f"feature store config {path}: the Redis connection string has {len(nodes)} "
                "host:port parts for a single Redis (a ',' in an expanded value?)"
            )
        online["connection_string"] = conn
    raw["online_store"] = online
    if "project" in explicit:
        raw["project"] = cfg.project
    if "registry_ttl_s" in explicit:
        registry = raw.get("registry")
        registry = dict({"path": registry} if isinstance(registry, str) else registry or {})
        registry["cache_ttl_seconds"] = cfg.registry_ttl_s
        raw["registry"] = registry
    if "offline_store" in explicit:
        raw["offline_store"] = {"type": OFFLINE_TYPES[cfg.offline_store]}
    try:
        rc = RepoConfig(**raw)
    except ValidationError as exc:  # no input values in the message: they may hold secrets
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise FeatureStoreError(f"feature store config {path} is invalid: {problems}") from None
    rc.repo_path = path.parent
    return rc


def repo_config(config: StoreConfig | None = None) -> Any:
    """A Feast ``RepoConfig``: from the feature store config when one is set (``feast_config``
    / ``RISKML_FEAST_CONFIG``), else built from settings (file registry and SQLite or Redis)."""
    from feast import RepoConfig

    from riskml.settings import get_settings

    cfg = (config or StoreConfig()).resolved()
    if cfg.feast_config is not None:
        return _yaml_repo_config(cfg)
    assert cfg.home is not None and cfg.redis_url is not None
    feast_dir = cfg.home / "feast"
    online: dict[str, Any]
    if cfg.online_store == "redis":
        online = {"type": "redis", "connection_string": redis_connection_string(cfg.redis_url)}
    else:
        online = {"type": "sqlite", "path": str(feast_dir / "online.db")}
    return RepoConfig(
        project=cfg.project,
        provider="local",
        registry={
            "registry_type": "file",
            "path": str(feast_dir / "registry.db"),
            "cache_ttl_seconds": cfg.registry_ttl_s,
        },
        online_store=online,
        offline_store={"type": OFFLINE_TYPES[cfg.offline_store]},
        entity_key_serialization_version=3,
        repo_path=Path(get_settings().feature_repo).resolve(),
    )


def _local_path(path: str, repo_path: Path | None) -> Path | None:
    """A file registry/online store path as a local path (None for a URL)."""
    if "://" in path:
        return None
    p = Path(path)
    return p if p.is_absolute() or repo_path is None else Path(repo_path) / p


def get_store(config: StoreConfig | None = None) -> FeatureStore:
    """A ``feast.FeatureStore`` for the configured store (creates a local registry's folder)."""
    from feast import FeatureStore

    rc = repo_config(config)
    if rc.registry.registry_type == "file":
        local = _local_path(str(rc.registry.path), rc.repo_path)
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
    try:
        store = FeatureStore(config=rc)
        if rc.registry.registry_type == "sql":
            _ = store.registry  # connect now (Feast would on first use): a clear error here
        return store
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):  # the SQL registry's database
            raise FeatureStoreUnavailable(
                f"feature registry ({rc.registry.registry_type}) at "
                f"{redact(str(rc.registry.path))} unreachable: {redact(str(exc).splitlines()[0])}"
            ) from None
        raise


def _redis_ping(store: Any, online: Any) -> None:
    """PING once, no retries: redis-py retries (with seconds of backoff) even a refused AUTH."""
    if getattr(online, "redis_type", "redis") != "redis":  # cluster/sentinel: Feast's client
        store._get_provider().online_store._get_client(online).ping()
        return
    from feast.infra.online_stores.redis import RedisOnlineStore
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    nodes, kwargs = RedisOnlineStore._parse_connection_string(online.connection_string)
    host, port = nodes[0]["host"], nodes[0]["port"]
    with Redis(host=host, port=port, retry=Retry(NoBackoff(), 0), **kwargs) as client:
        client.ping()


def check_online_store(store: Any) -> None:
    """Reach the online store now: Redis answers a PING with our credentials, a SQLite file
    opens. Raises :class:`FeatureStoreAuthError` (credentials refused) or
    :class:`FeatureStoreUnavailable` (cannot reach it)."""
    online = store.config.online_store
    try:
        if online.type == "redis":
            _redis_ping(store, online)
        elif online.type == "sqlite":
            store._get_provider().online_store._get_conn(store.config).execute("SELECT 1")
    except Exception as exc:
        raise_if_unavailable(exc, store)
        raise


def features_dir(config: StoreConfig | None = None) -> Path:
    cfg = (config or StoreConfig()).resolved()
    assert cfg.features_dir is not None
    return cfg.features_dir


def apply(config: StoreConfig | None = None) -> dict[str, Any]:
    """Register every feature object (``feast apply``) for sources under the features dir."""
    from riskml.features.repo import feature_objects

    source_dir = features_dir(config)
    _require_sources(source_dir)
    store = get_store(config)
    check_online_store(store)  # wrong credentials: a clear error before anything is written
    objects = feature_objects(source_dir)
    with _quiet():
        try:
            store.apply(objects)
        except Exception as exc:
            raise_if_unavailable(exc, store)
            raise
    return {
        "project": store.project,
        "objects": len(objects),
        "feature_services": sorted(fs.name for fs in store.list_feature_services()),
        "registry": redact(str(store.config.registry.path)),
        "online_store": store.config.online_store.type,
    }


def materialize(
    end: dt.datetime | None = None,
    *,
    start: dt.datetime | None = None,
    incremental: bool = False,
    config: StoreConfig | None = None,
    views: list[str] | None = None,
) -> dict[str, Any]:
    """Load the latest feature rows up to ``end`` into the online store.

    ``end`` defaults to now (every snapshot built so far, including the one for the day after
    the data, and the history state as of the build). Full materialisation covers everything
    since ``start`` (default: the epoch); ``incremental`` continues from the last materialised
    time per view. Raises :class:`FeatureStoreUnavailable` when the online store cannot be
    reached, :class:`FeatureStoreAuthError` when it refuses the credentials.

    Corrections (docs/features.md): a source holding two rows of one entity with the same event
    timestamp is refused (:class:`FeatureStoreError`; Feast would keep either one). A full
    materialisation writes the snapshot views' rows even where the online row has the same
    event timestamp, so a rebuilt (corrected) snapshot replaces the old one on Redis too
    (Feast's Redis store skips such a row); the customer history keeps Feast's check (serving's
    write-backs are newer than its batch state). An incremental one never revisits earlier
    timestamps.
    """
    from riskml.features.offline import check_view_rows
    from riskml.features.repo import CUSTOMER_TX_VIEW, HISTORY_VIEW

    read_summary(config)  # clear error when nothing was built
    store = get_store(config)
    check_online_store(store)
    end = _utc(end) if end is not None else dt.datetime.now(dt.UTC)
    online_views = [
        fv.name for fv in store.list_feature_views() if fv.online and fv.name != CUSTOMER_TX_VIEW
    ]
    views = views or online_views
    for name in views:
        check_view_rows(store.get_feature_view(name), store.config)
    online = store.config.online_store
    try:
        if incremental:
            store.materialize_incremental(end_date=end, feature_views=views)
        else:
            begin = _utc(start) if start is not None else dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
            overwrite = [v for v in views if v != HISTORY_VIEW]
            if online.type == "redis" and overwrite and not online.skip_dedup:
                # Feast's Redis store skips a row whose event timestamp is not newer than the
                # stored one: a corrected snapshot (same timestamp) would never be written.
                online.skip_dedup = True
                try:
                    store.materialize(start_date=begin, end_date=end, feature_views=overwrite)
                finally:
                    online.skip_dedup = False
                views_left = [v for v in views if v not in overwrite]
            else:
                views_left = views
            if views_left:
                store.materialize(start_date=begin, end_date=end, feature_views=views_left)
    except Exception as exc:
        raise_if_unavailable(exc, store)
        raise
    return {"end": end.isoformat(), "views": views, "incremental": incremental}


def store_config(features_dir: Path) -> StoreConfig:
    """The store over the Feast sources a pipeline's ``build-features`` task wrote."""
    return StoreConfig(features_dir=Path(features_dir))


def apply_and_materialize(features_dir: Path) -> dict[str, Any]:
    """``feast apply`` for the sources under ``features_dir``, then materialise them online."""
    config = store_config(features_dir)
    applied = apply(config)
    materialized = materialize(config=config)
    return {
        "project": applied["project"],
        "feature_services": applied["feature_services"],
        "online_store": applied["online_store"],
        "registry": applied["registry"],
        "materialized_until": materialized["end"],
        "views": materialized["views"],
    }


def read_summary(config: StoreConfig | None = None) -> dict[str, Any]:
    from riskml.features.batch import SUMMARY

    path = features_dir(config) / SUMMARY
    if not path.exists():
        raise FeatureStoreError(
            f"no built features at {path.parent}: run `riskml features build DATASET` first"
        )
    return dict(json.loads(path.read_text()))


def _require_sources(source_dir: Path) -> None:
    from riskml.features.batch import SOURCES

    missing = [f for f in SOURCES.values() if not (source_dir / f).exists()]
    if missing:
        raise FeatureStoreError(
            f"feature sources missing under {source_dir} ({', '.join(missing)}): "
            "run `riskml features build DATASET` first"
        )


def raise_if_unavailable(exc: BaseException, store: Any) -> None:
    """Re-raise online store failures as typed errors: credentials refused (Redis AUTH/ACL) as
    :class:`FeatureStoreAuthError`, connection-type failures as
    :class:`FeatureStoreUnavailable`. Other exceptions are left to the caller."""
    import sqlite3

    online = store.config.online_store
    try:
        import redis.exceptions as rex

        auth_errors: tuple[type[BaseException], ...] = (
            rex.AuthenticationError,  # WRONGPASS, NOAUTH (a ConnectionError in redis-py)
            rex.AuthenticationWrongNumberOfArgsError,
            rex.NoPermissionError,  # NOPERM: the ACL user may not run the command
        )
        redis_errors: tuple[type[BaseException], ...] = (rex.ConnectionError, rex.TimeoutError)
    except ImportError:  # pragma: no cover
        auth_errors = redis_errors = ()
    if isinstance(exc, auth_errors):
        address = redis_address(getattr(online, "connection_string", ""))
        raise FeatureStoreAuthError(
            f"authentication failed for Redis at {address}: {exc} (check RISKML_REDIS_PASSWORD"
            " / RISKML_REDIS_USERNAME, or the password in the feature store config)"
        ) from exc
    if isinstance(exc, (*redis_errors, ConnectionError, TimeoutError, sqlite3.OperationalError)):
        where = ""
        if online.type == "redis":
            where = f" at {redis_address(getattr(online, 'connection_string', ''))}"
        raise FeatureStoreUnavailable(
            f"online store ({online.type}){where} unreachable: {exc}"
        ) from exc


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Feast's "on demand feature view is experimental" warning (we test ours)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "On demand feature view", RuntimeWarning)
        yield


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# -- training sets ---------------------------------------------------------------------------
def entity_frame(
    dataset: Path, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> pl.DataFrame:
    """Transactions in ``[start, end)`` as a Feast entity/request frame."""
    import polars as pl

    from riskml.data.io import read_transactions

    tx = read_transactions(Path(dataset), start, end)
    return tx.select(
        *BASE_COLUMNS,
        pl.col("ts").alias("event_timestamp"),
        pl.col("ts").dt.epoch("us").alias("ts_us"),
    )


def training_set(
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    dataset: Path | None = None,
    config: StoreConfig | None = None,
    sequences: bool = False,
    store: FeatureStore | None = None,
    feature_service: str = FEATURE_SERVICE,
) -> pl.DataFrame:
    """Point-in-time training set for transactions with ``start <= ts < end``.

    Retrieved with ``get_historical_features`` on the FeatureService ``feature_service``
    (default the current version; older ones stay registered). Columns:
    ``BASE_COLUMNS`` then :func:`feature_contract` (in order, nulls replaced by the documented
    defaults, ``unknown_terminal``/``unknown_device`` flags set). With ``sequences=True`` a
    ``cust_seq`` column holds each row's ``SEQ_LEN x len(SEQ_FIELDS)`` float32 sequence
    (flattened, row-major).
    """
    import polars as pl

    summary = read_summary(config)
    dataset = Path(dataset) if dataset is not None else Path(summary["dataset"])
    entities = entity_frame(dataset, start, end)
    if entities.height == 0:
        raise FeatureStoreError(f"no transactions in [{start}, {end}) of {dataset}")
    store = store or get_store(config)
    service = store.get_feature_service(feature_service)
    request = entities.select(
        "tx_id", "customer_id", "terminal_id", "device_id", "event_timestamp", "amount", "ts_us"
    )
    if isinstance(store.config.offline_store, _polars_config()):
        # Arrow-backed strings (no Python object per id), plain numpy time and numbers.
        entity_df = request.to_pandas(use_pyarrow_extension_array=True)
        for col in ("event_timestamp", "amount", "ts_us"):
            entity_df[col] = request[col].to_pandas()
    else:
        entity_df = request.to_pandas()
    with _quiet():
        job = store.get_historical_features(entity_df=entity_df, features=service)
        got = pl.from_arrow(job.to_arrow())
    assert isinstance(got, pl.DataFrame)
    if got.height != entities.height:
        raise FeatureStoreError(f"retrieval returned {got.height} rows for {entities.height}")
    contract = [name for name, _ in feature_contract(feature_service)]
    got = got.with_columns(pl.col("tx_id").cast(pl.String))
    if not got["tx_id"].equals(entities["tx_id"]):  # PolarsOfflineStore keeps the order
        got = entities.select("tx_id").join(got, on="tx_id", how="left")
    present = [c for c in got.columns if c in contract]
    frame = finalize_features(
        entities.select(*BASE_COLUMNS).hstack(got.select(present)), feature_service
    )
    if sequences:
        seq = training_sequences(frame, config)
        frame = frame.with_columns(pl.Series("cust_seq", seq.reshape(len(seq), -1)))
    return frame


def _polars_config() -> type:
    from riskml.features.offline import PolarsOfflineStoreConfig

    return PolarsOfflineStoreConfig


def finalize_features(frame: pl.DataFrame, service: str = FEATURE_SERVICE) -> pl.DataFrame:
    """Flags for missing terminal/device rows, documented defaults, contract dtypes and order
    (of FeatureService ``service``)."""
    import polars as pl

    contract = feature_contract(service)
    flags = {
        "unknown_terminal": pl.col("term_cnt_30d").is_null().cast(pl.Int64),
        "unknown_device": pl.col("dev_cnt_30d").is_null().cast(pl.Int64),
    }
    frame = frame.with_columns(**flags)
    flag_names = {name for name, _ in ENTITY_FLAGS}
    casts = []
    for name, dtype in contract:
        pl_type = pl.Int64 if dtype == "int64" else pl.Float64
        expr = pl.col(name)
        if name not in flag_names:
            expr = expr.fill_null(default_value(name))
        casts.append(expr.cast(pl_type).alias(name))
    base = [c for c in BASE_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in base and c not in dict(contract)]
    keep_rest = [c for c in rest if c == "cust_seq"]
    return frame.with_columns(casts).select(*base, *(n for n, _ in contract), *keep_rest)


def training_sequences(
    frame: pl.DataFrame,
    config: StoreConfig | None = None,
    *,
    source: pl.DataFrame | None = None,
) -> np.ndarray:
    """Sequences ``(len(frame), SEQ_LEN, len(SEQ_FIELDS))`` float32 for rows (``tx_id``, ``ts``)
    of a training set: each row's last ``SEQ_LEN`` transactions strictly before it.

    Built from the per-transaction source (``customer_tx.parquet`` under the features dir, or
    the ``customer_tx`` table given as ``source``) with the element function serving uses
    (:func:`riskml.features.realtime.sequence_rows`).
    """
    import numpy as np
    import polars as pl

    from riskml.features.realtime import sequence_rows

    columns = [
        "tx_id",
        "customer_id",
        "event_timestamp",
        "seq_amount",
        "seq_category",
        "seq_channel",
        "seq_terminal_risk",
    ]
    if source is None:
        source = pl.read_parquet(features_dir(config) / "customer_tx.parquet", columns=columns)
    src = (
        source.select(columns)
        .with_columns(
            pl.col("event_timestamp").dt.epoch("us").alias("ts_us"),
            pl.col("customer_id").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("c"),
        )
        .sort("c", "ts_us", "tx_id")
    )
    c = src["c"].to_numpy()
    ts = src["ts_us"].to_numpy()
    n = len(c)
    ar = np.arange(n)
    seg = np.maximum.accumulate(np.where(np.r_[True, c[1:] != c[:-1]], ar, 0))
    first_same = np.maximum.accumulate(
        np.where(np.r_[True, (c[1:] != c[:-1]) | (ts[1:] != ts[:-1])], ar, 0)
    )
    pos = (
        pl.DataFrame({"tx_id": src["tx_id"], "row": ar})
        .join(frame.select("tx_id", "ts"), on="tx_id", how="right")
        .select("row", pl.col("ts").dt.epoch("us").alias("now"))
    )
    if pos["row"].null_count():
        raise FeatureStoreError("training rows missing from customer_tx source: rebuild features")
    rows = pos["row"].to_numpy()
    now = pos["now"].to_numpy()
    hi = first_same[rows]  # history strictly before the transaction
    lo = seg[rows]
    k = np.arange(SEQ_LEN) - SEQ_LEN
    idx = hi[:, None] + k[None, :]  # (m, SEQ_LEN), oldest first
    valid = idx >= lo[:, None]
    flat = np.where(valid, idx, 0).ravel()
    # padding positions read row 0 (any customer's, maybe after ``now``: a negative age's log
    # is NaN) and are zeroed below
    with np.errstate(invalid="ignore"):
        els = sequence_rows(
            ts[flat],
            src["seq_amount"].to_numpy()[flat],
            src["seq_category"].to_numpy()[flat],
            src["seq_channel"].to_numpy()[flat],
            src["seq_terminal_risk"].to_numpy()[flat],
            np.repeat(now, SEQ_LEN),
        ).reshape(len(rows), SEQ_LEN, len(SEQ_FIELDS))
    els[~valid] = 0.0
    return els
