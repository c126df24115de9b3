"""Stand-in feature sources: the same history gives the same rows from memory, the real local
Redis and SQLite; write-back is idempotent by tx_id; an unreachable store raises the typed error."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riskml.decision.protocols import FeatureSource, FeatureSourceUnavailable
from tests.serving.helpers import free_port
from tests.support.services import need
from tests.support.serving_standins import (
    FEATURE_NAMES,
    InMemoryFeatureSource,
    RedisFeatureSource,
    SQLiteFeatureSource,
)
from tests.support.traffic import live_transactions


@pytest.fixture
def redis_source() -> Any:
    import redis

    try:
        up = bool(redis.Redis(socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        up = False
    need(up, "no Redis on localhost:6379")
    source = RedisFeatureSource(prefix=f"riskml-test:{uuid.uuid4().hex[:8]}")
    yield source
    source.clear()


@pytest.mark.redis
@pytest.mark.integration
def test_sources_agree_and_write_back_is_idempotent(
    reference: dict[str, Any], redis_source: RedisFeatureSource, tmp_path: Path
) -> None:
    history = reference["requests"][:600]
    risk = reference["terminal_risk"]
    sources: list[Any] = [
        InMemoryFeatureSource(history, risk),
        SQLiteFeatureSource(str(tmp_path / "f.sqlite"), history, risk),
        redis_source,
    ]
    redis_source.seed(history, risk)
    for s in sources:
        assert isinstance(s, FeatureSource) and tuple(s.feature_names) == FEATURE_NAMES
    txs = live_transactions(40, seed=3, prefix="src")
    rows = [s.get_many(txs) for s in sources]
    for other in rows[1:]:
        for a, b in zip(rows[0], other, strict=True):
            assert a.tabular == pytest.approx(b.tabular, rel=1e-12)
            np.testing.assert_array_equal(a.sequence, b.sequence)
            assert a.flags == b.flags
    assert any(r.flags["unknown_customer"] == 0 for r in rows[0])

    tx = dict(txs[0], customer_id="brand-new", tx_id="wb-1")
    ts = dt.datetime.fromisoformat(tx["ts"]) + dt.timedelta(seconds=60)
    later = dict(tx, tx_id="wb-2", ts=ts.isoformat())
    for s in sources:
        assert s.get(later).flags["unknown_customer"] == 1
        assert s.write_back(tx) is True
        assert s.write_back(tx) is False  # idempotent by tx_id
        row = s.get(later)
        assert row.flags["unknown_customer"] == 0
        assert row.tabular[FEATURE_NAMES.index("cust_cnt_1d")] == 1.0
        assert row.sequence[-1, 0] == 1.0 and row.sequence[-2, 0] == 0.0


def test_unreachable_stores_raise_the_typed_error(tmp_path: Path) -> None:
    tx = live_transactions(1, seed=1, prefix="down")[0]
    dead = RedisFeatureSource(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(FeatureSourceUnavailable, match="unreachable"):
        dead.get(tx)
    with pytest.raises(FeatureSourceUnavailable):
        dead.write_back(tx)
    (tmp_path / "ro").mkdir()
    with pytest.raises(Exception):  # noqa: B017 - sqlite cannot open a directory as a database
        SQLiteFeatureSource(str(tmp_path / "ro"))
