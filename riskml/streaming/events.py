"""The events on the stream: their schemas, subjects and wire format.

Subjects (the broker's topics)::

    riskml.events.decision      every decided transaction (the Serve app's decision log)
    riskml.events.transaction   raw transactions from channels that are not scored
    riskml.events.label         chargeback / confirmed_fraud / confirmed_genuine, with label_ts
    riskml.dlq.<kind>           what a consumer could not process, with the reason

Every event has an ``event_id`` (the broker's de-duplication id: a decision's is its ``tx_id``,
so a re-publish from the outbox is dropped by the broker) and an ``event_ts`` (event time: when
the transaction or the label happened, never when it arrived). The wire format is the event's
JSON (UTF-8 bytes), encoded and parsed by pydantic's own JSON (Rust, no extra dependency); every
event carries a schema ``version`` and its ``kind``, and :func:`decode` refuses an event whose
kind does not match its subject, or whose version it does not know, with :class:`EventError`.

:class:`Transaction` is the one definition of a transaction as the API receives it
(``serving.schemas.TransactionRequest`` is it plus the API's clock check).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from riskml.data.schema import UNKNOWN, Channel, Currency, EntityId, MerchantCategory

#: Schema version of every event written by this code.
EVENT_VERSION: Final = 1
EVENTS = "riskml.events"
DLQ = "riskml.dlq"
#: Subjects the stream holds (``>``: any further tokens).
STREAM_SUBJECTS: tuple[str, ...] = (f"{EVENTS}.>", f"{DLQ}.>")

Decision = Literal["approve", "review", "decline"]
LabelKind = Literal["chargeback", "confirmed_fraud", "confirmed_genuine"]
EventKind = Literal["decision", "transaction", "label"]
KINDS: tuple[str, ...] = ("decision", "transaction", "label")

#: ids (tx, customer, terminal, device, event): the schema's id rule (riskml.data.schema)
Id = EntityId
#: a free-text label (an event's ``source``): the merchant-category rule
Label = MerchantCategory

_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class EventError(ValueError):
    """Bytes that are not a valid event for their subject; the message says why."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Transaction(BaseModel):
    """One transaction at authorisation time (the decision-time fields of the schema)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tx_id: Id
    ts: AwareDatetime = Field(description="Authorisation time, ISO 8601 with a UTC offset.")
    customer_id: Id
    terminal_id: Id
    device_id: Id = UNKNOWN
    amount: Annotated[float, Field(strict=True, ge=0, le=1e9)]
    currency: Currency = "USD"
    merchant_category: MerchantCategory = UNKNOWN
    channel: Channel = UNKNOWN

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


class ReasonCode(BaseModel):
    """One reason for a decision (a rule's code, or a feature and its contribution)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    code: str
    feature: str | None = None
    value: float | None = None
    contribution: float | None = None


_EVENT_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Event(BaseModel):
    """Fields every event has. ``kind`` names its subject ``riskml.events.<kind>``."""

    model_config = _EVENT_CONFIG
    KIND: ClassVar[str] = ""

    version: Literal[1] = EVENT_VERSION
    event_id: Id
    event_ts: AwareDatetime = Field(description="Event time (UTC): when it happened.")


class DecisionEvent(Event):
    """A decided transaction: the request, the features the models saw, the scores and the
    decision, and why a lower rung answered if one did. ``event_id`` is the ``tx_id``."""

    KIND: ClassVar[str] = "decision"
    kind: Literal["decision"] = "decision"
    transaction: Transaction
    features: dict[str, float | None] = Field(
        default_factory=dict,
        description="Feature values used (contract order); empty when none were fetched; "
        "None for a missing (NaN) value.",
    )
    feature_flags: dict[str, int] = Field(default_factory=dict)
    write_back: dict[str, float] = Field(
        default_factory=dict,
        description="Scalar values the feature source read for this transaction's write-back "
        "(e.g. terminal_risk), so a consumer folding it need not read them again.",
    )
    model_version: str
    sequence_version: str | None = None
    scores: dict[str, float] = Field(default_factory=dict, description="Per-model scores.")
    score: float | None = Field(default=None, description="Final (calibrated, blended) score.")
    decision: Decision
    decision_source: str
    fallback_reason: str | None = None
    reasons: list[ReasonCode] = Field(default_factory=list)
    decided_at: AwareDatetime

    @model_validator(mode="after")
    def _id_is_tx_id(self) -> DecisionEvent:
        if self.event_id != self.transaction.tx_id:
            raise ValueError(
                f"a decision's event_id must be its tx_id ({self.event_id!r} != "
                f"{self.transaction.tx_id!r})"
            )
        return self

    @classmethod
    def of(
        cls,
        transaction: Transaction | Mapping[str, Any],
        *,
        decision: str,
        decision_source: str,
        model_version: str,
        feature_names: Sequence[str] = (),
        feature_values: Sequence[float] | None = None,
        feature_flags: Mapping[str, int] | None = None,
        write_back: Mapping[str, Any] | None = None,
        sequence_version: str | None = None,
        scores: Mapping[str, float] | None = None,
        score: float | None = None,
        fallback_reason: str | None = None,
        reasons: Sequence[Any] = (),
        decided_at: dt.datetime | None = None,
    ) -> DecisionEvent:
        """Build one from the decision's parts: NaN feature values become None, non-scalar
        or non-finite ``write_back`` values are left out, reasons may be dataclasses."""
        tx = (
            transaction
            if isinstance(transaction, Transaction)
            else Transaction.model_validate(_tx_fields(transaction))
        )
        features: dict[str, float | None] = {}
        if feature_values is not None:
            for name, v in zip(feature_names, feature_values, strict=True):
                f = float(v)
                features[str(name)] = f if math.isfinite(f) else None
        extras = {
            str(k): float(v)
            for k, v in (write_back or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        return cls(
            event_id=tx.tx_id,
            event_ts=tx.ts,
            transaction=tx,
            features=features,
            feature_flags={str(k): int(v) for k, v in (feature_flags or {}).items()},
            write_back=extras,
            model_version=model_version,
            sequence_version=sequence_version,
            scores={str(k): float(v) for k, v in (scores or {}).items() if math.isfinite(v)},
            score=score,
            decision=decision,  # validated by pydantic
            decision_source=decision_source,
            fallback_reason=fallback_reason,
            reasons=[ReasonCode.model_validate(r, from_attributes=True) for r in reasons],
            decided_at=decided_at or utc_now(),
        )


class TransactionEvent(Event):
    """A raw transaction from a channel that is not scored (it still moves online state).
    ``event_id`` is the ``tx_id``; ``event_ts`` its ``ts``."""

    KIND: ClassVar[str] = "transaction"
    kind: Literal["transaction"] = "transaction"
    transaction: Transaction
    source: Label = Field(default="unscored", description="The channel/system it came from.")

    @classmethod
    def of(
        cls, transaction: Transaction | Mapping[str, Any], source: str = "unscored"
    ) -> TransactionEvent:
        tx = (
            transaction
            if isinstance(transaction, Transaction)
            else Transaction.model_validate(_tx_fields(transaction))
        )
        return cls(event_id=tx.tx_id, event_ts=tx.ts, transaction=tx, source=source)


class LabelEvent(Event):
    """A label of a past transaction: ``chargeback`` and ``confirmed_fraud`` mean fraud,
    ``confirmed_genuine`` means not. ``event_ts`` is ``label_ts`` (when the label became known);
    ``tx_ts``, ``customer_id`` and ``terminal_id`` are the labelled transaction's, when known."""

    KIND: ClassVar[str] = "label"
    kind: Literal["label"] = "label"
    tx_id: Id
    label: LabelKind
    label_ts: AwareDatetime
    tx_ts: AwareDatetime | None = None
    customer_id: Id | None = None
    terminal_id: Id | None = None

    @property
    def is_fraud(self) -> bool:
        return self.label != "confirmed_genuine"

    @model_validator(mode="after")
    def _event_time_is_label_time(self) -> LabelEvent:
        if self.event_ts != self.label_ts:
            raise ValueError("a label's event_ts must be its label_ts")
        return self

    @classmethod
    def of(
        cls,
        tx_id: str,
        label: str,
        label_ts: dt.datetime,
        *,
        tx_ts: dt.datetime | None = None,
        customer_id: str | None = None,
        terminal_id: str | None = None,
        event_id: str | None = None,
    ) -> LabelEvent:
        """``event_id`` defaults to ``<tx_id>:<label>``: one label of each kind per tx."""
        return cls(
            event_id=event_id or f"{tx_id}:{label}",
            event_ts=label_ts,
            tx_id=tx_id,
            label=label,  # validated by pydantic
            label_ts=label_ts,
            tx_ts=tx_ts,
            customer_id=customer_id,
            terminal_id=terminal_id,
        )


class DeadLetter(Event):
    """What a consumer could not process: the original subject and bytes (base64), why, and
    where it was in the stream. Published on ``riskml.dlq.<kind>`` (kind of the original
    subject, or ``unknown``); ``event_id`` is ``dlq:<original event id or stream seq>``."""

    KIND: ClassVar[str] = "dead_letter"
    kind: Literal["dead_letter"] = "dead_letter"
    original_subject: str
    data_b64: str
    reason: Annotated[str, Field(min_length=1, max_length=64)]
    detail: str = ""
    consumer: str | None = None
    stream_seq: int | None = None
    num_delivered: int | None = None

    @property
    def original_kind(self) -> str:
        return _subject_kind(self.original_subject) or "unknown"

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.data_b64)

    @classmethod
    def of(
        cls,
        subject: str,
        data: bytes,
        reason: str,
        *,
        detail: str = "",
        consumer: str | None = None,
        stream_seq: int | None = None,
        num_delivered: int | None = None,
        original_id: str | None = None,
        event_ts: dt.datetime | None = None,
    ) -> DeadLetter:
        key = original_id if original_id else f"seq-{stream_seq}" if stream_seq else None
        now = utc_now()
        return cls(
            event_id=_safe_id(f"dlq:{key}" if key else f"dlq:{now.timestamp():.6f}"),
            event_ts=event_ts or now,
            original_subject=subject,
            data_b64=base64.b64encode(data).decode("ascii"),
            reason=reason,
            detail=detail[:2000],
            consumer=consumer,
            stream_seq=stream_seq,
            num_delivered=num_delivered,
        )


AnyEvent = DecisionEvent | TransactionEvent | LabelEvent | DeadLetter
_BY_KIND: dict[str, type[Event]] = {
    "decision": DecisionEvent,
    "transaction": TransactionEvent,
    "label": LabelEvent,
}


def _tx_fields(tx: Mapping[str, Any]) -> dict[str, Any]:
    """The transaction fields of a dict that may carry more (write-back extras)."""
    return {k: tx[k] for k in Transaction.model_fields if k in tx}


def _safe_id(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in text)
    return out[:128]


def _subject_kind(subject: str) -> str | None:
    for prefix in (EVENTS, DLQ):
        if subject.startswith(prefix + "."):
            rest = subject[len(prefix) + 1 :]
            return rest if rest and "." not in rest else None
    return None


def subject_for(event: Event) -> str:
    """``riskml.events.<kind>``; a dead letter goes to ``riskml.dlq.<original kind>``."""
    if isinstance(event, DeadLetter):
        return f"{DLQ}.{event.original_kind}"
    if event.KIND not in _BY_KIND:
        raise EventError(f"no subject for {type(event).__name__}")
    return f"{EVENTS}.{event.KIND}"


def dlq_subject(subject: str) -> str:
    """The dead-letter subject of an event subject (``riskml.dlq.<kind>``)."""
    return f"{DLQ}.{_subject_kind(subject) or 'unknown'}"


def encode(event: Event) -> bytes:
    """The event's wire bytes (UTF-8 JSON)."""
    return event.model_dump_json().encode()


def decode(subject: str, data: bytes) -> AnyEvent:
    """The event of ``data`` received on ``subject``. Raises :class:`EventError` on anything
    else: an unknown subject, bytes that are not JSON, a kind that is not the subject's, an
    unknown schema version, missing or invalid fields."""
    kind = _subject_kind(subject)
    if kind is None:
        raise EventError(f"not an event subject: {subject!r}")
    model: type[Event] = DeadLetter if subject.startswith(DLQ + ".") else _BY_KIND.get(kind, Event)
    if model is Event:
        raise EventError(f"unknown event kind {kind!r} (subject {subject!r})")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EventError(f"event data must be bytes, not {type(data).__name__}")
    try:
        event = model.model_validate_json(bytes(data))
    except ValidationError as exc:
        raise EventError(_describe(subject, exc)) from None
    return event  # type: ignore[return-value]  # one of AnyEvent by construction


def _describe(subject: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "?", "loc": (), "msg": str(exc)}
    if first["type"] == "json_invalid":
        return f"event on {subject!r} is not valid JSON: {first['msg']}"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<event>"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"invalid event on {subject!r}: " + "; ".join(parts) + more
