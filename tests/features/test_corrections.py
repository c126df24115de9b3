"""Corrections with the same event timestamp are never silently dropped (docs/features.md,
"Corrections").

A fraud label found wrong after the fact changes the terminal risk of snapshots that already
exist: the rebuilt ``terminal_stats`` rows keep their event timestamps (the snapshot times) and
carry new values. Before the fix

- a full materialisation on Redis kept the old rows online (Feast's Redis store skips a row
  whose event timestamp is not newer than the stored one) while the training set had the new
  ones;
- a correction *appended* to a source with the original's timestamp reached the training set
  (the point-in-time join took the last row) but not the online store (materialisation kept the
  first): online and offline disagreed without a word.

Now a rebuilt row replaces the old one online (SQLite and Redis) and offline, and a source with
two rows for one entity and timestamp is refused by ``materialize`` and by the training set.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from riskml.data.io import write_day
from riskml.features.batch import build_features
from riskml.features.errors import FeatureStoreError
from riskml.features.store import StoreConfig, apply, get_store, materialize, training_set

from .conftest import TEST_REDIS, need, redis_available
from .helpers import T0, frame

TERMINAL = "m0"
DAYS = 4
PER_DAY = 4
#: The transaction whose label is corrected (day 0, first of the day).
CORRECTED_TX = "t0_0"
#: The last snapshot (00:00 of the day after the data): what the online store serves.
LAST_SNAPSHOT = dt.datetime.combine((T0 + dt.timedelta(days=DAYS)).date(), dt.time(), dt.UTC)
#: The training window: the last day of the data (sees the snapshot of its 00:00).
WINDOW = (T0 + dt.timedelta(days=DAYS - 1), T0 + dt.timedelta(days=DAYS))


def _transactions(fraud: bool) -> pl.DataFrame:
    rows = [
        {
            "tx_id": f"t{d}_{h}",
            "ts": T0 + dt.timedelta(days=d, hours=h + 1),
            "customer_id": f"c{h}",
            "terminal_id": TERMINAL,
            "device_id": f"d{h}",
            "is_fraud": int(fraud and f"t{d}_{h}" == CORRECTED_TX),
        }
        for d in range(DAYS)
        for h in range(PER_DAY)
    ]
    return frame(rows)


def _build(root: Path, *, fraud: bool) -> None:
    """Write the dataset (one file per day) and (re)build every feature source from it."""
    tx = _transactions(fraud)
    for day, part in tx.group_by(pl.col("ts").dt.date(), maintain_order=True):
        write_day(root / "dataset", day[0], part)
    build_features(root / "dataset", root / "features")


def _online_risk(cfg: StoreConfig) -> tuple[float, Any]:
    got = (
        get_store(cfg)
        .get_online_features(
            features=["terminal_stats:term_risk_30d", "terminal_stats:term_fraud_known_30d"],
            entity_rows=[{"terminal_id": TERMINAL}],
        )
        .to_dict()
    )
    return got["term_risk_30d"][0], got["term_fraud_known_30d"][0]


def _offline_risk(cfg: StoreConfig) -> list[float]:
    rows = training_set(*WINDOW, config=cfg)
    assert rows.height == PER_DAY
    return rows["term_risk_30d"].to_list()


def _source_risk(root: Path) -> float:
    stats = pl.read_parquet(root / "features" / "terminal_stats.parquet")
    last = stats.filter(pl.col("event_timestamp") == LAST_SNAPSHOT)
    assert last.height == 1
    return float(last["term_risk_30d"][0])


def _store(root: Path, online_store: str = "sqlite") -> StoreConfig:
    cfg = StoreConfig(
        home=root / "home",
        features_dir=root / "features",
        online_store=online_store,  # type: ignore[arg-type]
        redis_url=TEST_REDIS,
        project=f"corr_{uuid.uuid4().hex[:10]}",
    )
    apply(cfg)
    materialize(config=cfg)
    return cfg


@pytest.fixture
def sqlite_store(tmp_path: Path) -> StoreConfig:
    _build(tmp_path, fraud=False)
    return _store(tmp_path)


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[StoreConfig]:
    need(redis_available(), f"no Redis at {TEST_REDIS}")
    _build(tmp_path, fraud=False)
    cfg = _store(tmp_path, "redis")
    try:
        yield cfg
    finally:
        get_store(cfg).teardown()  # this project's keys


def _correct_and_check(root: Path, cfg: StoreConfig) -> None:
    """Rebuild with the corrected label: same snapshot timestamps, new risk; a full
    materialisation serves it online, and the training set has it."""
    assert _online_risk(cfg) == (0.0, 0)
    assert _offline_risk(cfg) == [0.0] * PER_DAY
    _build(root, fraud=True)
    corrected = _source_risk(root)
    assert corrected == pytest.approx(1 / (DAYS * PER_DAY))  # 1 fraud in 16 (30-day window)
    stats = pl.read_parquet(root / "features" / "terminal_stats.parquet")
    assert stats.filter(pl.col("event_timestamp") == LAST_SNAPSHOT).height == 1  # same time
    materialize(config=cfg)
    assert _online_risk(cfg) == (pytest.approx(corrected), 1)
    assert _offline_risk(cfg) == [pytest.approx(1 / ((DAYS - 1) * PER_DAY))] * PER_DAY


def test_rebuilt_row_with_the_same_timestamp_replaces_the_old_one_sqlite(
    sqlite_store: StoreConfig, tmp_path: Path
) -> None:
    _correct_and_check(tmp_path, sqlite_store)


@pytest.mark.redis
def test_rebuilt_row_with_the_same_timestamp_replaces_the_old_one_redis(
    redis_store: StoreConfig, tmp_path: Path
) -> None:
    """Feast's Redis store alone skips a row whose event timestamp equals the stored one: the
    correction was dropped online while the training set had it (before the fix)."""
    _correct_and_check(tmp_path, redis_store)


def test_incremental_materialisation_does_not_revisit_a_correction(
    sqlite_store: StoreConfig, tmp_path: Path
) -> None:
    """Documented: an incremental run continues from its last end, so a rewritten row at an
    earlier timestamp needs a full materialisation."""
    _build(tmp_path, fraud=True)
    materialize(incremental=True, config=sqlite_store)
    assert _online_risk(sqlite_store) == (0.0, 0)
    materialize(config=sqlite_store)
    assert _online_risk(sqlite_store) == (pytest.approx(_source_risk(tmp_path)), 1)


@pytest.mark.parametrize("where", ["after", "before"])
def test_a_second_row_with_the_same_timestamp_is_refused(
    sqlite_store: StoreConfig, tmp_path: Path, where: str
) -> None:
    """A correction appended (or prepended) next to the row it corrects: Feast kept one of the
    two online and the other offline. Now both paths refuse the source, naming the entity."""
    path = tmp_path / "features" / "terminal_stats.parquet"
    stats = pl.read_parquet(path)
    seen = LAST_SNAPSHOT - dt.timedelta(days=1)  # the snapshot the training window sees
    fix = stats.filter(pl.col("event_timestamp").is_in([seen, LAST_SNAPSHOT])).with_columns(
        pl.lit(0.5, dtype=stats.schema["term_risk_30d"]).alias("term_risk_30d"),
        pl.lit(8, dtype=stats.schema["term_fraud_known_30d"]).alias("term_fraud_known_30d"),
    )
    assert fix.height == 2
    pl.concat([stats, fix] if where == "after" else [fix, stats]).write_parquet(path)
    with pytest.raises(FeatureStoreError, match=rf"terminal_stats.*terminal_id={TERMINAL} at"):
        materialize(config=sqlite_store)
    with pytest.raises(FeatureStoreError, match="more than one row"):
        training_set(*WINDOW, config=sqlite_store)
    # nothing was written: the online store still serves the original row
    assert _online_risk(sqlite_store) == (0.0, 0)
