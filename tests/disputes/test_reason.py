"""Reason-code family from the customer's message: keyword baseline, TF-IDF + logistic
regression, held-out accuracy, JSON persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from riskml.data.disputes.schema import REASON_FAMILIES
from riskml.data.disputes.simulator import DisputeSet
from riskml.features.disputes.reason import (
    DEFAULT_FAMILY,
    KeywordReasonClassifier,
    ReasonClassifier,
    evaluate_reason,
)


def _messages(ds: DisputeSet) -> tuple[list[str], list[str]]:
    return ds.disputes["customer_message"].to_list(), ds.disputes["reason_family"].to_list()


@pytest.fixture(scope="module")
def trained(dispute_set: DisputeSet) -> ReasonClassifier:
    return ReasonClassifier().fit(*_messages(dispute_set))


@pytest.mark.parametrize(
    ("message", "family"),
    [
        ("I did not make this purchase, my card was stolen", "fraud"),
        ("I don't recognise this charge at all", "fraud"),
        ("The payment was declined but they still took the money", "authorisation"),
        ("I was charged twice for the same order", "processing_error"),
        ("The amount charged is wrong, I was overcharged", "processing_error"),
        ("My parcel never arrived", "consumer_dispute"),
        ("I cancelled my subscription but was billed again", "consumer_dispute"),
        ("Please look at this", DEFAULT_FAMILY),
    ],
)
def test_keyword_baseline(message: str, family: str) -> None:
    assert KeywordReasonClassifier().predict([message]) == [family]


def test_keyword_baseline_rejects_unknown_families() -> None:
    with pytest.raises(ValueError, match="unknown reason families"):
        KeywordReasonClassifier(keywords={"chargeback": ((r"x", 1.0),)})


def test_held_out_accuracy_against_the_baseline(
    trained: ReasonClassifier, held_out_dispute_set: DisputeSet
) -> None:
    messages, families = _messages(held_out_dispute_set)
    scores = evaluate_reason(trained, messages, families)
    assert scores.n == len(messages) >= 30
    # trained on 60 development disputes, scored on 40 held-out ones (other seeds)
    assert scores.accuracy >= 0.75
    assert scores.baseline_accuracy >= 0.7
    out = scores.as_dict()
    assert set(out) == {"n", "reason_family_accuracy", "keyword_baseline_accuracy", "per_family"}
    assert set(out["per_family"]) <= set(REASON_FAMILIES)
    assert sum(f["n"] for f in out["per_family"].values()) == scores.n
    json.dumps(out)


def test_json_round_trip_predicts_the_same(
    trained: ReasonClassifier, held_out_dispute_set: DisputeSet, tmp_path: Path
) -> None:
    messages, _ = _messages(held_out_dispute_set)
    path = trained.save(tmp_path / "reason.json")
    data = json.loads(path.read_text())  # plain JSON: vocabularies, idf, coefficients
    assert data["format"] == "riskml.reason-classifier/1"
    assert len(data["coef"]) == len(data["classes"]) == len(data["intercept"])
    assert len(data["coef"][0]) == len(data["word"]["terms"]) + len(data["char"]["terms"])
    loaded = ReasonClassifier.load(path)
    assert loaded.classes == trained.classes
    assert loaded.predict(messages) == trained.predict(messages)
    np.testing.assert_allclose(loaded.predict_proba(messages), trained.predict_proba(messages))


def test_bad_inputs_are_clear_errors(trained: ReasonClassifier) -> None:
    with pytest.raises(ValueError, match="unknown reason families"):
        ReasonClassifier().fit(["a", "b"], ["fraud", "chargeback"])
    with pytest.raises(ValueError, match="at least two families"):
        ReasonClassifier().fit(["a", "b"], ["fraud", "fraud"])
    with pytest.raises(ValueError, match="2 messages but 1 families"):
        ReasonClassifier().fit(["a", "b"], ["fraud"])
    with pytest.raises(RuntimeError, match="not trained"):
        ReasonClassifier().predict(["x"])
    bad = trained.to_dict() | {"format": "pickle"}
    with pytest.raises(ValueError, match="not a reason classifier"):
        ReasonClassifier.from_dict(bad)
    bad = trained.to_dict()
    bad["coef"] = [row[:-1] for row in bad["coef"]]
    with pytest.raises(ValueError, match="do not fit"):
        ReasonClassifier.from_dict(bad)
    with pytest.raises(ValueError, match="at least one message"):
        evaluate_reason(trained, [], [])
