"""The stream processor against a real nats-server (JetStream) and Redis: kill -9 in the middle
of 10,000+ events and restart (the online state equals a clean fold: nothing lost, nothing
counted twice), poison and far-future events to the dead-letter subject while the stream keeps
flowing, late and out-of-order events, redelivery after a store outage, metrics over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.features.labels import ENTITIES, LabelFold, apply_labels, risk_rows_by_kind
from riskml.features.online import OnlineFeatures
from riskml.features.realtime import STATE_FIELDS, State, fold_transaction
from riskml.settings import get_settings
from riskml.streaming.broker import NatsBroker
from riskml.streaming.events import (
    DecisionEvent,
    LabelEvent,
    TransactionEvent,
    encode,
    subject_for,
)
from riskml.streaming.processor import ProcessorConfig, StreamProcessor
from tests.streaming.fold_support import (
    SNAPSHOT,
    SNAPSHOT_DAY,
    TEST_REDIS,
    World,
    as_messages,
    dead_letters,
    history_labels,
    pending,
    publish,
    store_over,
    world,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis]
US = 1_000_000


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory.mktemp("processor-world"))


@pytest.fixture
def store(sim: World, tmp_path: Path) -> Iterator[Any]:
    yield from store_over(sim, tmp_path / "store", "redis")


# -- events --------------------------------------------------------------------------------------
def tx_stream(
    sim: World, n: int, seed: int, *, avoid: frozenset[str] | set[str] = frozenset()
) -> list[Any]:
    """``n`` transactions of the world's customers on the snapshot day, shuffled (out of
    order), as decision events (with the terminal risk serving saw) and, at terminals in no
    label's way (``avoid``), raw transaction events."""
    rng = np.random.default_rng(seed)
    base = sim.tx.filter(pl.col("ts") < SNAPSHOT)
    customers = base["customer_id"].unique().sort().to_list()
    terminals = base["terminal_id"].unique().sort().to_list()
    quiet = [t for t in terminals if t not in avoid]
    cats = ["grocery", "fuel", "travel", "retail"]
    events: list[Any] = []
    for i in range(n):
        ts = SNAPSHOT + dt.timedelta(microseconds=int(rng.integers(0, 20 * 3600 * US)))
        raw = i % 5 == 4
        pick = quiet if raw else terminals
        tx = {
            "tx_id": f"s{seed}-{i:06d}",
            "ts": ts,
            "customer_id": customers[int(rng.integers(0, len(customers)))],
            "terminal_id": pick[int(rng.integers(0, len(pick)))],
            "device_id": f"D9{int(rng.integers(0, 400)):07d}",
            "amount": float(np.round(rng.lognormal(3, 1), 2)),
            "merchant_category": cats[i % 4],
            "channel": ["pos", "ecom", "contactless"][i % 3],
        }
        if raw:
            events.append(TransactionEvent.of(tx))
        else:
            events.append(
                DecisionEvent.of(
                    tx,
                    decision="approve",
                    decision_source="model",
                    model_version="v1",
                    write_back={"terminal_risk": float(np.round(rng.random() / 10, 4))},
                )
            )
    return events


def tx_dict(event: Any) -> dict[str, Any]:
    tx = event.transaction.model_dump()
    tx["ts_us"] = int(tx["ts"].timestamp() * US)
    if isinstance(event, DecisionEvent):
        tx["terminal_risk"] = event.write_back["terminal_risk"]
    return tx


# -- expectations ----------------------------------------------------------------------------
def clean_fold(
    online: OnlineFeatures, initial: dict[str, Any], events: Sequence[Any]
) -> tuple[dict[str, State], int]:
    """Every customer's state after folding ``events`` in time order from ``initial``, and
    how many were applied. A raw transaction gets its terminal's stored risk (the
    snapshot's: no label moves the terminals they use)."""
    terminals = {e.transaction.terminal_id for e in events}
    rows = LabelFold(online).read_rows([("terminal", t) for t in terminals])
    risks = {t: float((r or {}).get("term_risk_30d") or 0.0) for (_k, t), r in rows.items()}
    states = {c: s for c, (s, _v) in initial.items()}
    applied = 0
    for event in sorted(events, key=lambda e: (e.event_ts, e.event_id)):
        tx = tx_dict(event)
        tx.setdefault("terminal_risk", risks[tx["terminal_id"]])
        states[tx["customer_id"]], outcome = fold_transaction(states[tx["customer_id"]], tx)
        applied += outcome == "applied"
    return states, applied


def state_diff(online: OnlineFeatures, expected: dict[str, State]) -> list[str]:
    got = online.histories(list(expected))
    bad = []
    for customer, want in expected.items():
        have = got[customer][0]
        for key in STATE_FIELDS:
            a, b = have[key], want[key]
            same = (
                np.allclose(a, b, rtol=0, atol=1e-12)
                if key in ("hist_amount", "hist_terminal_risk")
                else a.tolist() == b.tolist()
            )
            if len(a) != len(b) or not same:
                bad.append(f"{customer} {key}: {len(a)} vs {len(b)} entries")
                break
    return bad


def risk_diff(fold: LabelFold, sim: World, labels: Sequence[LabelEvent], at: dt.datetime) -> int:
    frame = pl.DataFrame(
        {
            "tx_id": [e.tx_id for e in labels],
            "fraud": [e.is_fraud for e in labels],
            "label_ts": [e.label_ts for e in labels],
            "event_id": [e.event_id for e in labels],
        },
        schema={"tx_id": pl.String, "fraud": pl.Boolean,
                "label_ts": pl.Datetime("us", "UTC"), "event_id": pl.String},
    )  # fmt: skip
    history = sim.tx.filter(pl.col("ts") < SNAPSHOT)
    by_kind = risk_rows_by_kind(apply_labels(history, frame, at), SNAPSHOT_DAY, at)
    bad = 0
    for kind, rows in by_kind.items():  # terminals, devices, customers
        _view, key, prefix = ENTITIES[kind]
        online = fold.read_rows([(kind, e) for e in rows[key]])
        for row in rows.iter_rows(named=True):
            have = online[kind, row[key]]
            assert have is not None
            bad += have[f"{prefix}fraud_known_30d"] != row[f"{prefix}fraud_known_30d"]
            bad += not np.isclose(have[f"{prefix}risk_30d"], row[f"{prefix}risk_30d"])
    return bad


# -- tests ---------------------------------------------------------------------------------------
def test_kill_9_mid_stream_and_restart_loses_nothing_and_counts_nothing_twice(
    sim: World, store: Any, nats_stream: str, tmp_path: Path
) -> None:
    labels = history_labels(sim)
    labelled = set(sim.tx.filter(pl.col("tx_id").is_in([e.tx_id for e in labels]))["terminal_id"])
    txs = tx_stream(sim, 10_500, seed=1, avoid=labelled)
    # an outbox re-publishing after the broker's duplicate window: new message ids, same events
    again = [(subject_for(e), encode(e), f"{e.event_id}#2") for e in txs[::50]]
    # labels first: they find their transactions (and devices) in the customers' history
    messages = as_messages(labels) + as_messages(txs) + again
    assert len(messages) >= 10_000
    online = OnlineFeatures(store)
    initial = online.histories(sim.tx["customer_id"].unique().to_list())
    expected, applied = clean_fold(online, initial, txs)
    asyncio.run(publish(messages))

    env = {**os.environ, "RISKML_HOME": str(store.home), "RISKML_ONLINE_STORE": "redis",
           "RISKML_REDIS_URL": TEST_REDIS}  # fmt: skip
    args = [sys.executable, "-m", "riskml", "stream", "run", "--project", store.project,
            "--batch", "200", "--ack-wait-s", "2"]  # fmt: skip
    log = (tmp_path / "processor.log").open("wb")
    first = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while (left := asyncio.run(pending(absent=len(messages)))) > len(messages) * 0.55:
        assert first.poll() is None, (tmp_path / "processor.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"no progress: {left} pending"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    mid = asyncio.run(pending())
    assert 0 < mid < len(messages), mid  # killed in the middle

    summary = tmp_path / "second.json"
    second = subprocess.Popen(
        [*args, "--json", str(summary)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 90
    while asyncio.run(pending()) > 0:
        assert second.poll() is None, (tmp_path / "processor.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the restarted processor did not catch up"
        time.sleep(0.2)
    second.send_signal(signal.SIGTERM)  # graceful: finish the batch, ack, exit 0
    assert second.wait(30) == 0, (tmp_path / "processor.log").read_text()[-3000:]
    log.close()

    assert state_diff(online, expected) == []  # 0 lost, 0 counted twice
    after = online.histories(list(expected))
    grown = sum(len(after[c][0]) - len(initial[c][0]) for c in expected)
    assert grown <= applied  # retention may trim old entries, never add an extra one
    fold = LabelFold(online)
    assert risk_diff(fold, sim, labels, SNAPSHOT + dt.timedelta(hours=20)) == 0
    done = json.loads(summary.read_text())
    assert done["events"] >= mid and done["result_duplicate"] >= 1
    assert asyncio.run(dead_letters()) == []


def test_poison_future_late_and_out_of_order_events(
    sim: World, store: Any, nats_stream: str
) -> None:
    online = OnlineFeatures(store)
    txs = tx_stream(sim, 300, seed=2)
    customer = txs[0].transaction.customer_id
    late = DecisionEvent.of(
        {**txs[0].transaction.model_dump(), "tx_id": "ancient",
         "ts": SNAPSHOT - dt.timedelta(days=90)},
        decision="approve", decision_source="model", model_version="v1",
    )  # fmt: skip
    future = TransactionEvent.of(
        {**txs[1].transaction.model_dump(), "tx_id": "from-the-future",
         "ts": dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)}
    )  # fmt: skip
    soon = TransactionEvent.of(  # ahead of the clock, but inside the allowed skew
        {**txs[2].transaction.model_dump(), "tx_id": "a-bit-ahead", "customer_id": "C-new",
         "ts": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)}
    )  # fmt: skip
    poison = [
        ("riskml.events.decision", b"\x00 not json", "poison-1"),
        ("riskml.events.label", json.dumps({"kind": "label", "tx_id": "x"}).encode(), "poison-2"),
    ]
    first, rest = txs[:150], txs[150:]
    messages = as_messages(first) + poison + as_messages([late, future, soon]) + as_messages(rest)
    initial = online.histories([*sim.tx["customer_id"].unique().to_list(), "C-new"])
    asyncio.run(publish(messages))

    async def run() -> Any:
        broker = NatsBroker(get_settings())
        await broker.connect()
        processor = StreamProcessor(
            broker, online, ProcessorConfig.from_settings(batch=64, ack_wait_s=5)
        )
        port = processor.metrics.serve(0, addr="127.0.0.1")
        try:
            stats = await processor.run(until_idle=True)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            return stats, text.decode(), processor
        finally:
            processor.close()
            await broker.close()

    stats, metrics, processor = asyncio.run(run())
    letters = asyncio.run(dead_letters())
    reasons = sorted(
        (subject, letter.reason, headers["reason"]) for subject, letter, headers in letters
    )
    assert reasons == [
        ("riskml.dlq.decision", "invalid_event", "invalid_event"),
        ("riskml.dlq.label", "invalid_event", "invalid_event"),
        ("riskml.dlq.transaction", "future_event", "future_event"),
    ]
    future_letter = next(letter for _s, letter, _h in letters if letter.reason == "future_event")
    assert future_letter.data == encode(future)  # the original bytes, to replay once fixed
    # every later event folded, in order or not, exactly as a clean in-order fold
    expected, applied = clean_fold(online, initial, [*txs, soon])
    assert state_diff(online, expected) == []
    assert stats.results == {"applied": applied, "late": 1, "dead_letter": 3}
    assert "ancient" not in online.history(customer)[0]["hist_tx_id"].tolist()
    m = processor.metrics
    assert m.value("riskml_stream_events_total", kind="decision", result="late") == 1
    assert m.value("riskml_stream_dead_letters_total", kind="transaction",
                   reason="future_event") == 1  # fmt: skip
    for name in ("riskml_stream_events_total", "riskml_stream_consumer_pending",
                 "riskml_stream_event_age_seconds_bucket", "riskml_stream_batch_seconds_bucket",
                 "riskml_stream_dead_letters_total", "riskml_stream_delivery_age_seconds_count",
                 "riskml_stream_last_event_timestamp_seconds"):  # fmt: skip
        assert name in metrics, name
    assert 'riskml_stream_consumer_pending{consumer="riskml-processor"} 0.0' in metrics


def test_store_outage_naks_and_the_events_come_back(
    sim: World, store: Any, nats_stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskml.features.errors import FeatureStoreUnavailable

    online = OnlineFeatures(store)
    txs = tx_stream(sim, 40, seed=3)
    unknown = LabelEvent.of("no-such-tx", "chargeback", SNAPSHOT, customer_id="nobody")
    initial = online.histories(sim.tx["customer_id"].unique().to_list())
    asyncio.run(publish(as_messages([*txs, unknown])))
    real = online.fold_many
    calls = {"n": 0}

    def flaky(batch: Any, **kwargs: Any) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise FeatureStoreUnavailable("redis down")
        return real(batch, **kwargs)

    monkeypatch.setattr(online, "fold_many", flaky)

    async def run() -> Any:
        broker = NatsBroker(get_settings())
        await broker.connect()
        cfg = ProcessorConfig.from_settings(retry_delay_s=0.2, unmatched_retries=2, ack_wait_s=5)
        processor = StreamProcessor(broker, online, cfg)
        try:
            return await processor.run(until_idle=True), processor
        finally:
            processor.close()
            await broker.close()

    stats, processor = asyncio.run(run())
    assert calls["n"] >= 2
    expected, applied = clean_fold(online, initial, txs)
    assert state_diff(online, expected) == []
    assert stats.results["applied"] == applied == 40
    assert stats.results["retry"] == 40 + 1  # the outage, then the unknown label once
    assert processor.metrics.value("riskml_stream_redeliveries_total") >= 41
    letters = asyncio.run(dead_letters())
    assert [(s, lt.reason) for s, lt, _h in letters] == [("riskml.dlq.label", "unmatched_label")]
