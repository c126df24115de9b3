"""The Prometheus metric names of monitoring, in one place.

The monitor's exporter (``riskml monitor run --metrics-port``) creates exactly
:data:`MONITOR_METRICS`; the PrometheusRule and the Grafana dashboard under
``k8s/base/monitoring/`` name only these and :data:`SERVING_METRICS` (the decision service's
metrics as Ray exports them), which ``tests/k8s/test_monitoring_manifests.py`` checks.

Plain data, no imports beyond typing: the exporter, the manifests' tests and the docs read it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Kind = Literal["gauge", "counter", "histogram"]


class Metric(NamedTuple):
    """One metric: its name as registered, its type, its label names and its help text."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str


# -- label names and their values ------------------------------------------------------------
FEATURE = "feature"
DECISION = "decision"
THRESHOLD = "threshold"
REASON = "reason"
#: The ``feature`` label value of the score's own drift series.
SCORE_FEATURE = "score"
#: The ``decision`` label values.
DECISIONS: tuple[str, ...] = ("approve", "review", "decline")
#: The ``threshold`` label values (the decision thresholds precision/recall are estimated at).
THRESHOLDS: tuple[str, ...] = ("review", "decline")
#: Port the monitor serves ``/metrics`` on (the Deployment and its Service use it).
MONITOR_METRICS_PORT = 9103

# -- the monitor (per window of the decision log) --------------------------------------------
MONITOR_METRICS: tuple[Metric, ...] = (
    # drift, per feature and for the score (feature="score")
    Metric("riskml_monitor_psi", "gauge", (FEATURE,), "PSI of the last window vs the reference."),
    Metric(
        "riskml_monitor_psi_threshold",
        "gauge",
        (FEATURE,),
        "PSI alarm threshold for the last window's sample size.",
    ),
    Metric(
        "riskml_monitor_js_distance",
        "gauge",
        (FEATURE,),
        "Jensen-Shannon distance of the last window vs the reference.",
    ),
    Metric(
        "riskml_monitor_drift_alarm",
        "gauge",
        (FEATURE,),
        "1 when the last window's drift alarm fired, else 0.",
    ),
    Metric(
        "riskml_monitor_drift_alarm_windows",
        "gauge",
        (FEATURE,),
        "Consecutive windows (up to the last) whose drift alarm fired.",
    ),
    # data health
    Metric("riskml_monitor_null_rate", "gauge", (FEATURE,), "Share of nulls in the last window."),
    Metric(
        "riskml_monitor_default_rate",
        "gauge",
        (FEATURE,),
        "Share of default-filled values in the last window.",
    ),
    Metric(
        "riskml_monitor_unknown_customer_share",
        "gauge",
        (),
        "Share of decisions for customers without online history in the last window.",
    ),
    Metric(
        "riskml_monitor_fallback_share",
        "gauge",
        (),
        "Share of decisions answered by a fallback rung in the last window.",
    ),
    Metric(
        "riskml_monitor_late_events",
        "gauge",
        (),
        "Events of the last window that arrived after its watermark.",
    ),
    Metric(
        "riskml_monitor_rejected_events",
        "gauge",
        (),
        "Events or requests rejected in the last window.",
    ),
    Metric("riskml_monitor_window_decisions", "gauge", (), "Decisions in the last window."),
    Metric(
        "riskml_monitor_window_end_timestamp_seconds",
        "gauge",
        (),
        "Event-time end of the last window (Unix seconds).",
    ),
    # decisions
    Metric(
        "riskml_monitor_decision_share",
        "gauge",
        (DECISION,),
        "Share of each decision in the last window.",
    ),
    Metric(
        "riskml_monitor_expected_decision_share",
        "gauge",
        (DECISION,),
        "Share of each decision the reference profile expects.",
    ),
    # performance without labels, and as labels mature
    Metric(
        "riskml_monitor_estimated_precision",
        "gauge",
        (THRESHOLD,),
        "Precision at a decision threshold estimated from the calibrated scores.",
    ),
    Metric(
        "riskml_monitor_estimated_recall",
        "gauge",
        (THRESHOLD,),
        "Recall at a decision threshold estimated from the calibrated scores.",
    ),
    Metric(
        "riskml_monitor_estimated_ap",
        "gauge",
        (),
        "Average precision estimated from the calibrated scores.",
    ),
    Metric(
        "riskml_monitor_realised_ap",
        "gauge",
        (),
        "Average precision on the labels that have arrived.",
    ),
    Metric(
        "riskml_monitor_label_maturity",
        "gauge",
        (),
        "Share of the eventually expected labels that have arrived.",
    ),
    # the loop
    Metric(
        "riskml_monitor_retrain_triggers_total",
        "counter",
        (REASON,),
        "Retraining runs launched by the monitor, by reason.",
    ),
)
MONITOR_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in MONITOR_METRICS)

# -- the decision service (serving/metrics.py), as Ray exports them --------------------------
#: Ray's metrics agent prefixes every application metric with this.
RAY_PREFIX = "ray_"
#: The names as serving/metrics.py registers them (``ray.serve.metrics``); on Ray's metrics
#: endpoint they are ``ray_<name>`` (counters ``_total``, histograms ``_bucket``/``_sum``/
#: ``_count``), with Serve's ``deployment``, ``replica`` and ``application`` labels added.
SERVING_METRICS: tuple[Metric, ...] = (
    Metric("riskml_stage_latency_ms", "histogram", ("stage",), "Decision latency by stage (ms)."),
    Metric("riskml_decisions", "counter", (DECISION, "source"), "Decisions by outcome and rung."),
    Metric("riskml_fallbacks", "counter", (REASON,), "Decisions answered by a lower rung."),
    Metric("riskml_score", "histogram", ("model_version",), "The calibrated blended score."),
    Metric("riskml_shadow_score", "histogram", ("shadow_version",), "Shadow model scores."),
    Metric(
        "riskml_shadow_abs_diff",
        "histogram",
        ("shadow_version",),
        "|challenger - champion| on shadowed traffic.",
    ),
    Metric("riskml_write_backs", "counter", ("result",), "Online-state write-backs by result."),
    Metric("riskml_decision_log_events", "counter", ("result",), "Decision-log events by result."),
    Metric(
        "riskml_decision_log_publish_ms",
        "histogram",
        (),
        "Time a request spent publishing its decision events (ms).",
    ),
    Metric("riskml_rejected_requests", "counter", (REASON,), "Requests turned away, by reason."),
    Metric("riskml_decision_log_pending", "gauge", (), "Decision events waiting in the outbox."),
    Metric(
        "riskml_event_loop_lag_ms",
        "histogram",
        (),
        "How late a replica's event loop woke its heartbeat (ms), per late wake-up.",
    ),
)


def series_names(metric: Metric, prefix: str = "") -> tuple[str, ...]:
    """The sample names a scrape shows for ``metric`` (counters end in ``_total``, histograms
    are ``_bucket``, ``_sum`` and ``_count``)."""
    name = prefix + metric.name
    if metric.kind == "counter":
        return (name if name.endswith("_total") else f"{name}_total",)
    if metric.kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)


def known_series() -> frozenset[str]:
    """Every sample name an alert or a dashboard panel may query."""
    names: set[str] = set()
    for metric in MONITOR_METRICS:
        names.update(series_names(metric))
    for metric in SERVING_METRICS:
        names.update(series_names(metric, RAY_PREFIX))
    return frozenset(names)
