"""The demo's event stream: the replay's decisions go through the broker into the online store.

With NATS JetStream at ``settings.nats_url``, the demo app's Ingress publishes every decision
(its decision log on, ``write_back`` off) and a :class:`~riskml.streaming.processor.
StreamProcessor`, on a thread of the demo process, folds them into the serving store: the online
state is folded exactly once, by the processor. Its durable consumer is the demo's own
(``riskml-demo-<id>``, decisions only, from the stream's end when it starts, deleted after), so
events already in a shared stream are left alone. Without NATS, :func:`open_stream` says so in one
line and the Ingress writes back directly, as before.

:meth:`DemoStream.settle` waits (bounded) until the consumer has nothing pending and reports
events published / outboxed (the replicas' ``GET /v1/decision-log``), folded, dead-lettered,
lost (published - folded) and the freshness: from the broker storing a decision (the Ingress
publishes it as it decides, before it answers) to the processor's ack after its fold was written
(every event's, not the histogram's buckets). Event time is the held-back transaction's own
(days in the past), so ``riskml_stream_event_age_seconds`` says nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: the decision log of the demo's Ingress (the replica's write-back is the processor's now)
STREAM_INGRESS: dict[str, Any] = {
    "write_back": False,
    "decision_log": {"enabled": True, "publish_timeout_ms": 100.0, "drain_timeout_s": 20.0},
}
DECISIONS = "riskml.events.decision"


def quantiles_ms(samples_s: list[float]) -> dict[str, float | None]:
    """p50/p99 of seconds, in ms (nearest rank); None without samples."""
    if not samples_s:
        return {"p50": None, "p99": None}
    ordered = sorted(samples_s)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e3, 1)

    return {"p50": q(0.50), "p99": q(0.99)}


def _recording_metrics(consumer: str) -> tuple[Any, list[float]]:
    """The processor's metrics, with every ``riskml_stream_delivery_age_seconds`` observation
    also kept (exact quantiles)."""
    from riskml.streaming.processor import StreamMetrics

    metrics = StreamMetrics(consumer)
    samples: list[float] = []
    hist: Any = getattr(metrics, "stream_age", None)
    if hist is not None:

        class _Child:
            def __init__(self, child: Any) -> None:
                self.child = child

            def observe(self, value: float, *args: Any, **kwargs: Any) -> None:
                samples.append(float(value))
                self.child.observe(value, *args, **kwargs)

        class _Tee:
            def labels(self, *args: Any, **kwargs: Any) -> _Child:
                return _Child(hist.labels(*args, **kwargs))

            def __getattr__(self, name: str) -> Any:
                return getattr(hist, name)

        setattr(metrics, "stream_age", _Tee())  # noqa: B010 - typed as a Histogram
    return metrics, samples


@dataclass
class DemoStream:
    """A running processor over the serving store, or (``active`` False) the reason there is
    none. Use :func:`open_stream`; :meth:`close` always (idempotent)."""

    nats_url: str
    stream: str
    active: bool = False
    note: str = ""
    durable: str = ""
    samples_s: list[float] = field(default_factory=list)
    processor: Any = None
    broker: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None

    @property
    def ingress(self) -> dict[str, Any]:
        """What to lay over the Ingress ``user_config``: the decision log on, write-back off
        (nothing when inactive: the replicas write back directly)."""
        return json.loads(json.dumps(STREAM_INGRESS)) if self.active else {}

    # -- the processor's thread ---------------------------------------------------------------
    def _call(self, coro: Any, timeout: float) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def pending(self) -> int:
        return int(self._call(self.broker.pending(self.durable), 10.0))

    def folded(self) -> dict[str, int]:
        stats = self.processor.stats if self.processor is not None else None
        return dict(stats.results) if stats is not None else {}

    def settle(
        self,
        decision_log: Iterable[Mapping[str, Any]] = (),
        *,
        decided: int,
        timeout_s: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until every decision is folded (or dead-lettered) and nothing is pending, at
        most ``timeout_s``; the figures. ``decision_log``: the replicas' ``/v1/decision-log``
        answers (published and outboxed; without them ``decided`` stands in for published)."""
        counts = [dict(s.get("counts") or {}) for s in decision_log]
        published = sum(c.get("published", 0) + c.get("outboxed", 0) for c in counts)
        outboxed = sum(c.get("outboxed", 0) for c in counts)
        if not counts:
            published = decided
        t0 = time.monotonic()
        pending = -1
        while self.active and self.thread is not None and self.thread.is_alive():
            results = self.folded()
            done = sum(results.values()) - results.get("retry", 0)
            with contextlib.suppress(Exception):
                pending = self.pending()
            if (pending == 0 and done >= published) or time.monotonic() - t0 > timeout_s:
                break
            time.sleep(0.2)
        results = self.folded()
        folded = sum(results.get(k, 0) for k in ("applied", "duplicate", "late"))
        return {
            "broker": self.nats_url,
            "stream": self.stream,
            "consumer": self.durable,
            "decided": decided,
            "published": published,
            "outboxed": outboxed,
            "folded": folded,
            "results": results,
            "dead_lettered": results.get("dead_letter", 0),
            "lost": published - folded,
            "pending": pending,
            "settle_s": round(time.monotonic() - t0, 2),
            "freshness_ms": quantiles_ms(self.samples_s),
            "freshness": "broker stored the decision -> processor acked it after the fold",
        }

    def close(self) -> None:
        """Stop the processor (it finishes its batch), delete the demo's consumer, disconnect."""
        if self.thread is None or self.loop is None:
            return
        loop, thread, self.thread = self.loop, self.thread, None
        if self.processor is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it stopped
                loop.call_soon_threadsafe(self.processor.stop)
        thread.join(15.0)
        if thread.is_alive():  # a fetch that never returns: the daemon thread dies with us
            log.warning("the demo's stream processor did not stop within 15 s")


async def _delete_consumer(broker: Any, durable: str) -> None:
    with contextlib.suppress(Exception):
        await broker.delete_consumer(durable)


async def _own_consumer(broker: Any, config: Any) -> None:
    """The demo's durable, starting after the stream's last message (what is already in a
    shared stream is not the demo's), created with the processor's settings so that the
    processor's own ``pull`` binds to it as it is (a mismatch fails here, before the demo
    relies on it)."""
    await broker.pull(
        config.durable,
        config.subjects,
        ack_wait_s=config.ack_wait_s,
        max_deliver=config.max_deliver,
        max_ack_pending=config.max_ack_pending,
        new_only=True,
    )


def open_stream(store: Mapping[str, Any], *, connect_timeout_s: float = 3.0) -> DemoStream:
    """Start the demo's processor over the serving store ``store`` (a StoreConfig mapping) on
    NATS at ``settings.nats_url``; when NATS is not there (or the processor does not start),
    an inactive :class:`DemoStream` whose ``note`` says so."""
    from riskml.settings import get_settings

    settings = get_settings()
    url = settings.nats_url
    demo = DemoStream(nats_url=url, stream=settings.stream_name)
    demo.durable = f"riskml-demo-{uuid.uuid4().hex[:8]}"
    ready = threading.Event()

    async def main() -> None:
        from riskml.features.online import OnlineFeatures
        from riskml.features.store import StoreConfig
        from riskml.streaming.broker import NatsBroker
        from riskml.streaming.processor import ProcessorConfig, StreamProcessor

        config = ProcessorConfig.from_settings(
            durable=demo.durable, subjects=DECISIONS, fetch_timeout_s=0.5
        )
        broker = NatsBroker(settings, name="riskml-demo-processor")
        demo.broker = broker
        try:
            await broker.connect(timeout=connect_timeout_s)
            await broker.ensure_stream()
            await _own_consumer(broker, config)
            online = OnlineFeatures(StoreConfig.model_validate(dict(store)))
            metrics, demo.samples_s = _recording_metrics(demo.durable)
            demo.processor = StreamProcessor(broker, online, config, metrics=metrics)
            demo.active = True
            ready.set()
            try:
                await demo.processor.run()
            finally:
                demo.processor.close()
        except BaseException as exc:
            demo.error = exc
            raise
        finally:
            ready.set()
            await _delete_consumer(broker, demo.durable)
            with contextlib.suppress(Exception):
                await broker.close()

    def thread_main() -> None:
        loop = asyncio.new_event_loop()
        demo.loop = loop
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported through demo.error / note
            log.warning("the demo's stream processor stopped: %s: %s", type(exc).__name__, exc)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=thread_main, name="riskml-demo-processor", daemon=True)
    demo.thread = thread
    thread.start()
    ready.wait(connect_timeout_s + 30.0)
    if not demo.active:
        demo.close()
        reason = demo.error
        from riskml.streaming.broker import BrokerUnavailable

        if reason is None or isinstance(reason, BrokerUnavailable):
            demo.note = f"no NATS at {url}: decisions written back directly"
        else:
            demo.note = (
                f"stream processor did not start ({type(reason).__name__}: {reason}): "
                "decisions written back directly"
            )
    else:
        demo.note = f"{demo.durable} on {demo.stream} at {url}"
    return demo


def decision_log_stats(urls: Iterable[str], timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """``GET /v1/decision-log`` of each Ingress URL (one per replica with direct ingress); the
    ones that answered."""
    from riskml.settings import get_settings
    from serving.auth import auth_headers, client_key

    headers = auth_headers(client_key(get_settings()))
    out = []
    for url in urls:
        request = urllib.request.Request(f"{url.rstrip('/')}/v1/decision-log", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as r:
                out.append(json.loads(r.read()))
        except (OSError, ValueError) as exc:
            log.warning("decision-log stats of %s: %s", url, exc)
    return out
