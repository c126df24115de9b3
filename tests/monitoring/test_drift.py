"""Reference profiles and drift alarms sized to the window (riskml.monitoring.profile/drift).

The A/A figures: windows drawn from the reference's own distribution, for the kinds of columns
riskml's features are (heavy-tailed amounts, zero-inflated counts, rare flags, columns with
nulls, the score), must alarm on at most 1 % of (feature, window) pairs over >= 200 windows, at
the default window size and at a small one, where the fixed 0.1 PSI rule does not hold it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from riskml.monitoring.drift import (
    DEFAULT_ALPHA,
    MIN_WINDOW,
    feature_drift,
    fixed_cutoff_alarm,
    grid_size,
    thresholds,
    window_drift,
)
from riskml.monitoring.profile import (
    ProfileError,
    build_profile,
    decision_mix,
    profile_values,
)

Gen = Callable[[np.random.Generator, int], np.ndarray]

COLUMNS: dict[str, Gen] = {
    "amount": lambda r, n: r.lognormal(3.5, 1.1, n),
    "count_zero_inflated": lambda r, n: np.where(r.random(n) < 0.7, 0, r.poisson(3, n)).astype(
        float
    ),
    "flag": lambda r, n: (r.random(n) < 0.03).astype(float),
    "with_nulls": lambda r, n: np.where(r.random(n) < 0.1, np.nan, r.exponential(2.0, n)),
    "score": lambda r, n: r.beta(0.3, 20.0, n),
}
REFERENCE_ROWS = 60_000
DEFAULT_WINDOW = 2_000


@pytest.fixture(scope="module")
def profiles() -> dict[str, object]:
    rng = np.random.default_rng(7)
    return {name: profile_values(gen(rng, REFERENCE_ROWS)) for name, gen in COLUMNS.items()}


@pytest.mark.parametrize("n", [DEFAULT_WINDOW, 200])
def test_aa_windows_alarm_on_at_most_1_percent_of_features(
    profiles: dict[str, object], n: int
) -> None:
    rng = np.random.default_rng(11 + n)
    windows = 250
    alarms = {name: 0 for name in COLUMNS}
    fixed = {name: 0 for name in COLUMNS}
    for _ in range(windows):
        drift = window_drift(profiles, {k: g(rng, n) for k, g in COLUMNS.items()})  # type: ignore[arg-type]
        for name, d in drift.items():
            alarms[name] += d.alarm
            fixed[name] += fixed_cutoff_alarm(d.psi)
    rate = sum(alarms.values()) / (windows * len(COLUMNS))
    assert rate <= DEFAULT_ALPHA, alarms
    # per feature too (binomial slack: 1 % of 250 is 2.5; 7 would be p < 0.01 at 1 %)
    assert max(alarms.values()) <= 7, alarms
    if n == 200:  # the fixed rule alarms on a small window of the same distribution
        assert fixed["amount"] / windows > 0.02, fixed


def test_a_two_tenths_sd_mean_shift_is_caught_in_one_default_window(
    profiles: dict[str, object],
) -> None:
    rng = np.random.default_rng(5)
    for name in ("amount", "with_nulls", "count_zero_inflated", "score"):
        prof = profiles[name]
        sd = float(np.nanstd(COLUMNS[name](rng, REFERENCE_ROWS)))
        caught = [
            feature_drift(name, prof, COLUMNS[name](rng, DEFAULT_WINDOW) + 0.2 * sd).alarm  # type: ignore[arg-type]
            for _ in range(40)
        ]
        assert sum(caught) >= 39, (name, sum(caught))
        d = feature_drift(name, prof, COLUMNS[name](rng, DEFAULT_WINDOW) + 0.2 * sd)  # type: ignore[arg-type]
        assert d.mean_shift_sd == pytest.approx(0.2, abs=0.08)


def test_thresholds_fall_with_window_size_and_are_cached_on_a_grid(
    profiles: dict[str, object],
) -> None:
    prof = profiles["amount"]
    small, large = thresholds(prof, 200), thresholds(prof, 20_000)  # type: ignore[arg-type]
    assert small[0] > 10 * large[0] and small[1] > 3 * large[1]
    # n * PSI under no drift is close to chi-square(k - 1): its 99.5th percentile / n
    k = prof.bins  # type: ignore[attr-defined]
    from scipy.stats import chi2

    assert large[0] == pytest.approx(chi2.ppf(0.995, k - 1) / grid_size(20_000), rel=0.25)
    for n in (MIN_WINDOW, 31, 200, 1999, 2000, 2001, 10**6):
        g = grid_size(n)
        assert MIN_WINDOW <= g <= n and g >= n / 1.06
    assert thresholds(prof, 2000) == thresholds(prof, 2001)  # type: ignore[arg-type]


def test_bad_windows_and_alpha_are_refused(profiles: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=">= 30 rows"):
        grid_size(10)
    with pytest.raises(ValueError, match="alpha"):
        thresholds(profiles["amount"], 100, alpha=1.5)  # type: ignore[arg-type]


def test_ties_never_split_and_nulls_have_their_own_bin() -> None:
    values = np.array([0.0] * 70 + [1.0] * 20 + [5.0] * 9 + [np.nan])
    prof = profile_values(values, default=0.0)
    assert prof.edges == (0.0, 1.0)
    assert prof.counts == (70, 20, 9, 1)
    assert prof.null_rate == pytest.approx(0.01)
    assert prof.default_rate == pytest.approx(0.7)
    # a constant column has one value bin: no drift figure can alarm on it
    const = profile_values(np.ones(100))
    assert const.edges == () and const.counts == (100, 0)
    with pytest.raises(ProfileError, match="infinities"):
        profile_values(np.array([1.0, np.inf]))


def test_build_profile_holds_features_score_class_balance_and_decision_mix() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1_000, 3))
    s = rng.random(1_000)
    y = (rng.random(1_000) < 0.05).astype(int)
    prof = build_profile(
        x, ["a", "b", "c"], scores=s, labels=y, thresholds={"review": 0.3, "decline": 0.7}
    )
    assert set(prof.features) == {"a", "b", "c"} and prof.rows == 1_000
    assert prof.frauds == int(y.sum()) and prof.fraud_rate == pytest.approx(y.mean())
    assert sum(prof.decision_mix.values()) == pytest.approx(1.0)
    assert prof.decision_mix == decision_mix(s, {"review": 0.3, "decline": 0.7})
    assert prof.decision_mix["decline"] == pytest.approx(np.mean(s >= 0.7))
    assert prof.score is not None and prof.score.bins > prof.features["a"].bins
    assert set(prof.monitored()) == {"a", "b", "c", "score"}
    with pytest.raises(ProfileError, match="rows"):
        build_profile(x, ["a", "b"])
    with pytest.raises(ProfileError, match="scores"):
        build_profile(x, ["a", "b", "c"], scores=s[:10])


def test_a_significant_but_tiny_change_on_a_huge_window_does_not_alarm() -> None:
    """The PSI floor: at 200,000 rows a 0.05 sd shift of a normal column is significant (PSI
    above the threshold sized to the window) and still too small to act on."""
    rng = np.random.default_rng(9)
    prof = profile_values(rng.normal(size=REFERENCE_ROWS))
    d = feature_drift("x", prof, rng.normal(size=200_000) + 0.05)
    assert d.significant and d.psi < d.min_psi and not d.alarm
    assert feature_drift("x", prof, rng.normal(size=200_000) + 0.05, min_psi=0.0).alarm
    # a 0.2 sd shift clears the floor at the default window size
    assert feature_drift("x", prof, rng.normal(size=DEFAULT_WINDOW) + 0.2).alarm
