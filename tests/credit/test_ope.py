"""Off-policy estimators and NDCG: constructed cases with known answers, then coverage on
simulated logs whose ground truth is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskml.evaluation.credit import ope
from riskml.evaluation.credit.ope import BanditLog, OPEError


def simulated_log(seed: int, n: int = 2000, k: int = 8, temperature: float = 1.0) -> dict:
    """A logged-offers world: true acceptance and value per candidate, softmax logging policy
    preferring large amounts, one shown candidate per impression, reward = accepted × value."""
    rng = np.random.default_rng(seed)
    imp = np.repeat(np.arange(n), k)
    income = np.repeat(rng.lognormal(8.0, 0.4, n), k)
    amount = rng.choice([250.0, 500.0, 1000.0, 2000.0, 4000.0], size=n * k)
    apr = rng.choice([0.0, 0.1, 0.2, 0.3], size=n * k)
    p_accept = 1 / (1 + np.exp(-(1.0 - 0.6 * amount / (0.3 * income) - 4.0 * apr)))
    value = amount * (0.5 * apr + 0.05) - 0.04 * amount  # margin minus expected loss
    ev = p_accept * value
    logit = np.log(amount) / temperature
    logit = logit - np.repeat(np.bincount(imp, logit) / k, k)
    expo = np.exp(logit)
    prop = expo / np.repeat(np.bincount(imp, expo), k)
    cum = np.cumsum(prop.reshape(n, k), axis=1)
    pick = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=k - 1)
    shown = np.zeros(n * k, dtype=np.int8)
    shown[np.arange(n) * k + pick] = 1
    accepted = (rng.random(n * k) < p_accept).astype(float)
    reward = np.where(shown == 1, accepted * value, np.nan)
    # a decent but imperfect reward model: right shape, multiplicative noise and a small bias
    q_hat = ev * rng.lognormal(0.0, 0.25, n * k) + 0.5
    return {
        "imp": imp, "shown": shown, "prop": prop, "reward": reward, "ev": ev, "q_hat": q_hat,
        "amount": amount, "rng": rng,
    }  # fmt: skip


def constructed_log() -> BanditLog:
    # 4 impressions × 2 candidates, uniform logging; candidate 0 shown in impressions a and c
    return BanditLog.from_arrays(
        impression=["a", "a", "b", "b", "c", "c", "d", "d"],
        shown=[1, 0, 0, 1, 1, 0, 0, 1],
        propensity=[0.5] * 8,
        reward=[10.0, None, None, 2.0, 6.0, None, None, 0.0],
    )


def test_target_equal_to_logging_gives_logged_mean() -> None:
    d = simulated_log(0, n=500)
    log = BanditLog.from_arrays(d["imp"], d["shown"], d["prop"], d["reward"])
    logged = float(np.nanmean(d["reward"]))
    assert ope.logged_value(log).value == pytest.approx(logged)
    assert ope.ips(log, d["prop"]).value == pytest.approx(logged)
    assert ope.snips(log, d["prop"]).value == pytest.approx(logged)
    est = ope.ips(log, d["prop"])
    assert est.ess == pytest.approx(500) and est.mean_weight == pytest.approx(1.0)
    # DR with q = 0 is IPS
    assert ope.doubly_robust(log, d["prop"], np.zeros(len(d["imp"]))).value == pytest.approx(logged)


def test_constructed_ips_snips_dr_values() -> None:
    log = constructed_log()
    always_first = np.tile([1.0, 0.0], 4)
    # IPS: shown-first impressions a (10) and c (6), weight 2 each, over 4 impressions
    assert ope.ips(log, always_first).value == pytest.approx((2 * 10 + 2 * 6) / 4)
    # SNIPS: weights sum 4 -> (20 + 12) / 4
    assert ope.snips(log, always_first).value == pytest.approx(8.0)
    # DR with q = 5 for first candidates, 1 for second:
    q = np.tile([5.0, 1.0], 4)
    # terms: a: 5 + 2(10-5)=15; b: 5 + 0 = 5; c: 5 + 2(6-5)=7; d: 5
    assert ope.doubly_robust(log, always_first, q).value == pytest.approx((15 + 5 + 7 + 5) / 4)
    assert ope.direct_method(log, always_first, q).value == pytest.approx(5.0)
    # clipping weights at 1.5: IPS = (1.5*10 + 1.5*6)/4, half the impressions clipped
    clipped = ope.ips(log, always_first, clip=1.5)
    assert clipped.value == pytest.approx(6.0)
    assert clipped.clipped_share == pytest.approx(0.5)
    # ESS of weights (2, 0, 2, 0) = 16 / 8
    assert ope.ips(log, always_first).ess == pytest.approx(2.0)


def test_normal_ci_matches_standard_error_and_bootstrap_agrees() -> None:
    d = simulated_log(1, n=1500)
    log = BanditLog.from_arrays(d["imp"], d["shown"], d["prop"], d["reward"])
    target = ope.greedy_policy(d["imp"], d["ev"])
    est = ope.ips(log, target, confidence=0.9)
    w, _ = ope.importance_weights(log, target)
    terms = w * log.reward
    se = np.std(terms, ddof=1) / np.sqrt(len(terms))
    assert est.std_error == pytest.approx(se)
    assert est.ci_high - est.value == pytest.approx(1.6448536 * se, rel=1e-6)
    boot = ope.ips(log, target, ci="bootstrap", n_boot=400, seed=3, confidence=0.9)
    assert boot.value == est.value
    assert boot.ci_low < est.value < boot.ci_high
    width_n, width_b = est.ci_high - est.ci_low, boot.ci_high - boot.ci_low
    assert 0.75 < width_b / width_n < 1.3
    # seeded: the same interval twice
    again = ope.ips(log, target, ci="bootstrap", n_boot=400, seed=3, confidence=0.9)
    assert (again.ci_low, again.ci_high) == (boot.ci_low, boot.ci_high)
    snips_boot = ope.snips(log, target, ci="bootstrap", n_boot=400, seed=3)
    assert snips_boot.ci_low < snips_boot.value < snips_boot.ci_high


def test_ips_and_dr_cover_the_truth_and_dr_is_narrower() -> None:
    covered = {"ips": 0, "snips": 0, "dr": 0}
    narrower = 0
    for seed in range(10):
        d = simulated_log(100 + seed)
        log = BanditLog.from_arrays(d["imp"], d["shown"], d["prop"], d["reward"])
        # target: greedy on a noisy view of the true expected value (differs from logging)
        noisy = d["ev"] + d["rng"].normal(0, 5.0, len(d["ev"]))
        target = ope.greedy_policy(d["imp"], noisy)
        truth = ope.policy_value(d["imp"], target, d["ev"])
        est = ope.estimate_all(log, target, d["q_hat"])
        for name in covered:
            covered[name] += est[name].covers(truth)
        ips_w = est["ips"].ci_high - est["ips"].ci_low
        dr_w = est["dr"].ci_high - est["dr"].ci_low
        narrower += dr_w < ips_w
        # the target differs from logging: its value is not the logged mean
        assert abs(truth - float(np.nanmean(d["reward"]))) > 1.0
    assert covered["ips"] >= 8, covered
    assert covered["dr"] >= 8, covered
    assert narrower == 10


def test_greedy_policy_and_chosen_candidate_split_ties() -> None:
    imp = np.array(["x", "x", "x", "y", "y"])
    scores = np.array([3.0, 5.0, 5.0, 1.0, 0.0])
    np.testing.assert_allclose(ope.greedy_policy(imp, scores), [0, 0.5, 0.5, 1, 0])
    np.testing.assert_array_equal(ope.chosen_candidate(imp, scores), [1, 3])
    # unsorted impression ids
    imp2 = np.array(["y", "x", "y", "x"])
    np.testing.assert_array_equal(ope.chosen_candidate(imp2, [0.0, 2.0, 1.0, 1.0]), [1, 2])
    assert ope.policy_value(imp, ope.greedy_policy(imp, scores), [1, 2, 4, 10, 0]) == 6.5


def test_ndcg_known_values_and_ties() -> None:
    imp = np.zeros(3, dtype=int)
    rel = np.array([3.0, 2.0, 0.0])
    assert ope.ndcg_at_k(imp, rel, [3, 2, 1]) == pytest.approx(1.0)
    # reversed order: dcg = 0 + 2/log2(3) + 3/2 ; idcg = 3 + 2/log2(3)
    expect = (2 / np.log2(3) + 3 / 2) / (3 + 2 / np.log2(3))
    assert ope.ndcg_at_k(imp, rel, [1, 2, 3]) == pytest.approx(expect)
    # k=1 on the reversed order: the top is irrelevant
    assert ope.ndcg_at_k(imp, rel, [1, 2, 3], k=1) == pytest.approx(0.0)
    # all tied: expected DCG = mean gain at every position
    mean_gain = rel.mean()
    tied = mean_gain * (1 + 1 / np.log2(3) + 1 / 2) / (3 + 2 / np.log2(3))
    assert ope.ndcg_at_k(imp, rel, [0, 0, 0]) == pytest.approx(tied)
    # exponential gain
    g = 2**rel - 1
    exp_rev = (g[1] / np.log2(3) + g[0] / 2) / (g[0] + g[1] / np.log2(3))
    assert ope.ndcg_at_k(imp, rel, [1, 2, 3], gain="exponential") == pytest.approx(exp_rev)
    # an impression with nothing relevant is left out of the mean (NaN per impression)
    imp2 = np.array([0, 0, 0, 1, 1])
    rel2 = np.r_[rel, 0.0, 0.0]
    per = ope.ndcg_per_impression(imp2, rel2, [1, 2, 3, 1, 2])
    assert np.isnan(per[1]) and per[0] == pytest.approx(expect)
    assert ope.ndcg_at_k(imp2, rel2, [1, 2, 3, 1, 2]) == pytest.approx(expect)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(OPEError, match="exactly one shown"):
        BanditLog.from_arrays([1, 1, 2, 2], [1, 1, 0, 1], [0.5] * 4, [1.0] * 4)
    with pytest.raises(OPEError, match="exactly one shown"):
        BanditLog.from_arrays([1, 1, 2, 2], [1, 0, 0, 0], [0.5] * 4, [1.0] * 4)
    with pytest.raises(OPEError, match="propensities"):
        BanditLog.from_arrays([1, 1], [1, 0], [0.0, 1.0], [1.0, 0.0])
    with pytest.raises(OPEError, match="rewards"):
        BanditLog.from_arrays([1, 1], [1, 0], [0.5, 0.5], [np.nan, 0.0])
    with pytest.raises(OPEError, match="shape"):
        BanditLog.from_arrays([1, 1], [1, 0, 0], [0.5, 0.5], [1.0, 0.0])
    log = constructed_log()
    with pytest.raises(OPEError, match="sum to 1"):
        ope.ips(log, np.full(8, 0.4))
    with pytest.raises(OPEError, match="non-negative"):
        ope.ips(log, np.tile([1.5, -0.5], 4))
    with pytest.raises(OPEError, match="q_hat"):
        ope.doubly_robust(log, np.full(8, 0.5), np.full(7, 0.5))
    with pytest.raises(OPEError, match="clip"):
        ope.ips(log, np.full(8, 0.5), clip=0)
    with pytest.raises(OPEError, match="confidence"):
        ope.ips(log, np.full(8, 0.5), confidence=1.5)
    with pytest.raises(OPEError, match="relevance must be non-negative"):
        ope.ndcg_at_k([0, 0], [-1.0, 1.0], [1.0, 2.0])
    with pytest.raises(OPEError, match="undefined"):
        ope.ndcg_at_k([0, 0], [0.0, 0.0], [1.0, 2.0])
    with pytest.raises(OPEError, match="lacks columns"):
        BanditLog.from_frame(pl.DataFrame({"impression_id": ["a"]}))


def test_from_frame_reads_the_contract_columns() -> None:
    frame = pl.DataFrame(
        {
            "impression_id": ["a", "a", "b", "b"],
            "shown": pl.Series([1, 0, 0, 1], dtype=pl.Int8),
            "propensity": [0.7, 0.3, 0.4, 0.6],
            "value": [12.0, None, None, 0.0],
        }
    )
    log = BanditLog.from_frame(frame)
    assert log.n_impressions == 2
    np.testing.assert_allclose(log.reward, [12.0, 0.0])
    np.testing.assert_allclose(log.propensity, [0.7, 0.6])
    assert ope.logged_value(log).value == pytest.approx(6.0)


def test_on_the_loan_simulator_ips_and_dr_cover_the_truth_and_dr_is_narrower() -> None:
    """10 simulated portfolios: a target policy far from the logging one (top offer by an
    imperfect reward model), its true value from the simulator's acceptance probabilities. The
    log's reward values offers at ``pd_at_offer``, so that is the estimand (``sim_ev`` values
    them at the true PD)."""
    from riskml.data.credit import economics as econ
    from riskml.data.credit.simulator import LoanSimConfig, simulate_portfolio

    covered = {"ips": 0, "dr": 0}
    widths = {"ips": [], "dr": []}
    for seed in range(10):
        offers = simulate_portfolio(
            LoanSimConfig.small(seed=seed, months=12, offers_per_month=150)
        ).offers.sort("impression_id", "candidate")
        imp = offers.get_column("impression_id").to_numpy()
        value = econ.offer_value(
            *(offers.get_column(c).to_numpy() for c in ("amount", "term_months", "apr")),
            offers.get_column("origination_fee").to_numpy(),
            offers.get_column("pd_at_offer").to_numpy(),
            promotion=offers.get_column("promotion").to_numpy(),
        )
        p_true = offers.get_column("sim_p_accept").to_numpy()
        rng = np.random.default_rng(seed)
        # a reward model with ~30 % multiplicative error on P(accept)
        q_hat = np.clip(p_true * rng.lognormal(0.0, 0.3, len(p_true)), 0, 1) * value
        target = ope.greedy_policy(imp, q_hat)
        truth = ope.policy_value(imp, target, p_true * value)
        est = ope.estimate_all(BanditLog.from_frame(offers), target, q_hat)
        for name in covered:
            covered[name] += est[name].covers(truth)
            widths[name].append(est[name].ci_high - est[name].ci_low)
        assert est["ips"].ess < 0.5 * est["ips"].n_impressions  # far from the logging policy
    assert covered["ips"] >= 8 and covered["dr"] >= 8, covered
    narrower = int(np.sum(np.array(widths["dr"]) < np.array(widths["ips"])))
    assert narrower >= 7 and np.mean(widths["dr"]) < np.mean(widths["ips"]), widths
