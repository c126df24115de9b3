"""Feast on the real local Redis: training/serving parity, idempotent materialisation, and a
typed error when the server goes away (on a redis-server of our own, on a free port)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.features import FeatureStoreUnavailable
from riskml.features.online import OnlineFeatures
from riskml.features.store import StoreConfig, get_store, materialize, training_set

from .conftest import REPLAY_DAY, TEST_REDIS, free_port, need, redis_available
from .helpers import race_write_backs, replay, write_back_from_fetched_history
from .test_store import _dump

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture(scope="module")
def redis_store(make_store: Callable[..., StoreConfig]) -> Iterator[StoreConfig]:
    need(redis_available(), f"no Redis at {TEST_REDIS}")
    cfg = make_store("redis")
    yield cfg
    get_store(cfg).teardown()  # deletes this project's keys


def _project_keys(cfg: StoreConfig) -> int:
    import redis

    host, _, rest = TEST_REDIS.partition(":")
    port, *opts = rest.split(",")
    db = int(dict(o.split("=") for o in opts).get("db", 0))
    client = redis.Redis(host=host, port=int(port), db=db)
    return sum(1 for _ in client.scan_iter(match=b"*" + cfg.project.encode(), count=1000))


def test_training_online_parity_redis(redis_store: StoreConfig) -> None:
    rows = training_set(REPLAY_DAY, REPLAY_DAY + dt.timedelta(days=1), config=redis_store,
                        sequences=True)  # fmt: skip
    assert _project_keys(redis_store) > 500
    result = replay(OnlineFeatures(redis_store), redis_store, rows, [REPLAY_DAY])
    assert result["compared"] == rows.height >= 1000
    assert result["via_feast"] > 50
    assert result["mismatches"] == []


def test_views_read_in_one_pipeline_match_feast_per_view_reads(
    redis_store: StoreConfig, features_dir: Path
) -> None:
    """get_many reads the history, terminal, device and customer views in one Redis pipeline
    (Feast's own key encoding and decoding): the rows equal Feast's per-view ``online_read``,
    unknown entities included, and a request costs one pipeline, not four."""
    materialize(REPLAY_DAY, config=redis_store)
    online = OnlineFeatures(redis_store)
    assert online._redis is not None
    history = pl.read_parquet(features_dir / "customer_history.parquet")
    terminals = pl.read_parquet(features_dir / "terminal_stats.parquet")["terminal_id"]
    customers = [*history["customer_id"].unique().sort()[:5].to_list(), "nobody"]
    terms = [*terminals.unique().sort()[:3].to_list(), "no-terminal"]
    reads = [
        (online._history_fv, "customer_id", customers, ["hist_ts", "hist_amount"]),
        (online._terminal_fv, "terminal_id", terms, ["term_cnt_30d", "term_risk_30d"]),
        (online._device_fv, "device_id", ["no-device"], ["dev_cnt_30d"]),
        (online._customer_fv, "customer_id", customers, ["cust_lbl_cnt_30d_lag7"]),
    ]
    one = online._read_views(reads)
    redis = online._redis
    online._redis = None  # Feast's online_read, view by view
    try:
        per_view = online._read_views(reads)
    finally:
        online._redis = redis
    assert one == per_view

    def unknown(row: dict[str, object] | None) -> bool:
        return row is None or all(v is None for v in row.values())

    assert unknown(one[0][-1]) and unknown(one[1][-1]) and unknown(one[2][0])
    assert unknown(one[3][-1]) and any(not unknown(row) for row in one[3][:-1])
    assert all(row is not None and len(row["hist_ts"]) > 0 for row in one[0][:-1])
    assert one[1][0] is not None and set(one[1][0]) >= {"term_cnt_30d", "term_risk_30d"}

    calls = []
    read_hash_fields = redis._read_hash_fields

    def counting(config: object, commands: list[object]) -> object:
        calls.append(len(commands))
        return read_hash_fields(config, commands)

    redis._read_hash_fields = counting
    try:
        request = {"ts": REPLAY_DAY, "customer_id": customers[0], "terminal_id": terms[0],
                   "device_id": "no-device", "amount": 5.0}  # fmt: skip
        online.get_many([request, {**request, "customer_id": customers[1]}])
    finally:
        del redis._read_hash_fields
    # one pipeline: 2 histories + 2 terminals + 2 devices + 2 customers' label-aware risk
    assert calls == [8]


def test_fetch_on_the_event_loop_equals_the_threaded_fetch(
    redis_store: StoreConfig, features_dir: Path
) -> None:
    """``fetch_many_async`` (one ``redis.asyncio`` pipeline on the caller's event loop, what the
    colocated Ingress awaits) returns what ``fetch_many`` returns: vectors, sequences, flags and
    the histories the write-back starts from, unknown entities included; on two event loops
    one after the other (a client per loop)."""
    import asyncio

    import numpy as np

    materialize(REPLAY_DAY, config=redis_store)
    online = OnlineFeatures(redis_store)
    assert online.reads_async
    history = pl.read_parquet(features_dir / "customer_history.parquet")
    terminals = pl.read_parquet(features_dir / "terminal_stats.parquet")["terminal_id"]
    customers = [*history["customer_id"].unique().sort()[:40].to_list(), "nobody"]
    terms = terminals.unique().sort().to_list()
    ts = dt.datetime.combine(REPLAY_DAY, dt.time(12), tzinfo=dt.UTC)
    requests = [
        {
            "ts": ts + dt.timedelta(seconds=i),
            "customer_id": c,
            "terminal_id": terms[i % len(terms)],
            "device_id": "no-device" if i % 3 else f"dev-{i}",
            "amount": 5.0 + i,
        }
        for i, c in enumerate(customers)
    ]
    rows, reads = online._fetch_reads(requests)
    uncached = online._fetched(rows, online._read_views(reads))  # every value decoded here
    threaded = online.fetch_many(requests)
    # snapshot rows are kept decoded (scalars only), histories are not
    assert online._row_cache and all(
        not any(isinstance(v, list) for v in row.values()) for row in online._row_cache.values()
    )
    for fetched in (threaded, online.fetch_many(requests)):  # filled the cache, then from it
        for (vec, flags, _), (vec2, flags2, _) in zip(uncached, fetched, strict=True):
            assert flags == flags2 and vec.keys() == vec2.keys()
            for name, value in vec.items():
                np.testing.assert_array_equal(np.asarray(value), np.asarray(vec2[name]), name)
    for _ in range(2):  # a new loop: a new client, not the closed loop's
        on_loop = asyncio.run(online.fetch_many_async(requests))
        assert len(on_loop) == len(threaded) == len(requests)
        for (vec, flags, base), (vec2, flags2, base2) in zip(threaded, on_loop, strict=True):
            assert flags == flags2 and base.version == base2.version
            assert base.state.keys() == base2.state.keys()
            for field, values in base.state.items():
                np.testing.assert_array_equal(values, base2.state[field], field)
            assert vec.keys() == vec2.keys()
            for name, value in vec.items():
                np.testing.assert_array_equal(np.asarray(value), np.asarray(vec2[name]), name)
    assert threaded[-1][1]["unknown_customer"] == 1
    assert sum(f["unknown_customer"] for _, f, _ in threaded) == 1
    assert asyncio.run(online.fetch_many_async([])) == []


def test_materialize_twice_identical_redis(
    make_store: Callable[..., StoreConfig], features_dir: Path
) -> None:
    need(redis_available(), f"no Redis at {TEST_REDIS}")
    cfg = make_store("redis")
    try:
        first = _dump(cfg, features_dir)
        keys = _project_keys(cfg)
        materialize(REPLAY_DAY, config=cfg)
        assert _dump(cfg, features_dir) == first
        assert _project_keys(cfg) == keys > 0
    finally:
        get_store(cfg).teardown()
    assert _project_keys(cfg) == 0


@contextlib.contextmanager
def _own_redis_server(where: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own on a free port (``proc.args`` holds it), answering
    when yielded, stopped (and continued first, were it stopped) at the end."""
    server = shutil.which("redis-server")
    need(server is not None, "redis-server not installed")
    assert server is not None
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(where)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if redis_available(f"127.0.0.1:{port}"):
                break
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=10)


def _port(proc: subprocess.Popen[bytes]) -> int:
    args = list(proc.args)  # type: ignore[arg-type]
    return int(args[args.index("--port") + 1])


def test_unreachable_redis_raises_typed_error(
    make_store: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    with _own_redis_server(tmp_path) as proc:
        cfg = make_store("redis", redis_url=f"127.0.0.1:{_port(proc)}")
        online = OnlineFeatures(cfg)
        customer = pl.read_parquet(Path(cfg.features_dir or "") / "customer_history.parquet")[
            "customer_id"
        ][0]
        request = {"ts": REPLAY_DAY, "customer_id": customer, "terminal_id": "t",
                   "device_id": "d", "amount": 5.0}  # fmt: skip
        _, flags = online.get(request)
        assert flags["unknown_customer"] == 0
        assert asyncio.run(online.fetch_many_async([request]))[0][1] == flags
        proc.terminate()
        proc.wait(timeout=10)
        started = time.perf_counter()
        with pytest.raises(FeatureStoreUnavailable, match="redis"):
            online.get(request)
        assert time.perf_counter() - started < 2.0  # fails fast, no long client backoff
        started = time.perf_counter()
        with pytest.raises(FeatureStoreUnavailable, match="redis"):  # on the event loop too
            asyncio.run(online.fetch_many_async([request]))
        assert time.perf_counter() - started < 2.0
        with pytest.raises(FeatureStoreUnavailable):
            online.write_back({**request, "tx_id": "x", "merchant_category": "m",
                               "channel": "pos", "terminal_risk": 0.0})  # fmt: skip


@pytest.fixture()
def redis_rows(fresh_redis: StoreConfig) -> list[dict[str, object]]:
    rows = training_set(REPLAY_DAY, REPLAY_DAY + dt.timedelta(days=1), config=fresh_redis,
                        sequences=True)  # fmt: skip
    return rows.head(300).rows(named=True)


def test_a_redis_that_stops_answering_fails_the_read_on_the_event_loop_in_time(
    make_store: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    """A store that holds the connection but stops answering (SIGSTOP: a hung server, not a
    closed port) fails ``fetch_many_async`` with the typed error within the read timeout and
    its retry, with no caller's deadline around it (one timer for the round trip, not one per
    reply); once it answers again the next read is right (the timed-out connection was
    dropped: no reply is read for the wrong request)."""
    with _own_redis_server(tmp_path) as proc:
        cfg = make_store("redis", redis_url=f"127.0.0.1:{_port(proc)},socket_timeout=0.3")
        online = OnlineFeatures(cfg)
        customers = pl.read_parquet(Path(cfg.features_dir or "") / "customer_history.parquet")[
            "customer_id"
        ]
        requests = [
            {"ts": REPLAY_DAY, "customer_id": c, "terminal_id": "t", "device_id": "d",
             "amount": 5.0}
            for c in customers[:2]
        ]  # fmt: skip
        expected = [online.get(r) for r in requests]

        async def scenario() -> list[Any]:
            first = await online.fetch_many_async(requests[:1])
            os.kill(proc.pid, signal.SIGSTOP)
            started = time.perf_counter()
            try:
                with pytest.raises(FeatureStoreUnavailable, match="redis"):
                    await online.fetch_many_async(requests[:1])
                waited = time.perf_counter() - started
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            second = await online.fetch_many_async(requests[1:])
            return [first, waited, second]

        first, waited, second = asyncio.run(scenario())
        assert 0.3 <= waited < 1.5  # two attempts of 0.3 s (one retry), not a hang
        for (vec, flags, _), (want, want_flags) in (
            (first[0], expected[0]),
            (second[0], expected[1]),
        ):
            assert flags == want_flags and vec.keys() == want.keys()
            for name, value in vec.items():
                np.testing.assert_array_equal(np.asarray(value), np.asarray(want[name]), name)


@pytest.mark.parametrize("fetched", [False, True], ids=["read", "fetched-base"])
def test_redis_write_backs_of_two_replicas_lose_nothing(
    fresh_redis: StoreConfig, redis_rows: list[dict[str, object]], fetched: bool
) -> None:
    """Two replicas write back the same customers at once (and one fetches meanwhile): each
    transaction is applied exactly once and every one is in its customer's final state, also
    when each batch starts from the (often stale) histories its fetch read."""
    replica_a, replica_b = OnlineFeatures(fresh_redis), OnlineFeatures(fresh_redis)
    assert replica_a._atomic_writes == "redis"
    assert race_write_backs(replica_a, replica_b, redis_rows, fetched=fetched) < 60


def test_redis_write_back_starts_from_the_fetched_history_while_it_is_current(
    fresh_redis: StoreConfig, redis_rows: list[dict[str, object]]
) -> None:
    """Given the history its fetch read, a write-back reads nothing: the compare-and-set
    checks the version; when another writer changed the customer since the fetch, the write
    is refused, the history read and both transactions kept."""
    from riskml.features.realtime import STATE_FIELDS

    mine, theirs = OnlineFeatures(fresh_redis), OnlineFeatures(fresh_redis)
    reads = write_back_from_fetched_history(mine, theirs, redis_rows)
    assert reads == [[*STATE_FIELDS, "hist_event_us"]]


def test_redis_write_back_folds_again_when_another_writer_got_there_first(
    fresh_redis: StoreConfig, redis_rows: list[dict[str, object]]
) -> None:
    """A write-back whose customer another replica changed between its read and its write is
    not written over the other's state: the compare-and-set refuses it, the state is read and
    folded again, and both transactions are kept."""
    mine, theirs = OnlineFeatures(fresh_redis), OnlineFeatures(fresh_redis)
    first = redis_rows[0]
    customer = first["customer_id"]
    later = [r for r in redis_rows if r["customer_id"] == customer][1:] or [
        {**first, "tx_id": "other-replica", "ts": first["ts"] + dt.timedelta(seconds=30)}
    ]
    other = later[0]
    reads = []
    histories = mine._histories

    def raced(customers: list[str], conn: object = None) -> object:
        got = histories(customers, conn)
        reads.append(list(customers))
        if len(reads) == 1:  # the other replica writes between this read and the write
            assert theirs.write_back_many([other]) == [True]
        return got

    mine._histories = raced  # type: ignore[method-assign]
    assert mine.write_back_many([first]) == [True]
    assert reads == [[customer], [customer]]  # read, refused, read again
    state, version = theirs.history(customer)
    assert {first["tx_id"], other["tx_id"]} <= set(state["hist_tx_id"].tolist())
    assert mine.write_back_many([first, other]) == [False, False]  # idempotent
    assert theirs.history(customer)[1] == version

    stale = {customer: (state, version + 1)}
    assert mine._redis_cas(stale, {customer: version - 1}) == {customer}  # not its version
    assert theirs.history(customer)[1] == version  # nothing written


def test_redis_write_back_batch_is_two_round_trips_or_one_from_fetched_histories(
    fresh_redis: StoreConfig, redis_rows: list[dict[str, object]]
) -> None:
    """A write-back batch costs one pipeline reading the histories and one writing them by
    compare-and-set (EVAL: no SCRIPT EXISTS round trip as a registered script in a pipeline
    would cost, no timestamp read as Feast's own write does); given the histories its fetch
    read, one pipeline: the compare-and-set."""
    online = OnlineFeatures(fresh_redis)
    client = online._redis_client
    seen: set[object] = set()
    batch = []
    for row in redis_rows:  # three customers, their terminal risk known (no terminal read)
        if row["customer_id"] not in seen:
            seen.add(row["customer_id"])
            batch.append({**row, "terminal_risk": row["term_risk_30d"]})
    batch = batch[:3]
    pipeline = client.pipeline

    def write_back(txs: list[dict[str, object]]) -> tuple[int, dict[str, int]]:
        """Write ``txs`` back: the pipelines it opened and the Redis commands it ran."""
        pipelines = []

        def counting(*args: object, **kwargs: object) -> object:
            pipelines.append(kwargs)
            return pipeline(*args, **kwargs)

        def calls() -> dict[str, int]:
            return {k: v["calls"] for k, v in client.info("commandstats").items()}

        before = calls()
        client.pipeline = counting
        try:
            assert online.write_back_many(txs) == [True] * len(txs)
        finally:
            del client.pipeline
        after = calls()
        delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
        return len(pipelines), delta

    n_pipelines, delta = write_back(batch)
    assert n_pipelines == 2
    assert delta.get("cmdstat_eval") == 3 and delta.get("cmdstat_hmget") == 3
    assert not {"cmdstat_script|exists", "cmdstat_script|load", "cmdstat_evalsha"} & set(delta)

    # with the histories their fetch read (serving's write-back): the compare-and-set alone
    fetched = [
        {**tx, "tx_id": f"{tx['tx_id']}-next", "ts": tx["ts"] + dt.timedelta(minutes=1)}
        for tx in batch
    ]
    fetched = [
        {**tx, "history_base": base}
        for tx, (_v, _f, base) in zip(fetched, online.fetch_many(fetched), strict=True)
    ]
    n_pipelines, delta = write_back(fetched)
    assert n_pipelines == 1
    assert delta.get("cmdstat_eval") == 3 and "cmdstat_hmget" not in delta
