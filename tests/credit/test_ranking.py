"""The offer ranker: DR labels and grades on constructed cases, then a ranker trained on the
small simulated portfolio (``credit_portfolio``): what it serves, how well it ranks held-out
impressions, its files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.data.credit import economics as econ
from riskml.data.credit.schema import APPLICANT_NUMERIC
from riskml.evaluation.credit import ope
from riskml.models.credit.ranking import (
    META_FILE,
    RANKER_FILE,
    REWARD_FILE,
    OfferRanker,
    RankerParams,
    RankingError,
    doubly_robust_values,
    fit_grading,
)

FAST = {
    "reward": {"num_boost_round": 60, "max_depth": 4},
    "ranker": {"num_boost_round": 60},
}
TERMS = ["amount", "term_months", "apr", "promotion", "origination_fee", "monthly_payment"]


@pytest.fixture(scope="module")
def split(credit_portfolio: Any) -> dict[str, pl.DataFrame]:
    offers = credit_portfolio.offers
    month = pl.col("ts").dt.strftime("%Y-%m")
    months = sorted(offers.select(month.unique()).to_series().to_list())
    tagged = offers.with_columns(month.alias("m"))
    return {
        "train": tagged.filter(pl.col("m") < months[-3]).drop("m"),
        "valid": tagged.filter(pl.col("m").is_in(months[-3:-2])).drop("m"),
        "test": tagged.filter(pl.col("m") >= months[-2]).drop("m"),
    }


@pytest.fixture(scope="module")
def ranker(split: dict[str, pl.DataFrame]) -> OfferRanker:
    return OfferRanker.fit(split["train"], RankerParams.model_validate(FAST), valid=split["valid"])


def test_doubly_robust_values_correct_only_the_shown_candidate() -> None:
    q = np.array([2.0, 5.0, 1.0])
    reward = np.array([np.nan, 11.0, np.nan])
    shown = np.array([0, 1, 0])
    prop = np.array([0.5, 0.25, 0.25])
    # shown: 5 + (11 - 5) / 0.25 = 29; the others keep q
    np.testing.assert_allclose(doubly_robust_values(q, reward, shown, prop), [2.0, 29.0, 1.0])
    # clipping 1/π0 at 2: 5 + 2 * 6 = 17
    clipped = doubly_robust_values(q, reward, shown, prop, max_weight=2.0)
    np.testing.assert_allclose(clipped, [2.0, 17.0, 1.0])
    # declined: reward 0 → q (1 - 1/π0) = 5 - 20
    declined = doubly_robust_values(q, np.array([np.nan, 0.0, np.nan]), shown, prop)
    np.testing.assert_allclose(declined, [2.0, -15.0, 1.0])


def test_grades_by_impression_quantile_and_rank() -> None:
    codes = np.array([0, 0, 0, 1, 1, 1])
    values = np.array([10.0, 5.0, -1.0, 2.0, 0.0, 1.0])
    by_imp = fit_grading(values, method="impression", n_grades=5).apply(values, codes)
    # share of the impression's best, ceil(v / max * 4); <= 0 is grade 0
    np.testing.assert_array_equal(by_imp, [4, 2, 0, 4, 0, 2])
    by_rank = fit_grading(values, method="rank", n_grades=5).apply(values, codes)
    np.testing.assert_array_equal(by_rank, [4, 3, 0, 4, 0, 3])
    many = np.r_[np.linspace(1, 100, 100), -5.0]
    quant = fit_grading(many, method="quantile", n_grades=5)
    grades = quant.apply(many, np.zeros(101, dtype=int))
    assert grades[-1] == 0 and grades.max() == 4
    # equal-count bins of the positives
    np.testing.assert_array_equal(np.bincount(grades[:-1]), [0, 25, 25, 25, 25])
    with pytest.raises(RankingError, match="positive value"):
        fit_grading(np.array([-1.0, 0.0, 2.0]), method="quantile", n_grades=5)


def test_rank_returns_every_offer_sorted_with_its_expected_value(
    ranker: OfferRanker, split: dict[str, pl.DataFrame]
) -> None:
    test = split["test"]
    first = test.filter(pl.col("impression_id") == test.get_column("impression_id")[0])
    customer = first.select(*APPLICANT_NUMERIC, "category").row(0, named=True)
    pd = first.get_column("pd_at_offer").to_numpy()
    ranked = ranker.rank(customer, first.select("candidate", *TERMS), pd)
    assert ranked.height == first.height
    assert ranked.get_column("rank").to_list() == list(range(1, first.height + 1))
    scores = ranked.get_column("score").to_numpy()
    assert (np.diff(scores) <= 0).all()
    assert sorted(ranked.get_column("candidate").to_list()) == sorted(
        first.get_column("candidate").to_list()
    )
    p = ranked.get_column("p_accept").to_numpy()
    assert ((p > 0) & (p < 1)).all()
    # value = margin - PD × LGD × EAD from the economics module, with each offer's own PD
    by_candidate = first.sort("candidate")
    expect = econ.offer_value(
        by_candidate.get_column("amount").to_numpy(),
        by_candidate.get_column("term_months").to_numpy(),
        by_candidate.get_column("apr").to_numpy(),
        by_candidate.get_column("origination_fee").to_numpy(),
        by_candidate.get_column("pd_at_offer").to_numpy(),
        promotion=by_candidate.get_column("promotion").to_numpy(),
    )
    got = ranked.sort("candidate")
    np.testing.assert_allclose(got.get_column("value").to_numpy(), expect)
    np.testing.assert_allclose(
        got.get_column("value").to_numpy(),
        got.get_column("margin").to_numpy() - got.get_column("expected_loss").to_numpy(),
    )
    np.testing.assert_allclose(
        got.get_column("expected_value").to_numpy(),
        got.get_column("p_accept").to_numpy() * got.get_column("value").to_numpy(),
    )
    np.testing.assert_allclose(
        got.get_column("pd_at_offer").to_numpy(), by_candidate.get_column("pd_at_offer").to_numpy()
    )
    # a batch score of the logged rows gives the same numbers
    batch = ranker.score_frame(by_candidate)
    np.testing.assert_allclose(batch.score, got.get_column("score").to_numpy(), rtol=1e-6)


def test_a_higher_pd_lowers_value_and_expected_value(
    ranker: OfferRanker, split: dict[str, pl.DataFrame]
) -> None:
    row = split["test"].row(0, named=True)
    customer = {k: row[k] for k in APPLICANT_NUMERIC}
    offer = [{k: row[k] for k in ("amount", "term_months", "apr", "promotion")}]
    low, high = ranker.rank(customer, offer, 0.01), ranker.rank(customer, offer, 0.30)
    assert high["expected_loss"][0] > low["expected_loss"][0]
    assert high["value"][0] < low["value"][0]
    # fee and payment are derived from the economics when not given
    assert low["origination_fee"][0] == pytest.approx(
        econ.origination_fee(row["amount"], row["term_months"], row["promotion"])[0]
    )
    assert low["monthly_payment"][0] == pytest.approx(
        econ.monthly_payment(row["amount"], row["apr"], row["term_months"], row["promotion"])[0]
    )


def test_the_ranker_orders_held_out_impressions_far_better_than_the_logging_policy(
    ranker: OfferRanker, split: dict[str, pl.DataFrame]
) -> None:
    test = split["test"].sort("impression_id", "candidate")
    scores = ranker.score_frame(test)
    imp = test.get_column("impression_id").to_numpy()
    relevance = np.clip(test.get_column("sim_ev").to_numpy(), 0, None)
    model = ope.ndcg_at_k(imp, relevance, scores.score)
    logging = ope.ndcg_at_k(imp, relevance, test.get_column("propensity").to_numpy())
    assert model > logging + 0.15, (model, logging)
    # the reward model has learned acceptance: its P(accept) follows the truth
    truth = test.get_column("sim_p_accept").to_numpy()
    assert np.corrcoef(scores.p_accept, truth)[0, 1] > 0.4
    # the top offer's true expected value beats the logging policy's
    sim_ev = test.get_column("sim_ev").to_numpy()
    top = ope.policy_value(imp, ope.greedy_policy(imp, scores.score), sim_ev)
    logged = ope.policy_value(imp, test.get_column("propensity").to_numpy(), sim_ev)
    assert top > logged


def test_fit_records_what_it_did(ranker: OfferRanker, split: dict[str, pl.DataFrame]) -> None:
    info = ranker.info
    assert info["n_candidates"] == split["train"].height
    assert info["n_impressions"] == split["train"].get_column("impression_id").n_unique()
    assert sum(info["grade_counts"]) == info["n_candidates"]
    assert info["valid_impressions"] > 0
    # early stopping on the valid month: the reward model stops at or before its budget
    assert info["reward_rounds_used"] <= FAST["reward"]["num_boost_round"]


def test_files_round_trip_and_tampering_is_refused(
    ranker: OfferRanker, split: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    out = ranker.to_files(tmp_path / "ranker")
    assert sorted(p.name for p in out.iterdir()) == sorted([META_FILE, REWARD_FILE, RANKER_FILE])
    meta = json.loads((out / META_FILE).read_text())
    assert meta["params"]["labels"] == "dr" and meta["grading"]["method"] == "impression"
    # the ranker boosts from the reward model's ordering: its unit travels with the files
    assert meta["margin_unit"] == ranker.margin_unit and ranker.margin_unit > 0
    loaded = OfferRanker.from_files(out)
    test = split["test"]
    np.testing.assert_array_equal(loaded.score_frame(test).score, ranker.score_frame(test).score)
    assert loaded.params == ranker.params and loaded.economics == ranker.economics

    data = bytearray((out / RANKER_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / RANKER_FILE).write_bytes(bytes(data))
    with pytest.raises(RankingError, match="sha256"):
        OfferRanker.from_files(out)
    (out / RANKER_FILE).unlink()
    with pytest.raises(RankingError, match="missing"):
        OfferRanker.from_files(out)
    files = ranker.to_bytes()
    files[META_FILE] = json.dumps({"format": "something-else"}).encode()
    with pytest.raises(RankingError, match="format"):
        OfferRanker.from_bytes(files)


def test_dm_labels_and_other_grades_train_too(split: dict[str, pl.DataFrame]) -> None:
    params = RankerParams.model_validate(
        {
            **FAST,
            "labels": "dm",
            "grading": "quantile",
            "stack_reward_model": False,
            "margin_scale": None,
        }
    )
    model = OfferRanker.fit(split["train"], params)
    assert model.rank_features[-1] == "value"  # nothing stacked
    assert model.margin_unit is None
    assert OfferRanker.from_bytes(model.to_bytes()).margin_unit is None
    assert model.info["valid_impressions"] == 0
    assert np.isfinite(model.score_frame(split["test"]).score).all()


def test_bad_input_raises_clear_errors(ranker: OfferRanker, split: dict[str, pl.DataFrame]) -> None:
    row = split["test"].row(0, named=True)
    customer = {k: row[k] for k in APPLICANT_NUMERIC}
    offer = {k: row[k] for k in ("amount", "term_months", "apr", "promotion")}
    with pytest.raises(RankingError, match="no candidate"):
        ranker.rank(customer, pl.DataFrame(), 0.05)
    with pytest.raises(RankingError, match="unknown promotion"):
        ranker.rank(customer, [{**offer, "promotion": "free_money"}], 0.05)
    with pytest.raises(RankingError, match="probability"):
        ranker.rank(customer, [offer], 1.5)
    with pytest.raises(RankingError, match="unknown customer attributes"):
        ranker.rank({**customer, "shoe_size": 44}, [offer], 0.05)
    with pytest.raises(RankingError, match="one per offer"):
        ranker.rank(customer, [offer, offer], [0.1, 0.2, 0.3])
    with pytest.raises(RankingError, match="lack columns"):
        ranker.rank(customer, [{"amount": 100.0}], 0.05)
    with pytest.raises(RankingError, match="invalid offer terms"):
        ranker.rank(customer, [{**offer, "term_months": 7}], 0.05)
    with pytest.raises(RankingError, match="lack columns"):
        OfferRanker.fit(split["train"].drop("propensity"))
    two_shown = split["train"].with_columns(pl.lit(1, dtype=pl.Int8).alias("shown"))
    with pytest.raises(RankingError, match="exactly one shown"):
        OfferRanker.fit(two_shown)
