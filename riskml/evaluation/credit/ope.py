"""Off-policy evaluation of offer policies from logged impressions, and NDCG@k.

The log has one row per *candidate* offer of an impression (the contract's ``offers`` frame):
exactly one candidate per impression was shown, with the logging policy's probability
``propensity`` of showing it, and its reward (``value``: accepted × the offer's economic value,
0 when declined). A *target* policy is given as a probability per candidate
(``target_prob``, summing to 1 per impression; a deterministic policy puts 1 on its choice, see
:func:`greedy_policy`). Its value — the expected reward per impression had it chosen the offer
— is estimated from the log by

* **IPS** (inverse propensity scoring): ``mean_i w_i r_i`` with ``w_i = π(a_i|x_i) / π0(a_i|x_i)``
  the importance weight of the shown candidate ``a_i``. Unbiased when every candidate the target
  can choose had ``π0 > 0`` (the logging policy is a softmax, so it does); its variance grows
  with the weights.
* **SNIPS** (self-normalised IPS): ``sum w_i r_i / sum w_i``. Slightly biased, usually much less
  variable; invariant to a constant shift of the rewards.
* **DR** (doubly robust): ``mean_i [ sum_a π(a|x_i) q(x_i,a) + w_i (r_i - q(x_i,a_i)) ]`` with
  ``q`` a reward model's prediction for *every* candidate (the direct method) corrected on the
  shown one. Unbiased if either the propensities or ``q`` are right; its variance is that of the
  residuals ``r - q``, so a good reward model narrows the interval.

**Confidence intervals.** Each estimate is a mean over impressions of per-impression terms (for
SNIPS: its delta-method influence terms ``w_i (r_i - V) / mean(w)``), so the default interval is
the normal approximation ``V ± z · sd(terms) / sqrt(n)``. ``ci="bootstrap"`` resamples impressions
with replacement instead (percentile interval, ``n_boot`` resamples, seeded): better when a few
huge weights make the terms far from normal.

**Weight clipping.** ``clip=M`` replaces ``w_i`` by ``min(w_i, M)`` before estimating. It trades
bias for variance: clipped IPS/SNIPS underweight the impressions where the target policy differs
most from the logging one (for non-negative rewards clipped IPS is biased *down*); clipped DR
keeps the direct-method term for every impression, so its bias is only the clipped part of the
residual correction. Each estimate reports the share of impressions whose weight was clipped and
the effective sample size ``(sum w)^2 / sum w^2`` (of the weights used): far below ``n`` means the
log says little about the target policy. Default: no clipping.

**NDCG@k** (:func:`ndcg_at_k`) uses graded relevance (linear gain, or ``2^rel - 1``) with the
log2 position discount, per impression, averaged over impressions whose ideal DCG is positive.
Tied scores get the *expected* DCG over random orders of the tied candidates (McSherry & Najork,
2008), so a policy that cannot tell candidates apart (e.g. "largest amount" over offers of the
same amount) is neither flattered nor punished by row order.

All functions are pure numpy over candidate-level arrays (``impression`` ids need not be sorted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from riskml.training.credit_offers import OfferTrainingConfig, OfferTrainingResult

CIMethod = Literal["normal", "bootstrap"]
#: Tolerance on "target probabilities sum to 1 per impression" (and propensities).
PROB_ATOL = 1e-6


class OPEError(ValueError):
    """Logged data or a target policy is malformed (no shown candidate, propensity 0, ...)."""


# -- the log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BanditLog:
    """Logged impressions in candidate-long form, indexed once for the estimators.

    ``codes[j]`` is the impression index (0..n-1) of candidate row ``j``; ``shown_row[i]`` the
    row of impression ``i``'s shown candidate with its ``propensity[i]`` and ``reward[i]``.
    Build it with :meth:`from_arrays` or :meth:`from_frame` (which check the data).
    """

    codes: np.ndarray
    shown_row: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    impression_ids: np.ndarray

    @property
    def n_impressions(self) -> int:
        return len(self.shown_row)

    @property
    def n_rows(self) -> int:
        return len(self.codes)

    @classmethod
    def from_arrays(
        cls,
        impression: npt.ArrayLike,
        shown: npt.ArrayLike,
        propensity: npt.ArrayLike,
        reward: npt.ArrayLike,
    ) -> BanditLog:
        """Candidate-level arrays: impression id, shown (0/1), propensity, reward (read on the
        shown rows only; others may be NaN/null)."""
        ids, codes = _impression_codes(impression)
        shown_arr = np.asarray(shown)
        prop = np.asarray(propensity, dtype=np.float64)
        rew = np.asarray(reward, dtype=np.float64)
        n_rows = len(codes)
        for name, arr in (("shown", shown_arr), ("propensity", prop), ("reward", rew)):
            if arr.shape != (n_rows,):
                raise OPEError(
                    f"{name} has shape {arr.shape}, expected ({n_rows},) like impression"
                )
        if not np.isin(shown_arr, (0, 1, True, False)).all():
            raise OPEError("shown must be 0/1")
        shown_mask = shown_arr.astype(bool)
        n = len(ids)
        per_imp = np.bincount(codes[shown_mask], minlength=n)
        if (per_imp != 1).any():
            bad = ids[np.flatnonzero(per_imp != 1)[:3]]
            raise OPEError(
                f"every impression needs exactly one shown candidate; "
                f"{int((per_imp != 1).sum())} do not (e.g. {list(bad)})"
            )
        rows = np.flatnonzero(shown_mask)
        shown_row = np.empty(n, dtype=np.int64)
        shown_row[codes[rows]] = rows
        p = prop[shown_row]
        if not np.isfinite(p).all() or (p <= 0).any() or (p > 1 + PROB_ATOL).any():
            raise OPEError("the shown candidates' propensities must lie in (0, 1]")
        r = rew[shown_row]
        if not np.isfinite(r).all():
            raise OPEError("the shown candidates' rewards contain NaN or infinite values")
        return cls(codes=codes, shown_row=shown_row, propensity=p, reward=r, impression_ids=ids)

    @classmethod
    def from_frame(
        cls,
        offers: pl.DataFrame,
        *,
        reward: str = "value",
        impression: str = "impression_id",
        shown: str = "shown",
        propensity: str = "propensity",
    ) -> BanditLog:
        """From the contract's ``offers`` frame (one row per candidate)."""
        missing = [c for c in (reward, impression, shown, propensity) if c not in offers.columns]
        if missing:
            raise OPEError(f"offers frame lacks columns {missing}")
        return cls.from_arrays(
            offers[impression].to_numpy(),
            offers[shown].fill_null(0).to_numpy(),
            offers[propensity].to_numpy(),
            offers[reward].cast(float).fill_null(float("nan")).to_numpy(),
        )

    def per_row(self, values: npt.ArrayLike, name: str) -> np.ndarray:
        """``values`` checked as one finite float per candidate row."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (self.n_rows,):
            raise OPEError(
                f"{name} has shape {arr.shape}, expected one value per row ({self.n_rows})"
            )
        if not np.isfinite(arr).all():
            raise OPEError(f"{name} contains NaN or infinite values")
        return arr

    def check_policy(self, target_prob: npt.ArrayLike) -> np.ndarray:
        """``target_prob`` checked: non-negative, summing to 1 within each impression."""
        pi = self.per_row(target_prob, "target_prob")
        if (pi < 0).any():
            raise OPEError("target_prob must be non-negative")
        sums = np.bincount(self.codes, weights=pi, minlength=self.n_impressions)
        if not np.allclose(sums, 1.0, atol=PROB_ATOL):
            worst = int(np.argmax(np.abs(sums - 1.0)))
            raise OPEError(
                f"target_prob must sum to 1 per impression; impression "
                f"{self.impression_ids[worst]!r} sums to {sums[worst]:.6g}"
            )
        return pi


def _impression_codes(impression: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(impression)
    if arr.ndim != 1:
        raise OPEError(f"impression ids must be 1-D, got shape {arr.shape}")
    if len(arr) == 0:
        raise OPEError("empty log: no candidate rows")
    if arr.dtype == object:
        if any(v is None for v in arr):
            raise OPEError("impression ids contain nulls")
        arr = arr.astype(str)
    ids, codes = np.unique(arr, return_inverse=True)
    return ids, codes.astype(np.int64)


# -- estimates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyEstimate:
    """One estimate of a policy's value per impression, with its interval and diagnostics."""

    estimator: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    n_impressions: int
    #: effective sample size of the (clipped) importance weights; n for on-policy figures
    ess: float
    #: mean (clipped) importance weight: ≈ 1 when the log supports the target policy
    mean_weight: float
    clip: float | None
    #: share of impressions whose weight was clipped
    clipped_share: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise OPEError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def importance_weights(
    log: BanditLog, target_prob: npt.ArrayLike, *, clip: float | None = None
) -> tuple[np.ndarray, float]:
    """Per-impression weights ``π(a_i|x_i) / π0(a_i|x_i)`` (clipped at ``clip``) and the share
    of impressions clipped."""
    pi = log.check_policy(target_prob)
    w = pi[log.shown_row] / log.propensity
    if clip is None:
        return w, 0.0
    if not clip > 0:
        raise OPEError(f"clip must be positive, got {clip}")
    clipped = w > clip
    return np.minimum(w, clip), float(clipped.mean())


def effective_sample_size(weights: npt.ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    denom = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / denom) if denom > 0 else 0.0


def _estimate(
    name: str,
    num: np.ndarray,
    den: np.ndarray | None,
    *,
    weights: np.ndarray,
    clip: float | None,
    clipped_share: float,
    confidence: float,
    ci: CIMethod,
    n_boot: int,
    seed: int,
) -> PolicyEstimate:
    """Value ``sum num / sum den`` (``den`` None: the mean of ``num``) with its interval."""
    z = _z(confidence)
    n = len(num)
    if den is None:
        value = float(np.mean(num))
        influence = num
    else:
        total = float(np.sum(den))
        if total <= 0:
            raise OPEError(
                f"{name}: the importance weights sum to 0 (target never agrees with log)"
            )
        value = float(np.sum(num) / total)
        influence = (num - value * den) / (total / n)
    se = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    if ci == "normal":
        lo, hi = value - z * se, value + z * se
    elif ci == "bootstrap":
        boots = _bootstrap(num, den, n_boot=n_boot, seed=seed)
        alpha = (1.0 - confidence) / 2.0
        lo, hi = (float(v) for v in np.quantile(boots, [alpha, 1.0 - alpha]))
    else:
        raise OPEError(f"ci must be 'normal' or 'bootstrap', got {ci!r}")
    return PolicyEstimate(
        estimator=name,
        value=value,
        std_error=se,
        ci_low=float(lo),
        ci_high=float(hi),
        confidence=confidence,
        ci_method=ci,
        n_impressions=n,
        ess=effective_sample_size(weights),
        mean_weight=float(np.mean(weights)),
        clip=clip,
        clipped_share=clipped_share,
    )


def _bootstrap(num: np.ndarray, den: np.ndarray | None, *, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resampled values over impressions (chunked to bound memory)."""
    if n_boot < 10:
        raise OPEError(f"n_boot must be at least 10, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = len(num)
    chunk = max(1, 2_000_000 // max(n, 1))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        top = num[idx].sum(axis=1)
        bottom = den[idx].sum(axis=1) if den is not None else np.full(b, float(n))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + b] = top / bottom
    return out[np.isfinite(out)]


def ips(
    log: BanditLog,
    target_prob: npt.ArrayLike,
    *,
    clip: float | None = None,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> PolicyEstimate:
    """Inverse propensity scoring: ``mean_i w_i r_i``."""
    w, share = importance_weights(log, target_prob, clip=clip)
    return _estimate(
        "ips",
        w * log.reward,
        None,
        weights=w,
        clip=clip,
        clipped_share=share,
        confidence=confidence,
        ci=ci,
        n_boot=n_boot,
        seed=seed,
    )


def snips(
    log: BanditLog,
    target_prob: npt.ArrayLike,
    *,
    clip: float | None = None,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> PolicyEstimate:
    """Self-normalised IPS: ``sum w_i r_i / sum w_i``."""
    w, share = importance_weights(log, target_prob, clip=clip)
    return _estimate(
        "snips",
        w * log.reward,
        w,
        weights=w,
        clip=clip,
        clipped_share=share,
        confidence=confidence,
        ci=ci,
        n_boot=n_boot,
        seed=seed,
    )


def doubly_robust(
    log: BanditLog,
    target_prob: npt.ArrayLike,
    q_hat: npt.ArrayLike,
    *,
    clip: float | None = None,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> PolicyEstimate:
    """Doubly robust: ``mean_i [sum_a π(a|x_i) q(x_i,a) + w_i (r_i - q(x_i,a_i))]``.

    ``q_hat`` is the reward model's expected reward for every candidate row (same order as the
    log's rows), fitted on data *other* than this log for a valid interval.
    """
    w, share = importance_weights(log, target_prob, clip=clip)
    pi = log.check_policy(target_prob)
    q = log.per_row(q_hat, "q_hat")
    direct = np.bincount(log.codes, weights=pi * q, minlength=log.n_impressions)
    terms = direct + w * (log.reward - q[log.shown_row])
    return _estimate(
        "dr",
        terms,
        None,
        weights=w,
        clip=clip,
        clipped_share=share,
        confidence=confidence,
        ci=ci,
        n_boot=n_boot,
        seed=seed,
    )


def direct_method(
    log: BanditLog, target_prob: npt.ArrayLike, q_hat: npt.ArrayLike, *, confidence: float = 0.95
) -> PolicyEstimate:
    """The reward model alone: ``mean_i sum_a π(a|x_i) q(x_i,a)``. Its interval covers only the
    sampling of impressions, not the model's bias — a reference, not an off-policy estimate."""
    pi = log.check_policy(target_prob)
    q = log.per_row(q_hat, "q_hat")
    terms = np.bincount(log.codes, weights=pi * q, minlength=log.n_impressions)
    ones = np.ones(log.n_impressions)
    return _estimate(
        "dm", terms, None, weights=ones, clip=None, clipped_share=0.0,
        confidence=confidence, ci="normal", n_boot=0, seed=0,
    )  # fmt: skip


def logged_value(
    log: BanditLog,
    *,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> PolicyEstimate:
    """The logging policy's own value: the mean logged reward (on-policy, weights all 1)."""
    ones = np.ones(log.n_impressions)
    return _estimate(
        "logged", log.reward, None, weights=ones, clip=None, clipped_share=0.0,
        confidence=confidence, ci=ci, n_boot=n_boot, seed=seed,
    )  # fmt: skip


def estimate_all(
    log: BanditLog,
    target_prob: npt.ArrayLike,
    q_hat: npt.ArrayLike | None = None,
    *,
    clip: float | None = None,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, PolicyEstimate]:
    """IPS, SNIPS and (given ``q_hat``) DR and DM of one target policy, same settings."""
    kw: dict[str, Any] = {
        "clip": clip, "confidence": confidence, "ci": ci, "n_boot": n_boot, "seed": seed,
    }  # fmt: skip
    out = {"ips": ips(log, target_prob, **kw), "snips": snips(log, target_prob, **kw)}
    if q_hat is not None:
        out["dr"] = doubly_robust(log, target_prob, q_hat, **kw)
        out["dm"] = direct_method(log, target_prob, q_hat, confidence=confidence)
    return out


# -- policies ------------------------------------------------------------------------------


def greedy_policy(impression: npt.ArrayLike, scores: npt.ArrayLike) -> np.ndarray:
    """The deterministic policy "show the highest-scoring candidate" as probabilities per row.

    Candidates tied at the top share the probability equally (a policy that cannot tell them
    apart picks one at random), so the result never depends on row order.
    """
    _, codes = _impression_codes(impression)
    s = _finite(scores, len(codes), "scores")
    n = int(codes.max()) + 1
    top = np.full(n, -np.inf)
    np.maximum.at(top, codes, s)
    is_top = (s == top[codes]).astype(np.float64)
    count = np.bincount(codes, weights=is_top, minlength=n)
    return is_top / count[codes]


def chosen_candidate(impression: npt.ArrayLike, scores: npt.ArrayLike) -> np.ndarray:
    """Row index of each impression's highest-scoring candidate (ties: the first row), in the
    order of the sorted impression ids."""
    _, codes = _impression_codes(impression)
    s = _finite(scores, len(codes), "scores")
    order = np.lexsort((np.arange(len(s)), -s, codes))
    first = np.r_[True, codes[order][1:] != codes[order][:-1]]
    return order[first]


def policy_value(
    impression: npt.ArrayLike, target_prob: npt.ArrayLike, true_reward: npt.ArrayLike
) -> float:
    """Ground truth on a simulator: ``mean_i sum_a π(a|x_i) E[r|x_i,a]`` (e.g. ``sim_ev``)."""
    _, codes = _impression_codes(impression)
    pi = _finite(target_prob, len(codes), "target_prob")
    v = _finite(true_reward, len(codes), "true_reward")
    n = int(codes.max()) + 1
    return float(np.mean(np.bincount(codes, weights=pi * v, minlength=n)))


def _finite(values: npt.ArrayLike, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise OPEError(f"{name} has shape {arr.shape}, expected ({n},)")
    if not np.isfinite(arr).all():
        raise OPEError(f"{name} contains NaN or infinite values")
    return arr


# -- NDCG ----------------------------------------------------------------------------------


def ndcg_per_impression(
    impression: npt.ArrayLike,
    relevance: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    k: int = 5,
    gain: Literal["linear", "exponential"] = "linear",
) -> np.ndarray:
    """NDCG@k of each impression (sorted ids), NaN where the ideal DCG is 0 (nothing relevant).

    ``relevance`` must be non-negative (clip values first: an offer worth less than nothing has
    no gain). Tied scores get the expected DCG over random orders of the tied candidates.
    """
    if k < 1:
        raise OPEError(f"k must be at least 1, got {k}")
    _, codes = _impression_codes(impression)
    rel = _finite(relevance, len(codes), "relevance")
    s = _finite(scores, len(codes), "scores")
    if (rel < 0).any():
        raise OPEError("relevance must be non-negative (clip negative values to 0)")
    if gain == "linear":
        g = rel
    elif gain == "exponential":
        g = np.exp2(rel) - 1.0
    else:
        raise OPEError(f"gain must be 'linear' or 'exponential', got {gain!r}")
    n = int(codes.max()) + 1
    dcg = _dcg(codes, g, s, n, k)
    idcg = _dcg(codes, g, g, n, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def _dcg(codes: np.ndarray, gain: np.ndarray, score: np.ndarray, n: int, k: int) -> np.ndarray:
    """Tie-aware DCG@k per impression: rows ordered by score within impression; a block of tied
    scores contributes its mean gain at each of its positions."""
    order = np.lexsort((-score, codes))
    c, g, s = codes[order], gain[order], score[order]
    new_group = np.r_[True, c[1:] != c[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(c)), 0))
    position = np.arange(len(c)) - group_start
    new_block = new_group | np.r_[True, s[1:] != s[:-1]]
    block = np.cumsum(new_block) - 1
    block_mean = np.bincount(block, weights=g) / np.bincount(block)
    discount = np.where(position < k, 1.0 / np.log2(position + 2.0), 0.0)
    return np.bincount(c, weights=block_mean[block] * discount, minlength=n)


def ndcg_at_k(
    impression: npt.ArrayLike,
    relevance: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    k: int = 5,
    gain: Literal["linear", "exponential"] = "linear",
) -> float:
    """Mean NDCG@k over impressions with something relevant (see :func:`ndcg_per_impression`)."""
    per = ndcg_per_impression(impression, relevance, scores, k=k, gain=gain)
    if np.isnan(per).all():
        raise OPEError("no impression has a candidate with positive relevance; NDCG is undefined")
    return float(np.nanmean(per))


def summary(estimates: Sequence[PolicyEstimate] | dict[str, PolicyEstimate]) -> dict[str, Any]:
    """JSON-able ``{estimator: {value, ci_low, ci_high, ...}}``."""
    items = estimates.values() if isinstance(estimates, dict) else estimates
    return {e.estimator: e.to_dict() for e in items}


def uplift_over_logged(
    log: BanditLog,
    target_prob: npt.ArrayLike,
    q_hat: npt.ArrayLike,
    *,
    clip: float | None = None,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> PolicyEstimate:
    """DR value of the target minus the logging policy's logged value, from paired
    per-impression terms ``DR_i - r_i`` (the interval accounts for their correlation)."""
    w, share = importance_weights(log, target_prob, clip=clip)
    pi = log.check_policy(target_prob)
    q = log.per_row(q_hat, "q_hat")
    direct = np.bincount(log.codes, weights=pi * q, minlength=log.n_impressions)
    terms = direct + w * (log.reward - q[log.shown_row]) - log.reward
    return _estimate(
        "dr_uplift", terms, None, weights=w, clip=clip, clipped_share=share,
        confidence=confidence, ci=ci, n_boot=n_boot, seed=seed,
    )  # fmt: skip


# -- evaluation of the offer ranker -------------------------------------------------------

#: The policies compared: the model (top ranker score), the logging policy (its propensities;
#: ordered by propensity for NDCG), "largest amount" (ties share), and the reward model alone
#: (top P̂(accept) × value: what the ranker adds over its own stacked input).
POLICIES: tuple[str, ...] = ("model", "logging_policy", "largest_amount", "reward_model")


@dataclass
class OfferRankingReport:
    """Figures of the offer ranker on the held-out months (per impression = per customer visit).

    ``ev_per_customer_*`` are off-policy estimates from the log: DR for the model and "largest
    amount", the logged mean for the logging policy; their ``*_ci`` are ``(low, high)``. The
    ``true_*`` figures are the simulator's ground truth (``sim_ev``), None on real logs; the log's
    reward uses the logging system's PD (``pd_at_offer``) while ``sim_ev`` uses the true PD, so
    ``target_*`` (true acceptance × value at ``pd_at_offer``) is the quantity the estimators
    estimate, and ``true_*`` the business truth.
    """

    ndcg5_model: float | None
    ndcg5_logging_policy: float | None
    ndcg5_largest_amount: float | None
    ndcg5_reward_model: float | None
    ev_per_customer_model: float
    ev_per_customer_model_ci: tuple[float, float]
    ev_per_customer_logging_policy: float
    ev_per_customer_logging_policy_ci: tuple[float, float]
    ev_per_customer_largest_amount: float
    ev_per_customer_largest_amount_ci: tuple[float, float]
    uplift_model_vs_logging: float
    uplift_model_vs_logging_ci: tuple[float, float]
    true_ev_per_customer_model: float | None
    true_ev_per_customer_logging_policy: float | None
    true_ev_per_customer_largest_amount: float | None
    #: every estimator for every policy: {policy: {estimator: PolicyEstimate dict}}
    estimates: dict[str, dict[str, Any]]
    #: {policy: {"sim_ev": truth, "logged_value": estimand}} (simulator only)
    truth: dict[str, dict[str, float]]
    n_impressions: int
    ndcg_impressions: int
    k: int
    split: dict[str, Any]
    timings: dict[str, float]
    ranker_info: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-able (NaN/inf → null), the issue's keys at the top level."""
        from riskml.models.bundle import finite_json

        return dict(finite_json(asdict(self)))


def evaluate_offer_ranking(
    data: Any,
    config: OfferTrainingConfig | Mapping[str, Any] | None = None,
    *,
    result: OfferTrainingResult | None = None,
    k: int = 5,
    confidence: float = 0.95,
    ci: CIMethod = "normal",
    clip: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> OfferRankingReport:
    """Train the ranker on the earlier months of ``data`` (an offers frame or a ``Portfolio``;
    unused when ``result``, a trained
    :class:`~riskml.training.credit_offers.OfferTrainingResult`, is given) and evaluate it on
    the test months against the logging policy and "largest amount": NDCG@k on the simulator's
    ``sim_ev`` (negative values clipped to 0: an offer worth less than nothing has no gain) and
    expected value per impression off-policy (IPS, SNIPS, DR with the ranker's reward model,
    fitted on the training months only) with ``confidence`` intervals, plus the ground truth
    when the log has ``sim_ev``.
    """
    import polars as pl

    from riskml.training.credit_offers import OfferTrainingConfig, offers_of, train_offer_ranker

    if result is None:
        cfg = (
            config
            if isinstance(config, OfferTrainingConfig)
            else OfferTrainingConfig.model_validate(dict(config or {}))
        )
        result = train_offer_ranker(offers_of(data), cfg)
    test = result.split.test.sort(["impression_id", "candidate"])
    scores = result.ranker.score_frame(test)
    imp = test.get_column("impression_id").to_numpy()
    log = BanditLog.from_frame(test)
    q_hat = scores.expected_value
    amount = test.get_column("amount").cast(pl.Float64).to_numpy()
    propensity = test.get_column("propensity").to_numpy().astype(np.float64)
    order_scores = {
        "model": scores.score,
        "logging_policy": propensity,
        "largest_amount": amount,
        "reward_model": q_hat,
    }
    targets = {
        "model": greedy_policy(imp, scores.score),
        "logging_policy": propensity,
        "largest_amount": greedy_policy(imp, amount),
        "reward_model": greedy_policy(imp, q_hat),
    }
    kw: dict[str, Any] = {
        "clip": clip, "confidence": confidence, "ci": ci, "n_boot": n_boot, "seed": seed,
    }  # fmt: skip
    estimates: dict[str, dict[str, PolicyEstimate]] = {
        name: estimate_all(log, pi, q_hat, **kw) for name, pi in targets.items()
    }
    logged = logged_value(log, confidence=confidence, ci=ci, n_boot=n_boot, seed=seed)
    estimates["logging_policy"]["logged"] = logged
    uplift = uplift_over_logged(log, targets["model"], q_hat, **kw)
    estimates["model"]["dr_uplift"] = uplift

    has_truth = "sim_ev" in test.columns
    ndcg: dict[str, float | None] = dict.fromkeys(POLICIES)
    truth: dict[str, dict[str, float]] = {}
    n_ndcg = 0
    if has_truth:
        sim_ev = test.get_column("sim_ev").to_numpy().astype(np.float64)
        relevance = np.clip(sim_ev, 0.0, None)
        for name, s in order_scores.items():
            per = ndcg_per_impression(imp, relevance, s, k=k)
            n_ndcg = int(np.isfinite(per).sum())
            ndcg[name] = float(np.nanmean(per)) if n_ndcg else None
        estimand = None
        if "sim_p_accept" in test.columns:
            estimand = test.get_column("sim_p_accept").to_numpy() * scores.value
        for name, pi in targets.items():
            truth[name] = {"sim_ev": policy_value(imp, pi, sim_ev)}
            if estimand is not None:
                truth[name]["logged_value"] = policy_value(imp, pi, estimand)

    def t(name: str) -> float | None:
        return truth[name]["sim_ev"] if name in truth else None

    dr_model, dr_largest = estimates["model"]["dr"], estimates["largest_amount"]["dr"]
    return OfferRankingReport(
        ndcg5_model=ndcg["model"],
        ndcg5_logging_policy=ndcg["logging_policy"],
        ndcg5_largest_amount=ndcg["largest_amount"],
        ndcg5_reward_model=ndcg["reward_model"],
        ev_per_customer_model=dr_model.value,
        ev_per_customer_model_ci=(dr_model.ci_low, dr_model.ci_high),
        ev_per_customer_logging_policy=logged.value,
        ev_per_customer_logging_policy_ci=(logged.ci_low, logged.ci_high),
        ev_per_customer_largest_amount=dr_largest.value,
        ev_per_customer_largest_amount_ci=(dr_largest.ci_low, dr_largest.ci_high),
        uplift_model_vs_logging=uplift.value,
        uplift_model_vs_logging_ci=(uplift.ci_low, uplift.ci_high),
        true_ev_per_customer_model=t("model"),
        true_ev_per_customer_logging_policy=t("logging_policy"),
        true_ev_per_customer_largest_amount=t("largest_amount"),
        estimates={p: summary(e) for p, e in estimates.items()},
        truth=truth,
        n_impressions=log.n_impressions,
        ndcg_impressions=n_ndcg,
        k=k,
        split=result.split.summary(),
        timings=dict(result.timings),
        ranker_info=dict(result.ranker.info),
    )
