"""The monitor end to end on a synthetic decision log (riskml.monitoring.monitor/export/report
and ``riskml monitor``): no model is trained.

The log: 16 days x 600 decision events from known distributions, written as the offline log
writes them, against a reference profile built from 20,000 draws of the same distributions.
From day 11 one feature (``amount_z``) shifts by one standard deviation. Per day, exactly 60
decisions are a fallback rung's (no features, no score), 27 of the 540 with features are for
unknown customers, 7 events are published two hours late; ensemble decisions follow the
thresholds on their score, and each is a fraud with probability ``score`` (a chargeback label
event 1-20 days later)."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from riskml.cli import app
from riskml.cli.monitor import whole_windows_end
from riskml.decision.config import Thresholds
from riskml.decision.policy import decide
from riskml.metrics import average_precision
from riskml.monitoring.backfill import log_row  # an event's log row, published at a time
from riskml.monitoring.export import MonitorMetrics
from riskml.monitoring.metric_names import MONITOR_METRICS, series_names
from riskml.monitoring.monitor import MonitorConfig, MonitorReport, run_monitor
from riskml.monitoring.profile import ReferenceProfile, build_profile
from riskml.monitoring.report import write_html
from riskml.streaming.events import DecisionEvent, LabelEvent
from riskml.streaming.offline_log import write_rows

NAMES = ("amount_z", "tx_count", "unknown_customer", "with_nulls")
THRESHOLDS = {"review": 0.3, "decline": 0.6}
DAYS, PER_DAY, SHIFT_DAY = 16, 600, 11
FALLBACKS, UNKNOWN, LATE = 60, 27, 7
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=DAYS)
#: labels of every window known (40 days after the last), and of none matured (1 day after)
LATE_AT, EARLY_AT = END + dt.timedelta(days=40), END + dt.timedelta(days=1)


def _features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    nulls = rng.random(n) < 0.1
    return np.column_stack(
        [
            rng.normal(shift, 1.0, n),
            rng.poisson(3.0, n).astype(float),
            np.zeros(n),  # unknown_customer: set per day below
            np.where(nulls, np.nan, rng.exponential(2.0, n)),
        ]
    )


def _scores(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.beta(0.6, 6.0, n)


@dataclass
class World:
    log: Path
    profile: ReferenceProfile
    profile_path: Path
    #: per day: the numbers put in
    decisions: list[dict[str, int]]
    unknown_share: float
    #: per day: (labels, scores) of the ensemble decisions
    truth: list[tuple[np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    rng = np.random.default_rng(2024)
    root = tmp_path_factory.mktemp("monitor")
    ref = _features(rng, 20_000)
    ref[:, 2] = (rng.random(20_000) < UNKNOWN / (PER_DAY - FALLBACKS)).astype(float)
    ref_scores = _scores(rng, 20_000)
    profile = build_profile(ref, NAMES, scores=ref_scores, thresholds=THRESHOLDS)
    profile_path = root / "reference_profile.json"
    profile_path.write_text(profile.model_dump_json())
    th = Thresholds(**THRESHOLDS)
    rows: list[dict[str, Any]] = []
    seq = 0
    decisions, truth = [], []
    for day in range(DAYS):
        n = PER_DAY
        t0 = START + dt.timedelta(days=day)
        # the first at midnight (time windows start at the log's first event), the rest within
        # two hours: no feature here depends on the hour, and fewer hourly files are faster
        offsets = np.r_[0.0, np.sort(rng.uniform(0, 7_199, n - 1))]
        times = [t0 + dt.timedelta(seconds=float(o)) for o in offsets]
        x = _features(rng, n, shift=1.0 if day >= SHIFT_DAY else 0.0)
        x[:UNKNOWN, 2] = 1.0  # rows 0..26: unknown customers (all with features)
        s = _scores(rng, n)
        fallback = np.zeros(n, dtype=bool)
        fallback[-FALLBACKS:] = True  # the last 60 rows: a fallback rung, no features
        late = set(rng.choice(n, LATE, replace=False).tolist())
        y = rng.random(n) < s
        counts = {"approve": 0, "review": 0, "decline": 0}
        for i in range(n):
            tx_id = f"t{day:02d}-{i:04d}"
            tx: dict[str, Any] = {
                "tx_id": tx_id,
                "ts": times[i],
                "customer_id": f"c{i % 97}",
                "terminal_id": f"m{i % 13}",
                "amount": 10.0,
            }
            if fallback[i]:
                event = DecisionEvent.of(
                    tx,
                    decision="review",
                    decision_source="rules",
                    fallback_reason="timeout",
                    model_version="v1",
                    decided_at=times[i],
                )
            else:
                event = DecisionEvent.of(
                    tx,
                    decision=decide(float(s[i]), th),
                    decision_source="ensemble",
                    model_version="v1",
                    feature_names=NAMES,
                    feature_values=x[i],
                    score=float(s[i]),
                    decided_at=times[i],
                )
            counts[event.decision] += 1
            lag = dt.timedelta(hours=2) if i in late else dt.timedelta(milliseconds=50)
            seq += 1
            rows.append(log_row(event, seq, times[i] + lag))
            if y[i] and not fallback[i]:
                label_ts = times[i] + dt.timedelta(days=int(rng.integers(1, 21)))
                label = LabelEvent.of(tx_id, "chargeback", label_ts, tx_ts=times[i])
                seq += 1
                rows.append(log_row(label, seq, label_ts))
        decisions.append(counts)
        truth.append((y[~fallback], s[~fallback]))
    write_rows(root / "log", rows)
    return World(
        log=root / "log",
        profile=profile,
        profile_path=profile_path,
        decisions=decisions,
        unknown_share=UNKNOWN / (PER_DAY - FALLBACKS),
        truth=truth,
    )


@pytest.fixture(scope="module")
def report(world: World) -> MonitorReport:
    return run_monitor(world.log, world.profile, MonitorConfig(), at=LATE_AT, model_version="v1")


@pytest.fixture(scope="module")
def early(world: World) -> MonitorReport:
    """The same log with the labels known a day after its end (no window has matured)."""
    return run_monitor(world.log, world.profile, MonitorConfig(), at=EARLY_AT)


def test_no_drift_holds_no_alarm_over_eleven_daily_windows(world: World) -> None:
    before = START + dt.timedelta(days=SHIFT_DAY)
    rep = run_monitor(world.log, world.profile, MonitorConfig(), end=before, at=LATE_AT)
    assert len(rep.windows) == SHIFT_DAY >= 10
    assert all(w.decisions == PER_DAY for w in rep.windows)
    assert all(not w.held for w in rep.windows)
    assert not rep.alarm_holds and rep.reason is None
    # every feature and the score had drift figures in every window
    assert all(set(w.drift) == {*NAMES, "score"} for w in rep.windows)


def test_a_mean_shift_alarms_from_its_day_and_holds_after_hold_windows(
    report: MonitorReport,
) -> None:
    hold = report.config.hold_windows
    assert len(report.windows) == DAYS
    alarming = [w.index for w in report.windows if "amount_z" in w.alarms]
    assert set(range(SHIFT_DAY, DAYS)) <= set(alarming)
    # before the shift: at most a stray false alarm (1 % per feature per window), never held
    assert SHIFT_DAY - 1 not in alarming and len(alarming) <= DAYS - SHIFT_DAY + 1
    held = [w.index for w in report.windows if "amount_z" in w.held]
    assert held == list(range(SHIFT_DAY + hold - 1, DAYS))
    assert report.alarm_holds and report.last is not None
    assert report.last.held == ["amount_z"]
    assert report.reason is not None and "amount_z" in report.reason
    shift = report.last.drift["amount_z"].mean_shift_sd
    assert shift is not None and 0.8 < shift < 1.2


def test_data_health_and_decision_shares_are_the_numbers_put_in(
    world: World, report: MonitorReport
) -> None:
    for w, counts in zip(report.windows, world.decisions, strict=True):
        h = w.health
        assert h["fallback_share"] == pytest.approx(FALLBACKS / PER_DAY, abs=1e-6)
        assert h["fallbacks"] == {"rules/timeout": FALLBACKS}
        assert h["without_features_share"] == pytest.approx(FALLBACKS / PER_DAY, abs=1e-6)
        assert h["unknown_customer_share"] == pytest.approx(world.unknown_share, abs=1e-6)
        assert h["late_events"] == LATE
        assert 0.05 < h["null_rate"]["with_nulls"] < 0.15
        assert h["null_rate"]["amount_z"] == 0.0
        assert w.decision_share == pytest.approx(
            {d: k / PER_DAY for d, k in counts.items() if k}, abs=1e-6
        )
    assert report.expected_decision_mix.keys() == {"approve", "review", "decline"}


def test_realised_performance_appears_once_labels_mature_and_not_before(
    world: World, report: MonitorReport, early: MonitorReport
) -> None:
    assert all(w.realised is None for w in early.windows)
    assert all(w.estimated["average_precision"] > 0 for w in early.windows)
    for w, (y, s) in zip(report.windows, world.truth, strict=True):
        assert w.realised is not None
        assert w.realised["rows"] == len(y) and w.realised["frauds"] == int(y.sum())
        assert w.realised["average_precision"] == pytest.approx(average_precision(y, s))
        assert w.estimated["rows"] == len(y)
    # the scores are the fraud probabilities: the realised AP lands in the estimate's 95 %
    # interval (~50 frauds a window: the interval is wide, so most windows, not all)
    covered = [
        w.estimated["average_precision_lo"]
        <= w.realised["average_precision"]
        <= w.estimated["average_precision_hi"]
        for w in report.windows
        if w.realised
    ]
    assert sum(covered) >= 13
    maturity = report.label_maturity
    assert maturity is not None and maturity["frauds"] == sum(int(y.sum()) for y, _ in world.truth)
    assert maturity["curve"][-1]["share"] == 1.0


def _scrape(metrics: MonitorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exporter_shows_the_last_window_and_only_documented_metrics(
    report: MonitorReport,
) -> None:
    metrics = MonitorMetrics()
    empty = _scrape(metrics)
    assert empty == {}  # nothing before the first update, not zeros
    metrics.update(report)
    metrics.count_trigger("drift")
    got = _scrape(metrics)
    last = report.last
    assert last is not None

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    amount = last.drift["amount_z"]
    assert value("riskml_monitor_psi", feature="amount_z") == pytest.approx(amount.psi)
    assert value("riskml_monitor_psi_threshold", feature="amount_z") == pytest.approx(
        amount.psi_threshold
    )
    assert value("riskml_monitor_drift_alarm", feature="amount_z") == 1.0
    assert value("riskml_monitor_drift_alarm_windows", feature="amount_z") == DAYS - SHIFT_DAY
    assert value("riskml_monitor_drift_alarm", feature="tx_count") == 0.0
    assert value("riskml_monitor_drift_alarm_windows", feature="tx_count") == 0.0
    assert value("riskml_monitor_psi", feature="score") == pytest.approx(last.drift["score"].psi)
    assert value("riskml_monitor_js_distance", feature="score") == pytest.approx(
        last.drift["score"].js
    )
    for decision in ("approve", "review", "decline"):
        assert value("riskml_monitor_decision_share", decision=decision) == pytest.approx(
            last.decision_share.get(decision, 0.0)
        )
        assert value("riskml_monitor_expected_decision_share", decision=decision) == (
            pytest.approx(report.expected_decision_mix[decision])
        )
    assert value("riskml_monitor_fallback_share") == pytest.approx(FALLBACKS / PER_DAY, abs=1e-6)
    assert value("riskml_monitor_late_events") == LATE
    assert value("riskml_monitor_window_decisions") == PER_DAY
    assert value("riskml_monitor_estimated_ap") == pytest.approx(
        last.estimated["average_precision"]
    )
    assert last.realised is not None
    assert value("riskml_monitor_realised_ap") == pytest.approx(last.realised["average_precision"])
    assert value("riskml_monitor_retrain_triggers_total", reason="drift") == 1.0
    # the decision log cannot count rejected requests: absent, not 0 or NaN
    assert not any(name == "riskml_monitor_rejected_events" for name, _ in got)
    assert all(math.isfinite(v) for v in got.values())
    documented = {s for m in MONITOR_METRICS for s in series_names(m)}
    assert {name for name, _ in got} <= documented
    families = {f.name for f in metrics.registry.collect()}
    assert families == {m.name.removesuffix("_total") for m in MONITOR_METRICS}


def test_exporter_leaves_unknown_values_out(early: MonitorReport) -> None:
    metrics = MonitorMetrics()
    metrics.update(early)
    assert metrics.value("riskml_monitor_realised_ap") is None  # no window has matured
    assert metrics.value("riskml_monitor_estimated_ap") is not None
    metrics.update(
        MonitorReport(
            model_version=None, config=MonitorConfig(), windows=[], expected_decision_mix={}
        )
    )
    assert metrics.value("riskml_monitor_psi", feature="amount_z") is None  # no stale series


def test_html_report_names_the_alarmed_feature_and_embeds_plots(
    report: MonitorReport, tmp_path: Path
) -> None:
    path = write_html(report, tmp_path / "monitor.html")
    text = path.read_text()
    assert "amount_z" in text and "<img" in text and "data:image/png;base64," in text
    assert "Alarm holds" in text and "v1" in text
    # (the same page from the JSON a run writes: `riskml monitor report` in the CLI test)


def test_cli_run_report_and_exit_codes(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    log, prof = str(world.log), str(world.profile_path)
    out, html = tmp_path / "report.json", tmp_path / "report.html"
    base = ["monitor", "run", "--log", log, "--profile", prof, "--at", LATE_AT.isoformat()]
    args = [*base, "--out", str(out), "--html", str(html), "--fail-on-alarm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # an alarm holds
    assert "amount_z" in result.output
    data = json.loads(out.read_text())  # written all the same, strict JSON: no NaN
    assert data["alarm_holds"] is True and "amount_z" in data["reason"]
    assert len(data["windows"]) == DAYS and html.exists()

    def day(k: int) -> str:
        return (START + dt.timedelta(days=k)).isoformat()

    # the alarm holds over the last four days, but without --fail-on-alarm the exit is 0
    result = runner.invoke(app, [*base, "--since", day(DAYS - 4)])
    assert result.exit_code == 0, result.output
    assert "alarm:" in result.output
    result = runner.invoke(
        app, [*base, "--since", day(SHIFT_DAY - 4), "--until", day(SHIFT_DAY), "--fail-on-alarm"]
    )
    assert result.exit_code == 0, result.output

    page = tmp_path / "again.html"
    result = runner.invoke(app, ["monitor", "report", "--in", str(out), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "amount_z" in page.read_text()

    bad = {
        "missing log": ["monitor", "run", "--log", str(tmp_path / "nope"), "--profile", prof],
        "bad duration": [*base, "--every", "3 fortnights"],
        "bad time": [*base, "--since", "yesterday"],
        "no profile source": ["monitor", "run", "--log", log],
        "bundle without manifest/profile": [
            "monitor",
            "run",
            "--log",
            log,
            "--bundle",
            str(tmp_path),
        ],
        "missing report": ["monitor", "report", "--in", str(tmp_path / "nope.json")],
        "metrics port without --follow": [*base, "--metrics-port", "0"],
    }
    for what, args in bad.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (what, result.output)


def test_cli_follow_updates_the_exporter_until_max_runs(world: World, tmp_path: Path) -> None:
    # the moving window ends now: this 2024 log is far older than the lookback, so no window,
    # and the loop goes on (a quiet log is not an error)
    out = tmp_path / "follow.json"
    args = ["monitor", "run", "--log", str(world.log), "--profile", str(world.profile_path)]
    result = CliRunner().invoke(
        app, [*args, "--follow", "--interval-s", "0", "--max-runs", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "after 2 run(s)" in result.output
    assert json.loads(out.read_text())["windows"] == []
    # the moving window ends at the last whole window (midnight UTC for daily windows)
    now = dt.datetime(2026, 12, 6, 13, 37, 5, tzinfo=dt.UTC)
    assert whole_windows_end(now, 86_400.0) == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    assert whole_windows_end(now, 6 * 3600.0) == dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    assert whole_windows_end(now, None) == now


def test_retraining_is_called_for_only_by_broad_drift() -> None:
    """One feature held is an alert (often a broken upstream: retraining does not fix it); the
    score, or three series held at once, call for retraining."""
    from riskml.monitoring.monitor import MonitorConfig, MonitorReport, WindowReport

    t = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

    def report(held: list[str]) -> MonitorReport:
        window = WindowReport(0, t, t, 100, {}, {}, {}, {}, held=held)
        return MonitorReport("v1", MonitorConfig(), [window], {})

    one = report(["amount_z"])
    assert one.alarm_holds and not one.retrain
    assert one.reason is not None and "alert only" in one.reason
    broad = report(["a", "b", "c"])
    assert broad.retrain and "retrain: broad drift" in (broad.reason or "")
    assert report(["score"]).retrain
    assert not report([]).alarm_holds and report([]).reason is None
    assert report(["a", "b"]).retrain is False
    assert MonitorReport(
        "v1",
        MonitorConfig(retrain_min_held=2),
        [WindowReport(0, t, t, 1, {}, {}, {}, {}, held=["a", "b"])],
        {},
    ).retrain
