"""Label-free performance estimates, realised performance as labels mature, the label-maturity
curve (riskml.monitoring.performance). Synthetic data only; every test runs in well under a
second."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.metrics import average_precision
from riskml.monitoring import performance as perf
from riskml.monitoring.performance import (
    PerformanceInputError,
    compare,
    estimate_performance,
    label_maturity_curve,
    matured_labels,
    maturity_days_for,
    realised_performance,
)

THRESHOLDS = {"review": 0.1, "decline": 0.5}
T0 = np.datetime64("2024-01-01T00:00:00", "us")
DAY = np.timedelta64(86_400_000_000, "us")


def calibrated_scores(
    n: int = 100_000, rate: float = 0.01, sep: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.random.Generator]:
    """Fraud-like calibrated scores: a latent ``z ~ N(sep * class, 1)`` with a ``rate`` base
    rate, scored by its exact posterior ``P(fraud | z)``."""
    rng = np.random.default_rng(seed)
    cls = rng.random(n) < rate
    z = rng.normal(size=n) + sep * cls
    logit = np.log(rate / (1 - rate)) + sep * z - sep * sep / 2
    return 1.0 / (1.0 + np.exp(-logit)), rng


def world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """10^5 decisions with ~1 % fraud; labels drawn ``Bernoulli(score)``; every decision old
    enough that its label is mature; frauds labelled 1-20 days after the decision."""
    s, rng = calibrated_scores(seed=seed)
    y = rng.random(len(s)) < s
    decisions = T0 + (rng.random(len(s)) * 30 * DAY.astype(np.int64)).astype("timedelta64[us]")
    delay = (rng.uniform(1, 20, len(s)) * DAY.astype(np.int64)).astype("timedelta64[us]")
    labels = np.where(y, decisions + delay, np.datetime64("NaT", "us"))
    return s, y, {"decision_times": decisions, "label_times": labels, "at": T0 + 100 * DAY}


# -- (a) calibrated scores: estimates match the realised values --------------------------------


def test_estimates_match_realised_values_on_calibrated_scores() -> None:
    s, y, times = world(seed=0)
    est = estimate_performance(s, THRESHOLDS)
    real = realised_performance(s, thresholds=THRESHOLDS, maturity_days=30, **times)
    assert real["rows"] == len(s) and real["immature"] == 0
    assert real["frauds"] == y.sum() and 800 < y.sum() < 1200  # ~1 % base rate
    assert real["average_precision"] == pytest.approx(average_precision(y, s))
    err = compare(est, real)
    assert err["ap_abs_error"] <= 0.03
    for name in THRESHOLDS:
        assert err[f"recall_abs_error_{name}"] <= 0.03
        assert err[f"precision_abs_error_{name}"] <= 0.03
    assert err["recall_abs_error"] == max(err[f"recall_abs_error_{n}"] for n in THRESHOLDS)
    # the intervals cover the realised values
    for key in (
        "average_precision",
        *(f"{m}_{n}" for m in ("recall", "precision") for n in THRESHOLDS),
    ):
        assert est[f"{key}_lo"] <= real[key] <= est[f"{key}_hi"], key
    assert err["ap_covered"] == 1.0 and err["recall_decline_covered"] == 1.0
    # the exact parts
    assert est["expected_frauds"] == pytest.approx(s.sum())
    assert est["flagged_decline"] == real["flagged_decline"] == (s >= 0.5).sum()
    assert est["flagged_share_review"] == pytest.approx((s >= 0.1).mean())


def test_ap_interval_has_its_nominal_coverage() -> None:
    """Over 400 label draws from the same scores, the 95 % AP interval holds the realised AP
    about 95 % of the time, and the expected AP is the mean of the realised ones."""
    s, _ = calibrated_scores(n=20_000, seed=1)
    est = estimate_performance(s, {})
    s_sorted, group, cum_n = perf._sorted_groups(s)
    draws = perf._monte_carlo_ap(s_sorted, group, cum_n, 400, seed=5)
    inside = (draws >= est["average_precision_lo"]) & (draws <= est["average_precision_hi"])
    assert 0.91 <= inside.mean() <= 0.99
    assert est["average_precision"] == pytest.approx(draws.mean(), abs=3 * draws.std() / 20)
    assert est["average_precision_se"] == pytest.approx(draws.std(), rel=0.15)


def test_precision_and_recall_spread_match_label_draws() -> None:
    """The ``_se`` of precision and recall is the spread of the realised values over label
    draws, and the estimates are their means (recall: ratio of expectations, close here)."""
    s, _ = calibrated_scores(n=20_000, seed=6)
    est = estimate_performance(s, THRESHOLDS)
    y = np.random.default_rng(8).random((300, len(s))) < s
    for name, t in THRESHOLDS.items():
        flag = s >= t
        tp = (y & flag).sum(axis=1)
        recall, precision = tp / y.sum(axis=1), tp / flag.sum()
        assert est[f"recall_{name}"] == pytest.approx(recall.mean(), abs=0.01)
        assert est[f"recall_{name}_se"] == pytest.approx(recall.std(), rel=0.15)
        assert est[f"precision_{name}"] == pytest.approx(precision.mean(), abs=0.01)
        assert est[f"precision_{name}_se"] == pytest.approx(precision.std(), rel=0.15)


def test_naive_ap_formula_is_biased_on_small_samples_and_ours_is_not() -> None:
    """``sum_k s_k * (cumsum_k / k) / sum s`` drops the variance term; ~17 expected frauds."""
    s, _ = calibrated_scores(n=2_000, seed=7)
    s_sorted, group, cum_n = perf._sorted_groups(s)
    truth = np.nanmean(perf._monte_carlo_ap(s_sorted, group, cum_n, 4_000, seed=9))
    naive = float(np.sum(s_sorted * np.cumsum(s_sorted) / np.arange(1, len(s) + 1)) / s.sum())
    ours = estimate_performance(s, {})["average_precision"]
    assert abs(ours - truth) < 0.01
    assert naive < truth - 0.02


def test_monte_carlo_ap_equals_riskml_average_precision_with_ties() -> None:
    """Each vectorised draw's AP is riskml.metrics.average_precision of that draw (tied scores
    are one threshold), so the estimate targets the metric the platform reports."""
    s = np.round(calibrated_scores(n=3_000, rate=0.05, sep=2.5, seed=2)[0], 2)  # many ties
    s_sorted, group, cum_n = perf._sorted_groups(s)
    assert len(np.unique(s)) < 120
    draws = perf._monte_carlo_ap(s_sorted, group, cum_n, 6, seed=3)
    rng = np.random.default_rng(3)
    # the same uniforms the Monte-Carlo drew (one chunk of 6 x n)
    u = rng.random((6, len(s)))
    for i in range(6):
        assert draws[i] == pytest.approx(average_precision(u[i] < s_sorted, s_sorted), abs=1e-12)
    # and row order inside a tie does not matter
    shuffled = np.random.default_rng(0).permutation(len(s))
    y = u[0] < s_sorted
    assert average_precision(y[shuffled], s_sorted[shuffled]) == pytest.approx(draws[0])


def test_monte_carlo_cross_check_agrees_with_the_analytic_estimate() -> None:
    s, _ = calibrated_scores(n=20_000, seed=4)
    est = estimate_performance(s, THRESHOLDS, n_draws=200, seed=1)
    assert est["average_precision_mc"] == pytest.approx(est["average_precision"], abs=0.01)
    assert est["average_precision_mc_se"] == pytest.approx(est["average_precision_se"], rel=0.2)
    assert (
        est["average_precision_mc_lo"] < est["average_precision"] < est["average_precision_mc_hi"]
    )
    assert "average_precision_mc" not in estimate_performance(s, THRESHOLDS)


def test_edge_cases_give_nan_not_errors() -> None:
    est = estimate_performance(np.zeros(10), {"decline": 0.5})
    assert est["expected_frauds"] == 0.0 and est["flagged_decline"] == 0.0
    assert np.isnan(est["average_precision"]) and np.isnan(est["precision_decline"])
    assert np.isnan(est["recall_decline"])
    one = estimate_performance([1.0, 1.0, 0.0], {"all": 0.0})
    assert one["average_precision"] == pytest.approx(1.0) and one["average_precision_se"] == 0.0
    assert one["precision_all"] == pytest.approx(2 / 3) and one["recall_all"] == 1.0


# -- (b) mis-calibrated scores: the estimate misses --------------------------------------------


def test_miscalibrated_scores_give_wrong_estimates() -> None:
    """Doubling the scores keeps the ranking (AP is almost unchanged) but doubles every
    expected fraud: the estimates overshoot far outside their intervals."""
    s, _, times = world(seed=0)
    bad = np.minimum(2 * s, 1.0)
    real = realised_performance(bad, thresholds=THRESHOLDS, maturity_days=30, **times)
    good_err = compare(
        estimate_performance(s, THRESHOLDS),
        realised_performance(s, thresholds=THRESHOLDS, maturity_days=30, **times),
    )
    est = estimate_performance(bad, THRESHOLDS)
    err = compare(est, real)
    assert est["fraud_rate"] > 1.5 * real["fraud_rate"]
    assert err["ap_abs_error"] > 0.1 > 3 * good_err["ap_abs_error"]
    assert err["precision_abs_error"] > 0.15
    assert err["recall_abs_error_decline"] > 0.05
    assert err["ap_covered"] == 0.0 and err["precision_decline_covered"] == 0.0
    assert est["average_precision"] > real["average_precision"]  # overconfident


# -- (c) label-maturity curve ------------------------------------------------------------------


def tiny() -> dict[str, Any]:
    """Six decisions on day 0: four frauds labelled after 0.5, 2, 2 and 5 days, one never
    labelled, one confirmed genuine after 1 day."""
    nat = np.datetime64("NaT", "us")
    decisions = np.full(6, T0)
    hours = np.timedelta64(3_600_000_000, "us")
    labels = np.array([T0 + 12 * hours, T0 + 2 * DAY, T0 + 2 * DAY, T0 + 5 * DAY, nat, T0 + DAY])
    return {
        "decision_times": decisions,
        "label_times": labels,
        "label_is_fraud": np.array([True, True, True, True, False, False]),
    }


def test_maturity_curve_by_hand() -> None:
    curve = label_maturity_curve(**tiny())
    assert curve.columns == ["days", "arrived", "share"]
    assert curve["days"].to_list() == [0, 1, 2, 3, 4, 5]
    assert curve["arrived"].to_list() == [0, 1, 3, 3, 3, 4]
    assert curve["share"].to_list() == pytest.approx([0, 0.25, 0.75, 0.75, 0.75, 1.0])
    assert maturity_days_for(curve, 0.75) == 2
    assert maturity_days_for(curve, 0.95) == 5
    longer = label_maturity_curve(**tiny(), max_days=8)
    assert longer["share"].to_list()[-3:] == [1.0, 1.0, 1.0]
    assert maturity_days_for(label_maturity_curve(**tiny(), max_days=3), 0.95) is None


def test_maturity_curve_is_monotone_and_ends_at_one() -> None:
    _, _, times = world(seed=3)
    curve = label_maturity_curve(times["decision_times"], times["label_times"])
    share = curve["share"].to_numpy()
    assert (np.diff(share) >= 0).all()
    assert share[-1] == 1.0 and share[0] == 0.0  # delays are 1-20 days
    assert curve["days"][-1] == 20
    assert 0.4 < share[10] < 0.6  # uniform delays: half within 10.5 days


def test_maturity_curve_as_of_a_time_leaves_out_young_decisions_and_later_labels() -> None:
    t = tiny()
    dec = np.r_[t["decision_times"], T0 + 9 * DAY]  # a young fraud labelled at once
    lab = np.r_[t["label_times"], T0 + 9 * DAY]
    fraud = np.r_[t["label_is_fraud"], True]
    curve = label_maturity_curve(dec, lab, label_is_fraud=fraud, max_days=3, at=T0 + 10 * DAY)
    # the young decision is out; the 5-day label arrived by `at`, but after max_days
    assert curve["arrived"].to_list() == [0, 1, 3, 3]
    assert curve["share"][-1] == pytest.approx(0.75)
    # `at` before the last label: that fraud is not known yet
    early = label_maturity_curve(dec, lab, label_is_fraud=fraud, max_days=3, at=T0 + 4 * DAY)
    assert early["share"].to_list() == pytest.approx([0, 1 / 3, 1, 1])
    with pytest.raises(ValueError, match="needs max_days"):
        label_maturity_curve(dec, lab, at=T0)


# -- (d) realised performance on mature decisions only ------------------------------------------


def test_realised_performance_ignores_immature_decisions() -> None:
    at = T0 + 40 * DAY
    nat = np.datetime64("NaT", "us")
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.95, 0.05, 0.7, 0.6])
    dec = np.array(
        [T0, T0, T0, T0 + 35 * DAY, T0 + 35 * DAY, T0 + 5 * DAY, T0 + 38 * DAY, T0 + 45 * DAY]
    )
    lab = np.array([T0 + DAY, nat, T0 + 3 * DAY, nat, nat, T0 + 41 * DAY, T0 + 39 * DAY, nat])
    is_fraud = np.array([True, True, False, True, True, True, True, True])
    # 0: fraud labelled, mature          -> fraud
    # 1: no label, 40 days old           -> genuine (past the 30-day window)
    # 2: confirmed genuine by `at`       -> genuine
    # 3, 4: no label, 5 days old         -> immature, left out (4 would be the top score)
    # 5: 35 days old, fraud label only after `at` -> genuine at `at` (the rule)
    # 6: 2 days old, fraud labelled by `at`       -> fraud
    # 7: decided after `at`              -> not counted at all
    mature, y = matured_labels(dec, lab, at, label_is_fraud=is_fraud, maturity_days=30)
    assert mature.tolist() == [True, True, True, False, False, True, True, False]
    assert y.tolist() == [True, False, False, False, False, False, True, False]

    real = realised_performance(
        scores, dec, lab, at, {"decline": 0.65}, label_is_fraud=is_fraud, maturity_days=30
    )
    assert real["decisions"] == 7 and real["rows"] == 5 and real["immature"] == 2
    assert real["mature_share"] == pytest.approx(5 / 7)
    assert real["frauds"] == 2
    assert real["average_precision"] == pytest.approx(average_precision(y[mature], scores[mature]))
    assert real["flagged_decline"] == 3  # 0.9, 0.8, 0.7 among the mature rows
    assert real["precision_decline"] == pytest.approx(2 / 3)
    assert real["recall_decline"] == 1.0
    # immature rows do not move the metrics, whatever their scores
    changed = scores.copy()
    changed[[3, 4, 7]] = [1.0, 0.0, 1.0]
    again = realised_performance(
        changed, dec, lab, at, {"decline": 0.65}, label_is_fraud=is_fraud, maturity_days=30
    )
    assert again == real
    # a longer window: decision 1 (40 days) is still immature at 45 days
    longer = realised_performance(
        scores, dec, lab, at, {"decline": 0.65}, label_is_fraud=is_fraud, maturity_days=45
    )
    assert longer["rows"] == 3  # decisions 0, 2 (labelled) and 6


def test_realised_performance_before_labels_arrive_is_nan_not_an_error() -> None:
    s, _, times = world(seed=1)
    at = T0  # only the decisions of the first instant, no label yet, none aged
    real = realised_performance(s, times["decision_times"], times["label_times"], at, THRESHOLDS)
    assert real["rows"] == 0 and np.isnan(real["average_precision"])
    assert np.isnan(real["recall_decline"]) and np.isnan(real["fraud_rate"])


def test_times_accept_polars_and_aware_datetimes() -> None:
    t = tiny()
    at = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    base = matured_labels(t["decision_times"], t["label_times"], at, maturity_days=10)
    dec_pl = pl.Series(t["decision_times"]).dt.replace_time_zone("UTC")
    lab_pl = pl.Series(t["label_times"]).dt.replace_time_zone("UTC")
    via_pl = matured_labels(dec_pl, lab_pl, at, maturity_days=10)
    aware = [
        None if np.isnat(v) else v.astype(dt.datetime).replace(tzinfo=dt.UTC)
        for v in t["label_times"]
    ]
    via_py = matured_labels(dec_pl, aware, np.datetime64("2024-01-31"), maturity_days=10)
    for a, b in zip(base, via_pl, strict=True):
        assert a.tolist() == b.tolist()
    for a, b in zip(base, via_py, strict=True):
        assert a.tolist() == b.tolist()
    assert base[0].all()  # 30 days > 10-day window


# -- (e) bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "thresholds", "message"),
    [
        ([0.1, np.nan, 0.3], THRESHOLDS, "NaN or infinite"),
        ([0.1, 1.2, 0.3], THRESHOLDS, r"calibrated probabilities in \[0, 1\]"),
        ([0.1, -0.1], THRESHOLDS, r"calibrated probabilities in \[0, 1\]"),
        ([], THRESHOLDS, "empty"),
        ([[0.1, 0.2]], THRESHOLDS, "1-D"),
        ([0.1, 0.2], {"decline": 1.5}, r"threshold 'decline' must be in \[0, 1\]"),
        ([0.1, 0.2], {"decline": float("nan")}, "threshold 'decline'"),
    ],
)
def test_estimate_rejects_bad_input(scores: Any, thresholds: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_performance(scores, thresholds)


def test_bad_options_and_times_raise_clear_errors() -> None:
    t = tiny()
    s = np.full(6, 0.1)
    at = T0 + 10 * DAY
    with pytest.raises(ValueError, match="level must be in"):
        estimate_performance(s, {}, level=1.0)
    with pytest.raises(ValueError, match="length mismatch: 5 scores vs 6 decision_times"):
        realised_performance(s[:5], t["decision_times"], t["label_times"], at, THRESHOLDS)
    with pytest.raises(ValueError, match="length mismatch: 6 decisions vs 5 label_times"):
        realised_performance(s, t["decision_times"], t["label_times"][:5], at, THRESHOLDS)
    with pytest.raises(ValueError, match="label_is_fraud"):
        matured_labels(t["decision_times"], t["label_times"], at, label_is_fraud=[True])
    with pytest.raises(ValueError, match="scores contain 1 NaN"):
        realised_performance(np.r_[s[:5], np.nan], t["decision_times"], t["label_times"], at, {})
    with pytest.raises(ValueError, match="before its decision time"):
        matured_labels(t["decision_times"], np.full(6, T0 - DAY), at)
    with pytest.raises(ValueError, match="before its decision time"):
        label_maturity_curve(t["decision_times"], np.full(6, T0 - DAY))
    with pytest.raises(ValueError, match="decision_times contain NaT"):
        matured_labels(np.r_[t["decision_times"][:5], t["label_times"][4]], t["label_times"], at)
    with pytest.raises(ValueError, match="must hold datetimes"):
        matured_labels(np.arange(6.0), t["label_times"], at)
    with pytest.raises(ValueError, match="label_times must hold datetimes"):
        matured_labels(t["decision_times"], ["soon", *[None] * 5], at)
    with pytest.raises(ValueError, match="maturity_days must be >= 0"):
        matured_labels(t["decision_times"], t["label_times"], at, maturity_days=-1)
    assert issubclass(PerformanceInputError, ValueError)
