"""The outbox: bounds, spill, order, drain and adoption (a stand-in broker), and the broker going
away and coming back (a real nats-server)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pytest

from riskml.settings import get_settings
from riskml.streaming.broker import BrokerTimeout, BrokerUnavailable, NatsBroker
from riskml.streaming.events import LabelEvent, encode, subject_for
from riskml.streaming.outbox import Outbox, Pending
from tests.support.services import nats_process


class FakeBroker:
    """Stores what it acks; ``up`` False: unavailable; ``delay_s``: acks that late."""

    def __init__(self, up: bool = True, delay_s: float = 0.0) -> None:
        self.up, self.delay_s = up, delay_s
        self.stored: dict[str, bytes] = {}
        self.order: list[str] = []

    @property
    def connected(self) -> bool:
        return self.up

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> int:
        if not self.up:
            raise BrokerUnavailable("down")
        if self.delay_s > timeout:
            await asyncio.sleep(timeout)
            raise BrokerTimeout("late")
        await asyncio.sleep(self.delay_s)
        if msg_id not in self.stored:
            self.stored[msg_id] = data
            self.order.append(msg_id)
        return len(self.order)


def _outbox(broker: FakeBroker, spill: Path | None = None, **kw: object) -> Outbox:
    kw.setdefault("backoff_min_s", 0.01)
    kw.setdefault("backoff_max_s", 0.02)
    return Outbox(broker, spill_dir=spill, **kw)  # type: ignore[arg-type]


async def _until(cond: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def _balanced(c: dict[str, int]) -> bool:
    return c["outboxed"] + c["recovered"] == c["flushed"] + c["pending"] + c["dropped"]


def test_acked_events_are_published_directly() -> None:
    async def main() -> None:
        broker = FakeBroker()
        box = _outbox(broker)
        await box.start()
        assert all([await box.publish("s", b"x", msg_id=f"m{i}", timeout=1) for i in range(5)])
        assert box.counts() == {
            "published": 5, "outboxed": 0, "recovered": 0, "flushed": 0, "dropped": 0,
            "spilled": 0, "pending": 0,
        }  # fmt: skip
        assert await box.drain(1)

    asyncio.run(main())


def test_late_or_missing_broker_outboxes_then_flushes_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        broker = FakeBroker(delay_s=0.2)
        box = _outbox(broker, tmp_path / "outbox", max_events=3)
        await box.start()
        assert not await box.publish("s", b"0", msg_id="m0", timeout=0.01)  # late
        broker.up = False
        for i in range(1, 8):  # 3 in memory, the rest spilled
            assert not await box.publish("s", str(i).encode(), msg_id=f"m{i}", timeout=1)
        c = box.counts()
        assert (c["outboxed"], c["pending"], c["spilled"], c["dropped"]) == (8, 8, 5, 0)
        assert list((tmp_path / "outbox").glob("*.jsonl"))
        broker.up, broker.delay_s = True, 0.0
        # while the outbox is not empty, a new event queues behind the older ones
        assert not await box.publish("s", b"8", msg_id="m8", timeout=1)
        await _until(lambda: box.backlog == 0)
        assert broker.order == [f"m{i}" for i in range(9)]
        assert [broker.stored[f"m{i}"] for i in range(9)] == [str(i).encode() for i in range(9)]
        c = box.counts()
        assert (c["flushed"], c["pending"], c["dropped"]) == (9, 0, 0) and _balanced(c)
        assert await box.publish("s", b"9", msg_id="m9", timeout=1)  # empty again: direct
        assert await box.drain(1)
        assert not list((tmp_path / "outbox").glob("*.jsonl"))  # flushed segments deleted

    asyncio.run(main())


def test_drops_only_when_memory_and_spill_are_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        broker = FakeBroker(up=False)
        line = len(Pending("s", b"x" * 100, "m00").to_line())
        box = _outbox(broker, tmp_path, max_events=2, spill_max_bytes=3 * line, segment_events=2)
        for i in range(7):
            box.put(Pending("s", b"x" * 100, f"m{i:02d}"))
        c = box.counts()
        assert (c["outboxed"], c["pending"], c["spilled"], c["dropped"]) == (7, 5, 3, 2)
        assert _balanced(c)
        broker.up = True
        await box.start()
        await _until(lambda: box.backlog == 0)
        assert broker.order == [f"m{i:02d}" for i in range(5)]  # the newest were dropped

        memory_only = _outbox(FakeBroker(up=False), None, max_events=10, max_bytes=250)
        for i in range(3):
            memory_only.put(Pending("s", b"x" * 100, f"n{i}"))
        assert memory_only.counts()["dropped"] == 1

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    assert "OUTBOX FULL" in caplog.text


def test_cancelled_publish_is_outboxed() -> None:
    async def main() -> None:
        broker = FakeBroker(delay_s=0.5)
        box = _outbox(broker)
        task = asyncio.create_task(box.publish("s", b"x", msg_id="m1", timeout=1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert box.counts()["outboxed"] == 1
        broker.delay_s = 0
        assert await box.drain(2)
        assert broker.order == ["m1"]

    asyncio.run(main())


def test_drain_keeps_what_it_cannot_flush_for_the_next_outbox(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"

    async def first() -> dict[str, int]:
        box = _outbox(FakeBroker(up=False), folder, max_events=2, segment_events=2)
        await box.start()
        for i in range(5):
            await box.publish("s", str(i).encode(), msg_id=f"m{i}", timeout=1)
        assert not await box.drain(0.1)  # broker away: kept on disk
        return box.counts()

    async def second() -> tuple[FakeBroker, dict[str, int]]:
        broker = FakeBroker()
        box = _outbox(broker, folder)
        await box.start()
        await _until(lambda: box.backlog == 0)
        assert await box.drain(1)
        return broker, box.counts()

    c1 = asyncio.run(first())
    assert (c1["outboxed"], c1["pending"], c1["dropped"]) == (5, 5, 0)
    broker, c2 = asyncio.run(second())
    assert broker.order == [f"m{i}" for i in range(5)]
    assert broker.stored["m3"] == b"3"
    assert (c2["recovered"], c2["flushed"], c2["pending"]) == (5, 5, 0) and _balanced(c2)
    assert not list(folder.glob("*.jsonl")) and not list(folder.glob("*.lock"))


def test_a_live_outbox_spill_is_not_adopted(tmp_path: Path) -> None:
    async def main() -> None:
        alive = _outbox(FakeBroker(up=False), tmp_path, max_events=1)
        await alive.start()
        for i in range(3):
            alive.put(Pending("s", b"x", f"m{i}"))
        await asyncio.sleep(0.2)  # fsync'd
        other = _outbox(FakeBroker(), tmp_path)
        await other.start()
        assert other.counts()["recovered"] == 0
        await other.drain(0.1)
        await alive.drain(0.1)

    asyncio.run(main())


def test_torn_spill_line_is_counted_as_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        box = _outbox(FakeBroker(up=False), tmp_path, max_events=1)
        await box.start()
        for i in range(3):
            box.put(Pending("s", b"x", f"m{i}"))
        await box.drain(0.05)
        seg = max(tmp_path.glob("*.jsonl"))
        seg.write_bytes(seg.read_bytes()[:-5])  # a crash mid-write
        broker = FakeBroker()
        again = _outbox(broker, tmp_path)
        await again.start()
        await _until(lambda: again.backlog == 0)
        c = again.counts()
        assert c["dropped"] == 1 and len(broker.order) == 2 and _balanced(c)
        await again.drain(1)

    asyncio.run(main())


@pytest.mark.integration
def test_broker_stopped_then_restarted_every_event_stored_once(tmp_path: Path) -> None:
    """The real broker dies mid-stream and comes back: every event ends in the stream once."""
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    events = [LabelEvent.of(f"tx-{i}", "chargeback", t0) for i in range(60)]
    with nats_process(tmp_path / "nats") as server:

        async def main() -> dict[str, int]:
            broker = NatsBroker(get_settings(), servers=server.url, reconnect_wait_s=0.1)
            await broker.connect()
            await broker.ensure_stream()
            box = Outbox(broker, spill_dir=tmp_path / "outbox", max_events=10, backoff_max_s=0.2)
            await box.start()
            for e in events[:20]:
                assert await box.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=1)
            await asyncio.to_thread(server.stop)
            for e in events[20:50]:  # 10 in memory, 20 spilled
                await box.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=0.05)
            assert box.counts()["spilled"] == 20
            await asyncio.to_thread(server.start)
            for e in events[50:]:
                await box.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=1)
            assert await box.drain(15)
            assert await broker.stream_messages() == len(events)
            consumer = await broker.pull("check", "riskml.events.>", ack_wait_s=5, max_deliver=1)
            got: list[bytes] = []
            while batch := await consumer.fetch(100, timeout=0.5):
                got += [m.data for m in batch]
            assert got == [encode(e) for e in events]  # each once, in order
            await broker.close()
            return box.counts()

        c = asyncio.run(main())
    assert c["published"] + c["outboxed"] == len(events)
    assert c["outboxed"] >= 30 and c["flushed"] == c["outboxed"] and c["dropped"] == 0


def test_drain_does_not_wait_out_the_flusher_backoff() -> None:
    async def main() -> float:
        broker = FakeBroker(up=False)
        box = Outbox(broker, backoff_min_s=5.0, backoff_max_s=5.0)  # type: ignore[arg-type]
        await box.start()
        await box.publish("s", b"x", msg_id="m1", timeout=1)
        await asyncio.sleep(0.05)  # the flusher failed once and backs off for 5 s
        broker.up = True
        t = asyncio.get_running_loop().time()
        assert await box.drain(3)
        return asyncio.get_running_loop().time() - t

    assert asyncio.run(main()) < 1.0
