"""Pure decision logic: configs, thresholds, blend, reason codes, rules, split, velocity."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from riskml.decision.config import DeciderConfig, ExperimentConfig, IngressConfig, RulesConfig
from riskml.decision.policy import DecisionPolicy, ModelScores, blend, decide, platt, top_reasons
from riskml.decision.protocols import FeatureContractMismatch, check_feature_contract
from riskml.decision.rules import apply_rules
from riskml.decision.split import BUCKETS, bucket, choose_arm, in_share
from riskml.decision.velocity import VelocityTracker


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"thresholds": {"review": 0.8, "decline": 0.5}}, "must be <= thresholds.decline"),
        ({"blend_weights": {"xgboost": 1.0, "lstm": 1.0}}, "unknown models"),
        ({"blend_weights": {"xgboost": 0.0, "sequence": 1.0}}, "xgboost must be > 0"),
        ({"blend_weights": {"xgboost": -1.0}}, "finite and >= 0"),
        ({"thresholds": {"review": 0.3, "decline": 0.7, "extra": 1}}, "Extra inputs"),
        ({"thresholds": {"review": math.nan}}, "finite number"),
    ],
)
def test_decider_config_rejects_bad_values(payload: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeciderConfig.model_validate(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"deadline_ms": 0}, "greater than 0"),
        ({"rules": {"amount_review": 10, "amount_decline": 5}}, "amount_review"),
        ({"experiment": {"enabled": True, "arms": {}}}, "positive weight"),
        ({"shadow": {"share": 1.5}}, "less than or equal to 1"),
        ({"default_decision": "maybe"}, "approve"),
        ({"deadlin_ms": 20}, "Extra inputs"),
    ],
)
def test_ingress_config_rejects_bad_values(payload: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngressConfig.model_validate(payload)


def test_thresholds_are_inclusive() -> None:
    t = DeciderConfig().thresholds
    assert decide(0.0, t) == "approve"
    assert decide(t.review - 1e-9, t) == "approve"
    assert decide(t.review, t) == "review"
    assert decide(t.decline, t) == "decline"
    assert decide(1.0, t) == "decline"


def test_blend_renormalises_over_models_that_answered() -> None:
    weights = {"xgboost": 0.6, "sequence": 0.4}
    score, used = blend({"xgboost": 0.5, "sequence": 1.0}, weights)
    assert score == pytest.approx(0.7) and used == ["xgboost", "sequence"]
    score, used = blend({"xgboost": 0.5, "sequence": None}, weights)
    assert score == pytest.approx(0.5) and used == ["xgboost"]
    with pytest.raises(ValueError, match="no model"):
        blend({"xgboost": None, "sequence": None}, weights)


def test_top_reasons_rank_positive_contributions_and_check_layout() -> None:
    names = ["a", "b", "c"]
    reasons = top_reasons([0.1, -2.0, 0.5, 9.0], names, [1.0, 2.0, 3.0], 2)
    assert [r.feature for r in reasons] == ["c", "a"]  # bias (9.0) never a reason
    assert reasons[0].code == "feature:c" and reasons[0].value == 3.0
    assert top_reasons([0.1, 0.2, 0.3, 0.0], names, None, 0) == []
    with pytest.raises(ValueError, match="bias expected"):
        top_reasons([0.1, 0.2, 0.3], names, None, 2)


def test_policy_calibrates_then_blends_and_rejects_bad_model_output() -> None:
    cal = platt(2.0, -1.0)
    policy = DecisionPolicy(
        DeciderConfig(blend_weights={"xgboost": 1.0, "sequence": 1.0}), ["a"], {"xgboost": cal}
    )
    v = policy.verdict(ModelScores(xgboost=0.3, sequence=0.9, contributions=[0.4, 0.1]))
    assert v.scores["xgboost_calibrated"] == pytest.approx(cal(0.3))
    assert v.score == pytest.approx((cal(0.3) + 0.9) / 2)
    assert v.models_used == ["xgboost", "sequence"] and [r.feature for r in v.reasons] == ["a"]
    for bad in (math.nan, math.inf, 1.5):
        with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
            policy.verdict(ModelScores(xgboost=bad))
    policy.reconfigure({"thresholds": {"review": 0.0, "decline": 0.0}})
    assert policy.verdict(ModelScores(xgboost=0.01)).decision == "decline"


def test_rules_amount_and_velocity() -> None:
    cfg = RulesConfig(amount_review=100, amount_decline=1000, velocity_review=3, velocity_decline=6)
    assert apply_rules(10, 0, cfg).decision == "approve"
    assert apply_rules(100, 0, cfg).decision == "review"
    assert apply_rules(1000, 0, cfg).decision == "decline"
    assert apply_rules(10, 3, cfg).decision == "review"
    out = apply_rules(500, 6, cfg)
    assert out.decision == "decline"
    assert [r.code for r in out.reasons] == [
        "amount_over_review_limit",
        "velocity_over_decline_limit",
    ]
    assert [r.code for r in apply_rules(10, None, cfg).reasons] == ["velocity_unknown"]


def test_hash_split_is_deterministic_and_proportional() -> None:
    assert bucket("c1", "s") == bucket("c1", "s")
    assert 0 <= bucket("c1", "s") < BUCKETS
    keys = [f"c{i}" for i in range(20_000)]
    arms = Counter(choose_arm(k, {"v1": 0.8, "v2": 0.2}, "exp") for k in keys)
    assert arms["v1"] / len(keys) == pytest.approx(0.8, abs=0.02)
    moved = sum(
        choose_arm(k, {"v1": 0.8, "v2": 0.2}, "exp2")
        != choose_arm(k, {"v1": 0.8, "v2": 0.2}, "exp")
        for k in keys
    )
    assert moved > 1000  # a new salt reshuffles
    assert all(choose_arm(k, {"v1": 0.0, "v2": 1.0}, "exp") == "v2" for k in keys[:100])
    share = sum(in_share(k, 0.25, "shadow") for k in keys) / len(keys)
    assert share == pytest.approx(0.25, abs=0.02)
    assert not in_share("x", 0.0, "s") and in_share("x", 1.0, "s")
    with pytest.raises(ValueError, match="positive weight"):
        choose_arm("c1", {"v1": 0.0}, "exp")
    with pytest.raises(ValidationError):
        ExperimentConfig(enabled=True, arms={"v1": -1.0})


def test_velocity_tracker_window_idempotency_and_bound() -> None:
    tr = VelocityTracker(window_s=60, max_customers=2)
    assert tr.observe("c1", 0.0, "t1") == 0
    assert tr.observe("c1", 10.0, "t2") == 1
    assert tr.observe("c1", 10.0, "t2") == 1  # same tx again: not counted twice
    assert tr.observe("c1", 100.0, "t3") == 0  # t1, t2 left the window
    tr.observe("c2", 0.0, "u1")
    tr.observe("c3", 0.0, "v1")
    assert len(tr) == 2  # least recently seen customer evicted
    with pytest.raises(ValueError):
        VelocityTracker(window_s=0)


def test_feature_contract_check_names_the_difference() -> None:
    check_feature_contract(["a", "b"], ["a", "b"])
    with pytest.raises(FeatureContractMismatch, match=r"lacks: \['c'\]"):
        check_feature_contract(["a", "c"], ["a", "b"])
    with pytest.raises(FeatureContractMismatch, match="different order"):
        check_feature_contract(["b", "a"], ["a", "b"])
