"""A Feast offline store over Parquet ``FileSource``s with polars as-of joins.

Why: Feast's built-in ``file`` (dask) store joins every entity row with *every* source row of the
same entity and then filters by time — on 1.7M transactions × daily terminal snapshots that is
hundreds of millions of intermediate rows. Here each feature view is one sorted
``join_asof(by=join keys, strategy="backward")``: the latest feature row at or before the entity
timestamp (Feast's point-in-time semantics, ``ttl`` as tolerance), which is what a plain
``pandas.merge_asof`` does. Materialisation (``pull_latest_from_table_or_query``) is one polars
group-by. Configure with ``offline_store: {type: riskml.features.offline.PolarsOfflineStore}``.

Only ``FileSource``s with Parquet files (or directories) are supported; that is what
:mod:`riskml.features.batch` writes.

Two rows of one entity with the same event timestamp (and the same created timestamp, Feast's
tie-breaker, where a source has one) are refused (:func:`check_same_time_rows`): Feast has no rule
for which of them wins, and its materialisation and this join picked different ones, so a
correction appended with the original's timestamp reached the training set but not the online
store. A correction rewrites the row instead (docs/features.md, "Corrections").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import polars as pl
import pyarrow as pa
from feast.data_source import DataSource
from feast.errors import FeastJoinKeysDuringMaterialization
from feast.feature_view import FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig

from riskml.features.errors import FeatureStoreError

STORE_TYPE = "riskml.features.offline.PolarsOfflineStore"
#: Entity frames up to this size filter the sources to their own keys before joining.
SEMI_JOIN_MAX_ROWS = 200_000


class PolarsOfflineStoreConfig(FeastConfigBaseModel):
    """Config of :class:`PolarsOfflineStore` (no options)."""

    type: Literal["riskml.features.offline.PolarsOfflineStore"] = (
        "riskml.features.offline.PolarsOfflineStore"
    )


class PolarsRetrievalJob(RetrievalJob):
    def __init__(
        self,
        evaluate: Callable[[], pl.DataFrame],
        *,
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
    ) -> None:
        self._evaluate = evaluate
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return _with_pandas_strings(self._evaluate().to_arrow())

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._evaluate().to_pandas(use_pyarrow_extension_array=True)

    def persist(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("PolarsRetrievalJob does not persist saved datasets")

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata


def _with_pandas_strings(table: pa.Table) -> pa.Table:
    """Mark string columns as pandas ``string[pyarrow]`` in the schema's pandas metadata.

    Feast converts the whole retrieval table to pandas to run on-demand views; with this hint
    ``Table.to_pandas`` wraps the Arrow string buffers instead of creating one Python object per
    value (1.8M transaction ids: seconds -> milliseconds). Values are unchanged.
    """
    import json

    columns = [
        {
            "name": field.name,
            "field_name": field.name,
            "pandas_type": "unicode",
            "numpy_type": "string[pyarrow]",
            "metadata": None,
        }
        for field in table.schema
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_string_view(field.type)
    ]
    if not columns:
        return table
    meta = {"index_columns": [], "column_indexes": [], "columns": columns}
    return table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})


def _source_path(source: DataSource, config: RepoConfig) -> str:
    if not isinstance(source, FileSource):
        raise TypeError(f"PolarsOfflineStore supports FileSource only, not {type(source)}")
    path = source.path
    if config.repo_path is not None and "://" not in path and not path.startswith("/"):
        path = str(config.repo_path / path)
    return path


def _scan(source: DataSource, config: RepoConfig) -> pl.LazyFrame:
    path = _source_path(source, config)
    lf = pl.scan_parquet(path if not path.endswith("/") else path + "*.parquet")
    if source.field_mapping:
        lf = lf.rename(dict(source.field_mapping))
    return lf


def _utc_ts(lf: pl.LazyFrame, column: str) -> pl.LazyFrame:
    dtype = lf.collect_schema()[column]
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(column).cast(pl.Datetime("us", dtype.time_zone))
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        else:
            expr = expr.dt.convert_time_zone("UTC")
        return lf.with_columns(expr)
    return lf.with_columns(pl.col(column).cast(pl.Datetime("us", "UTC")))


def check_same_time_rows(
    lf: pl.LazyFrame | pl.DataFrame,
    keys: list[str],
    ts_field: str,
    created: str | None = None,
    *,
    what: str,
) -> None:
    """Raise :class:`FeatureStoreError` when two rows of ``lf`` share their entity key and event
    timestamp (and created timestamp, when the source has one).

    Which of such rows Feast serves is unspecified: materialisation keeps one (pandas sort, not
    stable), the point-in-time join another, so the online store and the training set disagree
    without a word. ``what`` names the source in the message."""
    cols = [*keys, ts_field, *([created] if created else [])]
    dup = (
        lf.lazy()
        .group_by(cols)
        .agg(pl.len().alias("__rows"))
        .filter(pl.col("__rows") > 1)
        .sort(cols)
        .collect()
    )
    if dup.height == 0:
        return
    first = dup.row(0, named=True)
    example = ", ".join(f"{k}={first[k]}" for k in keys)
    raise FeatureStoreError(
        f"{what}: {dup.height} entity/event-timestamp pair(s) have more than one row (e.g. "
        f"{example} at {first[ts_field]}, {first['__rows']} rows); Feast would keep one of them "
        "arbitrarily (online and offline may differ). Write a correction by rewriting the row "
        "(rebuild the source: `riskml features build`), not by adding a second row with the "
        "same event timestamp, then materialise in full (docs/features.md, Corrections)"
    )


def check_view_rows(fv: FeatureView, config: RepoConfig) -> None:
    """:func:`check_same_time_rows` over the whole batch source of ``fv`` (materialisation)."""
    src = fv.batch_source
    if src is None:
        return
    check_same_time_rows(
        _scan(src, config),
        [c.name for c in fv.entity_columns],
        src.timestamp_field,
        src.created_timestamp_column or None,
        what=f"feature view {fv.name} ({_source_path(src, config)})",
    )


def _keys_unique(right: pl.DataFrame, keys: list[str]) -> bool:
    return bool(
        right.select(pl.col(keys[0]).n_unique()).item() == right.height
        if len(keys) == 1
        else right.select(pl.struct(keys).is_unique().all()).item()
    )


def _pit_join(
    left: pl.DataFrame,
    right: pl.DataFrame,
    ts_col: str,
    keys: list[str],
    ttl: Any,
    *,
    unique: bool | None = None,
) -> pl.DataFrame:
    """Latest right row per key with ``__feature_ts <= left[ts_col]`` (within ``ttl``)."""
    features = [c for c in right.columns if c not in (*keys, "__feature_ts")]
    if unique is None:
        unique = _keys_unique(right, keys)
    if unique:
        # One row per key (e.g. per-transaction features): a hash join and a time check do the
        # same as an as-of join without grouping by millions of keys.
        joined = left.join(right, on=keys, how="left")
        valid = pl.col("__feature_ts") <= pl.col(ts_col)
        if ttl is not None:
            valid = valid & (pl.col("__feature_ts") >= pl.col(ts_col) - ttl)
        return joined.with_columns(
            pl.when(valid).then(pl.col(f)).otherwise(None).alias(f) for f in features
        ).drop("__feature_ts")
    return left.join_asof(
        right,
        left_on=ts_col,
        right_on="__feature_ts",
        by=keys,
        strategy="backward",
        tolerance=ttl,
        check_sortedness=False,
    ).drop("__feature_ts")


class PolarsOfflineStore(OfflineStore):
    """Point-in-time joins with ``polars.join_asof`` (see module docstring)."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame):
            raise ValueError("PolarsOfflineStore needs entity_df as a pandas DataFrame")
        ts_col = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
        if ts_col not in entity_df.columns:
            raise ValueError(f"entity_df needs a {ts_col!r} column")
        wanted: dict[str, list[str]] = {}
        for ref in feature_refs:
            view, feature = ref.split(":", 1)
            wanted.setdefault(view, []).append(feature)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)

        def evaluate() -> pl.DataFrame:
            left = pl.from_pandas(entity_df)
            left = _utc_ts(left.lazy(), ts_col).collect()
            left = left.with_row_index("__row").sort(ts_col)
            lo: Any = left[ts_col].min()
            hi: Any = left[ts_col].max()
            for fv in feature_views:
                name = fv.projection.name_to_use()
                features = wanted.get(name) or wanted.get(fv.name) or []
                if not features:
                    continue
                src = fv.batch_source
                if src is None:
                    raise ValueError(f"feature view {fv.name} has no batch source")
                ts_field = src.timestamp_field
                keys = [fv.projection.join_key_map.get(c.name, c.name) for c in fv.entity_columns]
                source_keys = [c.name for c in fv.entity_columns]
                lf = _scan(src, config)
                lf = _utc_ts(lf, ts_field)
                lf = lf.filter(pl.col(ts_field) <= hi)
                if len(keys) == 1 and left.height <= SEMI_JOIN_MAX_ROWS:
                    # small requests: only read the source rows of the requested entities
                    wanted_keys = left[keys[0]].unique().cast(pl.String)
                    lf = lf.filter(
                        pl.col(source_keys[0]).cast(pl.String).is_in(wanted_keys.implode())
                    )
                ttl = fv.ttl if fv.ttl and fv.ttl.total_seconds() > 0 else None
                if ttl is not None:
                    lf = lf.filter(pl.col(ts_field) >= lo - ttl)
                out_names = {f: (f"{name}__{f}" if full_feature_names else f) for f in features}
                sort_cols = [ts_field]
                if src.created_timestamp_column:
                    sort_cols.append(src.created_timestamp_column)
                right = (
                    lf.select(*source_keys, ts_field, *sort_cols[1:], *features)
                    .rename(dict(zip(source_keys, keys, strict=True)))
                    .rename({ts_field: "__feature_ts"})
                    .sort(["__feature_ts", *sort_cols[1:]])
                    .collect()
                )
                unique = _keys_unique(right, keys)
                if not unique:
                    check_same_time_rows(
                        right,
                        keys,
                        "__feature_ts",
                        sort_cols[1] if len(sort_cols) > 1 else None,
                        what=f"feature view {fv.name} ({_source_path(src, config)})",
                    )
                right = right.drop(sort_cols[1:]).rename(out_names)
                for k in keys:  # join keys compare as the entity frame's dtype
                    if right.schema[k] != left.schema[k]:
                        right = right.with_columns(pl.col(k).cast(left.schema[k]))
                left = _pit_join(left, right, ts_col, keys, ttl, unique=unique)
            return left.sort("__row").drop("__row")

        meta = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != ts_col],
            min_event_timestamp=entity_df[ts_col].min(),
            max_event_timestamp=entity_df[ts_col].max(),
        )
        return PolarsRetrievalJob(
            evaluate,
            full_feature_names=full_feature_names,
            on_demand_feature_views=odfvs,
            metadata=meta,
        )

    @staticmethod
    def _pull(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime | None,
        end_date: datetime | None,
        latest: bool,
    ) -> RetrievalJob:
        def evaluate() -> pl.DataFrame:
            lf = _scan(data_source, config)
            cols = lf.collect_schema().names()
            if not set(join_key_columns).issubset(cols):
                raise FeastJoinKeysDuringMaterialization(
                    _source_path(data_source, config), set(join_key_columns), set(cols)
                )
            lf = _utc_ts(lf, timestamp_field)
            if start_date is not None:
                lf = lf.filter(pl.col(timestamp_field) >= _as_utc(start_date))
            if end_date is not None:
                lf = lf.filter(pl.col(timestamp_field) <= _as_utc(end_date))
            ts_cols = [timestamp_field]
            if created_timestamp_column:
                ts_cols.append(created_timestamp_column)
            lf = lf.select(*dict.fromkeys([*join_key_columns, *feature_name_columns, *ts_cols]))
            lf = lf.sort(ts_cols, maintain_order=True)
            if latest and join_key_columns:
                lf = lf.unique(subset=join_key_columns, keep="last", maintain_order=True)
            return lf.collect()

        return PolarsRetrievalJob(evaluate)

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return PolarsOfflineStore._pull(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            latest=True,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return PolarsOfflineStore._pull(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            latest=False,
        )


def _as_utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
