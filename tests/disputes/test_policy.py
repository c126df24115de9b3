"""Requirements per reason code, the economics and the auto-refund / represent / review policy."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pydantic import ValidationError

from riskml.data.disputes.evidence import Evidence, ExtractedField
from riskml.models.disputes.policy import (
    REQUIREMENTS,
    Check,
    DisputeEconomics,
    PolicyConfig,
    PolicyError,
    check_requirements,
    decide,
    policy_values,
    requirement_key,
    value_of_review,
)

ECON = DisputeEconomics(
    chargeback_fee=15,
    representment_fee=5,
    represent_cost=10,
    refund_cost=2,
    review_cost=20,
    second_cycle_rate=0.2,
    second_cycle_fee=100,
)


def test_requirement_sets_follow_the_reason_code() -> None:
    assert requirement_key("10.4") == "fraud"
    assert requirement_key("10.1") == "fraud"  # no listed claim, fraud family
    assert requirement_key("4837", "mastercard") == "fraud"
    assert requirement_key("13.1") == "not_received"
    assert requirement_key("13.2") == "cancelled_subscription"
    assert requirement_key("12.6.1") == "duplicate"
    assert requirement_key("4853") == "consumer_dispute"  # several claims
    assert requirement_key("4834") == "processing_error"
    assert requirement_key("12.1") == "processing_error"  # no claim
    assert requirement_key("11.1") == "authorisation"
    assert requirement_key("4853", claim="not_received") == "not_received"
    with pytest.raises(PolicyError, match="unknown reason code"):
        requirement_key("99.9")
    with pytest.raises(PolicyError, match="unknown reason code"):
        requirement_key("10.4", "mastercard")  # a Visa code on the other network
    with pytest.raises(PolicyError, match="no requirements"):
        requirement_key("10.4", claim="bogus")
    assert set(REQUIREMENTS) >= {"fraud", "not_received", "consumer_dispute", "processing_error"}


def test_fraud_needs_cardholder_participation() -> None:
    ev = Evidence(order_id="A-1", avs_result="match", ip_address="24.1.1.1")
    bare = check_requirements("10.4", ev, compelling=False)
    assert not bare.complete and bare.missing == ["cardholder_participation"]
    assert bare.required_share == 0.5
    assert bare.supporting_share == pytest.approx(2 / 3)  # verification, session record
    # rules score: 1 required + 0.5 * 2 supporting + 0 compelling of 2 + 1.5 + 1
    assert bare.rules_score() == pytest.approx(2 / 4.5)
    proven = check_requirements("10.4", ev, compelling=True)
    assert proven.complete and proven.rules_score() == pytest.approx(4 / 4.5)
    item = next(i for i in proven.items if i.key == "cardholder_participation")
    assert item.satisfied_by == ["compelling evidence from the transaction history"]
    acknowledged = check_requirements(
        "4837", ev.model_copy(update={"customer_acknowledged": True}), network="mastercard"
    )
    assert acknowledged.complete and acknowledged.compelling is None


def test_non_receipt_and_subscription_checks() -> None:
    delivered = Evidence(delivery_status="delivered", tracking_number="1Z9")
    assert check_requirements("13.1", delivered).complete
    lost = Evidence(delivery_status="returned", tracking_number="1Z9")
    assert check_requirements("13.1", lost).missing == ["proof_of_delivery"]
    day = dt.date(2025, 3, 1)
    after = Evidence(
        policy_accepted=True, transaction_date=day, cancellation_date=day + dt.timedelta(days=3)
    )
    before = after.model_copy(update={"cancellation_date": day - dt.timedelta(days=3)})
    assert check_requirements("13.2", after).complete
    assert check_requirements("13.2", before).missing == ["charged_before_cancellation"]
    assert check_requirements("13.2", Evidence(policy_accepted=True)).missing == [
        "charged_before_cancellation"
    ]


def test_confidence_of_the_evidence_a_requirement_rests_on() -> None:
    ev = Evidence(delivery_status="delivered", customer_acknowledged=True)
    fields = {
        "delivery_status": ExtractedField(value="delivered", confidence=0.4),
        "customer_acknowledged": ExtractedField(value=True, confidence=0.9),
    }
    report = check_requirements("13.1", ev, fields=fields)
    assert report.min_confidence == pytest.approx(0.9)  # the best-supported check counts
    weak = check_requirements(
        "13.1", ev.model_copy(update={"customer_acknowledged": None}), fields=fields
    )
    assert weak.min_confidence == pytest.approx(0.4)


def test_checks_are_validated() -> None:
    with pytest.raises(ValidationError, match="unknown evidence field"):
        Check(field="nope")
    with pytest.raises(ValidationError, match="compelling"):
        Check(field="order_id", op="compelling")
    with pytest.raises(ValidationError, match="another evidence field"):
        Check(field="cancellation_date", op="after", value="yesterday")


def test_economics_by_hand() -> None:
    amount, p = 200.0, 0.3
    assert float(ECON.ev_refund(amount)) == pytest.approx(-200 - 15 - 2)
    # -15 - 5 - 10 - 0.7 * (200 + 0.2 * 100)
    assert float(ECON.ev_represent(amount, p)) == pytest.approx(-30 - 0.7 * 220)
    star = float(ECON.break_even(amount))
    assert star == pytest.approx((5 + 10 - 2 + 20) / 220)
    assert float(ECON.ev_represent(amount, star)) == pytest.approx(float(ECON.ev_refund(amount)))
    # the chargeback fee moves both values, never the break-even
    other = ECON.model_copy(update={"chargeback_fee": 100.0})
    assert float(other.break_even(amount)) == pytest.approx(star)


def test_value_of_review_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    amount, p, k = 300.0, 0.12, 3.0
    draws = rng.beta(p * k, (1 - p) * k, size=400_000)
    best = np.maximum(ECON.ev_represent(amount, draws), ECON.ev_refund(amount)).mean()
    now = max(float(ECON.ev_represent(amount, p)), float(ECON.ev_refund(amount)))
    assert value_of_review(amount, p, k, ECON) == pytest.approx(best - now, rel=0.02)
    assert value_of_review(amount, 0.99, k, ECON) < 0.01  # far from the break-even
    assert value_of_review(amount, p, 200.0, ECON) < value_of_review(amount, p, k, ECON)
    assert value_of_review(5.0, 0.5, k, ECON) == 0.0  # break-even above 1: always refund


def test_decide_represents_above_and_refunds_below_the_break_even() -> None:
    config = PolicyConfig(economics=ECON, concentration=1000.0)
    star = float(ECON.break_even(500.0))
    rep = decide(500.0, star + 0.05, config=config)
    ref = decide(500.0, star - 0.03, config=config)
    assert rep.action == "represent" and rep.expected_value == rep.ev_represent
    assert ref.action == "auto_refund" and ref.expected_value == ref.ev_refund
    assert rep.ev_represent > rep.ev_refund and ref.ev_refund > ref.ev_represent
    assert "break-even" in rep.reasons[0]


def test_review_when_close_and_uncertain_and_worth_it() -> None:
    config = PolicyConfig(economics=ECON, concentration=5.0, uncertain_concentration=1.5)
    amount = 800.0
    p = float(ECON.break_even(amount)) * 1.5
    complete = check_requirements("13.1", Evidence(delivery_status="delivered"))
    missing = check_requirements("13.1", Evidence(delivery_status="in_transit"))
    sure = decide(amount, p, complete, config=config)
    unsure = decide(amount, p, missing, config=config)
    assert sure.action == "represent"
    assert unsure.action == "human_review"
    assert unsure.review_value > ECON.review_cost > sure.review_value
    assert any("required evidence is missing: proof_of_delivery" in r for r in unsure.reasons)
    assert decide(amount, p, complete, config=config, model_uncertain="few cases").action == (
        "human_review"
    )
    # the same doubts on a small amount are not worth a review
    small = decide(60.0, float(ECON.break_even(60.0)) * 1.5, missing, config=config)
    assert small.action != "human_review"
    assert any("decided without review" in r for r in small.reasons)
    floor = PolicyConfig(economics=ECON, uncertain_concentration=1.5, min_review_amount=1000)
    assert decide(amount, p, missing, config=floor).action == "represent"


def test_low_confidence_evidence_is_a_doubt() -> None:
    config = PolicyConfig(economics=ECON, concentration=5.0, uncertain_concentration=1.5)
    ev = Evidence(delivery_status="delivered")
    low = {"delivery_status": ExtractedField(value="delivered", confidence=0.3)}
    high = {"delivery_status": ExtractedField(value="delivered", confidence=0.95)}
    p = float(ECON.break_even(800.0)) * 1.5
    assert decide(800.0, p, check_requirements("13.1", ev, fields=high), config=config).action == (
        "represent"
    )
    d = decide(800.0, p, check_requirements("13.1", ev, fields=low), config=config)
    assert d.action == "human_review" and any("confidence 0.30" in r for r in d.reasons)


def test_bad_decision_input_is_refused() -> None:
    with pytest.raises(PolicyError, match="amount"):
        decide(0.0, 0.5)
    with pytest.raises(PolicyError, match="amount"):
        decide(float("nan"), 0.5)
    with pytest.raises(PolicyError, match="probability"):
        decide(10.0, 1.5)
    with pytest.raises(ValidationError):
        DisputeEconomics(review_cost=-1)
    with pytest.raises(ValidationError):
        PolicyConfig(unknown=1)  # type: ignore[call-arg]


def test_policy_values_at_the_true_probability() -> None:
    acts = np.array(["represent", "auto_refund", "human_review", "human_review"])
    amounts = np.array([100.0, 100.0, 100.0, 100.0])
    p_true = np.array([0.9, 0.9, 0.9, 0.0])
    oracle = policy_values(acts, amounts, p_true, ECON)
    rep = float(ECON.ev_represent(100.0, 0.9))
    ref = float(ECON.ev_refund(100.0))
    assert oracle.tolist() == pytest.approx([rep, ref, rep - 20, ref - 20])
    p_model = np.array([0.9, 0.9, 0.0, 0.9])  # the analyst follows the model
    model = policy_values(acts, amounts, p_true, ECON, review="model", p_model=p_model)
    assert model.tolist() == pytest.approx(
        [rep, ref, ref - 20, float(ECON.ev_represent(100.0, 0.0)) - 20]
    )
    with pytest.raises(PolicyError, match="unknown actions"):
        policy_values(np.array(["sue"]), amounts[:1], p_true[:1], ECON)
    with pytest.raises(PolicyError, match="same length"):
        policy_values(acts, amounts[:2], p_true, ECON)
    with pytest.raises(PolicyError, match="p_model"):
        policy_values(acts, amounts, p_true, ECON, review="model")
