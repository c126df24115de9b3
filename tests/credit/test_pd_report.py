"""PD report: Gini/KS, Jeffreys tests per grade (two- and one-sided), PSI, per-vintage table."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import beta

from riskml.evaluation.credit.pd_report import (
    ece_quantile,
    gini,
    grade_table,
    jeffreys_test,
    ks_statistic,
    model_report,
    paired_gini_difference,
    pd_report,
    psi,
    vintage_table,
)
from riskml.metrics import MetricInputError

NAMES = ("A", "B", "C")


def test_gini_and_ks_on_a_small_known_case() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # 9 pairs (default, non-default): 8 ordered right, 1 wrong -> AUC 8/9
    assert gini(y, s) == pytest.approx(2 * 8 / 9 - 1)
    # KS: at threshold 0.45 all three non-defaults are below, one default is -> 1 - 1/3
    assert ks_statistic(y, s) == pytest.approx(2 / 3)
    assert gini(y, -s) == pytest.approx(-gini(y, s))
    with pytest.raises(MetricInputError, match="both classes"):
        ks_statistic(np.zeros(4), s[:4])


def test_jeffreys_interval_is_the_beta_posterior_quantiles() -> None:
    out = jeffreys_test(5, 200, 0.03)
    lo, hi = beta.ppf([0.025, 0.975], 5.5, 195.5)
    assert (out["low"], out["high"]) == pytest.approx((lo, hi))
    assert out["passed"] and out["p_value"] == pytest.approx(beta.cdf(0.03, 5.5, 195.5))
    # a PD well below the observed rate fails both ways; well above fails only two-sided
    assert not jeffreys_test(20, 200, 0.04)["passed"]
    assert not jeffreys_test(20, 200, 0.04, test="one_sided")["passed"]
    assert not jeffreys_test(2, 200, 0.05)["passed"]
    assert jeffreys_test(2, 200, 0.05, test="one_sided")["passed"]
    # zero defaults still give a proper interval (the point of Jeffreys' prior)
    zero = jeffreys_test(0, 100, 0.001)
    assert zero["low"] < 0.001 < zero["high"] < 0.03 and zero["passed"]
    with pytest.raises(MetricInputError, match="defaults"):
        jeffreys_test(5, 3, 0.1)
    with pytest.raises(MetricInputError, match="unknown Jeffreys"):
        jeffreys_test(1, 10, 0.1, test="sideways")  # type: ignore[arg-type]


def test_grade_table_counts_and_tests_each_grade() -> None:
    rng = np.random.default_rng(0)
    pd = np.r_[np.full(2000, 0.01), np.full(1000, 0.10)]
    y = (rng.uniform(size=3000) < pd).astype(int)
    grades = ["A"] * 2000 + ["B"] * 1000
    table = grade_table(y, pd, grades, NAMES)
    assert [r["grade"] for r in table] == list(NAMES)
    a, b, c = table
    assert a["n"] == 2000 and a["defaults"] == int(y[:2000].sum()) and a["passed"]
    assert b["mean_pd"] == pytest.approx(0.10) and b["passed"]
    assert c == {"grade": "C", "n": 0, "defaults": 0}
    # halving the PD of grade B makes it fail
    bad = grade_table(y, np.r_[pd[:2000], pd[2000:] / 2], grades, NAMES)
    assert bad[0]["passed"] and not bad[1]["passed"]
    report = pd_report(y, np.r_[pd[:2000], pd[2000:] / 2], grades, NAMES)
    assert report["jeffreys_pass_share"] == pytest.approx(0.5)
    assert report["grades_tested"] == 2 and report["grades_passed"] == 1
    # the halved PD under-estimates grade B: the one-sided (ECB) test fails it too; a doubled
    # PD (conservative) fails only the two-sided test
    halved, doubled = np.r_[pd[:2000], pd[2000:] / 2], np.r_[pd[:2000], pd[2000:] * 2]
    assert not grade_table(y, halved, grades, NAMES, test="one_sided")[1]["passed"]
    assert grade_table(y, doubled, grades, NAMES, test="one_sided")[1]["passed"]
    assert not grade_table(y, doubled, grades, NAMES)[1]["passed"]
    over = pd_report(y, doubled, grades, NAMES)
    one_sided = grade_table(y, doubled, grades, NAMES, test="one_sided")
    assert over["jeffreys_pass_share_one_sided"] == np.mean([r["passed"] for r in one_sided[:2]])
    with pytest.raises(MetricInputError, match="not on the scale"):
        grade_table(y, pd, ["Z"] * 3000, NAMES)


def test_psi_is_zero_for_the_same_scores_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    dev = rng.beta(2, 10, 20_000)
    assert psi(dev, rng.beta(2, 10, 20_000)) < 0.01
    shifted = psi(dev, rng.beta(2, 10, 20_000) * 1.8)
    assert shifted > 0.25
    # by hand: two bins (median split), actual 80/20 vs expected 50/50
    e = np.array([0.0, 0.0, 1.0, 1.0])
    a = np.array([0.0] * 8 + [1.0] * 2)
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(e, a, bins=2) == pytest.approx(expected)
    with pytest.raises(MetricInputError, match="non-empty"):
        psi(dev, np.array([]))


def test_ece_quantile_sees_miscalibration_at_low_pd() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 0.06, 40_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert ece_quantile(y, p) < 0.004
    assert ece_quantile(y, p * 2) > 0.02


def _scored(seed: int = 3) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    for i, (vintage, role) in enumerate(
        [
            ("2024-01", "train"),
            ("2024-02", "calibration_select"),
            ("2024-03", "test"),
            ("2024-04", "unused"),
        ]
    ):
        raw = rng.beta(2, 12, 3000) * (1.4 if vintage == "2024-04" else 1.0)
        y = (rng.uniform(size=3000) < raw).astype(np.int8)
        rows.append(
            pl.DataFrame(
                {
                    "loan_id": [f"{i}-{k}" for k in range(3000)],
                    "vintage": vintage,
                    "role": role,
                    "default_12m": pl.Series(
                        [None] * 3000 if vintage == "2024-04" else y, dtype=pl.Int8
                    ),
                    "raw_pd": raw,
                    "pd": raw,
                    "grade": np.where(raw < 0.1, "A", np.where(raw < 0.2, "B", "C")),
                }
            )
        )
    frame = pl.concat(rows)
    return frame, frame.filter(pl.col("role") == "train")["raw_pd"].to_numpy()


def test_vintage_table_gives_psi_everywhere_and_gini_where_labels_are_mature() -> None:
    scored, dev = _scored()
    table = vintage_table(scored, dev)
    assert [r["vintage"] for r in table] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert table[0]["psi"] < 0.02 and table[3]["psi"] > 0.1  # the shifted, immature vintage
    assert "gini" in table[2] and "gini" not in table[3] and table[3]["n"] == 3000
    assert 0.2 < table[2]["gini"] < 0.8 and table[2]["ece"] < 0.02


def test_model_report_on_the_held_out_rows() -> None:
    scored, dev = _scored()
    rep = model_report(scored, dev, NAMES)
    assert rep["vintages"] == ["2024-03"] and rep["n"] == 3000
    assert rep["jeffreys_pass_share"] >= 2 / 3 and rep["ece"] < 0.02
    assert len(rep["per_vintage"]) == 4
    with pytest.raises(MetricInputError, match="no scored rows"):
        model_report(scored, dev, NAMES, roles=("nothing",))


def test_paired_gini_difference_interval_covers_its_point() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-(x - 2)))).astype(int)
    good, noisy = x, x + rng.normal(scale=1.0, size=4000)
    out = paired_gini_difference(y, good, noisy, n_boot=200)
    assert out["low"] < out["difference"] < out["high"]
    assert out["low"] > 0  # the noisy score is worse, significantly
    same = paired_gini_difference(y, good, good, n_boot=50)
    assert same["difference"] == 0 and same["low"] == 0 == same["high"]
