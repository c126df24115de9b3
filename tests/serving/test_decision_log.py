"""The decision log: every decided transaction on the event stream, exactly once, whether the
broker answers, is late, or is away for a while (real nats-server, real models in process; one
test through the real Serve app over HTTP); far-future transactions refused at the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from riskml.decision.config import DecisionLogConfig
from riskml.settings import get_settings
from riskml.streaming.broker import NatsBroker
from riskml.streaming.events import DecisionEvent, Transaction, decode
from serving.schemas import BatchRequest, TransactionRequest
from tests.serving.helpers import DECIDER, INGRESS, wait_for
from tests.support.services import NatsProcess, nats_process
from tests.support.standin_models import memory_source, model_args
from tests.support.traffic import live_transactions

ON = DecisionLogConfig(enabled=True, publish_timeout_ms=2_000)


def _requests(n: int, prefix: str) -> list[TransactionRequest]:
    return [
        TransactionRequest.model_validate(t) for t in live_transactions(n, seed=3, prefix=prefix)
    ]


async def _stream_events(broker: NatsBroker) -> list[DecisionEvent]:
    consumer = await broker.pull("check", "riskml.events.decision", ack_wait_s=5, max_deliver=1)
    out: list[DecisionEvent] = []
    while batch := await consumer.fetch(200, timeout=0.5):
        for m in batch:
            event = decode(m.subject, m.data)
            assert isinstance(event, DecisionEvent)
            out.append(event)
    return out


@pytest.fixture(scope="module")
def app(reference: dict[str, Any]) -> Any:
    from serving.inprocess import InProcessApp

    return InProcessApp(model_args(reference, memory_source(reference)))


def _log(app: Any, broker: NatsBroker, tmp_path: Path, config: DecisionLogConfig = ON) -> Any:
    from serving.decision_log import DecisionLog

    return DecisionLog(
        config,
        feature_names=app.components.feature_names,
        sequence_version=app.components.sequence_version,
        replica="test",
        broker_factory=lambda: broker,
        spill_dir=tmp_path / "outbox",
    )


@pytest.mark.integration
def test_each_decision_is_published_with_what_decided_it(
    app: Any, nats_stream: str, tmp_path: Path
) -> None:
    reqs = _requests(12, "logged")

    async def main() -> tuple[Any, list[DecisionEvent], dict[str, Any]]:
        broker = NatsBroker(get_settings())
        log = _log(app, broker, tmp_path)
        await log.start()
        await broker.connect()
        await log._starting  # connected, stream made
        single = await app.decide_raw([reqs[0].model_dump()])
        await log.record([reqs[0]], single, deadline=time.perf_counter() + 2)
        batch = await app.decide_raw([r.model_dump() for r in reqs[1:]])
        await log.record(reqs[1:], batch, deadline=time.perf_counter() + 2)
        events = await _stream_events(broker)
        stats = log.stats()
        assert await log.close(2)
        return [*single.outcomes, *batch.outcomes], events, stats

    outcomes, events, stats = asyncio.run(main())
    assert stats["counts"]["published"] == 12 and stats["counts"]["outboxed"] == 0
    assert [e.event_id for e in events] == [r.tx_id for r in reqs]
    names = app.components.feature_names
    for e, o, r in zip(events, outcomes, reqs, strict=True):
        assert e.transaction == Transaction(**r.model_dump())
        assert e.event_ts == r.ts
        assert (e.decision, e.decision_source, e.model_version) == (
            o.decision, o.decision_source, o.model_version,
        )  # fmt: skip
        assert e.score == o.score and e.scores == o.scores
        assert list(e.features) == names
        assert e.sequence_version == app.components.sequence_version
        assert [x.feature for x in e.reasons] == [x.feature for x in o.reasons]
        assert abs((e.decided_at - dt.datetime.now(dt.UTC)).total_seconds()) < 60


@pytest.mark.integration
def test_broker_away_decisions_answered_then_every_event_stored_once(
    app: Any, tmp_path: Path
) -> None:
    """The broker dies mid-traffic: requests are not held past their deadline, the events wait
    in the outbox (memory, then spill), and once the broker is back the stream holds every
    decided transaction exactly once; the counts say so."""
    reqs = _requests(45, "outage")
    config = ON.model_copy(update={"outbox_max_events": 10, "publish_timeout_ms": 20})
    with nats_process(tmp_path / "nats") as server:

        async def main() -> tuple[dict[str, Any], list[DecisionEvent], float]:
            broker = NatsBroker(get_settings(), servers=server.url, reconnect_wait_s=0.1)
            log = _log(app, broker, tmp_path, config)
            await log.start()
            await broker.connect()
            await log._starting
            slowest = 0.0

            async def decide(chunk: list[TransactionRequest]) -> None:
                nonlocal slowest
                t0 = time.perf_counter()
                result = await app.decide_raw([r.model_dump() for r in chunk])
                await log.record(chunk, result, deadline=t0 + 0.05)
                slowest = max(slowest, time.perf_counter() - t0)

            for r in reqs[:10]:
                await decide([r])
            await asyncio.to_thread(server.stop)
            await decide(reqs[10:25])  # a batch while the broker is away
            for r in reqs[25:35]:
                await decide([r])
            assert log.stats()["counts"]["spilled"] > 0
            await asyncio.to_thread(server.start)
            for r in reqs[35:]:
                await decide([r])
            assert await log.close(20)  # drained at shutdown
            broker2 = NatsBroker(get_settings(), servers=server.url)
            await broker2.connect()
            events = await _stream_events(broker2)
            assert await broker2.stream_messages() == len(reqs)
            await broker2.close()
            return log.stats(), events, slowest

        stats, events, slowest = asyncio.run(main())
    c = stats["counts"]
    assert sorted(e.event_id for e in events) == sorted(r.tx_id for r in reqs)  # once each
    assert c["published"] + c["outboxed"] == len(reqs)
    assert c["outboxed"] >= 25 and c["flushed"] == c["outboxed"]
    assert c["dropped"] == 0 and c["pending"] == 0
    assert slowest < 1.0  # never waited for the broker past the deadline (+ slack for CI)


def test_unreachable_broker_at_start_does_not_hold_requests(app: Any, tmp_path: Path) -> None:
    server = NatsProcess(tmp_path / "nats")  # never started
    reqs = _requests(3, "nobroker")

    async def main() -> dict[str, Any]:
        broker = NatsBroker(get_settings(), servers=server.url)
        log = _log(app, broker, tmp_path)
        result = await app.decide_raw([r.model_dump() for r in reqs])
        t0 = time.perf_counter()
        await log.record(reqs, result, deadline=t0 + 0.05)
        assert time.perf_counter() - t0 < 0.5
        assert not await log.close(0.2)  # nothing could be flushed: kept in the spill
        return log.stats()

    c = asyncio.run(main())["counts"]
    assert (c["outboxed"], c["pending"], c["dropped"]) == (3, 3, 0)
    assert list((tmp_path / "outbox").glob("*.jsonl"))


def test_disabled_log_publishes_nothing(app: Any, tmp_path: Path) -> None:
    made: list[int] = []

    def factory() -> Any:
        made.append(1)
        raise AssertionError("no broker when disabled")

    from serving.decision_log import DecisionLog

    log = DecisionLog(DecisionLogConfig(), feature_names=[], broker_factory=factory)
    reqs = _requests(2, "off")
    result = asyncio.run(app.decide_raw([r.model_dump() for r in reqs]))
    asyncio.run(log.record(reqs, result, deadline=time.perf_counter() + 1))
    assert not made and log.stats()["counts"]["published"] == 0


# -- far-future transactions -----------------------------------------------------------------
def _tx(ts: dt.datetime, tx_id: str = "tx-future") -> dict[str, Any]:
    return {"tx_id": tx_id, "ts": ts.isoformat(), "customer_id": "c", "terminal_id": "t",
            "amount": 1.0}  # fmt: skip


def test_far_future_ts_is_refused_within_skew_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    now = dt.datetime.now(dt.UTC)
    TransactionRequest.model_validate(_tx(now + dt.timedelta(seconds=240)))
    with pytest.raises(ValidationError, match="in the future"):
        TransactionRequest.model_validate(_tx(now + dt.timedelta(seconds=360)))
    with pytest.raises(ValidationError, match=r"transactions\.1\.ts"):
        BatchRequest.model_validate(
            {"transactions": [_tx(now, "a"), _tx(now + dt.timedelta(days=1), "b")]}
        )
    monkeypatch.setenv("RISKML_STREAM_MAX_SKEW_S", "3600")
    get_settings.cache_clear()
    TransactionRequest.model_validate(_tx(now + dt.timedelta(seconds=1800)))


# -- through the real Serve app over HTTP -------------------------------------------------------
@pytest.mark.serve
@pytest.mark.integration
def test_served_app_logs_every_decision_across_a_broker_outage(
    serve_instance: Any, reference: dict[str, Any], tmp_path: Path
) -> None:
    """One Ingress replica with the decision log on: decisions answered while the broker is
    away; after it is back and the app is deleted (the replica drains its outbox at shutdown)
    the stream holds every decided transaction once, and the replica's counts said so."""
    import uuid

    import httpx
    from ray import serve

    from serving.local import app_config, deploy_config, wait_running

    name, prefix = "riskml-dlog", "/dlog"
    stream = f"riskml-test-{uuid.uuid4().hex[:12]}"
    ingress = {
        **INGRESS,
        "write_back": False,
        "decision_log": {"enabled": True, "publish_timeout_ms": 200, "outbox_max_events": 5},
        "decider": DECIDER,
    }
    txs = live_transactions(45, seed=9, prefix="served")
    txs, late = txs[:40], txs[40:]
    with nats_process(tmp_path / "nats") as server:
        config = app_config(
            model_args(reference, memory_source(reference)),
            name=name,
            route_prefix=prefix,
            user_configs={"Ingress": ingress},
            options={"Ingress": {"num_replicas": 1}},
        )
        config["runtime_env"] = {
            "env_vars": {
                "RISKML_NATS_URL": server.url,
                "RISKML_STREAM_NAME": stream,
                "RISKML_HOME": str(tmp_path / "home"),
            }
        }
        deploy_config({"applications": [config]})
        client = httpx.Client(base_url=serve_instance.url + prefix, timeout=30, trust_env=False)
        try:
            wait_running(name)

            def stats() -> dict[str, Any]:
                return client.get("/v1/decision-log").json()

            assert wait_for(lambda: stats()["connected"], timeout_s=30)
            for tx in txs[:10]:
                assert client.post("/v1/score", json=tx).status_code == 200
            r = client.post("/v1/score/batch", json={"transactions": txs[10:20]})
            assert r.status_code == 200
            assert stats()["counts"]["published"] == 20

            now = dt.datetime.now(dt.UTC)
            future = {**txs[20], "ts": (now + dt.timedelta(hours=1)).isoformat()}
            r = client.post("/v1/score", json=future)
            assert r.status_code == 422 and "in the future" in r.text
            r = client.post("/v1/score/batch", json={"transactions": [txs[21], future]})
            assert r.status_code == 422 and "in the future" in r.text
            assert r.json()["detail"][0]["loc"] == ["body", "transactions", 1, "ts"]
            soon = {**txs[20], "ts": (now + dt.timedelta(seconds=60)).isoformat()}
            assert client.post("/v1/score", json=soon).status_code == 200

            server.stop()
            for tx in txs[21:31]:
                t0 = time.perf_counter()
                r = client.post("/v1/score", json=tx)
                assert r.status_code == 200 and time.perf_counter() - t0 < 2.0
            r = client.post("/v1/score/batch", json={"transactions": txs[31:]})
            assert r.status_code == 200
            c = stats()["counts"]
            assert c["published"] + c["outboxed"] == len(txs) and c["outboxed"] >= 19
            assert c["spilled"] > 0 and c["dropped"] == 0
            server.start()
            assert wait_for(lambda: stats()["counts"]["pending"] == 0, timeout_s=30)
            c = stats()["counts"]
            assert c["flushed"] == c["outboxed"] and c["dropped"] == 0
            # away again; back just as the app is deleted: the shutdown drain flushes the rest
            server.stop()
            for tx in late:
                assert client.post("/v1/score", json=tx).status_code == 200
            assert stats()["counts"]["pending"] == len(late)
            server.start()
        finally:
            client.close()
            serve.delete(name)  # graceful: the replica drains its outbox

        async def stored() -> list[DecisionEvent]:
            broker = NatsBroker(get_settings(), servers=server.url, stream=stream)
            await broker.connect()
            try:
                assert await broker.stream_messages() == len(txs) + len(late)
                return await _stream_events(broker)
            finally:
                await broker.close()

        events = asyncio.run(stored())
    assert sorted(e.event_id for e in events) == sorted(t["tx_id"] for t in txs + late)
