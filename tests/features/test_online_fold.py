"""The Redis fold's fast paths: a history written as the very bytes Feast's own write makes, and
the state cache of a long-lived folder (the stream processor), where a copy another writer made
stale costs a read, never a lost or doubled transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from riskml.features.online import OnlineFeatures, _proto, _StateEncoder
from riskml.features.realtime import STATE_FIELDS, State
from riskml.features.repo import HISTORY_FIELDS
from riskml.features.store import StoreConfig, training_set

from .conftest import REPLAY_DAY


def _state(n: int, seed: int) -> State:
    rng = np.random.default_rng(seed)
    amounts = [0.0, 1e-9, 123.45, 1e9, 7.1][: min(n, 5)]
    amounts += list(np.round(rng.lognormal(3, 1, max(0, n - 5)), 2))
    return State.from_lists(
        {
            "hist_tx_id": [f"tx-{i}-é" for i in range(n)],
            "hist_ts": sorted(int(t) for t in rng.integers(0, 2**50, n)),
            "hist_amount": amounts,
            "hist_terminal": [f"T{i % 7}" for i in range(n)],
            "hist_device": ["" if i % 5 == 0 else f"D{i}" for i in range(n)],
            "hist_category": ["grocery"] * n,
            "hist_channel": ["pos", "ecom"] * (n // 2) + ["pos"] * (n % 2),
            "hist_terminal_risk": list(rng.random(n)),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 16, 133])
def test_state_encoder_writes_the_bytes_of_feasts_own_value_protos(n: int) -> None:
    dtypes = dict(HISTORY_FIELDS)
    state = _state(n, seed=n)
    version = 1_706_745_600_123_456 + n
    got = _StateEncoder().encode(state, version)
    lists = state.to_lists()
    want = {k: _proto(lists[k], dtypes[k]).SerializeToString() for k in STATE_FIELDS}
    want["hist_event_us"] = _proto(version, "int64").SerializeToString()
    assert got == want


@pytest.fixture()
def rows(fresh_redis: StoreConfig) -> list[dict[str, Any]]:
    frame = training_set(REPLAY_DAY, REPLAY_DAY + dt.timedelta(days=1), config=fresh_redis)
    return [{**r, "terminal_risk": r["term_risk_30d"]} for r in frame.head(200).rows(named=True)]


def _later(tx: dict[str, Any], name: str, minutes: int) -> dict[str, Any]:
    return {**tx, "tx_id": name, "ts": tx["ts"] + dt.timedelta(minutes=minutes)}


def _counting_reads(online: OnlineFeatures) -> list[list[str]]:
    reads: list[list[str]] = []
    histories = online._histories

    def counted(customers: list[str], conn: object = None) -> Any:
        reads.append(list(customers))
        return histories(customers, conn)

    online._histories = counted  # type: ignore[method-assign]
    return reads


@pytest.mark.integration
@pytest.mark.redis
def test_state_cache_reads_only_what_it_lacks_and_a_stale_copy_costs_a_read(
    fresh_redis: StoreConfig, rows: list[dict[str, Any]]
) -> None:
    mine, theirs = OnlineFeatures(fresh_redis), OnlineFeatures(fresh_redis)
    mine.cache_states(100)
    reads = _counting_reads(mine)
    first = rows[0]
    customer = first["customer_id"]
    assert mine.write_back_many([first]) == [True]
    assert reads == [[customer]]
    # held since: no read
    assert mine.write_back_many([_later(first, "mine-2", 1)]) == [True]
    assert reads == [[customer]]
    # another writer changes the customer: the cached copy is stale, the write refused, the
    # history read and folded again; every transaction kept once
    assert theirs.write_back_many([_later(first, "theirs-1", 2)]) == [True]
    assert mine.write_back_many([_later(first, "mine-3", 3)]) == [True]
    assert reads == [[customer], [customer]]
    state, _version = theirs.history(customer)
    ids = state["hist_tx_id"].tolist()
    for tx_id in (first["tx_id"], "mine-2", "theirs-1", "mine-3"):
        assert ids.count(tx_id) == 1
    # a redelivery from a current copy: a duplicate, proven by a read (nothing was written)
    assert mine.write_back_many([_later(first, "mine-3", 3)]) == [False]
    assert reads[-1] == [customer]
    # same results as a fold without the cache
    assert mine.history(customer)[0].to_lists() == theirs.history(customer)[0].to_lists()


@pytest.mark.integration
@pytest.mark.redis
def test_a_cached_copy_never_answers_duplicate_for_a_row_replaced_since(
    fresh_redis: StoreConfig, rows: list[dict[str, Any]]
) -> None:
    """The row is replaced behind the cache (as a materialisation rewrites it) by one without
    the transaction: folding it again applies it, the cached copy's "duplicate" is not taken."""
    mine, theirs = OnlineFeatures(fresh_redis), OnlineFeatures(fresh_redis)
    mine.cache_states(100)
    tx = rows[0]
    customer = tx["customer_id"]
    before, _v = theirs.history(customer)
    assert mine.write_back_many([tx]) == [True]
    _state_now, version = theirs.history(customer)
    assert version is not None
    theirs._store_states({customer: (before, version + 1_000)}, via_push=False)
    assert tx["tx_id"] not in theirs.history(customer)[0]["hist_tx_id"].tolist()
    assert mine.write_back_many([tx]) == [True]
    assert tx["tx_id"] in theirs.history(customer)[0]["hist_tx_id"].tolist()


@pytest.mark.integration
@pytest.mark.redis
def test_state_cache_is_bounded(fresh_redis: StoreConfig, rows: list[dict[str, Any]]) -> None:
    online = OnlineFeatures(fresh_redis)
    online.cache_states(2)
    customers = []
    for row in rows:
        if row["customer_id"] not in customers:
            customers.append(row["customer_id"])
            assert online.write_back_many([row]) == [True]
        if len(customers) == 3:
            break
    assert list(online._state_cache) == customers[1:]  # least recently used dropped
    online.cache_states(0)
    assert not online._state_cache


@pytest.mark.integration
@pytest.mark.redis
def test_redis_keys_are_feasts_also_across_a_full_key_cache(
    fresh_redis: StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    import riskml.features.online as online_mod

    online = OnlineFeatures(fresh_redis)
    monkeypatch.setattr(online_mod, "KEY_CACHE", 3)
    ids = ["a", "b", "a", "c", "d", "b", "e"]
    want = online._redis._generate_redis_keys_for_entities(
        online.store.config,
        [EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=i)]) for i in ids],
    )
    assert online._redis_keys("customer_id", ids[:2]) == list(want[:2])
    assert online._redis_keys("customer_id", ids) == list(want)  # the cache was cleared
    # cleared when full: it holds the keys the last call had to make
    assert set(online._key_cache) == {("customer_id", i) for i in "cde"}
