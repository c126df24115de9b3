"""Drift of a window against its reference profile, with alarms sized to the window.

Two distances per feature (and for the score), over the profile's bins (null bin included),
with the same Jeffreys smoothing (+0.5 per bin) on both sides so an empty bin is finite:

* PSI, the population stability index ``sum (q - p) ln(q / p)``;
* the Jensen-Shannon distance (base 2, in [0, 1]; :func:`scipy.spatial.distance.jensenshannon`).

**Why not 0.1 / 0.25.** Both distances of a window drawn from the reference distribution itself
shrink like ``(k - 1) (1/n + 1/N)`` for ``k`` bins, window size ``n`` and reference size ``N``
(``n * PSI`` is close to a chi-square with ``k - 1`` degrees of freedom): at ``n = 200`` with 11
bins a window *without* drift has PSI > 0.1 about 1 time in 8, while at ``n = 100,000`` a real
shift stays under 0.1. So each alarm threshold is the ``1 - alpha`` quantile of the distance
under "no drift", for *this* feature's reference bins, this ``N`` and this window's ``n``: drawn
exactly by Monte Carlo (multinomial counts for the window and for the reference, the same
smoothing, a fixed seed), cached per (feature, n). A window alarms on a feature when its PSI or
its JS distance exceeds its threshold — each tested at ``alpha / 2`` (Bonferroni), so the
false-alarm rate per feature per window is at most ``alpha`` (default 1 %), whatever the
window's size — *and* the PSI is at least ``min_psi`` (default 0.025): on large windows a
change can be significant and still too small to act on (the floor only removes alarms, so the
false-alarm bound holds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

from riskml.monitoring.profile import FeatureProfile

#: False-alarm rate per feature per window (PSI and JS each at half of it).
DEFAULT_ALPHA: Final = 0.01
#: The smallest PSI that alarms, however significant: a 0.2 sd mean shift of a normal feature
#: gives PSI 0.026-0.06 over 10 quantile bins (1st-50th percentile at 2,000 rows), skewed and
#: bounded features far more; on a day of real traffic terminal aggregates move by PSI 0.01-0.02
#: from one day to the next (a few terminals' bursts), significant at n = 4,000 and meaningless.
DEFAULT_MIN_PSI: Final = 0.025
#: Monte-Carlo draws per threshold: the 99.5th percentile from 20,000 draws has a relative
#: standard error of ~1.5 %.
DRAWS: Final = 20_000
#: Windows smaller than this get no drift figures (too few rows to say anything).
MIN_WINDOW: Final = 30
#: The thresholds of a window of n rows are those of the largest grid size <= n (thresholds
#: fall with n, so this errs towards fewer alarms); the grid's steps are ~5 % apart.
_GRID_STEP: Final = 1.05
PSEUDO_COUNT: Final = 0.5


def smoothed(counts: np.ndarray) -> np.ndarray:
    """Bin proportions with Jeffreys smoothing (rows: one distribution each)."""
    c = np.asarray(counts, dtype=np.float64) + PSEUDO_COUNT
    return np.asarray(c / c.sum(axis=-1, keepdims=True))


def psi(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """PSI of proportions ``q`` (window) against ``p`` (reference), row-wise."""
    return np.asarray(np.sum((q - p) * np.log(q / p), axis=-1))


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2), row-wise."""
    from scipy.spatial.distance import jensenshannon

    p2, q2 = np.broadcast_arrays(np.atleast_2d(p), np.atleast_2d(q))
    out = np.asarray(jensenshannon(p2, q2, base=2, axis=-1))
    return out if np.ndim(p) > 1 or np.ndim(q) > 1 else out.reshape(())


def grid_size(n: int) -> int:
    """The threshold grid's size for a window of ``n`` rows (<= n)."""
    if n < MIN_WINDOW:
        raise ValueError(f"a window needs >= {MIN_WINDOW} rows for drift figures, got {n}")
    step = math.floor(math.log(n / MIN_WINDOW) / math.log(_GRID_STEP) + 1e-9)
    return max(MIN_WINDOW, min(n, math.floor(MIN_WINDOW * _GRID_STEP**step + 1e-9)))


@lru_cache(maxsize=8192)
def _null_quantiles(
    counts: tuple[int, ...], n: int, alpha: float, draws: int, seed: int
) -> tuple[float, float]:
    ref_n = int(sum(counts))
    p = np.asarray(counts, dtype=np.float64) / ref_n
    rng = np.random.default_rng([seed, n, ref_n, len(counts)])
    window = smoothed(rng.multinomial(n, p, size=draws))
    reference = smoothed(rng.multinomial(ref_n, p, size=draws))
    q = 1.0 - alpha / 2.0
    return (
        float(np.quantile(psi(reference, window), q)),
        float(np.quantile(js_distance(reference, window), q)),
    )


def thresholds(
    profile: FeatureProfile,
    n: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    draws: int = DRAWS,
    seed: int = 0,
) -> tuple[float, float]:
    """(PSI, JS distance) alarm thresholds for a window of ``n`` rows against ``profile``:
    each the ``1 - alpha/2`` quantile of its distance when the window and the reference are
    both drawn from the reference's bin proportions."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return _null_quantiles(profile.counts, grid_size(n), alpha, draws, seed)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift in one window."""

    feature: str
    n: int
    psi: float
    psi_threshold: float
    js: float
    js_threshold: float
    null_rate: float
    mean: float | None
    #: the window mean's shift from the reference mean, in reference standard deviations
    mean_shift_sd: float | None
    min_psi: float = DEFAULT_MIN_PSI

    @property
    def significant(self) -> bool:
        return self.psi > self.psi_threshold or self.js > self.js_threshold

    @property
    def alarm(self) -> bool:
        return self.significant and self.psi >= self.min_psi

    def to_json(self) -> dict[str, float | int | str | bool | None]:
        return {
            "feature": self.feature,
            "n": self.n,
            "psi": round(self.psi, 6),
            "psi_threshold": round(self.psi_threshold, 6),
            "js": round(self.js, 6),
            "js_threshold": round(self.js_threshold, 6),
            "null_rate": round(self.null_rate, 6),
            "mean": self.mean,
            "mean_shift_sd": None if self.mean_shift_sd is None else round(self.mean_shift_sd, 4),
            "significant": self.significant,
            "alarm": self.alarm,
        }


def feature_drift(
    name: str,
    profile: FeatureProfile,
    values: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_psi: float = DEFAULT_MIN_PSI,
    seed: int = 0,
) -> FeatureDrift:
    """The drift of one window's ``values`` (NaN = null) against ``profile``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    n = int(x.size)
    p = smoothed(np.asarray(profile.counts))
    q = smoothed(profile.bin_counts(x))
    psi_t, js_t = thresholds(profile, n, alpha=alpha, seed=seed)
    present = x[~np.isnan(x)]
    mean = float(present.mean()) if present.size else None
    shift = None
    if mean is not None and profile.mean is not None and profile.std:
        shift = (mean - profile.mean) / profile.std
    return FeatureDrift(
        feature=name,
        n=n,
        psi=float(psi(p, q)),
        psi_threshold=psi_t,
        js=float(js_distance(p, q)),
        js_threshold=js_t,
        null_rate=float(np.isnan(x).mean()) if n else 0.0,
        mean=mean,
        mean_shift_sd=shift,
        min_psi=min_psi,
    )


def window_drift(
    profiles: Mapping[str, FeatureProfile],
    columns: Mapping[str, np.ndarray],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_psi: float = DEFAULT_MIN_PSI,
    seed: int = 0,
) -> dict[str, FeatureDrift]:
    """Drift of every profiled column present in ``columns`` (one window)."""
    return {
        name: feature_drift(name, prof, columns[name], alpha=alpha, min_psi=min_psi, seed=seed)
        for name, prof in profiles.items()
        if name in columns
    }


def fixed_cutoff_alarm(value: float, cutoff: float = 0.1) -> bool:
    """The common fixed PSI rule (0.1: "investigate"), kept to show its false-alarm rate."""
    return value > cutoff
