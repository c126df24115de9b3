"""The demo's event stream (:mod:`serving.demo_stream`) against a private nats-server and a
small SQLite feature store: decisions published to the stream reach the online store through
the demo's processor with nothing lost (and what was in the stream before is left alone); with
no NATS the demo says so in one line and its Ingress keeps writing back directly."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from riskml.decision.config import IngressConfig
from riskml.features.online import OnlineFeatures
from riskml.settings import get_settings
from riskml.streaming.events import DecisionEvent
from serving.demo import DEMO_INGRESS
from serving.demo_stream import open_stream
from tests.streaming.fold_support import SNAPSHOT, World, as_messages, publish, world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory.mktemp("demo-stream-world"))


def decisions(sim: World, n: int, prefix: str) -> list[DecisionEvent]:
    """``n`` decisions of the world's customers on the snapshot day (in the store's future)."""
    base = sim.tx.filter(pl.col("ts") < SNAPSHOT)
    customers = base["customer_id"].unique().sort().to_list()
    terminals = base["terminal_id"].unique().sort().to_list()
    return [
        DecisionEvent.of(
            {
                "tx_id": f"{prefix}-{i:04d}",
                "ts": SNAPSHOT + dt.timedelta(minutes=i),
                "customer_id": customers[i % len(customers)],
                "terminal_id": terminals[i % len(terminals)],
                "device_id": f"D{i:07d}",
                "amount": 10.0 + i,
                "merchant_category": "grocery",
                "channel": "pos",
            },
            decision="approve",
            decision_source="model",
            model_version="v1",
            write_back={"terminal_risk": 0.01},
        )
        for i in range(n)
    ]


def folded_ids(online: OnlineFeatures, events: list[DecisionEvent]) -> set[str]:
    states = online.histories([e.transaction.customer_id for e in events])
    return {str(t) for state, _ in states.values() for t in state["hist_tx_id"].tolist()}


def test_decisions_reach_the_online_store_through_nats_with_none_lost(
    sim: World, nats_stream: str, tmp_path: Path
) -> None:
    from riskml.features.store import StoreConfig, apply, materialize

    cfg = StoreConfig(home=tmp_path / "store", features_dir=sim.features, project="demo_stream")
    apply(cfg)
    materialize(SNAPSHOT, config=cfg)
    before = decisions(sim, 5, "before")  # in the stream already: not the demo's
    asyncio.run(publish(as_messages(before)))

    link = open_stream(cfg.model_dump())
    try:
        assert link.active, link.note
        assert link.stream == nats_stream and nats_stream in link.note
        ingress = IngressConfig.model_validate({**DEMO_INGRESS, **link.ingress})
        assert ingress.write_back is False and ingress.decision_log.enabled
        events = decisions(sim, 300, "demo")
        asyncio.run(publish(as_messages(events)))
        stats = [{"counts": {"published": 290, "outboxed": 10}}]  # two replicas' worth
        figures = link.settle(stats, decided=300, timeout_s=30)
    finally:
        link.close()
    assert link.thread is None
    assert figures["published"] == 300 and figures["outboxed"] == 10
    assert figures["folded"] == 300 and figures["lost"] == 0, figures
    assert figures["dead_lettered"] == 0 and figures["pending"] == 0
    assert figures["results"] == {"applied": 300}
    fresh = figures["freshness_ms"]
    assert fresh["p50"] is not None and 0 <= fresh["p50"] <= fresh["p99"] < 30_000
    online = OnlineFeatures(cfg)
    assert {e.transaction.tx_id for e in events} <= folded_ids(online, events)
    assert not {e.transaction.tx_id for e in before} & folded_ids(online, before)


def test_no_nats_falls_back_to_direct_write_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.services import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RISKML_NATS_URL", url)
    get_settings.cache_clear()
    try:
        link = open_stream({}, connect_timeout_s=1.0)
    finally:
        get_settings.cache_clear()
    assert not link.active and link.thread is None
    assert link.note == f"no NATS at {url}: decisions written back directly"
    assert link.ingress == {}
    ingress = IngressConfig.model_validate({**DEMO_INGRESS, **link.ingress})
    assert ingress.write_back is True and not ingress.decision_log.enabled
    figures: dict[str, Any] = {"mode": "write-back", "note": link.note}
    from riskml.demo import stream_line

    assert stream_line(figures) == link.note
