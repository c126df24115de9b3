"""The monitor: windows of the decision log against the model's reference profile.

Windows are one day of event time by default: a window must span the daily cycle, or the
hour-of-day features drift by construction (2,000 decisions are half a day here, and their
``tx_hour`` is nothing like the reference's whole days). Count windows (``size``) suit traffic
without a cycle, or a replay.

It reads the offline log (:mod:`riskml.streaming.offline_log`: every decided transaction with
the feature values the models saw, its scores and decision, and the label events), never the
decision path. Per window — ``size`` decisions, or a span of event time (``every``) — it
reports:

* **drift** of every profiled feature and of the score (:mod:`riskml.monitoring.drift`: PSI and
  JS distance with thresholds sized to the window), over the decisions that carried features
  (the score: the full ensemble's decisions);
* **data health**: null and default rates per feature, the share of unknown customers (the
  ``unknown_customer`` flag: no history online), the fallback share (decided
  by a rung below the ensemble) and its reasons, decisions without features, late events
  (published more than ``late_after_s`` after their event time);
* the **decision mix** against the one the thresholds gave on the reference;
* **performance without labels** from the calibrated scores
  (:mod:`riskml.monitoring.performance`), and the **realised** performance once the window's
  labels have matured (label events in the log, ``maturity_days`` after the window's end).

An alarm *holds* when one feature (or the score) alarms in ``hold_windows`` consecutive windows
(at a 1 % false-alarm rate per feature per window and 84 features, one false alarm somewhere
is common in a window; the same feature three windows running is ~1e-4 per window). A held
alarm is an alert (one feature drifting is often a broken upstream: retraining on it does not
help, a person does). **Retraining** is called for when the drift is broad — the score, or at
least ``retrain_min_held`` series held at once (default 3) — :attr:`MonitorReport.retrain`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.models.bundle import finite_json
from riskml.monitoring.drift import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_PSI,
    MIN_WINDOW,
    FeatureDrift,
    window_drift,
)
from riskml.monitoring.profile import SCORE, ReferenceProfile

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

#: The flag of a customer the online store has no history for (1: unknown).
UNKNOWN_CUSTOMER_FEATURE: Final = "unknown_customer"
ENSEMBLE: Final = "ensemble"


#: Features the calendar decides: a day's window holds one day of the week, so ``tx_dow``
#: "drifts" in every window shorter than a week. Their data health is still reported.
CALENDAR_FEATURES: tuple[str, ...] = ("tx_dow",)


#: Decisions decoded from the log's JSON at once.
DECODE_ROWS: Final = 5_000


class MonitorError(ValueError):
    """The monitor cannot run on what it was given; the message says why."""


class MonitorConfig(BaseModel):
    """How the log is cut into windows and when an alarm holds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: int | None = Field(None, ge=MIN_WINDOW, description="Decisions per window.")
    every_s: float | None = Field(
        86_400.0, gt=0, description="Window span of event time (s); default one day."
    )
    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1, description="False alarms/feature/window.")
    hold_windows: int = Field(3, ge=1, description="Consecutive alarming windows that hold.")
    min_psi: float = Field(
        DEFAULT_MIN_PSI, ge=0, description="Smallest PSI that alarms, however significant."
    )
    retrain_min_held: int = Field(
        3, ge=1, description="Series held at once (or the score) that call for retraining."
    )
    late_after_s: float = Field(3600.0, ge=0, description="Published this late = late event.")
    maturity_days: float = Field(30.0, ge=0, description="Labels known this long after.")
    min_window: int = Field(MIN_WINDOW, ge=MIN_WINDOW, description="Smaller windows skipped.")
    exclude: tuple[str, ...] = Field(
        CALENDAR_FEATURES, description="Features without drift figures (calendar-determined)."
    )

    @model_validator(mode="after")
    def _one_way(self) -> MonitorConfig:
        if self.size is not None and self.every_s is not None:
            if "every_s" in self.model_fields_set:
                raise ValueError("cut windows either by count (size) or by time (every_s)")
            self.every_s = None  # a size given replaces the default time windows
        if self.size is None and self.every_s is None:
            raise ValueError("cut windows by count (size) or by time (every_s)")
        return self


def decisions_frame(
    log_root: str | Path,
    feature_names: Sequence[str],
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """The logged decisions with event time in [start, end), one per ``tx_id``, in event-time
    order: the log's columns plus ``decision_source``, ``fallback_reason``, ``has_features``
    and one Float64 column per feature (null where the value was missing or not fetched)."""
    import polars as pl

    from riskml.streaming.offline_log import read_events

    frame = read_events(log_root, "decision", start=start, end=end)
    dtype = pl.Struct(
        {
            "features": pl.Struct({name: pl.Float64 for name in feature_names}),
            "decision_source": pl.String,
            "fallback_reason": pl.String,
        }
    )
    # decoded in slices: the JSON decoder's working memory grows with the rows it holds
    # (~300 MiB per 10,000 decisions of 84 features decoded at once)
    parsed = pl.concat(
        [
            frame.slice(lo, DECODE_ROWS)
            .select(pl.col("payload").str.json_decode(dtype).alias("_p"))
            .unnest("_p")
            .unnest("features")
            for lo in range(0, max(frame.height, 1), DECODE_ROWS)
        ]
    )
    has = pl.any_horizontal(pl.col(n).is_not_null() for n in feature_names)
    out = pl.concat([frame.drop("payload"), parsed], how="horizontal").with_columns(
        has.alias("has_features") if feature_names else pl.lit(False).alias("has_features")
    )
    return out.sort("event_ts", "stream_seq")


def cut_windows(frame: pl.DataFrame, config: MonitorConfig) -> Iterator[pl.DataFrame]:
    """Consecutive windows of a time-ordered decisions frame (the last one may be partial and
    is kept only if it has ``min_window`` rows)."""
    import polars as pl

    if config.size is not None:
        for lo in range(0, frame.height, config.size):
            part = frame.slice(lo, config.size)
            if part.height >= config.min_window:
                yield part
        return
    assert config.every_s is not None
    if frame.is_empty():
        return
    every = dt.timedelta(seconds=config.every_s)
    first = frame["event_ts"].min()
    assert isinstance(first, dt.datetime)
    # windows on a fixed grid (multiples of the span since the epoch, e.g. UTC midnights): the
    # same boundaries whatever the first event or --since
    epoch = dt.datetime(1970, 1, 1, tzinfo=first.tzinfo or dt.UTC)
    t0 = epoch + ((first - epoch) // every) * every
    idx = (
        (pl.col("event_ts") - t0).dt.total_microseconds()
        // int(every / dt.timedelta(microseconds=1))
    ).alias("_w")
    for _, part in frame.with_columns(idx).group_by("_w", maintain_order=True):
        if part.height >= config.min_window:
            yield part.drop("_w")


@dataclass
class WindowReport:
    """One window's figures (JSON-able through :meth:`to_json`)."""

    index: int
    start: dt.datetime
    end: dt.datetime
    decisions: int
    drift: dict[str, FeatureDrift]
    health: dict[str, Any]
    decision_share: dict[str, float]
    estimated: dict[str, Any]
    realised: dict[str, Any] | None = None
    held: list[str] = field(default_factory=list)

    @property
    def alarms(self) -> list[str]:
        return sorted(name for name, d in self.drift.items() if d.alarm)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decisions": self.decisions,
            "alarms": self.alarms,
            "held": self.held,
            "health": self.health,
            "decision_share": self.decision_share,
            "estimated": self.estimated,
            "realised": self.realised,
            "drift": {name: d.to_json() for name, d in self.drift.items()},
        }


@dataclass
class MonitorReport:
    """Every window, the alarm that holds (if any) and why."""

    model_version: str | None
    config: MonitorConfig
    windows: list[WindowReport]
    expected_decision_mix: dict[str, float]
    label_maturity: dict[str, Any] | None = None

    @property
    def last(self) -> WindowReport | None:
        return self.windows[-1] if self.windows else None

    @property
    def alarm_holds(self) -> bool:
        return bool(self.last and self.last.held)

    @property
    def retrain(self) -> bool:
        """Broad drift holds in the last window (:meth:`calls_for_retraining`)."""
        return self.last is not None and self.calls_for_retraining(self.last)

    def calls_for_retraining(self, window: WindowReport) -> bool:
        """Broad drift holds in ``window``: the score, or ``retrain_min_held`` series."""
        return SCORE in window.held or len(window.held) >= self.config.retrain_min_held

    @property
    def reason(self) -> str | None:
        last = self.last
        if last is None or not last.held:
            return None
        verdict = (
            "retrain: broad drift"
            if self.retrain
            else f"alert only: fewer than {self.config.retrain_min_held} series and not the score"
        )
        return (
            f"drift held {self.config.hold_windows} consecutive windows on "
            f"{', '.join(last.held)} (window {last.index}: {last.start:%Y-%m-%d %H:%M} to "
            f"{last.end:%Y-%m-%d %H:%M}, {last.decisions} decisions); {verdict}"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able, NaN and infinities as None."""
        return finite_json(
            {
                "model_version": self.model_version,
                "config": self.config.model_dump(mode="json"),
                "windows": [w.to_json() for w in self.windows],
                "expected_decision_mix": self.expected_decision_mix,
                "alarm_holds": self.alarm_holds,
                "retrain": self.retrain,
                "reason": self.reason,
                "label_maturity": self.label_maturity,
            }
        )


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def _health(part: pl.DataFrame, profile: ReferenceProfile, config: MonitorConfig) -> dict[str, Any]:
    import polars as pl

    n = part.height
    with_features = part.filter(pl.col("has_features"))
    nulls: dict[str, float] = {}
    defaults: dict[str, float] = {}
    for name, prof in profile.features.items():
        if name not in with_features.columns or with_features.is_empty():
            continue
        col = with_features[name].to_numpy().astype(np.float64)
        nulls[name] = round(_rate(np.isnan(col)), 6)
        if prof.default_value is not None:
            defaults[name] = round(_rate(col == prof.default_value), 6)
    unknown = None
    if UNKNOWN_CUSTOMER_FEATURE in profile.features and not with_features.is_empty():
        col = with_features[UNKNOWN_CUSTOMER_FEATURE].to_numpy().astype(np.float64)
        unknown = round(_rate(col == 1.0), 6)
    lag = (pl.col("published_at") - pl.col("event_ts")).dt.total_microseconds() / 1e6
    late = int(part.select((lag > config.late_after_s).sum()).item() or 0)
    fallback = part.filter(pl.col("decision_source") != ENSEMBLE)
    reasons = (
        fallback.group_by("decision_source", "fallback_reason")
        .len()
        .sort("len", descending=True)
        .iter_rows()
    )
    return {
        "fallback_share": round(fallback.height / n, 6) if n else 0.0,
        "fallbacks": {f"{src}/{why}": int(k) for src, why, k in reasons},
        "without_features_share": round(1 - with_features.height / n, 6) if n else 0.0,
        "unknown_customer_share": unknown,
        "late_events": late,
        "null_rate": nulls,
        "default_rate": defaults,
    }


def _estimated(scores: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, Any]:
    from riskml.monitoring.performance import estimate_performance

    if scores.size == 0 or not thresholds:
        return {}
    return dict(estimate_performance(scores, dict(thresholds)))


def monitor_frame(
    frame: pl.DataFrame,
    profile: ReferenceProfile,
    config: MonitorConfig,
    *,
    labels: pl.DataFrame | None = None,
    at: dt.datetime | None = None,
    model_version: str | None = None,
    seed: int = 0,
) -> MonitorReport:
    """Monitor a decisions frame (:func:`decisions_frame`'s) window by window. ``labels``
    (``tx_id``, ``fraud``, ``label_ts``: :func:`riskml.streaming.offline_log.labels_frame`)
    known at ``at`` give each window whose labels have matured its realised performance."""
    import polars as pl

    profiles = {k: v for k, v in profile.monitored().items() if k not in config.exclude}
    feature_names = [n for n in profile.features if n in frame.columns]
    if profile.features and not feature_names:
        raise MonitorError("the decisions carry none of the profile's features")
    windows: list[WindowReport] = []
    streak: dict[str, int] = dict.fromkeys(profiles, 0)
    thresholds = profile.thresholds
    horizon = dt.timedelta(days=config.maturity_days)
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    # one label per transaction (fraud if any label said so, when first known), once for all
    per_tx = (
        None
        if labels is None
        else labels.group_by("tx_id").agg(pl.col("fraud").max(), pl.col("label_ts").min())
    )
    for i, part in enumerate(cut_windows(frame, config)):
        with_features = part.filter(pl.col("has_features"))
        ensemble = part.filter(
            (pl.col("decision_source") == ENSEMBLE) & pl.col("score").is_not_null()
        )
        columns: dict[str, np.ndarray] = {}
        if with_features.height >= config.min_window:
            columns = {n: with_features[n].to_numpy().astype(np.float64) for n in feature_names}
        scores = ensemble["score"].to_numpy().astype(np.float64)
        if profile.score is not None and scores.size >= config.min_window:
            columns[SCORE] = scores
        drift = window_drift(
            profiles, columns, alpha=config.alpha, min_psi=config.min_psi, seed=seed
        )
        for name in profiles:
            streak[name] = streak[name] + 1 if name in drift and drift[name].alarm else 0
        held = sorted(n for n, k in streak.items() if k >= config.hold_windows)
        counts = part["decision"].value_counts()
        share = {str(d): round(int(k) / part.height, 6) for d, k in counts.iter_rows()}
        start, end = part["event_ts"].min(), part["event_ts"].max()
        assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
        report = WindowReport(
            index=i,
            start=start,
            end=end,
            decisions=part.height,
            drift=drift,
            health=_health(part, profile, config),
            decision_share=share,
            estimated=_estimated(scores, thresholds),
            held=held,
        )
        # realised figures only once the window's labels have matured: before that the mature
        # decisions are the frauds whose labels came early, and their AP is close to 1
        if per_tx is not None and at is not None and at - end >= horizon:
            report.realised = _realised(ensemble, per_tx, at, thresholds, config)
        windows.append(report)
    maturity = None
    if per_tx is not None and at is not None and frame.height:
        maturity = _maturity(frame, per_tx, at, config)
    return MonitorReport(
        model_version=model_version,
        config=config,
        windows=windows,
        expected_decision_mix=profile.decision_mix,
        label_maturity=maturity,
    )


def _realised(
    ensemble: pl.DataFrame,
    per_tx: pl.DataFrame,
    at: dt.datetime,
    thresholds: Mapping[str, float],
    config: MonitorConfig,
) -> dict[str, Any] | None:
    """Realised figures of a window whose labels have matured at ``at`` (else None);
    ``per_tx``: one label row per transaction."""
    from riskml.monitoring.performance import realised_performance

    if ensemble.is_empty():
        return None
    joined = ensemble.select("tx_id", "score", "event_ts").join(per_tx, on="tx_id", how="left")
    return dict(
        realised_performance(
            joined["score"].to_numpy().astype(np.float64),
            joined["event_ts"],
            joined["label_ts"],
            at,
            dict(thresholds),
            label_is_fraud=joined["fraud"].fill_null(False).to_numpy().astype(bool),
            maturity_days=config.maturity_days,
        )
    )


def _maturity(
    frame: pl.DataFrame, per_tx: pl.DataFrame, at: dt.datetime, config: MonitorConfig
) -> dict[str, Any]:
    """The label-maturity curve of the frame's decisions old enough at ``at`` to have had
    ``maturity_days`` for their labels (younger ones would bias it up: only their early labels
    are in)."""
    import polars as pl

    from riskml.monitoring.performance import label_maturity_curve

    fraud = per_tx.filter(pl.col("fraud")).select("tx_id", "label_ts")
    joined = frame.select("tx_id", "event_ts").join(fraud, on="tx_id", how="inner")
    if joined.is_empty():
        return {"frauds": 0}
    days = max(1, math.ceil(config.maturity_days))
    curve = label_maturity_curve(joined["event_ts"], joined["label_ts"], at=at, max_days=days)
    return {"frauds": joined.height, "max_days": days, "curve": curve.to_dicts()}


def load_profile(bundle_path: str | Path) -> ReferenceProfile:
    """The reference profile inside a bundle, checked against the bundle's manifest (its
    sha256 there); the rest of the bundle is not read (``fetch`` verified it, when it came from
    the registry)."""
    import json

    from riskml.models.bundle import MANIFEST, PROFILE_FILE, BundleIntegrityError, sha256_file

    path = Path(bundle_path)
    try:
        files = json.loads((path / MANIFEST).read_text()).get("files") or {}
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(f"{path}: no readable {MANIFEST} ({exc})") from None
    file = path / PROFILE_FILE
    if PROFILE_FILE not in files:
        raise MonitorError(
            f"bundle {path} has no {PROFILE_FILE}: it predates reference profiles; retrain it"
        )
    if not file.is_file() or sha256_file(file) != files[PROFILE_FILE]:
        raise BundleIntegrityError(f"{path}: {PROFILE_FILE} is missing or not the manifest's")
    return ReferenceProfile.model_validate_json(file.read_text())


def run_monitor(
    log_root: str | Path,
    profile: ReferenceProfile,
    config: MonitorConfig,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    at: dt.datetime | None = None,
    model_version: str | None = None,
) -> MonitorReport:
    """Read the decisions (and the labels known at ``at``, default now) from the offline log
    and monitor them."""
    from riskml.streaming.offline_log import labels_frame

    frame = decisions_frame(log_root, list(profile.features), start=start, end=end)
    at = at or dt.datetime.now(dt.UTC)
    labels = labels_frame(log_root, at, since=start)  # a label comes after its decision
    return monitor_frame(frame, profile, config, labels=labels, at=at, model_version=model_version)
