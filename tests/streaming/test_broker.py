"""The broker interface on a real nats-server with JetStream (a private one per session)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from riskml.settings import get_settings
from riskml.streaming.broker import Broker, BrokerTimeout, BrokerUnavailable, NatsBroker
from riskml.streaming.events import LabelEvent, encode, subject_for
from tests.support.services import NatsProcess, free_port, nats_process

pytestmark = pytest.mark.integration


def _label(i: int) -> LabelEvent:
    import datetime as dt

    return LabelEvent.of(f"tx-{i}", "chargeback", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


async def _broker() -> NatsBroker:
    broker = NatsBroker(get_settings())
    await broker.connect()
    await broker.ensure_stream()
    return broker


def test_publish_is_acked_with_its_stream_sequence_and_read_back(nats_stream: str) -> None:
    async def main() -> None:
        broker = await _broker()
        assert isinstance(broker, Broker)
        try:
            events = [_label(i) for i in range(3)]
            seqs = [
                await broker.publish(
                    subject_for(e), encode(e), msg_id=e.event_id, headers={"k": "v"}, timeout=2
                )
                for e in events
            ]
            assert seqs == [1, 2, 3]
            consumer = await broker.pull(
                "reader", "riskml.events.label", ack_wait_s=5, max_deliver=3
            )
            assert await broker.pending("reader") == 3
            msgs = await consumer.fetch(10, timeout=1)
            assert [m.data for m in msgs] == [encode(e) for e in events]
            assert [m.stream_seq for m in msgs] == [1, 2, 3]
            first = msgs[0]
            assert first.subject == "riskml.events.label"
            assert first.headers["k"] == "v" and first.num_delivered == 1
            assert abs(first.published_at.timestamp() - time.time()) < 60
            await first.nak(0)  # redelivered
            for m in msgs[1:]:
                await m.ack()
            again = await consumer.fetch(10, timeout=1)
            assert [(m.stream_seq, m.num_delivered) for m in again] == [(1, 2)]
            await again[0].term()
            assert await consumer.fetch(10, timeout=0.3) == []
            assert await broker.pending("reader") == 0
        finally:
            await broker.close()

    asyncio.run(main())


def test_same_msg_id_is_stored_once(nats_stream: str) -> None:
    async def main() -> None:
        broker = await _broker()
        try:
            e = _label(1)
            first = await broker.publish(subject_for(e), encode(e), msg_id="m-1", timeout=2)
            second = await broker.publish(subject_for(e), encode(e), msg_id="m-1", timeout=2)
            other = await broker.publish(subject_for(e), encode(e), msg_id="m-2", timeout=2)
            assert first == second and other == first + 1
            assert await broker.stream_messages() == 2
        finally:
            await broker.close()

    asyncio.run(main())


def test_unreachable_broker_fails_fast_and_connects_when_it_comes_up(tmp_path: Path) -> None:
    server = NatsProcess(tmp_path)  # a port nobody listens on yet

    async def main() -> None:
        broker = NatsBroker(
            get_settings(), servers=server.url, stream="riskml-down", reconnect_wait_s=0.1
        )
        t = time.perf_counter()
        with pytest.raises(BrokerUnavailable, match="still trying"):
            await broker.connect(timeout=0.3)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("riskml.events.label", b"{}", msg_id="x", timeout=1)
        assert time.perf_counter() - t < 2
        await asyncio.to_thread(server.start)
        await broker.connect(timeout=10)  # the background connect got there
        await broker.ensure_stream()
        e = _label(7)
        assert await broker.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=2) == 1
        # the broker dies: a publish fails (unavailable or timeout), never hangs
        await asyncio.to_thread(server.stop)
        t = time.perf_counter()
        with pytest.raises((BrokerUnavailable, BrokerTimeout)):
            await broker.publish(subject_for(e), encode(e), msg_id="y", timeout=0.2)
        assert time.perf_counter() - t < 1
        await broker.close()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_token_auth_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with nats_process(tmp_path, token="s3cret-token") as server:
        monkeypatch.setenv("RISKML_NATS_URL", f"{server.url}, nats://127.0.0.1:{free_port()}")

        async def main(token: str) -> None:
            monkeypatch.setenv("RISKML_NATS_TOKEN", token)
            get_settings.cache_clear()
            broker = NatsBroker(get_settings(), stream="riskml-auth")
            assert len(broker.servers) == 2
            try:
                await broker.connect(timeout=3)
                await broker.ensure_stream()
            finally:
                await broker.close()

        asyncio.run(main("s3cret-token"))
        with pytest.raises(BrokerUnavailable):
            asyncio.run(main("wrong"))
