"""The Feast store: configuration from settings, apply, materialise, point-in-time training sets.

The concrete store is chosen at runtime from settings (``RISKML_ONLINE_STORE``,
``RISKML_REDIS_URL``, ``RISKML_HOME``): the registry and the SQLite online store live under
``<RISKML_HOME>/feast/``, never in the repository. ``feature_repo/feature_store.yaml`` holds the
same defaults for the ``feast`` CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
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
from riskml.features.errors import FeatureStoreError, FeatureStoreUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    from feast import FeatureStore

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


class StoreConfig(BaseModel):
    """Where the feature store lives. Defaults come from :func:`riskml.settings.get_settings`."""

    model_config = ConfigDict(extra="forbid")

    project: str = PROJECT
    online_store: Literal["sqlite", "redis"] | None = None
    redis_url: str | None = None
    home: Path | None = None
    features_dir: Path | None = None
    registry_ttl_s: int = Field(default=600, ge=0)
    #: ``polars`` (riskml.features.offline, as-of joins) or Feast's built-in ``file`` (dask).
    offline_store: Literal["polars", "file"] = "polars"

    def resolved(self) -> StoreConfig:
        from riskml.settings import get_settings

        s = get_settings()
        if not _PROJECT_RE.match(self.project):
            raise FeatureStoreError(
                f"invalid Feast project {self.project!r}: letters, digits and '_', "
                "not starting with '_'"
            )
        home = Path(self.home or s.home).resolve()
        return StoreConfig(
            project=self.project,
            online_store=self.online_store or s.online_store,
            redis_url=self.redis_url or s.redis_url,
            home=home,
            features_dir=Path(self.features_dir or home / "features").resolve(),
            registry_ttl_s=self.registry_ttl_s,
            offline_store=self.offline_store,
        )


def redis_connection_string(url: str) -> str:
    """Feast form ``host:port[,db=N,password=...]`` of ``redis://[:pw@]host:port/db`` (or as is)."""
    from urllib.parse import urlparse

    if "://" not in url:
        return url
    parsed = urlparse(url)
    parts = [f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"]
    db = parsed.path.strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_config(config: StoreConfig | None = None) -> Any:
    """A Feast ``RepoConfig`` for the configured store (file registry under RISKML_HOME)."""
    from feast import RepoConfig

    from riskml.settings import get_settings

    cfg = (config or StoreConfig()).resolved()
    assert cfg.home is not None and cfg.redis_url is not None
    feast_dir = cfg.home / "feast"
    online: dict[str, Any]
    if cfg.online_store == "redis":
        conn = redis_connection_string(cfg.redis_url)
        if "socket_connect_timeout" not in conn:
            conn += ",socket_connect_timeout=2"  # a dead host fails in seconds, not minutes
        online = {"type": "redis", "connection_string": conn}
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


def get_store(config: StoreConfig | None = None) -> FeatureStore:
    """A ``feast.FeatureStore`` for the configured store (creates ``<home>/feast``)."""
    from feast import FeatureStore

    rc = repo_config(config)
    Path(rc.registry.path).parent.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=rc)


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
    objects = feature_objects(source_dir)
    with _quiet():
        store.apply(objects)
    return {
        "project": store.project,
        "objects": len(objects),
        "feature_services": sorted(fs.name for fs in store.list_feature_services()),
        "registry": str(store.config.registry.path),
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
    reached.
    """
    from riskml.features.repo import CUSTOMER_TX_VIEW

    read_summary(config)  # clear error when nothing was built
    store = get_store(config)
    end = _utc(end) if end is not None else dt.datetime.now(dt.UTC)
    online_views = [
        fv.name for fv in store.list_feature_views() if fv.online and fv.name != CUSTOMER_TX_VIEW
    ]
    views = views or online_views
    try:
        if incremental:
            store.materialize_incremental(end_date=end, feature_views=views)
        else:
            begin = _utc(start) if start is not None else dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
            store.materialize(start_date=begin, end_date=end, feature_views=views)
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
    """Re-raise connection-type failures of the online store as FeatureStoreUnavailable."""
    import sqlite3

    try:
        import redis.exceptions as rex

        redis_errors: tuple[type[BaseException], ...] = (rex.ConnectionError, rex.TimeoutError)
    except ImportError:  # pragma: no cover
        redis_errors = ()
    if isinstance(exc, (*redis_errors, ConnectionError, TimeoutError, sqlite3.OperationalError)):
        kind = store.config.online_store.type
        raise FeatureStoreUnavailable(f"online store ({kind}) unreachable: {exc}") from exc


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
) -> pl.DataFrame:
    """Point-in-time training set for transactions with ``start <= ts < end``.

    Retrieved with ``get_historical_features`` on the FeatureService ``fraud_v1``. Columns:
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
    service = store.get_feature_service(FEATURE_SERVICE)
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
    contract = [name for name, _ in feature_contract()]
    got = got.with_columns(pl.col("tx_id").cast(pl.String))
    if not got["tx_id"].equals(entities["tx_id"]):  # PolarsOfflineStore keeps the order
        got = entities.select("tx_id").join(got, on="tx_id", how="left")
    present = [c for c in got.columns if c in contract]
    frame = finalize_features(entities.select(*BASE_COLUMNS).hstack(got.select(present)))
    if sequences:
        seq = training_sequences(frame, config)
        frame = frame.with_columns(pl.Series("cust_seq", seq.reshape(len(seq), -1)))
    return frame


def _polars_config() -> type:
    from riskml.features.offline import PolarsOfflineStoreConfig

    return PolarsOfflineStoreConfig


def finalize_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Flags for missing terminal/device rows, documented defaults, contract dtypes and order."""
    import polars as pl

    flags = {
        "unknown_terminal": pl.col("term_cnt_30d").is_null().cast(pl.Int64),
        "unknown_device": pl.col("dev_cnt_30d").is_null().cast(pl.Int64),
    }
    frame = frame.with_columns(**flags)
    flag_names = {name for name, _ in ENTITY_FLAGS}
    casts = []
    for name, dtype in feature_contract():
        pl_type = pl.Int64 if dtype == "int64" else pl.Float64
        expr = pl.col(name)
        if name not in flag_names:
            expr = expr.fill_null(default_value(name))
        casts.append(expr.cast(pl_type).alias(name))
    base = [c for c in BASE_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in base and c not in dict(feature_contract())]
    keep_rest = [c for c in rest if c == "cust_seq"]
    return frame.with_columns(casts).select(*base, *(n for n, _ in feature_contract()), *keep_rest)


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
