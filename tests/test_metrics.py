"""Metric functions against hand-computed cases, sklearn on random inputs, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskml.metrics import (
    MetricInputError,
    average_precision,
    brier_score,
    card_precision_at_k,
    dollar_metrics,
    evaluate,
    expected_calibration_error,
    recall_at_fpr,
    roc_auc,
    threshold_at_fpr,
)

Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_auc_hand_case_and_ties() -> None:
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert roc_auc(Y, S) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([0, 1, 1], [0.2, 0.2, 0.9]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.9, 0.1]) == 1.0


def test_average_precision_hand_case() -> None:
    # ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-): P@1=1 R=.5, P@3=2/3 R=1 -> .5*1 + .5*2/3
    assert average_precision(Y, S) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # tied scores form one threshold: precision there is 1/2 for the whole group
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_recall_at_fpr_and_threshold() -> None:
    # 2 negatives: FPR 0 allows only the 0.8 positive -> recall 1/2
    assert recall_at_fpr(Y, S, 0.0) == pytest.approx(0.5)
    # FPR 1/2: flag down to 0.35 (one negative, 0.4, flagged) -> recall 1
    assert recall_at_fpr(Y, S, 0.5) == pytest.approx(1.0)
    assert threshold_at_fpr(Y, S, 0.0) == pytest.approx(0.8)
    assert threshold_at_fpr(Y, S, 0.5) == pytest.approx(0.35)
    # every score shared by a negative: nothing can be flagged at FPR 0
    assert threshold_at_fpr([0, 1], [0.5, 0.5], 0.0) == float("inf")


def test_ece_and_brier_hand_cases() -> None:
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # bin 1: mean p .1 vs rate .5 -> .4 * 2/4; bin 9: .9 vs 1 -> .1 * 2/4
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.25)
    assert brier_score([0, 1], [0.1, 0.9]) == pytest.approx(0.01)
    # a perfectly calibrated constant predictor has zero ECE
    assert expected_calibration_error([0, 0, 0, 1], [0.25] * 4) == pytest.approx(0.0)
    # p == 1.0 falls into the last bin rather than out of range
    assert expected_calibration_error([1], [1.0], n_bins=10) == pytest.approx(0.0)


def test_card_precision_skips_cards_detected_on_earlier_days() -> None:
    cards = ["A", "B", "C", "A", "A", "B", "C"]
    days = [1, 1, 1, 1, 2, 2, 2]
    y = [1, 0, 1, 0, 1, 0, 1]
    s = [0.9, 0.8, 0.3, 0.2, 0.95, 0.2, 0.6]
    # day 1 (card max scores A .9, B .8, C .3): top 2 = A(fraud), B -> 1/2; A is detected.
    # day 2: A is skipped; C(.6, fraud), B(.2) -> 1/2.  Without the skip day 2 would be 2/2.
    assert card_precision_at_k(y, s, cards, days, k=2) == pytest.approx(0.5)
    # k larger than the number of cards still divides by k (handbook definition):
    # day 1 finds A and C (2/4), day 2 has only B left (0/4)
    assert card_precision_at_k(y, s, cards, days, k=4) == pytest.approx((2 / 4 + 0 / 4) / 2)
    # a card's score is its max that day: A's low-score genuine tx does not hide it
    assert card_precision_at_k(y, s, cards, days, k=1) == pytest.approx((1 + 1) / 2)


def test_dollar_metrics_hand_case() -> None:
    y = [1, 1, 0, 0]
    p = [0.9, 0.2, 0.8, 0.1]
    amount = [100.0, 50.0, 200.0, 10.0]
    out = dollar_metrics(y, p, amount, 0.5, false_decline_cost_rate=0.1, cost_per_false_decline=2)
    assert out["fraud_amount_caught"] == 100.0
    assert out["fraud_amount_missed"] == 50.0
    assert out["fraud_amount_caught_share"] == pytest.approx(2 / 3)
    assert out["false_declines"] == 1.0
    assert out["false_decline_amount"] == 200.0
    assert out["false_decline_cost"] == pytest.approx(0.1 * 200 + 2)
    assert out["net_savings"] == pytest.approx(100 - 22)


def test_evaluate_collects_everything() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.random(200) * 0.4, 0, 1)
    out = evaluate(
        y, p, amount=rng.random(200) * 100, card_id=rng.integers(0, 20, 200), day=np.arange(200) % 5
    )
    for key in ("roc_auc", "average_precision", "recall_at_fpr_0.01", "ece", "brier"):
        assert 0.0 <= out[key] <= 1.0
    assert out["roc_auc"] > 0.9
    assert "card_precision_at_100" in out and "dollar_false_decline_cost" in out


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc_auc([0, 1], [0.1]), "length mismatch"),
        (lambda: roc_auc([0, 2], [0.1, 0.2]), "0 or 1"),
        (lambda: roc_auc([0, 1], [np.nan, 0.2]), "NaN"),
        (lambda: roc_auc([1, 1], [0.1, 0.2]), "single class"),
        (lambda: average_precision([0, 0], [0.1, 0.2]), "no positive"),
        (lambda: brier_score([0, 1], [0.1, 1.2]), r"\[0, 1\]"),
        (lambda: recall_at_fpr([0, 1], [0.1, 0.2], 1.5), "max_fpr"),
        (lambda: expected_calibration_error([0, 1], [0.1, 0.2], 0), "n_bins"),
        (lambda: card_precision_at_k([0, 1], [0.1, 0.2], ["a"], [1, 1]), "length mismatch"),
        (lambda: card_precision_at_k([0, 1], [0.1, 0.2], ["a", "b"], [1, 1], 0), "k must"),
        (lambda: dollar_metrics([0, 1], [0.1, 0.2], [1.0, -1.0], 0.5), "amounts"),
        (lambda: roc_auc([], []), "empty"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MetricInputError, match=message):
        call()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 8)),  # few distinct scores -> many ties
        min_size=2,
        max_size=60,
    )
)
def test_auc_and_ap_agree_with_sklearn(rows: list[tuple[int, int]]) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float) / 8
    if y.min() == y.max():
        return
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
