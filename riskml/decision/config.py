"""Decision configuration: the ``user_config`` documents of the serving deployments.

``DeciderConfig`` is the Decider's ``user_config`` (thresholds, blend weights, reason codes);
``IngressConfig`` is the Ingress's (deadline, stage timeouts, rules, default decision, batch limit,
shadow scoring and experiment split, write-back, the decision log). Both are changeable at run
time through Serve's ``reconfigure()`` without restarting replicas. Every model forbids unknown
keys, so a typo in ``serve_config.yaml`` fails the deployment instead of being silently ignored.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Decision = Literal["approve", "review", "decline"]
DecisionSource = Literal["ensemble", "xgboost_only", "rules", "default"]

#: Models the blend knows about (the Decider's ``blend_weights`` keys).
MODEL_NAMES: tuple[str, ...] = ("xgboost", "sequence")

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Thresholds(BaseModel):
    """Score cut-offs: ``score >= decline`` declines, ``score >= review`` reviews, else approve."""

    model_config = _CONFIG

    review: float = Field(default=0.3, ge=0.0, le=1.0)
    decline: float = Field(default=0.7, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError(
                f"thresholds.review ({self.review}) must be <= thresholds.decline ({self.decline})"
            )
        return self


class DeciderConfig(BaseModel):
    """``user_config`` of the Decider deployment (calibrated blend + decision)."""

    model_config = _CONFIG

    thresholds: Thresholds = Field(default_factory=Thresholds)
    blend_weights: dict[str, float] = Field(
        default_factory=lambda: {"xgboost": 0.6, "sequence": 0.4},
        description="Weights of the calibrated model probabilities (renormalised over the "
        "models that answered).",
    )
    use_fitted_blend: bool = Field(
        default=True,
        description="Score with the bundle's fitted blend when all its models answered "
        "(blend_weights then only apply when a model is missing).",
    )
    reason_codes: int = Field(
        default=3, ge=0, le=20, description="Reason codes (top contributing features) per decision."
    )

    @model_validator(mode="after")
    def _weights(self) -> DeciderConfig:
        unknown = sorted(set(self.blend_weights) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"blend_weights: unknown models {unknown}; known: {list(MODEL_NAMES)}")
        bad = {k: v for k, v in self.blend_weights.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"blend_weights must be finite and >= 0: {bad}")
        if self.blend_weights.get("xgboost", 0.0) <= 0:
            raise ValueError("blend_weights.xgboost must be > 0 (the ladder's first model rung)")
        return self


class StageTimeouts(BaseModel):
    """Per-stage time limits (ms); each is also capped by what is left of the deadline."""

    model_config = _CONFIG

    features_ms: float = Field(default=20.0, gt=0, le=10_000)
    xgboost_ms: float = Field(default=20.0, gt=0, le=10_000)
    sequence_ms: float = Field(default=20.0, gt=0, le=10_000)
    decider_ms: float = Field(default=10.0, gt=0, le=10_000)


class RulesConfig(BaseModel):
    """The rules rung: amount and velocity limits, used when the models cannot answer."""

    model_config = _CONFIG

    amount_review: float = Field(default=1_000.0, ge=0)
    amount_decline: float = Field(default=5_000.0, ge=0)
    velocity_feature: str = Field(
        default="cust_cnt_1h",
        min_length=1,
        description="Feature holding the customer's recent transaction count (when fetched).",
    )
    velocity_review: int = Field(default=5, ge=1)
    velocity_decline: int = Field(default=10, ge=1)
    local_velocity_window_s: float = Field(
        default=3_600.0,
        gt=0,
        description="Window of the replica-local velocity counter used when features are missing.",
    )
    local_velocity_max_customers: int = Field(default=100_000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RulesConfig:
        if self.amount_review > self.amount_decline:
            raise ValueError("rules.amount_review must be <= rules.amount_decline")
        if self.velocity_review > self.velocity_decline:
            raise ValueError("rules.velocity_review must be <= rules.velocity_decline")
        return self


class ShadowConfig(BaseModel):
    """Champion/challenger: score a share of traffic with a shadow model, never deciding on it."""

    model_config = _CONFIG

    version: str | None = Field(default=None, description="Tabular model version to shadow.")
    share: float = Field(default=0.0, ge=0.0, le=1.0)
    salt: str = Field(default="shadow", min_length=1)


class ExperimentConfig(BaseModel):
    """Deterministic hash split of traffic between tabular model versions (a feature flag)."""

    model_config = _CONFIG

    enabled: bool = False
    salt: str = Field(default="exp", min_length=1)
    unit: Literal["customer_id", "tx_id"] = "customer_id"
    arms: dict[str, float] = Field(
        default_factory=dict, description="Model version -> traffic weight (relative)."
    )

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        if any(not (w >= 0 and math.isfinite(w)) for w in self.arms.values()):
            raise ValueError("experiment.arms weights must be finite and >= 0")
        if self.enabled and sum(self.arms.values()) <= 0:
            raise ValueError("experiment.enabled needs at least one arm with a positive weight")
        return self


class BreakerConfig(BaseModel):
    """Circuit breaker on the feature store: after ``failures`` consecutive failed fetches (the
    store raised, or did not answer within the feature timeout: a hung store counts like a stopped
    one), skip the store for ``open_ms`` and answer from the rules rung at once (tagged
    ``feature_store_unavailable``); then let requests probe it again (one good fetch closes it).
    ``failures: 0`` disables it. Fetches that fail together count once: a failed fetch that was
    already in flight when the last counted failure was seen is the same stall, not new evidence
    (each of them still falls to the rules), so a hung store opens the breaker after
    ``failures`` feature timeouts one after the other, and one brief stall of a healthy store
    under load never does.

    A late fetch counts against the store only when the replica's event loop kept up: one whose
    timeout fired more than ``loop_lag_ms`` after it was due, or (where the service runs a
    heartbeat on the loop: serving.looplag) during which the loop was behind by more than
    ``loop_lag_ms`` in all, says the replica's own event loop was behind (CPU-saturated), and
    the store's answer may well have been waiting to be read; that request
    still falls to the rules (``feature_timeout``), but one saturated replica does not take the
    store away from every request for ``open_ms``. ``loop_lag_ms: 0`` counts every late fetch."""

    model_config = _CONFIG

    failures: int = Field(default=3, ge=0, le=1_000)
    open_ms: float = Field(default=1_000.0, gt=0, le=600_000)
    loop_lag_ms: float = Field(default=10.0, ge=0, le=10_000)


class DecisionLogConfig(BaseModel):
    """The durable decision log: every decided transaction published to the event stream
    (``settings.nats_url``, stream ``settings.stream_name``), the broker's ack awaited within
    what is left of the request's deadline (at most ``publish_timeout_ms``); what the broker
    does not ack in time goes to a bounded local outbox (memory, then a spill file under
    ``<RISKML_HOME>/outbox``) that is flushed when the broker is back and drained at shutdown.
    The response never waits longer and never fails because of the log."""

    model_config = _CONFIG

    enabled: bool = False
    publish_timeout_ms: float = Field(
        default=20.0,
        gt=0,
        le=10_000,
        description="Longest a request waits for the broker's ack (also capped by what is left "
        "of its deadline); later, the event goes to the outbox.",
    )
    outbox_max_events: int = Field(default=10_000, ge=1, le=10_000_000)
    outbox_max_bytes: int = Field(default=64 << 20, ge=1_024, description="Memory bound.")
    spill_max_bytes: int = Field(
        default=1 << 30,
        ge=0,
        description="Bound of the outbox's spill files (0: no spill); an event that fits "
        "neither memory nor spill is dropped, counted and logged.",
    )
    flush_timeout_ms: float = Field(
        default=2_000.0, gt=0, le=60_000, description="Ack timeout of an outbox republish."
    )
    drain_timeout_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="At replica shutdown, how long to flush the outbox (keep it below Serve's "
        "graceful_shutdown_timeout_s); what is left stays in the spill for the next replica.",
    )


class IngressConfig(BaseModel):
    """``user_config`` of the Ingress deployment: the latency budget and the fallback ladder."""

    model_config = _CONFIG

    deadline_ms: float = Field(default=50.0, gt=0, le=60_000)
    batch_deadline_ms: float = Field(default=250.0, gt=0, le=60_000)
    reserve_ms: float = Field(
        default=2.0, ge=0, le=1_000, description="Kept back from the deadline for the rules rung."
    )
    timeouts: StageTimeouts = Field(default_factory=StageTimeouts)
    feature_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    default_decision: Decision = "review"
    max_batch_size: int = Field(default=256, ge=1, le=1024)
    contributions: Literal["approx", "exact", "off"] = Field(
        default="approx",
        description=(
            "How the XGBoost scorer computes per-feature contributions for reason codes: "
            "'approx' (Saabas, about one extra prediction), 'exact' (TreeSHAP, much slower on "
            "deep trees) or 'off'."
        ),
    )
    write_back: bool = True
    write_back_batch: int = Field(
        default=32, ge=1, le=1_024, description="Write-backs sent to the store in one call."
    )
    write_back_interval_ms: float = Field(
        default=20.0, ge=0, le=10_000, description="Longest a write-back waits to be batched."
    )
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    shadow_log: str | None = Field(
        default=None, description="JSON-lines file the shadow comparisons are appended to."
    )
    decision_log: DecisionLogConfig = Field(default_factory=DecisionLogConfig)
