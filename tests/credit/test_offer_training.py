"""Offer ranker training split by month, its off-policy evaluation report on the held-out
month (small simulated portfolio), and the same training as a Ray task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.evaluation.credit.ope import OfferRankingReport, evaluate_offer_ranking
from riskml.training.credit_offers import (
    OfferTrainingConfig,
    OfferTrainingError,
    OfferTrainingResult,
    split_offers,
    train_offer_ranker,
)

FAST = {
    "ranker": {
        "reward": {"num_boost_round": 60, "max_depth": 4},
        "ranker": {"num_boost_round": 60},
    }
}
#: The issue's keys (other tools read them) and the comparisons asked for.
REPORT_KEYS = (
    "ndcg5_model",
    "ndcg5_logging_policy",
    "ndcg5_largest_amount",
    "ev_per_customer_model",
    "ev_per_customer_model_ci",
    "ev_per_customer_logging_policy",
    "ev_per_customer_logging_policy_ci",
    "ev_per_customer_largest_amount",
    "ev_per_customer_largest_amount_ci",
    "true_ev_per_customer_model",
    "true_ev_per_customer_logging_policy",
    "true_ev_per_customer_largest_amount",
)


@pytest.fixture(scope="module")
def trained(credit_portfolio: Any) -> OfferTrainingResult:
    return train_offer_ranker(credit_portfolio, OfferTrainingConfig.model_validate(FAST))


@pytest.fixture(scope="module")
def report(credit_portfolio: Any, trained: OfferTrainingResult) -> OfferRankingReport:
    return evaluate_offer_ranking(credit_portfolio, result=trained)


def _months(frame: pl.DataFrame) -> list[str]:
    return sorted(frame.select(pl.col("ts").dt.strftime("%Y-%m").unique()).to_series().to_list())


def test_split_is_by_month_latest_last(credit_portfolio: Any) -> None:
    offers = credit_portfolio.offers
    months = _months(offers)
    split = split_offers(offers, test_months=2, valid_months=1)
    assert split.test_months == months[-2:]
    assert split.valid_months == months[-3:-2]
    assert split.train_months == months[:-3]
    assert split.valid is not None
    assert _months(split.test) == months[-2:] and _months(split.train) == months[:-3]
    assert split.train.height + split.valid.height + split.test.height == offers.height
    # no impression is split across windows, and every training impression is earlier
    ids = [set(f.get_column("impression_id").to_list()) for f in (split.train, split.valid)]
    assert not ids[0] & ids[1]
    assert split.train.get_column("ts").max() < split.test.get_column("ts").min()
    summary = split.summary()
    assert summary["test_impressions"] == split.test.get_column("impression_id").n_unique()
    none = split_offers(offers, test_months=1, valid_months=0)
    assert none.valid is None and none.valid_months == []


def test_split_refuses_too_few_months(credit_portfolio: Any) -> None:
    offers = credit_portfolio.offers
    n = len(_months(offers))
    with pytest.raises(OfferTrainingError, match="months of offers"):
        split_offers(offers, test_months=n - 1, valid_months=1)
    with pytest.raises(OfferTrainingError, match="no offers"):
        split_offers(offers.head(0))
    with pytest.raises(OfferTrainingError, match="offers DataFrame or a Portfolio"):
        train_offer_ranker({"offers": 1})


def test_plain_training_uses_only_the_training_months(trained: OfferTrainingResult) -> None:
    assert trained.mode == "plain" and trained.timings["plain_s"] > 0
    info = trained.ranker.info
    assert info["n_candidates"] == trained.split.train.height
    assert info["valid_impressions"] == trained.split.summary()["valid_impressions"]


def test_report_has_the_issue_keys_and_the_model_beats_both_baselines(
    report: OfferRankingReport, trained: OfferTrainingResult
) -> None:
    doc = report.to_json()
    json.dumps(doc, allow_nan=False)
    for key in REPORT_KEYS:
        assert doc[key] is not None, key
    assert report.n_impressions == trained.split.summary()["test_impressions"]
    # on the simulator's ground truth the model ranks and chooses far better than both
    assert report.ndcg5_model is not None and report.ndcg5_logging_policy is not None
    assert report.ndcg5_largest_amount is not None
    assert report.ndcg5_model > report.ndcg5_logging_policy + 0.1
    assert report.ndcg5_model > report.ndcg5_largest_amount + 0.1
    assert report.true_ev_per_customer_model is not None
    assert report.true_ev_per_customer_logging_policy is not None
    assert report.true_ev_per_customer_model > report.true_ev_per_customer_logging_policy
    # every interval holds its estimate
    for key in ("model", "logging_policy", "largest_amount"):
        low, high = doc[f"ev_per_customer_{key}_ci"]
        assert low <= doc[f"ev_per_customer_{key}"] <= high


def test_logging_policy_figure_is_the_logged_mean(
    report: OfferRankingReport, trained: OfferTrainingResult
) -> None:
    shown = trained.split.test.filter(pl.col("shown") == 1)
    assert report.ev_per_customer_logging_policy == pytest.approx(shown.get_column("value").mean())
    est = report.estimates["logging_policy"]
    # IPS of the logging policy with its own propensities is exactly the logged mean
    assert est["ips"]["value"] == pytest.approx(report.ev_per_customer_logging_policy)
    assert est["ips"]["ess"] == pytest.approx(report.n_impressions)
    # the model's DR figure is the DR estimate, the uplift its paired difference to the log
    model = report.estimates["model"]
    assert report.ev_per_customer_model == model["dr"]["value"]
    assert report.uplift_model_vs_logging == pytest.approx(
        model["dr"]["value"] - report.ev_per_customer_logging_policy
    )
    truth = report.truth["logging_policy"]
    test = trained.split.test
    imp_truth = (
        test.group_by("impression_id")
        .agg((pl.col("propensity") * pl.col("sim_ev")).sum())
        .get_column("propensity")
        .mean()
    )
    assert truth["sim_ev"] == pytest.approx(imp_truth)


def test_evaluation_without_simulator_truth_has_no_ndcg(trained: OfferTrainingResult) -> None:
    stripped = trained.split.test.drop("sim_ev", "sim_p_accept", "sim_pd")
    split = type(trained.split)(
        trained.split.train_months, trained.split.valid_months, trained.split.test_months,
        trained.split.train, trained.split.valid, stripped,
    )  # fmt: skip
    result = OfferTrainingResult(ranker=trained.ranker, split=split, config=trained.config)
    rep = evaluate_offer_ranking(stripped, result=result, ci="bootstrap", n_boot=200)
    assert rep.ndcg5_model is None and rep.true_ev_per_customer_model is None
    assert rep.truth == {}
    assert np.isfinite(rep.ev_per_customer_model)
    assert rep.estimates["model"]["dr"]["ci_method"] == "bootstrap"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    if ray.is_initialized():  # pragma: no cover - another module left Ray running
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.slow
def test_ray_task_trains_the_same_ranker(
    local_ray: None, credit_portfolio: Any, trained: OfferTrainingResult
) -> None:
    cfg = OfferTrainingConfig.model_validate(
        {**FAST, "use_ray": True, "ray": {"cpus_per_worker": 1}, "time_plain_baseline": True}
    )
    result = train_offer_ranker(credit_portfolio, cfg)
    assert result.mode == "ray"
    assert result.timings["ray_cpus"] == 1.0 and result.timings["ray_over_plain"] > 0
    test = trained.split.test
    np.testing.assert_allclose(
        result.ranker.score_frame(test).score, trained.ranker.score_frame(test).score, rtol=1e-6
    )
