"""The offline log against a real nats-server: every event lands once in Parquet partitioned by
event hour (a crash between the file and the ack writes copies; readers drop them), the
training frame uses only the labels known at its time, and the features rebuilt in batch from
the log equal the online state the processor folded from the same stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.features.definitions import RISK_WINDOWS
from riskml.features.labels import LabelFold
from riskml.features.online import OnlineFeatures
from riskml.settings import get_settings
from riskml.streaming.broker import NatsBroker
from riskml.streaming.events import DecisionEvent, LabelEvent, TransactionEvent, encode
from riskml.streaming.offline_log import (
    OfflineLogConfig,
    OfflineLogWriter,
    _Target,
    read_events,
    rebuild_online_state,
    training_frame,
)
from riskml.streaming.processor import ProcessorConfig, StreamProcessor
from tests.streaming.fold_support import (
    SNAPSHOT,
    SNAPSHOT_DAY,
    World,
    as_messages,
    history_labels,
    pending,
    publish,
    store_over,
    world,
)

pytestmark = [pytest.mark.integration]
AT = SNAPSHOT + dt.timedelta(hours=20)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory.mktemp("offline-log-world"))


@pytest.fixture
def store(sim: World, tmp_path: Path) -> Iterator[Any]:
    yield from store_over(sim, tmp_path / "store", "redis")


def day_events(sim: World, labels: list[LabelEvent]) -> list[Any]:
    """The dataset's transactions of the snapshot day (to AT), shuffled: decisions carrying
    the terminal risk serving saw (any value: the log keeps it), raw transactions where no
    label moves their terminal's risk."""
    rng = random.Random(4)
    labelled = set(sim.tx.filter(pl.col("tx_id").is_in([e.tx_id for e in labels]))["terminal_id"])
    day = sim.tx.filter((pl.col("ts") >= SNAPSHOT) & (pl.col("ts") < AT))
    events: list[Any] = []
    for row in day.iter_rows(named=True):
        if row["terminal_id"] not in labelled and rng.random() < 0.3:
            events.append(TransactionEvent.of(row, "branch"))
        else:
            events.append(
                DecisionEvent.of(
                    row, decision="approve", decision_source="model", model_version="v1",
                    write_back={"terminal_risk": round(rng.random() / 5, 4)},
                )
            )  # fmt: skip
    rng.shuffle(events)
    return events


async def consume(online: OnlineFeatures, root: Path) -> tuple[Any, OfflineLogWriter]:
    """The processor and the offline-log writer side by side until both are idle."""
    broker = NatsBroker(get_settings())
    await broker.connect()
    processor = StreamProcessor(broker, online, ProcessorConfig.from_settings(batch=200))
    writer = OfflineLogWriter(
        broker, root, OfflineLogConfig.from_settings(max_rows=400, max_seconds=1, ack_wait_s=30)
    )
    try:
        stats, _n = await asyncio.gather(
            processor.run(until_idle=True), writer.run(until_idle=True)
        )
        return stats, writer
    finally:
        processor.close()
        await broker.close()


def test_features_rebuilt_from_the_log_equal_the_online_state(
    sim: World, store: Any, nats_stream: str, tmp_path: Path
) -> None:
    labels = history_labels(sim)
    # frauds labelled after the snapshot and found genuine two hours later (a reversal of a
    # label the snapshot counted would rewrite older entries' risk in a rebuild: see
    # rebuild_online_state; the label fold itself handles those, tests/streaming/test_labels)
    reversals = [
        LabelEvent.of(e.tx_id, "confirmed_genuine", e.label_ts + dt.timedelta(hours=2),
                      customer_id=e.customer_id)
        for e in labels if SNAPSHOT < e.label_ts <= AT - dt.timedelta(hours=3)
    ][:3]  # fmt: skip
    assert reversals
    txs = day_events(sim, labels)
    again = [(f"riskml.events.{e.kind}", encode(e), f"{e.event_id}#2") for e in txs[::20]]
    asyncio.run(publish(as_messages(labels + reversals) + as_messages(txs) + again))
    online = OnlineFeatures(store)
    root = tmp_path / "offline"
    stats, writer = asyncio.run(consume(online, root))
    assert stats.results["applied"] == len(labels) + len(reversals) + len(txs)
    assert stats.results["duplicate"] == len(again)
    assert writer.events == len(labels) + len(reversals) + len(txs) + len(again)

    # every event once, in the hour of its event time
    logged = read_events(root, "decision")
    assert logged.height == sum(isinstance(e, DecisionEvent) for e in txs)
    assert logged["event_id"].n_unique() == logged.height
    for path in (root / "events" / "decision").rglob("*.parquet"):
        hours = pl.read_parquet(path)["event_ts"].dt.strftime("date=%Y-%m-%d/hour=%H").unique()
        assert hours.to_list() == [f"{path.parent.parent.name}/{path.parent.name}"]

    history = sim.tx.filter(pl.col("ts") < SNAPSHOT)
    rebuilt = rebuild_online_state(
        root, AT, snapshot_day=SNAPSHOT_DAY, history=history, history_known_at=SNAPSHOT
    )
    # customers: the history state, entry for entry
    states = online.histories(rebuilt.customer_history["customer_id"].to_list())
    bad = []
    for row in rebuilt.customer_history.iter_rows(named=True):
        state = states[row["customer_id"]][0]
        for key in ("hist_tx_id", "hist_ts", "hist_terminal", "hist_device", "hist_category",
                    "hist_channel"):  # fmt: skip
            if state[key].tolist() != list(row[key]):
                bad.append(f"{row['customer_id']} {key}")
        for key, col in (
            ("hist_amount", "hist_amount"),
            ("hist_terminal_risk", "hist_terminal_risk"),
        ):
            if not np.allclose(state[key], np.asarray(row[col], dtype=float), rtol=0, atol=1e-12):
                bad.append(f"{row['customer_id']} {key}")
    assert bad == []
    # terminals, devices and customers: the snapshot's volumes with every label known at AT,
    # in every label-aware window
    fold = LabelFold(online)
    for kind, rows, key, prefix in (
        ("terminal", rebuilt.terminal_rows, "terminal_id", "term_"),
        ("device", rebuilt.device_rows, "device_id", "dev_"),
        ("customer", rebuilt.customer_rows, "customer_id", "cust_lbl_"),
    ):
        assert rows.height > 0, kind
        got = fold.read_rows([(kind, e) for e in rows[key]])
        for row in rows.iter_rows(named=True):
            have = got[kind, row[key]]
            assert have is not None
            for w in RISK_WINDOWS:
                known = f"{prefix}fraud_known_{w}"
                assert have[known] == row[known], (kind, w, row)
                assert np.isclose(have[f"{prefix}risk_{w}"], row[f"{prefix}risk_{w}"]), row
        # labels arrived after the snapshot: the rows they changed are among those compared
        assert sum(r[f"{prefix}fraud_known_30d"] > 0 for r in rows.iter_rows(named=True)), kind


def test_training_frame_uses_only_labels_known_at_its_time(
    nats_stream: str, tmp_path: Path
) -> None:
    t0 = dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    tx = {"tx_id": "a1", "ts": t0, "customer_id": "c", "terminal_id": "m", "amount": 5.0}
    events = [
        TransactionEvent.of(tx),
        TransactionEvent.of({**tx, "tx_id": "a2", "ts": t0 + dt.timedelta(minutes=5)}),
        LabelEvent.of("a1", "chargeback", t0 + dt.timedelta(days=3)),
        LabelEvent.of("a1", "confirmed_genuine", t0 + dt.timedelta(days=9)),
        LabelEvent.of("a2", "confirmed_fraud", t0 + dt.timedelta(days=5)),
    ]
    asyncio.run(publish(as_messages(events)))

    async def run() -> OfflineLogWriter:
        broker = NatsBroker(get_settings())
        await broker.connect()
        writer = OfflineLogWriter(broker, tmp_path, OfflineLogConfig(max_seconds=1, ack_wait_s=5))
        try:
            await writer.run(until_idle=True)
            return writer
        finally:
            await broker.close()

    asyncio.run(run())

    def labels(at: dt.datetime) -> dict[str, tuple[int, Any]]:
        frame = training_frame(tmp_path, at)
        assert frame["tx_id"].to_list() == ["a1", "a2"]
        return {
            r["tx_id"]: (r["is_fraud"], r["label_available_at"])
            for r in frame.iter_rows(named=True)
        }

    assert labels(t0 + dt.timedelta(days=1)) == {
        "a1": (0, t0),
        "a2": (0, t0 + dt.timedelta(minutes=5)),
    }
    assert labels(t0 + dt.timedelta(days=4))["a1"] == (1, t0 + dt.timedelta(days=3))
    assert labels(t0 + dt.timedelta(days=6)) == {
        "a1": (1, t0 + dt.timedelta(days=3)), "a2": (1, t0 + dt.timedelta(days=5))
    }  # fmt: skip
    assert labels(t0 + dt.timedelta(days=10))["a1"] == (0, t0)  # reversed


def test_offline_log_killed_mid_stream_keeps_every_event_once(
    nats_stream: str, tmp_path: Path
) -> None:
    t0 = dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    events = [
        TransactionEvent.of({"tx_id": f"k{i:05d}", "ts": t0 + dt.timedelta(seconds=7 * i),
                             "customer_id": f"c{i % 40}", "terminal_id": "m", "amount": 1.0})
        for i in range(3000)
    ]  # fmt: skip
    asyncio.run(publish(as_messages(events)))
    root = tmp_path / "log"
    args = [sys.executable, "-m", "riskml", "stream", "offline-log", "--out", str(root),
            "--max-rows", "150", "--max-seconds", "0.5", "--ack-wait-s", "2"]  # fmt: skip
    env = {**os.environ}
    log = (tmp_path / "writer.log").open("wb")
    first = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while asyncio.run(pending("riskml-offline-log", absent=3000)) > 1500:
        assert first.poll() is None, (tmp_path / "writer.log").read_text()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = subprocess.run([*args, "--once"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            timeout=120)  # fmt: skip
    log.close()
    assert second.returncode == 0, (tmp_path / "writer.log").read_text()[-2000:]
    got = read_events(root, "transaction")
    assert sorted(got["event_id"].to_list()) == [e.event_id for e in events]
    files = list((root / "events" / "transaction").rglob("*.parquet"))
    hours = {f"{p.parent.parent.name}/{p.parent.name}" for p in files}
    assert hours == {"date=2024-03-01/hour=10", "date=2024-03-01/hour=11",
                     "date=2024-03-01/hour=12", "date=2024-03-01/hour=13",
                     "date=2024-03-01/hour=14", "date=2024-03-01/hour=15"}  # fmt: skip
    assert not list(root.rglob(".*.tmp"))


def test_a_restarted_writer_removes_partial_files_older_than_the_ack_wait(tmp_path: Path) -> None:
    hour = tmp_path / "events" / "transaction" / "date=2024-03-01" / "hour=13"
    hour.mkdir(parents=True)
    stale, fresh = hour / ".000001-000002-aa.parquet.tmp", hour / ".000003-000004-bb.parquet.tmp"
    kept = hour / "000001-000002-cc.parquet"
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    old = time.time() - 10
    os.utime(stale, (old, old))
    assert _Target(tmp_path).sweep_partial(5.0) == 1
    assert not stale.exists() and fresh.exists() and kept.exists()
    assert _Target(tmp_path / "elsewhere").sweep_partial(5.0) == 0
