"""The monitor's Prometheus exporter: :data:`~riskml.monitoring.metric_names.MONITOR_METRICS`,
exactly, on a registry of its own.

:class:`MonitorMetrics` is a custom collector: :meth:`~MonitorMetrics.update` turns a
:class:`~riskml.monitoring.monitor.MonitorReport` into a snapshot of every gauge's series and
swaps it in whole, so a scrape during an update sees the previous window or the new one, never
half of each, and a feature that left the profile leaves no stale series behind.

What the gauges show (the last window, unless said otherwise):

* drift per feature and for the score (``feature="score"``): PSI, its threshold, JS distance,
  the alarm (1/0) and the consecutive windows up to the last whose alarm fired (counted over
  ``report.windows``, as the monitor's hold rule counts them);
* data health: null and default rates per feature, unknown-customer and fallback shares, late
  events, decisions and the window's event-time end;
* the decision shares (a decision absent from the window is a share of 0) and the shares the
  reference profile expects;
* the label-free estimates at each decision threshold and the estimated AP; the **realised** AP
  of the most recent window whose labels have matured (the last window's labels never have);
  the label maturity: the share of the eventually-known frauds whose label arrived within the
  monitor's ``maturity_days`` (from the report's label-maturity curve: below ~0.95, realised
  figures at maturity miss late labels).

**Unknown values are absent, not NaN.** A value that is None or NaN (precision with nothing
flagged, realised AP before any window matured, the unknown-customer share without that flag
in the profile, ``riskml_monitor_rejected_events``, which the decision log cannot count) is left
out of the scrape: alert on ``absent(...)`` where a value must exist, and a comparison never
fires on a missing series (a NaN would make every ``<`` and ``>`` false as well, but would
plot as gaps and break ``avg``/``max`` over features).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from riskml.monitoring.metric_names import DECISIONS, MONITOR_METRICS, THRESHOLDS

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric as PromMetric

    from riskml.monitoring.monitor import MonitorReport

__all__ = ["MonitorMetrics", "alarm_streaks", "snapshot", "snapshot_empty"]

#: One gauge's series: label values -> value.
Series = dict[tuple[str, ...], float]


def _value(value: Any) -> float | None:
    """A finite float, or None (None, NaN, infinities, what is not a number)."""
    if value is None or isinstance(value, str):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def snapshot_empty() -> dict[str, Series]:
    """Every gauge without a series (before the first :meth:`MonitorMetrics.update`)."""
    return {m.name: {} for m in MONITOR_METRICS if m.kind == "gauge"}


def alarm_streaks(report: MonitorReport) -> dict[str, int]:
    """Per feature (and the score) of the last window: how many consecutive windows, up to
    and including the last, its drift alarm fired in (0 when the last did not alarm)."""
    if not report.windows:
        return {}
    out: dict[str, int] = {}
    for name in report.windows[-1].drift:
        k = 0
        for window in reversed(report.windows):
            d = window.drift.get(name)
            if d is None or not d.alarm:
                break
            k += 1
        out[name] = k
    return out


def snapshot(report: MonitorReport) -> dict[str, Series]:
    """Every gauge's series for ``report`` (None/NaN values left out: see the module doc)."""
    out = snapshot_empty()

    def put(name: str, labels: tuple[str, ...], value: Any) -> None:
        assert name in out, name  # only the documented metrics
        v = _value(value)
        if v is not None:
            out[name][labels] = v

    for decision in DECISIONS:
        put(
            "riskml_monitor_expected_decision_share",
            (decision,),
            report.expected_decision_mix.get(decision),
        )
    matured = [
        w
        for w in report.windows
        if w.realised and _value(w.realised.get("average_precision")) is not None
    ]
    if matured:
        assert matured[-1].realised is not None
        put("riskml_monitor_realised_ap", (), matured[-1].realised["average_precision"])
    put("riskml_monitor_label_maturity", (), _maturity_share(report))
    last = report.last
    if last is None:
        return out
    streaks = alarm_streaks(report)
    for name, d in last.drift.items():
        key = (name,)
        put("riskml_monitor_psi", key, d.psi)
        put("riskml_monitor_psi_threshold", key, d.psi_threshold)
        put("riskml_monitor_js_distance", key, d.js)
        put("riskml_monitor_drift_alarm", key, 1.0 if d.alarm else 0.0)
        put("riskml_monitor_drift_alarm_windows", key, streaks[name])
    health = last.health
    for name, rate in (health.get("null_rate") or {}).items():
        put("riskml_monitor_null_rate", (name,), rate)
    for name, rate in (health.get("default_rate") or {}).items():
        put("riskml_monitor_default_rate", (name,), rate)
    put("riskml_monitor_unknown_customer_share", (), health.get("unknown_customer_share"))
    put("riskml_monitor_fallback_share", (), health.get("fallback_share"))
    put("riskml_monitor_late_events", (), health.get("late_events"))
    put("riskml_monitor_rejected_events", (), health.get("rejected_events"))
    put("riskml_monitor_window_decisions", (), last.decisions)
    put("riskml_monitor_window_end_timestamp_seconds", (), last.end.timestamp())
    for decision in DECISIONS:
        put("riskml_monitor_decision_share", (decision,), last.decision_share.get(decision, 0.0))
    est = last.estimated
    for threshold in THRESHOLDS:
        put("riskml_monitor_estimated_precision", (threshold,), est.get(f"precision_{threshold}"))
        put("riskml_monitor_estimated_recall", (threshold,), est.get(f"recall_{threshold}"))
    put("riskml_monitor_estimated_ap", (), est.get("average_precision"))
    return out


def _maturity_share(report: MonitorReport) -> float | None:
    """The maturity curve's share at the monitor's ``maturity_days`` (None without a curve)."""
    curve = (report.label_maturity or {}).get("curve") or []
    if not curve:
        return None
    horizon = report.config.maturity_days
    within = [row for row in curve if row["days"] <= horizon]
    # past the curve's end every known label has arrived: its last share
    return _value((within or curve[:1])[-1]["share"])


class MonitorMetrics:
    """The monitor's metrics on their own registry (:attr:`registry`): :meth:`update` after each
    monitor run, :meth:`count_trigger` when a retraining run is launched, :meth:`serve` to
    expose ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._gauges: dict[str, Series] = snapshot_empty()
        self._triggers: dict[str, float] = {}
        self.registry.register(self)

    # -- the collector protocol (prometheus_client calls these) ----------------------------
    def describe(self) -> Iterator[PromMetric]:
        return self._families({name: {} for name in self._gauges}, {})

    def collect(self) -> Iterator[PromMetric]:
        with self._lock:
            gauges, triggers = self._gauges, dict(self._triggers)
        return self._families(gauges, triggers)

    @staticmethod
    def _families(
        gauges: Mapping[str, Series], triggers: Mapping[str, float]
    ) -> Iterator[PromMetric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for metric in MONITOR_METRICS:
            if metric.kind == "counter":
                counter = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
                for reason, value in sorted(triggers.items()):
                    counter.add_metric((reason,), value)
                yield counter
                continue
            gauge = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
            for labels, value in sorted(gauges.get(metric.name, {}).items()):
                gauge.add_metric(labels, value)
            yield gauge

    # -- the API ---------------------------------------------------------------------------
    def update(self, report: MonitorReport) -> None:
        """Replace every gauge's series with ``report``'s (see the module docstring)."""
        fresh = snapshot(report)
        with self._lock:
            self._gauges = fresh

    def count_trigger(self, reason: str, n: int = 1) -> None:
        """Count a retraining run launched for ``reason`` (a short, bounded label value)."""
        if n < 0:
            raise ValueError(f"a counter only goes up, got {n}")
        with self._lock:
            self._triggers[reason] = self._triggers.get(reason, 0.0) + n

    def value(self, name: str, **labels: str) -> float | None:
        """A sample's current value (tests, the CLI); None when absent."""
        got = self.registry.get_sample_value(name, labels)
        return None if got is None else float(got)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``port`` (0: a free one) from a daemon thread; the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)
