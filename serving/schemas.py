"""Request and response models of the decision API (pydantic, strict about what comes in).

Requests forbid unknown fields and non-finite numbers, and are strict about types (a string is
not an amount, a number is not a timestamp). FastAPI turns every violation into a 422 whose
``detail`` names the field and the problem.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)

#: Hard upper bound of a batch request (the Ingress's ``max_batch_size`` may be lower).
MAX_BATCH = 1024

Channel = Literal["pos", "contactless", "ecom", "moto", "atm", "unknown"]
Decision = Literal["approve", "review", "decline"]
DecisionSource = Literal["ensemble", "xgboost_only", "rules", "default"]

Id = Annotated[
    str, Field(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Label = Annotated[
    str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\- ]+$")
]

_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class TransactionRequest(BaseModel):
    """One transaction at authorisation time (the decision-time fields of the schema)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "tx_id": "tx-000001",
                    "ts": "2024-03-01T12:30:00Z",
                    "customer_id": "c-42",
                    "terminal_id": "t-7",
                    "device_id": "d-9",
                    "amount": 42.5,
                    "currency": "USD",
                    "merchant_category": "grocery",
                    "channel": "pos",
                }
            ]
        },
    )

    tx_id: Id
    ts: AwareDatetime = Field(description="Authorisation time, ISO 8601 with a UTC offset.")
    customer_id: Id
    terminal_id: Id
    device_id: Id = "unknown"
    amount: Annotated[float, Field(strict=True, ge=0, le=1e9)]
    currency: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")] = "USD"
    merchant_category: Label = "unknown"
    channel: Channel = "unknown"

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_text(cls, value: Any) -> Any:
        if not isinstance(value, str | dt.datetime):
            raise ValueError("ts must be an ISO 8601 string with a UTC offset")
        return value

    @field_validator("ts")
    @classmethod
    def _ts_in_range(cls, value: dt.datetime) -> dt.datetime:
        if not (_EARLIEST <= value < _LATEST):
            raise ValueError("ts must be between 2000-01-01 and 2100-01-01")
        return value.astimezone(dt.UTC)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    transactions: list[TransactionRequest] = Field(min_length=1, max_length=MAX_BATCH)

    @field_validator("transactions")
    @classmethod
    def _unique_ids(cls, value: list[TransactionRequest]) -> list[TransactionRequest]:
        seen: set[str] = set()
        dup: set[str] = set()
        for t in value:
            (dup if t.tx_id in seen else seen).add(t.tx_id)
        if dup:
            raise ValueError(f"duplicate tx_id in batch: {sorted(dup)[:5]}")
        return value


class ReasonCode(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    code: str
    feature: str | None = None
    value: float | None = None
    contribution: float | None = None


class DecisionResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tx_id: str
    decision: Decision
    score: float | None = Field(
        default=None, ge=0, le=1, description="Calibrated blended score (None from rules/default)."
    )
    decision_source: DecisionSource
    fallback_reason: str | None = Field(
        default=None, description="Why a lower rung answered (None on the intended path)."
    )
    model_version: str = Field(description="Tabular model version assigned to this request.")
    latency_ms: dict[str, float] = Field(description="Milliseconds per stage, and 'total'.")
    reasons: list[ReasonCode] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict, description="Per-model probabilities.")
    flags: dict[str, int] = Field(default_factory=dict, description="Feature-store entity flags.")


class BatchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    decisions: list[DecisionResponse]
    latency_ms: dict[str, float]


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]
    replica: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    champion: str
    versions: list[str]
    sequence_model: str | None
    feature_names: list[str]
    ingress_config: dict[str, Any]
    decider_config: dict[str, Any]


def to_response(outcome: Any, default_decision: Decision) -> DecisionResponse:
    """The API response of a :class:`riskml.decision.ladder.Outcome`. An outcome that does not
    fit the response model (it should not happen) becomes the default decision, never a 5xx."""
    try:
        # read straight from the dataclasses: 5 us, vs 80 us through dataclasses.asdict
        return DecisionResponse.model_validate(outcome, from_attributes=True)
    except ValueError:
        log.exception("invalid decision payload for %s", getattr(outcome, "tx_id", "?"))
        return DecisionResponse(
            tx_id=str(outcome.tx_id),
            decision=default_decision,
            decision_source="default",
            fallback_reason="invalid_model_output",
            model_version=str(outcome.model_version),
            latency_ms=dict(outcome.latency_ms),
        )
