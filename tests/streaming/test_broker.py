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


def test_fetch_returns_what_is_there_at_once_and_waits_only_for_a_first_message(
    nats_stream: str,
) -> None:
    """A fetch takes up to ``batch`` of what is stored without waiting out its timeout; with
    nothing stored it waits for the first message (returned as soon as it comes) or the
    timeout; the end of an earlier, expired request never ends a later fetch early."""

    async def main() -> None:
        broker = await _broker()
        try:
            events = [_label(i) for i in range(5)]
            for e in events:
                await broker.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=2)
            consumer = await broker.pull("batcher", "riskml.events.>", ack_wait_s=30, max_deliver=3)
            t0 = time.perf_counter()
            first = await consumer.fetch(3, timeout=5)
            rest = await consumer.fetch(10, timeout=5)
            assert time.perf_counter() - t0 < 2  # neither waited for its timeout
            assert [m.stream_seq for m in first] == [1, 2, 3]
            assert [m.stream_seq for m in rest] == [4, 5]
            for m in [*first, *rest]:
                await m.ack()

            t0 = time.perf_counter()
            assert await consumer.fetch(10, timeout=0.3) == []
            assert 0.25 < time.perf_counter() - t0 < 2

            async def later() -> None:
                await asyncio.sleep(0.3)
                e = _label(99)
                await broker.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=2)

            task = asyncio.create_task(later())
            t0 = time.perf_counter()
            got = await consumer.fetch(10, timeout=5)
            waited = time.perf_counter() - t0
            await task
            assert [m.stream_seq for m in got] == [6] and 0.2 < waited < 3
            await got[0].ack()
            deadline = time.monotonic() + 5  # an ack is applied asynchronously by the server
            while await broker.pending("batcher") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await broker.pending("batcher") == 0
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


def test_stream_replicas_come_from_settings_and_an_update_never_lowers_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from riskml.streaming.broker import stream_replicas

    monkeypatch.setenv("RISKML_STREAM_REPLICAS", "3")
    get_settings.cache_clear()
    try:
        assert NatsBroker().stream_config().num_replicas == 3
    finally:
        monkeypatch.delenv("RISKML_STREAM_REPLICAS")
        get_settings.cache_clear()
    assert NatsBroker().stream_config().num_replicas == 1
    # a publisher left at the default must not shrink what the processor made 3
    assert stream_replicas(3, 1) == 3 and stream_replicas(1, 3) == 3
    assert stream_replicas(None, 1) == 1
    monkeypatch.setenv("RISKML_STREAM_REPLICAS", "9")
    get_settings.cache_clear()
    try:
        with pytest.raises(Exception, match="stream_replicas"):
            get_settings()
    finally:
        monkeypatch.delenv("RISKML_STREAM_REPLICAS")
        get_settings.cache_clear()


def test_a_live_stream_keeps_its_replicas_through_ensure_stream(nats_stream: str) -> None:
    async def main() -> None:
        broker = await _broker()
        try:
            await broker.ensure_stream()  # exists: updated, replicas kept (1 on one server)
            js = broker._jetstream()
            info = await js.stream_info(broker.stream)
            assert info.config.num_replicas == 1
        finally:
            await broker.close()

    asyncio.run(main())
