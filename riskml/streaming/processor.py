"""The stream processor: events from the broker folded into the online feature state.

One durable pull consumer (``riskml-processor``; any number of processes may share it, each
event goes to one of them) over ``riskml.events.>``. Per batch of messages:

1. decode each (:func:`riskml.streaming.events.decode`); what does not decode, or carries an
   event time more than ``stream_max_skew_s`` in the future, goes to ``riskml.dlq.<kind>``
   with the reason (header ``reason`` and the dead letter's ``reason`` field) and is
   terminated: the stream keeps flowing;
2. decisions and raw transactions fold into their customers' history state
   (:meth:`riskml.features.online.OnlineFeatures.fold_many`: the serving write-back's fold,
   idempotent by ``tx_id``, atomic per customer); a decision's ``write_back`` values (the
   ``terminal_risk`` serving saw) go with it;
3. labels fold into the terminal, device and customer risk
   (:class:`riskml.features.labels.LabelFold`),
   after the batch's transactions so a label finds a transaction of the same batch; a label
   whose transaction is not known yet is retried a few times (``nak`` with a delay), then
   dead-lettered;
4. every message is acked only after the writes returned (SQLite: committed; Redis: written).
   A crash before the ack redelivers the batch after ``ack_wait_s``; the folds are idempotent,
   so nothing is lost and nothing counts twice. An unreachable store: the batch is nak'ed with a
   delay (doubling per delivery, at most 60 s), the processor waits before fetching more, and
   an event still unfolded at its last delivery is dead-lettered (``retries_exhausted``); an
   event that fails alone (not the store) is dead-lettered (``fold_error``).

The next batch is fetched while one folds (on a worker thread); at a stop it goes back to the
stream unprocessed (``nak``).

Results per event (metric ``riskml_stream_events_total{kind,result}``): ``applied``,
``duplicate`` (folded before: a redelivery, a re-publish), ``late`` (older than the history's
retention, or a label of a transaction older than every risk window: never folded, acked),
``dead_letter``, ``retry``. Time is event time throughout; the folds do not depend on arrival
order (an out-of-order or late event inside the retention folds to the same state as in
order).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from riskml.streaming.events import (
    EVENTS,
    DeadLetter,
    DecisionEvent,
    EventError,
    LabelEvent,
    TransactionEvent,
    decode,
    dlq_subject,
    encode,
)

if TYPE_CHECKING:  # pragma: no cover
    from riskml.features.labels import LabelFold
    from riskml.features.online import OnlineFeatures
    from riskml.streaming.broker import Broker, Consumer, Message

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the processor's durable consumer
DURABLE = "riskml-processor"
AGE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86_400)
FOLD_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ProcessorConfig(BaseModel):
    """Knobs of :class:`StreamProcessor` (CLI options; defaults from the settings)."""

    model_config = ConfigDict(extra="forbid")

    durable: str = DURABLE
    subjects: str = f"{EVENTS}.>"
    batch: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="Messages fetched and folded at most at once (a fetch takes what is there: "
        "a large batch costs no latency when the stream is quiet, and folds each customer once "
        "per batch when it is not).",
    )
    fetch_timeout_s: float = Field(1.0, gt=0)
    ack_wait_s: float = Field(30.0, gt=0, description="Unacked messages come back after this.")
    max_deliver: int = Field(
        50, ge=2, description="Deliveries of an event before it is dead-lettered."
    )
    retry_delay_s: float = Field(
        2.0, ge=0, description="First redelivery delay of a nak'ed event (doubles, <= 60 s)."
    )
    refresh_every_s: float = Field(
        30.0, gt=0, description="How often to look for a new materialisation (label ledgers)."
    )
    unmatched_retries: int = Field(
        5, ge=1, description="Deliveries of a label whose transaction is unknown, then DLQ."
    )
    max_ack_pending: int | None = Field(
        20_000,
        ge=1,
        description="Delivered, unacked messages the durable allows, all replicas together "
        "(JetStream's default, 1,000, caps two replicas at batches of ~250 with the fetch "
        "ahead); None: the broker's default.",
    )
    max_skew_s: float = Field(300.0, gt=0)
    lateness_s: float = Field(3600.0, ge=0)
    lag_every_s: float = Field(5.0, gt=0, description="How often the consumer lag is read.")
    state_cache: int = Field(
        10_000,
        ge=0,
        description="Customers' histories kept in memory between batches (Redis; about 25 kB "
        "each): a batch reads only the others. Every write is still checked against the stored "
        "version, so a copy another writer made stale costs a read, never a lost event. 0: off.",
    )

    @classmethod
    def from_settings(cls, **overrides: Any) -> ProcessorConfig:
        from riskml.settings import get_settings

        s = get_settings()
        values = {"max_skew_s": s.stream_max_skew_s, "lateness_s": s.stream_lateness_s}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


class StreamMetrics:
    """Prometheus metrics of a stream consumer, in a registry of their own (:attr:`registry`;
    :meth:`serve` exposes it over HTTP)."""

    def __init__(self, consumer: str = DURABLE) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.consumer = consumer
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "riskml_stream_events",
            "Events processed, by kind and result (applied, duplicate, late, dead_letter, retry).",
            ("consumer", "kind", "result"),
            registry=r,
        )
        self.dead_letters = Counter(
            "riskml_stream_dead_letters",
            "Events sent to the dead-letter subject, by kind and reason.",
            ("consumer", "kind", "reason"),
            registry=r,
        )
        self.pending = Gauge(
            "riskml_stream_consumer_pending",
            "Consumer lag: messages not yet acked by the durable consumer.",
            ("consumer",),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "riskml_stream_batch_seconds",
            "Time to process a batch (stage fold_transactions, fold_labels, write, total).",
            ("consumer", "stage"),
            buckets=FOLD_BUCKETS_S,
            registry=r,
        )
        self.event_age = Histogram(
            "riskml_stream_event_age_seconds",
            "Freshness: from the event's time to its ack (how old the online state is).",
            ("consumer", "kind"),
            buckets=AGE_BUCKETS_S,
            registry=r,
        )
        self.stream_age = Histogram(
            "riskml_stream_delivery_age_seconds",
            "From the broker storing the event to its ack (time in the stream).",
            ("consumer",),
            buckets=AGE_BUCKETS_S,
            registry=r,
        )
        self.watermark = Gauge(
            "riskml_stream_last_event_timestamp_seconds",
            "Newest event time processed, by kind (Unix seconds).",
            ("consumer", "kind"),
            registry=r,
        )
        self.redeliveries = Counter(
            "riskml_stream_redeliveries",
            "Messages delivered more than once (after a crash, a nak, an ack timeout).",
            ("consumer",),
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``port`` (0: a free one); the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)

    def count(self, kind: str, result: str, n: int = 1) -> None:
        if n:
            self.events.labels(self.consumer, kind, result).inc(n)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (tests, the CLI summary); 0 when absent."""
        got = self.registry.get_sample_value(name, {"consumer": self.consumer, **labels})
        return float(got or 0.0)


@dataclass
class RunStats:
    """What a :meth:`StreamProcessor.run` did."""

    events: int = 0
    batches: int = 0
    results: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, result: str, n: int = 1) -> None:
        if n:
            self.results[result] = self.results.get(result, 0) + n

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class StreamProcessor:
    """The durable consumer that folds events into the online state (module docstring).

    ``online``: the feature store's :class:`OnlineFeatures` (its SQLite or Redis online
    store); ``broker``: connected, its stream ensured. Folds run on one worker thread (store
    calls block), so the event loop keeps the broker connection alive meanwhile."""

    def __init__(
        self,
        broker: Broker,
        online: OnlineFeatures,
        config: ProcessorConfig | None = None,
        *,
        metrics: StreamMetrics | None = None,
        labels: LabelFold | None = None,
    ) -> None:
        from riskml.features.labels import LabelFold

        self.broker = broker
        self.online = online
        self.config = config or ProcessorConfig.from_settings()
        self.metrics = metrics or StreamMetrics(self.config.durable)
        self.labels = labels or LabelFold(online, lateness_s=self.config.lateness_s)
        if hasattr(online, "cache_states"):
            online.cache_states(self.config.state_cache)
        self.stats = RunStats()
        self._stop = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="riskml-fold")
        self._last_lag = 0.0
        self._watermarks: dict[str, float] = {}
        self._last_refresh = 0.0
        #: seconds to wait before the next fetch (the store was unreachable), 0 when not
        self._backoff = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in hand, ack it, and return from :meth:`run` (SIGTERM)."""
        self._stop.set()

    async def run(self, *, max_events: int | None = None, until_idle: bool = False) -> RunStats:
        """Fetch and process batches until :meth:`stop`, ``max_events`` processed, or (with
        ``until_idle``) the consumer has nothing pending."""
        cfg = self.config
        consumer = await self.broker.pull(
            cfg.durable,
            cfg.subjects,
            ack_wait_s=cfg.ack_wait_s,
            max_deliver=cfg.max_deliver,
            max_ack_pending=cfg.max_ack_pending,
        )
        start = time.perf_counter()
        await self._refresh()
        ahead: asyncio.Task[list[Message]] | None = None
        try:
            while not self._stop.is_set():
                left = None if max_events is None else max_events - self.stats.events
                if left is not None and left <= 0:
                    break
                if ahead is None:
                    want = cfg.batch if left is None else max(1, min(cfg.batch, left))
                    msgs = await fetch(consumer, want, cfg.fetch_timeout_s)
                else:
                    msgs, ahead = await ahead, None
                if msgs:
                    # the next batch comes in while this one folds (on the worker thread)
                    more = None if left is None else left - len(msgs)
                    if more is None or more > 0:
                        want = cfg.batch if more is None else min(cfg.batch, more)
                        ahead = asyncio.create_task(fetch(consumer, want, cfg.fetch_timeout_s))
                    await self.process(msgs)
                await self._maybe_lag(force=not msgs)
                if not msgs and until_idle and await self._pending() == 0:
                    break
                if time.monotonic() - self._last_refresh >= cfg.refresh_every_s:
                    await self._refresh()
                if self._backoff:  # the store was unreachable: wait before fetching more
                    await asyncio.sleep(self._backoff)
        finally:
            if ahead is not None:  # fetched, never processed: back to the stream at once
                with contextlib.suppress(Exception):
                    await asyncio.gather(*(m.nak(0) for m in await ahead))
            self.stats.seconds = time.perf_counter() - start
        return self.stats

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def _refresh(self) -> None:
        """Re-apply the label ledgers after a materialisation replaced the rows."""
        self._last_refresh = time.monotonic()
        try:
            count = await self._call(self.labels.refresh_if_materialized)
        except Exception as exc:  # retried at the next interval
            log.warning("label ledgers not refreshed: %s: %s", type(exc).__name__, exc)
            return
        if count:
            log.info("a materialisation: re-applied the labels of %d entities", count)

    def _delay(self, msg: Message) -> float:
        """Redelivery delay: doubling with each delivery, at most 60 s."""
        return float(min(self.config.retry_delay_s * 2 ** (msg.num_delivered - 1), 60.0))

    async def _pending(self) -> int:
        pending = await self.broker.pending(self.config.durable)
        self.metrics.pending.labels(self.config.durable).set(pending)
        return pending

    async def _maybe_lag(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_lag >= self.config.lag_every_s:
            self._last_lag = now
            with contextlib.suppress(Exception):
                await self._pending()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- one batch ---------------------------------------------------------------------------
    async def process(self, msgs: Sequence[Message]) -> None:
        """Decode, check, fold and ack (or dead-letter / nak) one batch of messages."""
        t0 = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        limit = now + dt.timedelta(seconds=self.config.max_skew_s)
        txs: list[tuple[Message, DecisionEvent | TransactionEvent]] = []
        labels: list[tuple[Message, LabelEvent]] = []
        for msg in msgs:
            if msg.num_delivered > 1:
                self.metrics.redeliveries.labels(self.config.durable).inc()
            try:
                event = decode(msg.subject, msg.data)
            except EventError as exc:
                await self._dead_letter(msg, "invalid_event", str(exc))
                continue
            if isinstance(event, DeadLetter):  # not on our subjects; never fold one
                await self._dead_letter(msg, "unexpected_kind", "a dead letter on an event subject")
                continue
            if event.event_ts > limit:
                await self._dead_letter(
                    msg,
                    "future_event",
                    f"event time {event.event_ts.isoformat()} is more than "
                    f"{self.config.max_skew_s:g}s after {now.isoformat()}",
                    event,
                )
                continue
            if isinstance(event, LabelEvent):
                labels.append((msg, event))
            else:
                txs.append((msg, event))
        done: list[tuple[Message, Any, str]] = []
        if txs:
            t1 = time.perf_counter()
            done += await self._fold(txs, self._fold_transactions)
            self.metrics.batch_seconds.labels(self.config.durable, "fold_transactions").observe(
                time.perf_counter() - t1
            )
        if labels:
            t1 = time.perf_counter()
            done += await self._fold(labels, self._fold_labels)
            self.metrics.batch_seconds.labels(self.config.durable, "fold_labels").observe(
                time.perf_counter() - t1
            )
        await self._settle(done)
        self.stats.batches += 1
        self.metrics.batch_seconds.labels(self.config.durable, "total").observe(
            time.perf_counter() - t0
        )

    def _fold_transactions(self, events: Sequence[DecisionEvent | TransactionEvent]) -> list[str]:
        txs = []
        for event in events:
            tx: dict[str, Any] = event.transaction.model_dump()
            if isinstance(event, DecisionEvent) and "terminal_risk" in event.write_back:
                tx["terminal_risk"] = event.write_back["terminal_risk"]
            txs.append(tx)
        outcomes = self.online.fold_many(txs)
        # the processor's skew check ran first; the fold's own (same limit) says "future"
        return ["dead_letter" if o == "future" else o for o in outcomes]

    def _fold_labels(self, events: Sequence[LabelEvent]) -> list[str]:
        from riskml.features.labels import label_of

        return self.labels.fold_many([label_of(e) for e in events])

    async def _fold(
        self, items: Sequence[tuple[Message, Any]], fold: Callable[[Sequence[Any]], list[str]]
    ) -> list[tuple[Message, Any, str]]:
        """Fold the batch's events of one kind; on an error other than an unreachable store,
        each event alone (the one that fails is dead-lettered, the others fold)."""
        from riskml.features.errors import FeatureStoreUnavailable

        events = [event for _msg, event in items]
        try:
            outcomes = await self._call(fold, events)
            return [(m, e, o) for (m, e), o in zip(items, outcomes, strict=True)]
        except FeatureStoreUnavailable as exc:
            log.warning("online store unavailable (%s): %d events back later", exc, len(items))
            return [(m, e, "retry") for m, e in items]
        except Exception as exc:
            if len(items) == 1:
                return [(items[0][0], items[0][1], f"error:{type(exc).__name__}: {exc}")]
            log.warning("fold of %d events failed (%s); folding one by one", len(items), exc)
        out = []
        for item in items:
            out += await self._fold([item], fold)
        return out

    async def _settle(self, done: Sequence[tuple[Message, Any, str]]) -> None:
        """Ack what was folded (its writes returned), nak what should come back, dead-letter
        what cannot be folded."""
        now = dt.datetime.now(dt.UTC)
        now_s = now.timestamp()
        acks: list[Message] = []
        newest: dict[str, float] = {}
        counts: dict[tuple[str, str], int] = {}
        ages: dict[str, list[float]] = {}
        stream_ages: list[float] = []
        retried = False
        for msg, event, outcome in done:
            kind = event.kind
            if outcome == "retry":
                retried = True
                if msg.num_delivered >= self.config.max_deliver - 1:
                    await self._dead_letter(
                        msg, "retries_exhausted", "the online store stayed unreachable", event
                    )
                    continue
                await msg.nak(self._delay(msg))
                self._count(kind, "retry")
                continue
            if outcome == "unmatched":
                if msg.num_delivered < self.config.unmatched_retries:
                    await msg.nak(self._delay(msg))
                    self._count(kind, "retry")
                else:
                    await self._dead_letter(
                        msg, "unmatched_label", f"transaction {event.tx_id} not known", event
                    )
                continue
            if outcome.startswith("error:"):
                await self._dead_letter(msg, "fold_error", outcome[6:], event)
                continue
            if outcome == "dead_letter":
                await self._dead_letter(msg, "future_event", "ahead of the clock", event)
                continue
            acks.append(msg)
            counts[kind, outcome] = counts.get((kind, outcome), 0) + 1
            ts = event.event_ts.timestamp()
            ages.setdefault(kind, []).append(max(now_s - ts, 0.0))
            newest[kind] = max(newest.get(kind, 0.0), ts)
            stream_ages.append(max(now_s - msg.published_at.timestamp(), 0.0))
        # the counters and histograms once per kind and result, not per event
        for (kind, result), n in counts.items():
            self.metrics.count(kind, result, n)
            self.stats.events += n
            self.stats.add(result, n)
        for kind, values in ages.items():
            observe = self.metrics.event_age.labels(self.config.durable, kind).observe
            for value in values:
                observe(value)
        observe = self.metrics.stream_age.labels(self.config.durable).observe
        for value in stream_ages:
            observe(value)
        for kind, ts in newest.items():
            if ts > self._watermarks.get(kind, 0.0):
                self._watermarks[kind] = ts
                self.metrics.watermark.labels(self.config.durable, kind).set(ts)
        # one after another: each is a publish into the client's buffer (no round trip), and a
        # task per message (gather) cost more than the publish itself
        for msg in acks:
            await msg.ack()
        self._backoff = (
            min(max(self._backoff * 2, self.config.retry_delay_s), 30.0) if retried else 0.0
        )

    def _count(self, kind: str, result: str) -> None:
        self.metrics.count(kind, result)
        self.stats.events += 1
        self.stats.add(result)

    async def _dead_letter(
        self, msg: Message, reason: str, detail: str, event: Any | None = None
    ) -> None:
        """Publish the message to ``riskml.dlq.<kind>`` with the reason, then terminate it;
        when the dead letter cannot be published, nak (it comes back)."""
        kind = event.kind if event is not None else _kind(msg.subject)
        if not await publish_dead_letter(self.broker, msg, self.config.durable, reason, detail):
            await msg.nak(self._delay(msg))
            self._count(kind, "retry")
            return
        log.warning("dead-lettered seq %d (%s): %s", msg.stream_seq, reason, detail[:200])
        self.metrics.dead_letters.labels(self.config.durable, kind, reason).inc()
        self._count(kind, "dead_letter")


async def fetch(consumer: Consumer, batch: int, timeout: float) -> list[Message]:
    """``consumer.fetch``, with nats-py's bare ``asyncio.TimeoutError`` (raised when the
    deadline passes before its second pull request; ``NatsConsumer.fetch`` only catches
    ``nats.errors.TimeoutError``) read as "no messages"."""
    try:
        return await consumer.fetch(batch, timeout=timeout)
    except TimeoutError:
        return []


async def publish_dead_letter(
    broker: Broker, msg: Message, durable: str, reason: str, detail: str
) -> bool:
    """Publish ``msg`` to ``riskml.dlq.<kind>`` with the reason (consumer ``durable``), then
    terminate it; False (nothing terminated: the caller naks) when it cannot be published."""
    letter = DeadLetter.of(
        msg.subject,
        msg.data,
        reason,
        detail=detail,
        consumer=durable,
        stream_seq=msg.stream_seq,
        num_delivered=msg.num_delivered,
        original_id=f"{durable}:seq-{msg.stream_seq}",
    )
    try:
        await broker.publish(
            dlq_subject(msg.subject),
            encode(letter),
            msg_id=letter.event_id,
            headers={"reason": reason, "consumer": durable},
            timeout=5.0,
        )
    except Exception as exc:
        log.warning("dead letter of seq %d not published (%s): nak", msg.stream_seq, exc)
        return False
    await msg.term()
    return True


@contextlib.asynccontextmanager
async def connected(broker: Broker | None) -> AsyncIterator[Broker]:
    """``broker`` (``NatsBroker`` from the settings when None) connected, its stream ensured;
    closed on the way out when this made it."""
    from riskml.streaming.broker import NatsBroker

    own = broker is None
    broker = broker or NatsBroker()
    await broker.connect(timeout=30)
    await broker.ensure_stream()
    try:
        yield broker
    finally:
        if own:
            await broker.close()


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (where the loop supports signal handlers) inside."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _kind(subject: str) -> str:
    prefix = EVENTS + "."
    rest = subject[len(prefix) :] if subject.startswith(prefix) else ""
    return rest if rest in ("decision", "transaction", "label") else "unknown"


async def run_processor(
    online: OnlineFeatures,
    config: ProcessorConfig,
    *,
    metrics_port: int | None = None,
    max_events: int | None = None,
    until_idle: bool = False,
    broker: Broker | None = None,
    on_start: Callable[[StreamProcessor], None] | None = None,
) -> RunStats:
    """Connect (``NatsBroker`` from the settings unless given), ensure the stream, serve the
    metrics, install SIGTERM/SIGINT handlers (finish the batch, ack, return) and run."""
    async with connected(broker) as conn:
        processor = StreamProcessor(conn, online, config)
        if metrics_port is not None:
            port = processor.metrics.serve(metrics_port)
            log.info("metrics on :%d/metrics", port)
        with stop_on_signals(processor.stop):
            if on_start is not None:
                on_start(processor)
            try:
                return await processor.run(max_events=max_events, until_idle=until_idle)
            finally:
                processor.close()
