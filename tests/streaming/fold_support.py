"""A small simulated world and a feature store over it, for the stream tests (label fold,
processor, offline log): transactions before ``SNAPSHOT`` are the batch history, materialised
up to ``SNAPSHOT``; what comes after is streamed. Also publishing to, and reading the lag and
the dead letters of, the test's stream (``nats_stream`` sets it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from riskml.data.simulator import SimulationConfig
from riskml.settings import get_settings
from riskml.streaming.broker import NatsBroker
from riskml.streaming.events import DeadLetter, LabelEvent, encode, subject_for
from riskml.streaming.processor import fetch
from tests.support.services import need

#: ~8k transactions over 30 days, ~190 frauds (labels up to 60 days later)
SIM = SimulationConfig(
    n_customers=150, n_terminals=60, days=30, start_date=dt.date(2024, 1, 1), seed=5
)
#: the materialised snapshot (day 26, 00:00 UTC) and its day number since the epoch
SNAPSHOT = dt.datetime(2024, 1, 27, tzinfo=dt.UTC)
SNAPSHOT_DAY = int(SNAPSHOT.timestamp()) // 86_400
#: Redis for these tests: the local server, db 7, a Feast project of their own (cleaned up)
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "localhost:6379,db=7")
_WORLDS: dict[Path, World] = {}


@dataclass(frozen=True)
class World:
    dataset: Path
    features: Path
    tx: pl.DataFrame


def world(root: Path) -> World:
    """Simulate and build the features once per ``root``."""
    if root not in _WORLDS:
        from riskml.data.io import read_transactions
        from riskml.data.simulator import simulate
        from riskml.features.batch import build_features

        simulate(SIM, root / "dataset")
        build_features(root / "dataset", root / "features", as_of=SNAPSHOT)
        tx = read_transactions(root / "dataset")
        _WORLDS[root] = World(root / "dataset", root / "features", tx)
    return _WORLDS[root]


def make_store(w: World, home: Path, online_store: str) -> Any:
    """Apply and materialise (up to ``SNAPSHOT``) a fresh store; its StoreConfig."""
    from riskml.features.store import StoreConfig, apply, materialize

    cfg = StoreConfig(
        home=home,
        features_dir=w.features,
        online_store=online_store,
        redis_url=TEST_REDIS,
        project=f"t_{uuid.uuid4().hex[:10]}",
    )
    apply(cfg)
    materialize(SNAPSHOT, config=cfg)
    return cfg


def store_over(w: World, home: Path, online_store: str) -> Iterator[Any]:
    """A fixture's body: a fresh store (:func:`make_store`; skips when Redis is wanted and not
    up), its Redis keys dropped afterwards."""
    if online_store == "redis":
        need(redis_up(), f"no Redis at {TEST_REDIS}")
    cfg = make_store(w, home, online_store)
    yield cfg
    if online_store == "redis":
        drop_redis_project(cfg.project)


def drop_redis_project(project: str, url: str = TEST_REDIS) -> None:
    """Delete every key of a Feast project (binary keys end with the project name) and its
    label ledgers from the test Redis."""
    import redis

    from riskml.features.labels import LEDGER_PREFIX

    host, _, rest = url.partition(":")
    port, *params = rest.split(",")
    db = int(dict(p.split("=", 1) for p in params).get("db", 0))
    client = redis.Redis(host=host, port=int(port or 6379), db=db)
    keys = list(client.scan_iter(match=f"*{project}".encode()))
    keys += list(client.scan_iter(match=f"{LEDGER_PREFIX}{project}:*"))
    if keys:
        client.delete(*keys)


def redis_up(url: str = TEST_REDIS) -> bool:
    import redis

    host, _, rest = url.partition(":")
    try:
        client = redis.Redis(host=host, port=int(rest.split(",")[0]), socket_connect_timeout=1)
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


# -- the stream -------------------------------------------------------------------------------
def history_labels(sim: World) -> list[LabelEvent]:
    """Fraud labels of history transactions (some before, most after the snapshot)."""
    frauds = sim.tx.filter(
        (pl.col("is_fraud") == 1)
        & (pl.col("ts") < SNAPSHOT)
        & (pl.col("label_available_at") > SNAPSHOT - dt.timedelta(days=31))
        & (pl.col("label_available_at") <= SNAPSHOT + dt.timedelta(hours=20))
    )
    return [
        LabelEvent.of(
            r["tx_id"], "chargeback", r["label_available_at"], customer_id=r["customer_id"]
        )
        for r in frauds.iter_rows(named=True)
    ]


async def publish(messages: Sequence[tuple[str, bytes, str]]) -> None:
    broker = NatsBroker(get_settings())
    await broker.connect()
    await broker.ensure_stream()
    sem = asyncio.Semaphore(256)

    async def one(subject: str, data: bytes, msg_id: str) -> None:
        async with sem:
            await broker.publish(subject, data, msg_id=msg_id, timeout=10)

    try:
        await asyncio.gather(*(one(*m) for m in messages))
    finally:
        await broker.close()


def as_messages(events: Sequence[Any]) -> list[tuple[str, bytes, str]]:
    return [(subject_for(e), encode(e), e.event_id) for e in events]


async def dead_letters() -> list[tuple[str, DeadLetter, dict[str, str]]]:
    from riskml.streaming.events import decode

    broker = NatsBroker(get_settings())
    await broker.connect()
    try:
        consumer = await broker.pull("dlq-reader", "riskml.dlq.>", ack_wait_s=5, max_deliver=2)
        out = []
        while msgs := await fetch(consumer, 100, 0.5):
            for m in msgs:
                letter = decode(m.subject, m.data)
                assert isinstance(letter, DeadLetter)
                out.append((m.subject, letter, dict(m.headers)))
                await m.ack()
        return out
    finally:
        await broker.close()


async def pending(durable: str = "riskml-processor", *, absent: int = 0) -> int:
    """The consumer's lag; ``absent`` while the consumer does not exist yet."""
    from riskml.streaming.broker import BrokerError

    broker = NatsBroker(get_settings())
    await broker.connect()
    try:
        return await broker.pending(durable)
    except BrokerError as exc:
        if "not found" not in str(exc):
            raise
        return absent
    finally:
        await broker.close()


def utc(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))
