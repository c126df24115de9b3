"""The disputes line's evaluation: headline keys, per-fold backtest figures, policy values that
add up, extraction and reason-family figures on a held-out corpus."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pytest

from riskml.data.disputes.simulator import DisputeSet
from riskml.evaluation.disputes import (
    HEADLINE_KEYS,
    DisputeEvaluationConfig,
    backtest_outcome,
    evaluate_disputes,
    evaluate_extraction,
    evaluate_reason_family,
)
from riskml.models.bundle import finite_json
from riskml.models.disputes.policy import DisputeEconomics
from riskml.training.disputes import DisputeDataset, DisputeTrainingConfig, DisputeTrainingError
from tests.disputes.test_outcome import outcome_dataset, outcome_set  # noqa: F401  (fixtures)

CONFIG = DisputeEvaluationConfig(
    n_folds=2,
    first_share=0.5,
    training=DisputeTrainingConfig(maturity_days=60, min_train=30, min_calibration=15),
    max_scanned_documents=2,
)


@pytest.fixture(scope="module")
def figures(outcome_set: DisputeSet, held_out_dispute_set: DisputeSet) -> dict[str, Any]:  # noqa: F811
    return evaluate_disputes(outcome_set, held_out_dispute_set, config=CONFIG)


def _test_rows(dataset: DisputeDataset, fold: dict[str, Any]) -> np.ndarray:
    start = dt.datetime.fromisoformat(fold["cutoff"])
    end = dt.datetime.fromisoformat(fold["test_end"])
    opened = dataset.disputes.get_column("opened_at").to_list()
    return np.array([i for i, t in enumerate(opened) if start < t <= end])


def test_headline_keys_and_json(figures: dict[str, Any]) -> None:
    for key in HEADLINE_KEYS:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
    for key in (
        "extraction_f1_clean",
        "extraction_f1_scanned",
        "reason_family_accuracy",
        "outcome_auc",
        "rules_baseline_auc",
        "outcome_ece",
    ):
        assert 0.0 <= figures[key] <= 1.0, key
    assert figures["extraction_f1_clean"] > 0.5  # the rules read most fields
    json.dumps(finite_json(figures), allow_nan=False, default=str)
    assert figures["data"]["disputes"] == 500


def test_per_fold_figures(figures: dict[str, Any], outcome_dataset: DisputeDataset) -> None:  # noqa: F811
    folds = figures["backtest"]["folds"]
    assert len(folds) == 2 and all("skipped" not in f for f in folds)
    labels = outcome_dataset.labels
    pooled = 0
    for fold in folds:
        rows = _test_rows(outcome_dataset, fold)
        assert fold["test_disputes"] == rows.size > 0
        n_labelled = int((labels[rows] >= 0).sum())
        assert fold["outcome"]["n"] == fold["rules_baseline"]["n"] == n_labelled
        assert fold["outcome"]["win_rate"] == pytest.approx(labels[rows][labels[rows] >= 0].mean())
        for key in ("auc", "ap", "ece", "brier"):
            assert fold["outcome"][key] is not None and fold["rules_baseline"][key] is not None
        cutoff = dt.datetime.fromisoformat(fold["cutoff"])
        assert fold["split"]["cutoff"] == cutoff.isoformat()
        pooled += n_labelled
        assert "outcome_extracted" in fold and "policy_extracted" in fold
    assert figures["backtest"]["outcome"]["n"] == pooled
    assert figures["backtest"]["folds_trained"] == 2


def test_policy_values_add_up(figures: dict[str, Any], outcome_dataset: DisputeDataset) -> None:  # noqa: F811
    econ = DisputeEconomics()
    rows = np.concatenate([_test_rows(outcome_dataset, f) for f in figures["backtest"]["folds"]])
    amounts = outcome_dataset.amounts[rows]
    assert outcome_dataset.p_true is not None
    p_true = outcome_dataset.p_true[rows]
    assert figures["backtest"]["value_source"] == "simulator_p_win"
    assert figures["always_refund_ev_per_dispute"] == pytest.approx(
        float(np.mean(-amounts - econ.chargeback_fee - econ.refund_cost))
    )
    assert figures["always_represent_ev_per_dispute"] == pytest.approx(
        float(np.mean(econ.ev_represent(amounts, p_true)))
    )
    perfect = figures["perfect_ev_per_dispute"]
    assert perfect >= figures["policy_ev_per_dispute"]
    assert perfect >= max(
        figures["always_represent_ev_per_dispute"], figures["always_refund_ev_per_dispute"]
    )
    policy = figures["backtest"]["policy"]
    assert policy["n"] == rows.size and sum(policy["actions"].values()) == rows.size
    assert policy["policy_ev_per_dispute"] >= policy["policy_ev_review_as_model_per_dispute"]


def test_backtest_on_observed_outcomes(outcome_dataset: DisputeDataset) -> None:  # noqa: F811
    observed = DisputeDataset(**{**outcome_dataset.__dict__, "p_true": None, "_matrix": None})
    bt = backtest_outcome(observed, CONFIG)
    assert bt["value_source"] == "observed_outcomes"
    labelled = int(bt["outcome"]["n"])
    assert bt["policy"]["n"] == labelled  # only represented disputes can be valued
    with pytest.raises(DisputeTrainingError, match="same disputes"):
        other = DisputeDataset(
            **{
                **outcome_dataset.__dict__,
                "disputes": outcome_dataset.disputes.reverse(),
                "_matrix": None,
            }
        )
        backtest_outcome(outcome_dataset, CONFIG, extracted=other)


def test_extraction_and_reason_figures(
    figures: dict[str, Any],
    held_out_dispute_set: DisputeSet,
    outcome_set: DisputeSet,  # noqa: F811
) -> None:
    docs = held_out_dispute_set.documents
    n_scanned = int(docs.get_column("scanned").sum())
    ex = figures["extraction"]
    assert ex["clean"]["documents"] == docs.height - n_scanned
    assert ex["scanned"]["documents"] == min(2, n_scanned)
    for kind in ("clean", "scanned"):
        fields = ex[kind]["fields"]
        assert fields and all(0 <= f["f1"] <= 1 for f in fields.values())
        total_tp = sum(f["tp"] for f in fields.values())
        total_fp = sum(f["fp"] for f in fields.values())
        assert ex[kind]["precision"] == pytest.approx(total_tp / (total_tp + total_fp))
    reason = figures["reason_family"]
    assert reason["n"] == held_out_dispute_set.disputes.height
    assert reason["train_messages"] == outcome_set.disputes.height
    assert figures["reason_family_accuracy"] == reason["reason_family_accuracy"]
    # the same corpus twice: the figures are deterministic
    again = evaluate_extraction(held_out_dispute_set, max_scanned=0)
    assert again["clean"]["f1"] == ex["clean"]["f1"] and again["scanned"]["documents"] == 0
    assert evaluate_reason_family(outcome_set, held_out_dispute_set)["n"] == reason["n"]


def test_without_a_held_out_corpus_those_figures_are_none(outcome_set: DisputeSet) -> None:  # noqa: F811
    config = CONFIG.model_copy(update={"extracted_evidence": False})
    out = evaluate_disputes(outcome_set, None, config=config)
    assert out["extraction_f1_clean"] is None and out["reason_family_accuracy"] is None
    assert out["outcome_auc_extracted"] is None and out["outcome_auc"] is not None
