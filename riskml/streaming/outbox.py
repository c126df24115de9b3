"""A bounded local outbox for events the broker did not ack in time.

:meth:`Outbox.publish` tries the broker within the caller's time budget; what the broker does not
ack (down, slow, the caller cancelled) goes to the outbox, and a background flusher republishes
it, oldest first, with backoff while the broker stays away. Every event keeps its ``msg_id``, so
a publish that did reach the broker before its ack was lost is stored once (the broker's
duplicate window), and consumers are idempotent by event id beyond it.

Where the outbox keeps events, oldest first::

    memory    up to max_events / max_bytes
    spill     append-only JSON-lines segments under <dir> (fsync'd every fsync_interval_s),
              up to spill_max_bytes; once anything is spilled, newer events spill too (order)
    dropped   only when both bounds are full: counted and logged at ERROR

Counts (:meth:`Outbox.counts`): ``published`` (acked on the first try), ``outboxed`` (put in the
outbox), ``recovered`` (adopted from a dead outbox's spill), ``flushed`` (republished from the
outbox), ``dropped``, ``pending`` (still in it). ``outboxed + recovered == flushed + pending +
dropped`` always; nothing decided is lost while ``dropped == 0``.

:meth:`Outbox.drain` at shutdown flushes what it can within its timeout and writes what is left
to the spill; an outbox started later on the same folder adopts spill segments whose owner is
gone (each outbox holds an ``flock`` on ``<owner>.lock`` while it lives).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from riskml.streaming.broker import Broker, BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """One event waiting to be published."""

    subject: str
    data: bytes
    msg_id: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.subject) + len(self.msg_id)

    def to_line(self) -> bytes:
        try:
            payload: dict[str, Any] = {"s": self.subject, "i": self.msg_id, "d": self.data.decode()}
        except UnicodeDecodeError:
            payload = {
                "s": self.subject,
                "i": self.msg_id,
                "b": base64.b64encode(self.data).decode(),
            }
        return json.dumps(payload, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Pending:
        obj = json.loads(line)
        data = obj["d"].encode() if "d" in obj else base64.b64decode(obj["b"])
        return cls(str(obj["s"]), data, str(obj["i"]))


@dataclass
class _Segment:
    path: Path
    events: int = 0
    size: int = 0


class Outbox:
    """Publish through ``broker``, falling back to a bounded outbox (see the module docstring).

    ``spill_dir`` None: memory only. Call :meth:`start` in the event loop that publishes (it
    starts the flusher and the fsync timer, and adopts orphaned spill segments); :meth:`drain`
    at shutdown."""

    def __init__(
        self,
        broker: Broker,
        *,
        spill_dir: Path | None = None,
        max_events: int = 10_000,
        max_bytes: int = 64 << 20,
        spill_max_bytes: int = 1 << 30,
        segment_events: int = 1_000,
        flush_timeout_s: float = 2.0,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 5.0,
        fsync_interval_s: float = 0.1,
        owner: str | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1 or spill_max_bytes < 0 or segment_events < 1:
            raise ValueError("outbox bounds must be positive")
        self.broker = broker
        self.spill_dir = spill_dir
        self.max_events, self.max_bytes = max_events, max_bytes
        self.spill_max_bytes, self.segment_events = spill_max_bytes, segment_events
        self.flush_timeout_s = flush_timeout_s
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.fsync_interval_s = fsync_interval_s
        self.owner = _safe(owner or "outbox") + "-" + uuid.uuid4().hex[:8]
        self._mem: collections.deque[Pending] = collections.deque()
        self._mem_bytes = 0
        self._reading: collections.deque[Pending] = collections.deque()  # a loaded segment
        self._reading_seg: _Segment | None = None
        self._segments: collections.deque[_Segment] = collections.deque()  # closed, unread
        self._writing: _Segment | None = None
        self._fh: IO[bytes] | None = None
        self._dirty = False
        self._lock_fh: IO[bytes] | None = None
        self._counts = dict.fromkeys(
            ("published", "outboxed", "recovered", "flushed", "dropped", "spilled"), 0
        )
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()  # cuts the flusher's backoff short
        self._tasks: list[asyncio.Task[None]] = []
        self._last_drop_log = 0.0
        self._closed = False

    # -- the API ---------------------------------------------------------------------------
    async def publish(self, subject: str, data: bytes, *, msg_id: str, timeout: float) -> bool:
        """Publish within ``timeout`` s: True when the broker acked it, False when it went to
        the outbox (broker unavailable or late, outbox not empty, or the caller cancelled).
        Never raises a broker error."""
        item = Pending(subject, data, msg_id)
        if self.backlog or timeout <= 0 or not self.broker.connected or self._closed:
            self.put(item)  # behind the older ones: keep the order
            return False
        try:
            await self.broker.publish(subject, data, msg_id=msg_id, timeout=timeout)
        except asyncio.CancelledError:
            self.put(item)
            raise
        except BrokerError as exc:
            log.debug("publish %s went to the outbox: %s", msg_id, exc)
            self.put(item)
            return False
        except Exception:
            log.exception("unexpected error publishing %s; outboxed", msg_id)
            self.put(item)
            return False
        self._counts["published"] += 1
        return True

    def put(self, item: Pending) -> None:
        """Queue ``item`` (memory, else spill, else drop) and wake the flusher."""
        self._counts["outboxed"] += 1
        self._store(item)
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Events waiting in the outbox (memory + spill)."""
        spilled = sum(s.events for s in self._segments)
        spilled += self._writing.events if self._writing else 0
        return len(self._mem) + len(self._reading) + spilled

    def counts(self) -> dict[str, int]:
        """published, outboxed, recovered, flushed, dropped, spilled (events ever written to
        the spill) and pending (:attr:`backlog`)."""
        return {**self._counts, "pending": self.backlog}

    async def start(self) -> None:
        """Adopt orphaned spill segments, start the flusher (and the fsync timer)."""
        if self._tasks:
            return
        if self.spill_dir is not None:
            await asyncio.to_thread(self._lock_and_adopt)
        self._tasks.append(asyncio.create_task(self._flusher(), name="outbox-flusher"))
        if self.spill_dir is not None:
            self._tasks.append(asyncio.create_task(self._syncer(), name="outbox-fsync"))
        if self.backlog:
            self._wake.set()

    async def drain(self, timeout: float) -> bool:
        """At shutdown: flush for up to ``timeout`` s, then stop; what is left is written to
        the spill (with ``spill_dir``) for an outbox started later to adopt. True when nothing
        was left."""
        deadline = time.monotonic() + timeout
        if not self._tasks and self.backlog:
            await self.start()
        self._wake.set()
        self._draining.set()
        while self.backlog and time.monotonic() < deadline:
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        self._closed = True
        for task in self._tasks:
            await _stop(task)
        self._tasks.clear()
        left = self.backlog
        if left and self.spill_dir is not None:
            await asyncio.to_thread(self._persist_memory)
        await asyncio.to_thread(self._close_files)
        if left:
            where = f"kept in {self.spill_dir}" if self.spill_dir else "LOST (no spill_dir)"
            log.error("outbox drain: %d events not flushed in %.1fs: %s", left, timeout, where)
        return left == 0

    # -- storing ---------------------------------------------------------------------------
    def _spilling(self) -> bool:
        return bool(self._reading or self._segments or self._writing)

    def _store(self, item: Pending) -> None:
        if not self._spilling() and self._mem_fits(item):
            self._mem.append(item)
            self._mem_bytes += item.size
            return
        if self.spill_dir is not None and self._spill(item):
            return
        self._counts["dropped"] += 1
        now = time.monotonic()
        if now - self._last_drop_log > 5:
            self._last_drop_log = now
            log.error(
                "OUTBOX FULL: dropped event %s (%d dropped so far; memory %d events/%d bytes, "
                "spill %s bytes): the broker has been away too long",
                item.msg_id,
                self._counts["dropped"],
                len(self._mem),
                self._mem_bytes,
                self._spill_bytes(),
            )

    def _mem_fits(self, item: Pending) -> bool:
        return len(self._mem) < self.max_events and self._mem_bytes + item.size <= self.max_bytes

    def _spill_bytes(self) -> int:
        total = sum(s.size for s in self._segments)
        total += self._writing.size if self._writing else 0
        return total + (self._reading_seg.size if self._reading_seg else 0)

    def _spill(self, item: Pending) -> bool:
        line = item.to_line()
        if self._spill_bytes() + len(line) > self.spill_max_bytes:
            return False
        try:
            if self._writing is None or self._writing.events >= self.segment_events:
                self._rotate()
            assert self._fh is not None and self._writing is not None
            self._fh.write(line)
        except OSError as exc:
            log.error("outbox spill write failed: %s", exc)
            return False
        self._writing.events += 1
        self._writing.size += len(line)
        self._counts["spilled"] += 1
        self._dirty = True
        return True

    def _rotate(self) -> None:
        """Close the segment being written (it joins the unread ones) and open a new one."""
        assert self.spill_dir is not None
        self._close_writing()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"{time.time_ns():020d}-{self.owner}.jsonl"
        self._fh = path.open("ab")
        self._writing = _Segment(path)

    def _close_writing(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh, self._dirty = None, False
        if self._writing is not None:
            if self._writing.events:
                self._segments.append(self._writing)
            else:
                self._writing.path.unlink(missing_ok=True)
            self._writing = None

    def _persist_memory(self) -> None:
        """Move what is in memory (and a half-flushed loaded segment) to a spill segment, oldest
        first, so it outlives this process. Ignores the spill bound (nothing is dropped here)."""
        items = list(self._mem)
        self._mem.clear()
        self._mem_bytes = 0
        if not items:
            return
        assert self.spill_dir is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        # named before every existing segment of ours: it is older than all of them
        first = min((s.path.name for s in self._all_segments()), default=None)
        stamp = int(first.split("-", 1)[0]) - 1 if first else time.time_ns()
        path = self.spill_dir / f"{stamp:020d}-{self.owner}.jsonl"
        with path.open("ab") as fh:
            for item in items:
                fh.write(item.to_line())
            fh.flush()
            os.fsync(fh.fileno())
        self._segments.appendleft(_Segment(path, len(items), path.stat().st_size))

    def _all_segments(self) -> list[_Segment]:
        segs = list(self._segments)
        if self._writing:
            segs.append(self._writing)
        if self._reading_seg:
            segs.append(self._reading_seg)
        return segs

    def _close_files(self) -> None:
        self._close_writing()
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                lock_path = Path(self._lock_fh.name)
                if not self.backlog:
                    lock_path.unlink(missing_ok=True)
                self._lock_fh.close()
            self._lock_fh = None

    # -- adopting a dead outbox's spill --------------------------------------------------------
    def _lock_and_adopt(self) -> None:
        assert self.spill_dir is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = (self.spill_dir / f"{self.owner}.lock").open("ab")
        fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        adopted: list[_Segment] = []
        for lock in sorted(self.spill_dir.glob("*.lock")):
            owner = lock.name[: -len(".lock")]
            if owner == self.owner:
                continue
            with lock.open("ab") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # alive
                for seg in sorted(self.spill_dir.glob(f"*-{owner}.jsonl")):
                    mine = seg.with_name(seg.name[: -len(f"{owner}.jsonl")] + f"{self.owner}.jsonl")
                    seg.rename(mine)
                    events = sum(1 for line in mine.read_bytes().splitlines() if line.strip())
                    adopted.append(_Segment(mine, events, mine.stat().st_size))
                lock.unlink(missing_ok=True)
        if adopted:
            adopted.sort(key=lambda s: s.path.name)
            n = sum(s.events for s in adopted)
            self._counts["recovered"] += n
            # older than anything of ours
            self._segments.extendleft(reversed(adopted))
            log.warning("outbox adopted %d unflushed events from %s", n, self.spill_dir)

    # -- flushing --------------------------------------------------------------------------
    def _next(self) -> Pending | None:
        if self._mem:
            return self._mem[0]
        if not self._reading:
            self._load_segment()
        return self._reading[0] if self._reading else None

    def _load_segment(self) -> None:
        """Done with the loaded segment (delete it); load the next one, oldest first."""
        if self._reading_seg is not None:
            self._reading_seg.path.unlink(missing_ok=True)
            self._reading_seg = None
        if not self._segments and self._writing is not None:
            self._close_writing()
        if not self._segments:
            return
        seg = self._segments.popleft()
        items = []
        for line in seg.path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                items.append(Pending.from_line(line))
            except (ValueError, KeyError) as exc:  # a torn last line after a crash
                log.error("outbox: unreadable line in %s skipped: %s", seg.path, exc)
                self._counts["dropped"] += 1
        self._reading = collections.deque(items)
        self._reading_seg = seg

    def _pop(self, item: Pending) -> None:
        if self._mem and self._mem[0] is item:
            self._mem.popleft()
            self._mem_bytes -= item.size
        elif self._reading and self._reading[0] is item:
            self._reading.popleft()
            if not self._reading:
                self._load_segment()

    async def _flusher(self) -> None:
        backoff = self.backoff_min_s
        while True:
            item = self._next()
            if item is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if not self.broker.connected:
                    raise BrokerError("not connected")
                await self.broker.publish(
                    item.subject, item.data, msg_id=item.msg_id, timeout=self.flush_timeout_s
                )
            except BrokerError as exc:
                log.debug(
                    "outbox flush of %s failed (retry in %.2fs): %s", item.msg_id, backoff, exc
                )
                backoff = await self._backoff(backoff)
                continue
            except Exception:
                log.exception("outbox flush of %s failed unexpectedly", item.msg_id)
                backoff = await self._backoff(backoff)
                continue
            backoff = self.backoff_min_s
            self._pop(item)
            self._counts["flushed"] += 1

    async def _backoff(self, wait_s: float) -> float:
        """Sleep ``wait_s`` (at most 0.1 s once draining); the next wait."""
        if self._draining.is_set():
            await asyncio.sleep(min(wait_s, 0.1))
            return min(wait_s * 2, 0.1)
        # not asyncio.wait_for: in Python 3.11 it can swallow a cancellation that lands as the
        # event is set (drain sets it, then cancels this task)
        waiter = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({waiter}, timeout=wait_s)
        finally:
            waiter.cancel()
        return min(wait_s * 2, self.backoff_max_s)

    async def _syncer(self) -> None:
        """fsync the segment being written, in batches (every ``fsync_interval_s``)."""
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            fh = self._fh
            if fh is None or not self._dirty:
                continue
            self._dirty = False
            fh.flush()
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(os.fsync, fh.fileno())


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it is done (cancelling again if a cancellation was lost
    inside a library: give up after ~5 s, loudly)."""
    for _ in range(100):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.done():  # pragma: no cover
        log.error("outbox task %s did not stop", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("outbox task %s failed: %r", task.get_name(), task.exception())


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in text)[:64]
