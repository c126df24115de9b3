"""Prometheus metrics of the decision service, exported through Ray's metrics agent.

They use ``ray.serve.metrics`` (so Serve adds ``deployment``, ``replica`` and ``application``
tags) and appear on each node's Ray metrics endpoint (``ray_``-prefixed) next to Serve's own
``ray_serve_*`` request metrics. Created inside the replica, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

LATENCY_BOUNDARIES_MS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000]
SCORE_BOUNDARIES = [round(0.05 * i, 2) for i in range(1, 20)]


def count_rejections() -> Callable[[str], None]:
    """An admission's ``on_reject`` (serving.admission): counts each request turned away in
    ``riskml_rejected_requests`` by reason. Every app that admits its requests counts under this
    one name; Serve tags the application."""
    from ray.serve.metrics import Counter

    counter = Counter(
        "riskml_rejected_requests",
        description="Requests turned away before any work (serving.admission), by reason: "
        "overloaded (503: no slot, nowhere to wait), deadline (503: no slot freed up in time), "
        "body_too_large (413).",
        tag_keys=("reason",),
    )

    def count(reason: str) -> None:
        counter.inc(tags={"reason": reason})

    return count


class DecisionMetrics:
    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        self.stage_latency = Histogram(
            "riskml_stage_latency_ms",
            description="Decision latency by stage (ms): 'admission' from the request's "
            "arrival to the ladder (body, waiting for a slot, parsing), 'total' from its "
            "arrival to its decision.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("stage",),
        )
        self.loop_lag = Histogram(
            "riskml_event_loop_lag_ms",
            description="How late the replica's event loop woke a 5 ms heartbeat, per wake-up "
            "more than 1 ms late (serving.looplag): the replica's own saturation or the "
            "machine's; a deadline's timer fires late by as much.",
            boundaries=LATENCY_BOUNDARIES_MS,
        )
        self.decisions = Counter(
            "riskml_decisions",
            description="Decisions by outcome and by the rung that made them.",
            tag_keys=("decision", "source"),  # type: ignore[arg-type]  # Ray stub: tuple[str]
        )
        self.fallbacks = Counter(
            "riskml_fallbacks",
            description="Decisions answered by a lower rung, by reason.",
            tag_keys=("reason",),
        )
        self.score = Histogram(
            "riskml_score",
            description="Distribution of the calibrated blended score.",
            boundaries=SCORE_BOUNDARIES,
            tag_keys=("model_version",),
        )
        self.shadow_score = Histogram(
            "riskml_shadow_score",
            description="Shadow (challenger) model scores.",
            boundaries=SCORE_BOUNDARIES,
            tag_keys=("shadow_version",),
        )
        self.shadow_abs_diff = Histogram(
            "riskml_shadow_abs_diff",
            description="|challenger - champion| raw XGBoost score on shadowed traffic.",
            boundaries=[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
            tag_keys=("shadow_version",),
        )
        self.write_backs = Counter(
            "riskml_write_backs",
            description="Online-state write-backs by result: applied, duplicate (tx_id already "
            "folded), late (older than the history's retention), future (beyond "
            "RISKML_STREAM_MAX_SKEW_S), error.",
            tag_keys=("result",),
        )
        self.decision_log_events = Counter(
            "riskml_decision_log_events",
            description="Decision-log events: published (acked in the request), outboxed "
            "(broker late or away), flushed (republished from the outbox), recovered (adopted "
            "from a dead replica's spill), dropped (outbox full: lost).",
            tag_keys=("result",),
        )
        self.decision_log_publish = Histogram(
            "riskml_decision_log_publish_ms",
            description="Time a request spent publishing its decision events (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
        )
        self.count_rejected = count_rejections()
        self.decision_log_pending = Gauge(
            "riskml_decision_log_pending",
            description="Decision events waiting in this replica's outbox.",
        )

    def record(self, outcomes: Iterable[Any]) -> None:
        for o in outcomes:
            for stage, ms in o.latency_ms.items():
                self.stage_latency.observe(ms, tags={"stage": stage})
            self.decisions.inc(tags={"decision": o.decision, "source": o.decision_source})
            if o.fallback_reason:
                self.fallbacks.inc(tags={"reason": o.fallback_reason})
            if o.score is not None:
                self.score.observe(o.score, tags={"model_version": o.model_version})

    def record_shadow(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            tags = {"shadow_version": str(r["shadow_version"])}
            self.shadow_score.observe(r["shadow_score"], tags=tags)
            if r.get("champion_score") is not None:
                self.shadow_abs_diff.observe(
                    abs(r["shadow_score"] - r["champion_score"]), tags=tags
                )
