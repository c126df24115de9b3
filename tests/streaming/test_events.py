"""Event schemas, subjects and the wire format."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import pytest

from riskml.streaming.events import (
    DeadLetter,
    DecisionEvent,
    EventError,
    LabelEvent,
    Transaction,
    TransactionEvent,
    decode,
    dlq_subject,
    encode,
    subject_for,
)

TX = {
    "tx_id": "tx-1",
    "ts": "2024-03-01T12:30:00+02:00",
    "customer_id": "c-1",
    "terminal_id": "t-1",
    "amount": 42.5,
    "channel": "ecom",
}


@dataclass
class Reason:
    code: str
    feature: str | None = None
    value: float | None = None
    contribution: float | None = None


def _decision() -> DecisionEvent:
    return DecisionEvent.of(
        {**TX, "terminal_risk": 0.25, "history_base": ("state", 3)},
        decision="review",
        decision_source="xgboost_only",
        model_version="v3",
        feature_names=["amount", "cust_cnt_1h"],
        feature_values=[42.5, math.nan],
        feature_flags={"new_customer": 1},
        write_back={"terminal_risk": 0.25, "history_base": ("state", 3), "flag": True},
        scores={"xgboost": 0.41},
        score=0.41,
        fallback_reason="sequence_timeout",
        reasons=[Reason("feature", "amount", 42.5, 0.3)],
    )


def test_decision_event_roundtrip_and_fields() -> None:
    e = _decision()
    assert subject_for(e) == "riskml.events.decision"
    assert e.event_id == "tx-1" and e.version == 1
    assert e.event_ts == dt.datetime(2024, 3, 1, 10, 30, tzinfo=dt.UTC)  # event time, in UTC
    assert e.features == {"amount": 42.5, "cust_cnt_1h": None}  # NaN -> None
    assert e.write_back == {"terminal_risk": 0.25}  # scalars only
    assert e.decided_at.tzinfo is not None
    data = encode(e)
    assert json.loads(data)["transaction"]["ts"] == "2024-03-01T10:30:00Z"
    assert decode("riskml.events.decision", data) == e


def test_transaction_label_and_dead_letter_events() -> None:
    t = TransactionEvent.of(TX, source="branch")
    assert subject_for(t) == "riskml.events.transaction" and t.event_id == "tx-1"
    assert decode(subject_for(t), encode(t)) == t
    when = dt.datetime(2024, 4, 1, tzinfo=dt.UTC)
    label = LabelEvent.of("tx-1", "confirmed_genuine", when, customer_id="c-1")
    assert subject_for(label) == "riskml.events.label" and label.event_ts == when
    assert not label.is_fraud and LabelEvent.of("tx-1", "chargeback", when).is_fraud
    assert decode(subject_for(label), encode(label)) == label
    dead = DeadLetter.of("riskml.events.label", b"\xff not json", "bad_event", stream_seq=7)
    assert subject_for(dead) == "riskml.dlq.label" == dlq_subject("riskml.events.label")
    back = decode(subject_for(dead), encode(dead))
    assert isinstance(back, DeadLetter) and back.data == b"\xff not json"
    assert back.event_id == "dlq:seq-7"


@pytest.mark.parametrize(
    ("subject", "data", "match"),
    [
        ("riskml.events.decision", b"{not json", "not valid JSON"),
        ("riskml.events.decision", b"[1, 2]", "object"),
        ("riskml.events.decision", b"{}", "event_id: Field required"),
        ("riskml.events.label", None, "kind: Input should be 'label'"),  # a decision's bytes
        ("riskml.events.nope", b"{}", "unknown event kind"),
        ("other.subject", b"{}", "not an event subject"),
    ],
)
def test_bad_bytes_raise_event_error(subject: str, data: bytes | None, match: str) -> None:
    with pytest.raises(EventError, match=match):
        decode(subject, encode(_decision()) if data is None else data)


def test_invalid_values_are_refused() -> None:
    good = json.loads(encode(_decision()))
    cases = [
        {**good, "version": 2},
        {**good, "event_id": "tx-other"},  # a decision's id is its tx_id
        {**good, "decision": "maybe"},
        {**good, "score": "NaN"},
        {**good, "extra": 1},
        {**good, "transaction": {**good["transaction"], "amount": -1}},
        {**good, "transaction": {**good["transaction"], "ts": "2024-01-01T00:00:00"}},  # naive
    ]
    for case in cases:
        with pytest.raises(EventError):
            decode("riskml.events.decision", json.dumps(case).encode())


def test_transaction_model_is_the_api_request() -> None:
    from serving.schemas import TransactionRequest

    assert issubclass(TransactionRequest, Transaction)
    assert TransactionRequest.model_fields.keys() == Transaction.model_fields.keys()
