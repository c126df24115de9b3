"""The WoE scorecard: monotone bins (optbinning), negative coefficients, points scaling, reason
codes, and a JSON round trip that scores identically."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from riskml.models.credit import CATEGORIES, CreditFeature, CreditFeatureError, CreditFeatureSpec
from riskml.models.credit.binning import BinningConfig, BinningError, WoEBinning, fit_binning
from riskml.models.credit.scorecard import (
    PointsScaling,
    Scorecard,
    ScorecardConfig,
    ScorecardError,
    fit_scorecard,
)


def synthetic_loans(n: int = 6_000, *, months: int = 12, seed: int = 0) -> pl.DataFrame:
    """Loans with the contract's columns and a known logistic PD (``sim_pd``); every label is
    mature (observation_end = 12 months after the last vintage). Small and fast: for unit tests
    of the models; the simulator's portfolio is the realistic data."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    month = rng.integers(0, months, n)
    ts = [
        dt.datetime(2024 + (start.month - 1 + int(m)) // 12, (int(m) % 12) + 1, 1, tzinfo=dt.UTC)
        + dt.timedelta(days=int(d), hours=int(h))
        for m, d, h in zip(month, rng.integers(0, 28, n), rng.integers(0, 24, n), strict=True)
    ]
    bureau = np.clip(rng.normal(680, 70, n), 300, 850).round()
    delinq = rng.poisson(0.4, n)
    util = np.clip(rng.beta(2, 3, n) * 1.4, 0, 1.5)
    income = np.exp(rng.normal(8.0, 0.45, n))
    dti = np.clip(rng.gamma(4, 0.07, n), 0, 1.5)
    inq = rng.poisson(1.0, n)
    prior_dpd = rng.choice([0, 0, 0, 0, 15, 30, 60], n)
    emp = np.clip(rng.exponential(5, n), 0, 40)
    category = rng.choice(list(CATEGORIES), n)
    amount = np.round(np.exp(rng.normal(6.5, 0.7, n)), 2)
    term = rng.choice([3, 6, 12, 24], n)
    cat_eff = {c: e for c, e in zip(CATEGORIES, [0.2, 0.0, 0.3, -0.1, -0.2, 0.1], strict=True)}
    drift = 0.02 * month  # a mild trend in risk over vintages
    logit = (
        -3.1
        - (bureau - 680) / 55
        + 0.45 * delinq
        + 1.1 * (util - 0.55)
        + 1.6 * (dti - 0.28)
        + 0.18 * inq
        + 0.012 * prior_dpd
        - 0.15 * (np.log(income) - 8.0)
        - 0.02 * emp
        + np.array([cat_eff[c] for c in category])
        + drift
    )
    pd_true = 1 / (1 + np.exp(-logit))
    y = (rng.uniform(size=n) < pd_true).astype(np.int8)
    default_mob = np.where(y == 1, rng.integers(2, 13, n), 0)
    vintage = [f"{t.year:04d}-{t.month:02d}" for t in ts]
    mature_at = [
        t + dt.timedelta(days=30 * int(dm)) if yy else t + dt.timedelta(days=365)
        for t, yy, dm in zip(ts, y, default_mob, strict=True)
    ]
    return pl.DataFrame(
        {
            "loan_id": [f"L{i:06d}" for i in range(n)],
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "application_ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
            "vintage": vintage,
            "age": rng.integers(18, 80, n),
            "income_monthly": income,
            "employment_years": emp,
            "bureau_score": bureau.astype(np.int64),
            "inquiries_6m": inq,
            "delinquencies_24m": delinq,
            "utilisation": util,
            "open_accounts": rng.poisson(4, n),
            "months_on_book": rng.integers(0, 48, n),
            "prior_loans": rng.poisson(1.0, n),
            "prior_max_dpd": prior_dpd,
            "debt_to_income": dti,
            "merchant_id": rng.choice(["M1", "M2", "M3"], n),
            "category": category,
            "amount": amount,
            "term_months": term,
            "apr": rng.choice([0.0, 0.12, 0.24], n),
            "promotion": rng.choice(["none", "fee_waiver"], n),
            "origination_fee": np.zeros(n),
            "monthly_payment": amount / term,
            "default_12m": y,
            "default_mob": pl.Series(
                [int(m) if yy else None for m, yy in zip(default_mob, y, strict=True)],
                dtype=pl.Int64,
            ),
            "prepaid_mob": pl.Series([None] * n, dtype=pl.Int64),
            "label_mature_at": pl.Series(mature_at, dtype=pl.Datetime("us", "UTC")),
            "sim_pd": pd_true,
        }
    ).sort("application_ts")


@pytest.fixture(scope="module")
def loans() -> pl.DataFrame:
    return synthetic_loans(6_000, seed=1)


@pytest.fixture(scope="module")
def later_loans() -> pl.DataFrame:
    return synthetic_loans(3_000, seed=2)


@pytest.fixture(scope="module")
def card(loans: pl.DataFrame) -> Scorecard:
    return fit_scorecard(loans, loans["default_12m"].to_numpy())


def test_bins_follow_the_required_risk_direction(card: Scorecard) -> None:
    for name, direction in card.spec.monotone.items():
        fb = card.binning.features[name]
        if direction == 0 or len(fb.woe) < 2:
            continue
        steps = np.diff(fb.woe)  # WoE falls as risk rises
        assert (steps <= 0).all() if direction > 0 else (steps >= 0).all(), (name, fb.woe)
        rates = np.array(fb.n_event) / (np.array(fb.n_event) + np.array(fb.n_nonevent))
        assert ((np.diff(rates) >= 0) if direction > 0 else (np.diff(rates) <= 0)).all()
    # the strong drivers got several bins, every bin holds both classes (finite WoE)
    assert len(card.binning.features["bureau_score"].woe) >= 4
    for fb in card.binning.features.values():
        assert min(fb.n_event) >= 5 and min(fb.n_nonevent) >= 5


def test_our_woe_matches_optbinning_transform(loans: pl.DataFrame) -> None:
    import pandas as pd
    from optbinning import OptimalBinning

    y = loans["default_12m"].to_numpy()
    spec = CreditFeatureSpec(features=(CreditFeature(name="bureau_score", monotone=-1),))
    ours = fit_binning(loans, y, spec, BinningConfig())
    ob = OptimalBinning(
        "bureau_score",
        monotonic_trend="descending",
        min_bin_size=0.04,
        min_prebin_size=0.02,
        max_n_bins=8,
        min_bin_n_event=5,
        min_bin_n_nonevent=5,
    )
    x = loans["bureau_score"].to_numpy().astype(float)
    ob.fit(x, y)
    assert ours.features["bureau_score"].splits == pytest.approx(list(ob.splits))
    probe = np.r_[x[:500], np.nan, 299.0, 851.0]
    expected = ob.transform(probe, metric="woe")
    got = ours.transform(pl.DataFrame({"bureau_score": pd.Series(probe)}))[:, 0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_coefficients_are_negative_and_the_card_ranks(card: Scorecard, later_loans: pl.DataFrame):
    from riskml.metrics import roc_auc

    assert card.coefficients and all(c < 0 for c in card.coefficients.values())
    assert "bureau_score" in card.used and "delinquencies_24m" in card.used
    y = later_loans["default_12m"].to_numpy()
    auc = roc_auc(y, card.raw_pd(later_loans))
    oracle = roc_auc(y, later_loans["sim_pd"].to_numpy())
    assert auc > 0.7 and auc > oracle - 0.05
    # a noise feature (age has no effect) is dropped for its information value or kept weakly
    assert "age" in card.dropped or abs(card.coefficients["age"]) < 0.5


def test_points_sum_to_the_score_and_follow_pdo(card: Scorecard, loans: pl.DataFrame) -> None:
    head = loans.head(200)
    pts = card.points(head)
    np.testing.assert_allclose(pts.sum(axis=1), card.score(head), atol=1e-9)
    # pdo points double the odds of repaying: score = offset + factor * ln((1 - pd) / pd)
    p = card.raw_pd(head)
    s = card.score(head)
    np.testing.assert_allclose(
        s, card.scaling.offset + card.scaling.factor * np.log((1 - p) / p), rtol=1e-9
    )
    sc = PointsScaling(pdo=20, base_score=600, base_odds=50)
    assert sc.offset + sc.factor * math.log(100) == pytest.approx(620.0)


def test_reasons_name_the_features_that_lost_most_points(card: Scorecard) -> None:
    good = {
        "bureau_score": 820,
        "delinquencies_24m": 0,
        "utilisation": 0.05,
        "debt_to_income": 0.05,
        "inquiries_6m": 0,
        "prior_max_dpd": 0,
        "income_monthly": 9000.0,
        "employment_years": 20.0,
        "age": 45,
        "open_accounts": 4,
        "months_on_book": 30,
        "prior_loans": 2,
        "monthly_payment": 90.0,
        "term_months": 6,
        "category": "home",
        "promotion": "none",
    }
    bad = {**good, "bureau_score": 520, "delinquencies_24m": 4}
    frame = pl.DataFrame([good, bad])
    lost = card.points_lost(frame)
    reasons = card.reasons(frame, k=2)
    assert reasons[1] == ["bureau_score", "delinquencies_24m"] or set(reasons[1]) == {
        "bureau_score",
        "delinquencies_24m",
    }
    i_bs = card.used.index("bureau_score")
    assert lost[1, i_bs] > 10 and lost[0, i_bs] == pytest.approx(0.0)
    assert card.raw_pd(frame)[1] > 3 * card.raw_pd(frame)[0]
    assert (lost >= 0).all()


def test_json_round_trip_scores_identically(card: Scorecard, later_loans: pl.DataFrame) -> None:
    text = json.dumps(card.to_json(), allow_nan=False)
    loaded = Scorecard.from_json(json.loads(text))
    np.testing.assert_array_equal(loaded.raw_pd(later_loans), card.raw_pd(later_loans))
    np.testing.assert_array_equal(loaded.points(later_loans), card.points(later_loans))
    assert loaded.reasons(later_loans.head(50)) == card.reasons(later_loans.head(50))


def test_bad_payloads_and_inputs_are_refused(card: Scorecard, loans: pl.DataFrame) -> None:
    payload = card.to_json()
    with pytest.raises(ScorecardError, match="negative"):
        bad = json.loads(json.dumps(payload))
        bad["coefficients"][card.used[0]] = 0.3
        Scorecard.from_json(bad)
    with pytest.raises(ScorecardError, match="not a"):
        Scorecard.from_json({"format": "pickle"})
    with pytest.raises(BinningError, match="splits"):
        b = json.loads(json.dumps(payload["binning"]))
        b["features"][0]["splits"] = [*b["features"][0]["splits"][::-1], 1.0]
        WoEBinning.from_json(b)
    with pytest.raises(CreditFeatureError, match="lacks feature column"):
        card.raw_pd(loans.drop("bureau_score"))
    with pytest.raises(BinningError, match="defaults"):
        fit_scorecard(loans.head(40), np.zeros(40, dtype=int))
    with pytest.raises(ValueError, match="cannot be features"):
        CreditFeatureSpec(features=(CreditFeature(name="sim_pd"),))
    with pytest.raises(ValueError, match="categorical feature has no monotone"):
        CreditFeature(name="category", kind="categorical", categories=("a",), monotone=1)


def test_unknown_and_missing_values_get_neutral_woe(card: Scorecard, loans: pl.DataFrame):
    row = loans.head(1).with_columns(
        pl.lit("crypto").alias("category"), pl.lit(None, dtype=pl.Int64).alias("bureau_score")
    )
    w = card.binning.transform(row, ["category", "bureau_score"])
    assert w.tolist() == [[0.0, 0.0]]
    assert np.isfinite(card.raw_pd(row)).all()


def test_a_config_with_no_usable_feature_fails_clearly(loans: pl.DataFrame) -> None:
    spec = CreditFeatureSpec(features=(CreditFeature(name="age"),))
    with pytest.raises(ScorecardError, match="no feature is usable"):
        fit_scorecard(loans, loans["default_12m"].to_numpy(), spec, ScorecardConfig(min_iv=5.0))
