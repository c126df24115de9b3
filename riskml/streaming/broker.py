"""The broker: a small async interface over a durable, ordered event log, and its NATS JetStream
implementation.

The interface (:class:`Broker`, :class:`Consumer`, :class:`Message`) speaks of subjects, byte
payloads, message ids, durable consumers and acks: nothing in it is NATS-specific, so a Kafka
implementation can sit beside :class:`NatsBroker` (subject -> topic, ``msg_id`` -> idempotent
producer key, durable -> consumer group, ``stream_seq`` -> offset, ``nak``/``term`` -> retry /
dead-letter in the consumer).

Usage (producer)::

    broker = NatsBroker(get_settings())
    await broker.connect()
    await broker.ensure_stream()
    seq = await broker.publish(subject_for(ev), encode(ev), msg_id=ev.event_id, timeout=0.02)

Usage (consumer)::

    consumer = await broker.pull("fold-online", "riskml.events.>", ack_wait_s=30, max_deliver=5)
    for msg in await consumer.fetch(100, timeout=1.0):
        ...
        await msg.ack()          # or: await msg.nak(delay=5); await msg.term()

Errors: :class:`BrokerUnavailable` (not connected, connection lost, no stream for the subject)
and :class:`BrokerTimeout` (no ack within ``timeout``: the message may or may not be stored;
re-publish with the same ``msg_id`` and the broker keeps one copy within its duplicate window).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from riskml.streaming.events import STREAM_SUBJECTS

if TYPE_CHECKING:  # pragma: no cover
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from riskml.settings import Settings

log = logging.getLogger(__name__)

#: Default broker-side de-duplication window (by ``msg_id``), seconds.
DUPLICATE_WINDOW_S = 120.0


class BrokerError(RuntimeError):
    """The broker refused or failed an operation (bad request, server error)."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached now (never connected, connection lost, no stream)."""


class BrokerTimeout(BrokerError):
    """No answer within the timeout. A publish may still have been stored."""


@runtime_checkable
class Message(Protocol):
    """One delivered message of a durable consumer."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    num_delivered: int  # 1 on the first delivery, more on redeliveries
    stream_seq: int  # position in the stream (monotonic, gaps allowed)
    published_at: dt.datetime  # when the broker stored it (UTC)

    async def ack(self) -> None:
        """Processed: never deliver it again to this consumer."""
        ...

    async def nak(self, delay: float | None = None) -> None:
        """Not processed: deliver it again (after ``delay`` seconds)."""
        ...

    async def term(self) -> None:
        """Never deliver it again, not processed (dead-letter it first)."""
        ...


@runtime_checkable
class Consumer(Protocol):
    """A durable pull consumer: its position survives restarts, unacked messages come back
    after ``ack_wait_s``, at most ``max_deliver`` times."""

    durable: str

    async def fetch(self, batch: int, timeout: float) -> list[Message]:
        """Up to ``batch`` messages, waiting at most ``timeout`` s; ``[]`` when none came."""
        ...


@runtime_checkable
class Broker(Protocol):
    async def connect(self, timeout: float | None = None) -> None:
        """Connect; keep reconnecting in the background for as long as it lives. Raises
        :class:`BrokerUnavailable` when not connected within ``timeout`` (default: the
        broker's connect timeout), but goes on trying: a later :meth:`publish` works once
        the broker is up."""
        ...

    async def close(self) -> None:
        """Flush what was sent and disconnect; idempotent."""
        ...

    @property
    def connected(self) -> bool:
        """Whether a publish could be attempted now."""
        ...

    async def ensure_stream(self) -> None:
        """Create the stream over the event and dead-letter subjects, or update its limits."""
        ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> int:
        """Store ``data`` on ``subject`` and wait up to ``timeout`` s for the broker's ack;
        the stream sequence. A second publish with the same ``msg_id`` within the duplicate
        window stores nothing and returns the first one's sequence. Raises
        :class:`BrokerTimeout`, :class:`BrokerUnavailable` (at once when not connected)."""
        ...

    async def pull(
        self,
        durable: str,
        subject_filter: str,
        *,
        ack_wait_s: float,
        max_deliver: int,
        max_ack_pending: int | None = None,
        new_only: bool = False,
    ) -> Consumer:
        """The durable pull consumer ``durable`` over ``subject_filter`` (created if absent,
        its ``ack_wait_s``/``max_deliver``/``max_ack_pending`` updated if present).
        ``max_ack_pending``: how many delivered, unacked messages the consumer allows (all
        processes sharing it together; None: the broker's default, JetStream 1,000).
        ``new_only``: a consumer created now starts after the stream's last message (what is
        already stored is not its business); an existing one keeps its position."""
        ...

    async def delete_consumer(self, durable: str) -> None:
        """Remove the durable consumer ``durable`` (absent: nothing to do)."""
        ...

    async def pending(self, durable: str) -> int:
        """Consumer lag: messages not yet acked by ``durable`` (undelivered + unacked)."""
        ...


# -- NATS JetStream ----------------------------------------------------------------------------
@dataclass
class NatsMessage:
    """:class:`Message` over a nats-py JetStream message."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    num_delivered: int
    stream_seq: int
    published_at: dt.datetime
    _msg: Msg

    @classmethod
    def wrap(cls, msg: Msg) -> NatsMessage:
        meta = msg.metadata
        return cls(
            subject=msg.subject,
            data=bytes(msg.data),
            headers=dict(msg.headers or {}),
            num_delivered=int(meta.num_delivered),
            stream_seq=int(meta.sequence.stream),
            published_at=meta.timestamp,
            _msg=msg,
        )

    async def ack(self) -> None:
        await _call(self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        await _call(self._msg.nak(delay=delay))

    async def term(self) -> None:
        await _call(self._msg.term())


class NatsConsumer:
    """:class:`Consumer` over JetStream's pull API (``$JS.API.CONSUMER.MSG.NEXT``), on a
    subscription of its own with a callback.

    One pull request per :meth:`fetch`, ``no_wait`` with ``expires``: the server waits (up to
    ``timeout``) for the first message, then sends what is available up to ``batch`` and ends
    the request with a status (408) at once; the status comes to the request's own reply
    subject (``<inbox>.<n>``), so a late one of an earlier request ends nothing. Why not
    nats-py's ``PullSubscription.fetch``: it takes each message through ``next_msg`` (a uuid4,
    two tasks and a ``wait_for`` per message), about half of the processor's own CPU per event
    beside the fold. Messages delivered after their request's fetch returned (its client-side
    deadline passed first) are kept and handed out by the next fetch; never fetched, they come
    back after ``ack_wait`` like any unacked message."""

    def __init__(self, durable: str, nc: Client, next_subject: str) -> None:
        self.durable = durable
        self._nc = nc
        self._next = next_subject
        self._inbox = nc.new_inbox()
        self._buffer: list[Msg] = []
        self._sub: Any = None
        self._seq = 0
        self._request: str | None = None  # the reply subject of the fetch in progress
        self._want = 0
        self._done: asyncio.Future[str] | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        done = self._done
        if msg.subject.startswith(self._inbox):  # a status of a pull request, not an event
            if msg.subject == self._request and done is not None and not done.done():
                done.set_result(str((msg.headers or {}).get("Status", "")))
            return
        self._buffer.append(msg)
        if done is not None and not done.done() and len(self._buffer) >= self._want:
            done.set_result("")

    async def fetch(self, batch: int, timeout: float) -> list[Message]:
        import nats.errors

        if not self._buffer:
            nc = self._nc
            if nc.is_closed:
                raise BrokerUnavailable("fetch: ConnectionClosedError")
            loop = asyncio.get_running_loop()
            self._seq += 1
            self._request = f"{self._inbox}.{self._seq}"
            self._want = batch
            self._done = done = loop.create_future()
            timeout = max(timeout, 0.001)
            # the server's expiry a little before ours, so its status normally ends the wait
            expires = max(int((timeout - 0.02) * 1e9), 1_000_000)
            request = f'{{"batch":{int(batch)},"no_wait":true,"expires":{expires}}}'
            try:
                try:
                    await nc.publish(self._next, request.encode(), reply=self._request)
                except (
                    nats.errors.ConnectionClosedError,
                    nats.errors.ConnectionReconnectingError,
                ) as e:
                    raise BrokerUnavailable(f"fetch: {type(e).__name__}") from e
                start = loop.time()
                try:
                    async with asyncio.timeout(timeout + 0.05):
                        status = await done
                    if status not in ("", "404", "408") and not self._buffer:
                        # a refusal (409: e.g. too many unacked): no busy loop of requests
                        log.debug("pull request of %s ended with status %s", self.durable, status)
                        await asyncio.sleep(max(0.0, timeout - (loop.time() - start)))
                except TimeoutError:
                    pass
            finally:
                self._request = self._done = None
        msgs, self._buffer = self._buffer[:batch], self._buffer[batch:]
        return [NatsMessage.wrap(m) for m in msgs]

    async def close(self) -> None:
        """Stop the subscription (what was delivered and not fetched comes back later)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _call(coro: Any) -> None:
    import nats.errors

    try:
        await coro
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
        raise BrokerUnavailable(f"{type(e).__name__}") from e
    except nats.errors.Error as e:
        raise BrokerError(f"{type(e).__name__}: {e}") from e


def stream_replicas(existing: int | None, configured: int) -> int:
    """The replicas an update asks for: the configured ones, or more if the stream has more
    (a publisher left at the default 1 must not shrink what the processor made 3)."""
    return max(existing or 1, configured)


class NatsBroker:
    """:class:`Broker` on NATS JetStream (nats-py).

    ``settings`` gives the servers (``nats_url``, comma-separated), the token and the stream
    name; ``stream`` overrides the stream name. ``max_age_s`` bounds how long the stream keeps
    events (None: no limit), ``duplicate_window_s`` how long a ``msg_id`` is remembered.
    The connection reconnects forever in the background; a publish while disconnected fails
    at once with :class:`BrokerUnavailable` rather than being buffered by the client (so an
    outbox, not the client, holds what the broker has not acked)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        servers: str | Sequence[str] | None = None,
        stream: str | None = None,
        max_age_s: float | None = 7 * 24 * 3600.0,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
        connect_timeout_s: float = 2.0,
        reconnect_wait_s: float = 1.0,
        name: str = "riskml",
    ) -> None:
        if settings is None:
            from riskml.settings import get_settings

            settings = get_settings()
        urls = servers if servers is not None else settings.nats_url
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("no NATS server given (RISKML_NATS_URL)")
        self.servers = list(urls)
        self.stream = stream or settings.stream_name
        self.replicas = settings.stream_replicas
        token = settings.nats_token
        self._token = token.get_secret_value() if token is not None else None
        self.max_age_s = max_age_s
        self.duplicate_window_s = duplicate_window_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_wait_s = reconnect_wait_s
        self.name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_error_log = 0.0

    # -- connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and self._ready.is_set() and nc.is_connected

    async def connect(self, timeout: float | None = None) -> None:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect_forever())
        wait = self.connect_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                await self._ready.wait()
        except TimeoutError:
            if self._connecting.done() and self._connecting.exception() is not None:
                raise BrokerUnavailable(
                    f"NATS connect failed: {self._connecting.exception()}"
                ) from None
            raise BrokerUnavailable(
                f"NATS {self._where()} not reachable within {wait:g}s (still trying)"
            ) from None

    async def _connect_forever(self) -> None:
        from nats.aio.client import Client

        nc = Client()
        self._nc = nc
        # max_reconnect_attempts=-1: the first connect, and every reconnect, retries forever
        await nc.connect(
            servers=self.servers,
            name=self.name,
            token=self._token,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            connect_timeout=self.connect_timeout_s,  # type: ignore[arg-type]  # seconds
            reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = nc.jetstream()
        self._ready.set()
        log.info("connected to NATS %s", self._where())

    def _where(self) -> str:
        return ",".join(self.servers)

    async def _on_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:  # at most one line per 30 s while it is down
            self._last_error_log = now
            log.warning("NATS %s: %s: %s", self._where(), type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS %s", self._where())

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS %s", self._where())

    async def close(self) -> None:
        task, self._connecting = self._connecting, None
        if task is not None and not task.done():
            # nats-py's connect loop can lose a cancellation (asyncio.wait_for in Python 3.11
            # swallows one that lands as the inner call completes): cancel until it stops
            for _ in range(100):
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
                if task.done():
                    break
            else:  # pragma: no cover
                log.error("the NATS connect task did not stop")
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning
        nc, self._nc, self._js = self._nc, None, None
        self._ready.clear()
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5.0)

    def _jetstream(self) -> JetStreamContext:
        js = self._js
        if js is None or not self.connected:
            raise BrokerUnavailable(f"not connected to NATS {self._where()}")
        return js

    # -- stream ----------------------------------------------------------------------------
    def stream_config(self) -> Any:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        return StreamConfig(
            name=self.stream,
            subjects=list(STREAM_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            num_replicas=self.replicas,
        )

    async def ensure_stream(self) -> None:
        import nats.errors
        import nats.js.errors

        js = self._jetstream()
        config = self.stream_config()
        try:
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
                log.info("created stream %s over %s", self.stream, config.subjects)
            else:
                # never lower the replicas another consumer (configured for the cluster) set
                config.num_replicas = stream_replicas(info.config.num_replicas, self.replicas)
                await js.update_stream(config)
        except nats.errors.TimeoutError as e:
            raise BrokerTimeout(f"stream {self.stream}: no answer") from e
        except nats.js.errors.APIError as e:
            raise BrokerError(f"stream {self.stream}: {e}") from e

    async def delete_stream(self) -> bool:
        """Delete the stream and everything in it (tests, teardown). False if absent."""
        import nats.js.errors

        try:
            return bool(await self._jetstream().delete_stream(self.stream))
        except nats.js.errors.NotFoundError:
            return False

    async def stream_messages(self) -> int:
        """How many messages the stream holds now."""
        info = await self._jetstream().stream_info(self.stream)
        return int(info.state.messages)

    # -- publish -----------------------------------------------------------------------------
    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> int:
        import nats.errors
        import nats.js.errors

        js = self._jetstream()
        if timeout <= 0:
            raise BrokerTimeout("no time left to publish")
        hdrs = dict(headers or {})
        hdrs["Nats-Msg-Id"] = msg_id
        try:
            ack = await js.publish(subject, data, timeout=timeout, stream=self.stream, headers=hdrs)
        except nats.errors.TimeoutError as e:
            raise BrokerTimeout(f"no ack for {msg_id} within {timeout * 1e3:.0f} ms") from e
        except nats.js.errors.NoStreamResponseError as e:
            raise BrokerUnavailable(f"no stream answers for {subject!r}") from e
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.StaleConnectionError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.ConnectionDrainingError,
        ) as e:
            raise BrokerUnavailable(f"publish {msg_id}: {type(e).__name__}") from e
        except nats.js.errors.ServiceUnavailableError as e:
            raise BrokerUnavailable(f"publish {msg_id}: {e}") from e
        except nats.js.errors.APIError as e:
            raise BrokerError(f"publish {msg_id}: {e}") from e
        return int(ack.seq)

    # -- consume ---------------------------------------------------------------------------
    async def pull(
        self,
        durable: str,
        subject_filter: str,
        *,
        ack_wait_s: float,
        max_deliver: int,
        max_ack_pending: int | None = None,
        new_only: bool = False,
    ) -> Consumer:
        import nats.errors
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self._jetstream()
        config = ConsumerConfig(
            durable_name=durable,
            name=durable,
            deliver_policy=DeliverPolicy.NEW if new_only else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            filter_subject=subject_filter,
            max_ack_pending=max_ack_pending,
        )
        try:
            try:
                info = await js.consumer_info(self.stream, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(self.stream, config)
            else:
                current = info.config
                if (current.ack_wait, current.max_deliver, current.filter_subject) != (
                    ack_wait_s,
                    max_deliver,
                    subject_filter,
                ) or (max_ack_pending is not None and current.max_ack_pending != max_ack_pending):
                    await js.add_consumer(self.stream, config)  # create-or-update
        except nats.errors.TimeoutError as e:
            raise BrokerTimeout(f"consumer {durable}: no answer") from e
        except nats.js.errors.APIError as e:
            raise BrokerError(f"consumer {durable}: {e}") from e
        nc = self._nc
        assert nc is not None  # connected: _jetstream() checked it
        consumer = NatsConsumer(durable, nc, f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{durable}")
        await consumer.start()
        return consumer

    async def delete_consumer(self, durable: str) -> None:
        import nats.errors
        import nats.js.errors

        try:
            await self._jetstream().delete_consumer(self.stream, durable)
        except nats.js.errors.NotFoundError:
            return
        except nats.errors.TimeoutError as e:
            raise BrokerTimeout(f"consumer {durable}: no answer") from e
        except nats.js.errors.APIError as e:
            raise BrokerError(f"consumer {durable}: {e}") from e

    async def pending(self, durable: str) -> int:
        import nats.errors
        import nats.js.errors

        try:
            info = await self._jetstream().consumer_info(self.stream, durable)
        except nats.errors.TimeoutError as e:
            raise BrokerTimeout(f"consumer {durable}: no answer") from e
        except nats.js.errors.APIError as e:
            raise BrokerError(f"consumer {durable}: {e}") from e
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
