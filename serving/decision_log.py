"""The Ingress's durable decision log: every decided transaction on the event stream.

After the ladder decides, the Ingress awaits :meth:`DecisionLog.record`: one
:class:`~riskml.streaming.events.DecisionEvent` per transaction (the request, the features the
models saw, the model version, the scores, the decision and why a lower rung answered), published
with its ``tx_id`` as the broker's de-duplication id. The broker's ack is awaited for at most
``publish_timeout_ms`` and never past the request's deadline; what is not acked by then goes to
the :class:`~riskml.streaming.outbox.Outbox` (memory, then a spill under
``<RISKML_HOME>/outbox``), which republishes it when the broker is back. Nothing here raises into
the request: the decision is answered whatever the log does.

The broker is connected lazily (the first enabled record starts it in the background; until it
is up, events queue in the outbox), so a replica starts and decides with no broker at all.
:meth:`DecisionLog.close` at replica shutdown drains the outbox. :meth:`DecisionLog.stats` are
this replica's counts (``GET /v1/decision-log``): ``published + outboxed`` = events decided
while enabled; ``outboxed + recovered = flushed + pending + dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from riskml.decision.config import DecisionLogConfig
from riskml.decision.ladder import LadderResult
from riskml.streaming.broker import Broker
from riskml.streaming.events import DecisionEvent, Transaction, encode, subject_for
from riskml.streaming.outbox import Outbox

log = logging.getLogger("ray.serve")

#: Counts of :meth:`Outbox.counts` exported as ``riskml_decision_log_events{result=...}``.
EXPORTED = ("published", "outboxed", "recovered", "flushed", "dropped")


def default_broker() -> Broker:
    from riskml.streaming.broker import NatsBroker

    return NatsBroker(name="riskml-ingress")


class DecisionLog:
    """One per Ingress replica. ``broker_factory`` makes the broker on first use (default: NATS
    JetStream from settings); ``spill_dir`` defaults to ``<RISKML_HOME>/outbox``; ``metrics``:
    the replica's :class:`serving.metrics.DecisionMetrics` (or None)."""

    def __init__(
        self,
        config: DecisionLogConfig,
        *,
        feature_names: Sequence[str],
        sequence_version: str | None = None,
        replica: str = "local",
        broker_factory: Callable[[], Broker] = default_broker,
        spill_dir: Path | None = None,
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.feature_names = list(feature_names)
        self.sequence_version = sequence_version
        self.replica = replica
        self._broker_factory = broker_factory
        self._spill_dir = spill_dir
        self.metrics = metrics
        self.broker: Broker | None = None
        self.outbox: Outbox | None = None
        self._starting: asyncio.Task[None] | None = None
        self._exported = dict.fromkeys(EXPORTED, 0)
        self._errors = 0

    # -- configuration ---------------------------------------------------------------------
    def configure(self, config: DecisionLogConfig) -> None:
        """New limits apply at once; turning it off stops new events (the outbox still flushes
        what it holds, and is drained at shutdown)."""
        self.config = config
        if self.outbox is not None:
            self._apply_bounds(self.outbox)

    def _apply_bounds(self, box: Outbox) -> None:
        cfg = self.config
        box.max_events, box.max_bytes = cfg.outbox_max_events, cfg.outbox_max_bytes
        box.spill_max_bytes = cfg.spill_max_bytes
        box.flush_timeout_s = cfg.flush_timeout_ms / 1e3

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _ensure(self) -> Outbox:
        """The outbox (made on first use); the broker's connect and the outbox's start run in
        the background, so this never waits."""
        if self.outbox is None:
            self.broker = self._broker_factory()
            spill = self._spill_dir
            if spill is None and self.config.spill_max_bytes > 0:
                from riskml.settings import get_settings

                spill = get_settings().home / "outbox"
            self.outbox = Outbox(self.broker, spill_dir=spill, owner=self.replica)
            self._apply_bounds(self.outbox)
            self._starting = asyncio.ensure_future(self._start(self.broker, self.outbox))
        return self.outbox

    async def _start(self, broker: Broker, box: Outbox) -> None:
        await box.start()  # the flusher retries with backoff until the broker is up
        tries = 0
        while True:
            try:
                await broker.connect()
                await broker.ensure_stream()
                log.info("decision log: connected")
                return
            except Exception as exc:  # still trying in the background: events go to the outbox
                tries += 1
                level = logging.WARNING if tries == 1 or tries % 30 == 0 else logging.DEBUG
                log.log(level, "decision log: broker not ready (%s); events go to the outbox", exc)
                await asyncio.sleep(2.0)

    async def start(self) -> None:
        """Start connecting now (optional: the first :meth:`record` does it)."""
        if self.enabled:
            self._ensure()

    # -- recording -------------------------------------------------------------------------
    async def record(
        self,
        transactions: Sequence[Transaction | Mapping[str, Any]],
        result: LadderResult,
        *,
        deadline: float,
    ) -> None:
        """Publish one event per decided transaction; wait for the acks until ``deadline``
        (``time.perf_counter()`` value) or ``publish_timeout_ms``, whichever comes first;
        outbox the rest. Never raises (a cancelled caller's events are outboxed, then the
        cancellation goes on)."""
        if not self.enabled:
            return
        t0 = time.perf_counter()
        try:
            box = self._ensure()
            events = self.events(transactions, result)
        except Exception:
            self._errors += 1
            log.exception("decision log: could not build the events; not logged")
            return
        timeout = min(self.config.publish_timeout_ms / 1e3, deadline - t0)
        try:
            await asyncio.gather(
                *(
                    box.publish(subject_for(e), encode(e), msg_id=e.event_id, timeout=timeout)
                    for e in events
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # Outbox.publish does not raise; belt and braces
            self._errors += 1
            log.exception("decision log: publish failed")
        finally:
            self._observe((time.perf_counter() - t0) * 1e3)

    def events(
        self, transactions: Sequence[Transaction | Mapping[str, Any]], result: LadderResult
    ) -> list[DecisionEvent]:
        rows = result.rows if result.rows is not None else None
        if rows is not None and len(rows) != len(transactions):
            rows = None
        out = []
        for i, (tx, o) in enumerate(zip(transactions, result.outcomes, strict=True)):
            row = rows[i] if rows is not None else None
            names = self.feature_names if row is not None else ()
            out.append(
                DecisionEvent.of(
                    tx,
                    decision=o.decision,
                    decision_source=o.decision_source,
                    model_version=o.model_version,
                    feature_names=names,
                    feature_values=row.tabular if row is not None else None,
                    feature_flags=o.flags,
                    write_back=row.write_back if row is not None else None,
                    sequence_version=self.sequence_version,
                    scores=o.scores,
                    score=o.score,
                    fallback_reason=o.fallback_reason,
                    reasons=o.reasons,
                )
            )
        return out

    # -- counts, metrics, shutdown -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        box, broker = self.outbox, self.broker
        counts = box.counts() if box is not None else {**dict.fromkeys(EXPORTED, 0), "pending": 0}
        counts.setdefault("spilled", 0)
        return {
            "enabled": self.enabled,
            "connected": bool(broker is not None and broker.connected),
            "replica": self.replica,
            "errors": self._errors,
            "counts": counts,
        }

    def _observe(self, ms: float) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            m.decision_log_publish.observe(ms)
            self.export()
        except Exception:  # metrics must never cost a decision
            log.exception("decision log metrics failed")

    def export(self) -> None:
        """Bring the exported counters up to the outbox's counts (flushes happen between
        requests; the Ingress also calls this on a timer)."""
        box, m = self.outbox, self.metrics
        if box is None or m is None:
            return
        counts = box.counts()
        for key in EXPORTED:
            delta = counts[key] - self._exported[key]
            if delta > 0:
                m.decision_log_events.inc(delta, tags={"result": key})
                self._exported[key] = counts[key]
        m.decision_log_pending.set(counts["pending"])

    async def close(self, timeout: float | None = None) -> bool:
        """Drain the outbox (``drain_timeout_s``) and disconnect. True when nothing is left."""
        box, broker = self.outbox, self.broker
        if box is None or broker is None:
            return True
        wait = self.config.drain_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + wait
        task = self._starting
        if task is not None and not task.done() and not broker.connected:
            # not connected yet: the connect gets the drain's time first
            await asyncio.wait({task}, timeout=wait)
        ok = await box.drain(max(0.0, deadline - time.monotonic()))
        for _ in range(100):  # cancel the connect loop (again, should a library lose it)
            if task is None or task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        with contextlib.suppress(Exception):
            self.export()
        await broker.close()
        c = box.counts()
        log.info("decision log closed: %s", c)
        return ok
