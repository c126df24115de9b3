"""Fraud-model metrics as pure functions over numpy arrays.

Every function takes labels ``y`` (0/1), scores or probabilities, and returns plain floats/dicts.
Inputs are checked once by :func:`_check` and bad input raises :class:`MetricInputError` with a
message that says what is wrong. Ties in scores are handled exactly (grouped thresholds), so a
model that outputs few distinct values is not flattered or punished by row order.

Definitions follow the usual conventions:

* ``roc_auc`` — probability a random fraud outranks a random genuine row (ties count 1/2).
* ``average_precision`` — ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (sklearn's
  definition, no interpolation).
* ``card_precision_at_k`` — per test day, rank cards by their highest score that day, drop cards
  already *detected* (a fraud card in an earlier day's top k of the same window), and take the
  share of fraud cards among the top ``k`` (divided by ``k``, as in the Fraud Detection Handbook);
  averaged over days.
* ``recall_at_fpr`` — the best true-positive rate among thresholds whose false-positive rate is at
  most the target.
* ``expected_calibration_error`` — ``sum_b n_b / N * |mean(y_b) - mean(p_b)|`` over equal-width
  probability bins.
* ``brier_score`` — mean squared error of probabilities.
* ``dollar_metrics`` — fraud amount caught / missed and the false-decline cost at a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


class MetricInputError(ValueError):
    """Metric inputs are malformed (lengths, non-binary labels, NaN scores, ...)."""


def _check(
    y: ArrayLike, score: ArrayLike, *, probabilities: bool = False, need_both: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y)
    s_arr = np.asarray(score, dtype=np.float64)
    if y_arr.ndim != 1 or s_arr.ndim != 1:
        raise MetricInputError(
            f"labels and scores must be 1-D, got shapes {y_arr.shape} and {s_arr.shape}"
        )
    if len(y_arr) != len(s_arr):
        raise MetricInputError(f"length mismatch: {len(y_arr)} labels vs {len(s_arr)} scores")
    if len(y_arr) == 0:
        raise MetricInputError("empty input: no rows to evaluate")
    if y_arr.dtype == bool:
        y_arr = y_arr.astype(np.int8)
    if not np.isin(y_arr, (0, 1)).all():
        raise MetricInputError("labels must be 0 or 1")
    if not np.isfinite(s_arr).all():
        raise MetricInputError("scores contain NaN or infinite values")
    if probabilities and ((s_arr < 0).any() or (s_arr > 1).any()):
        raise MetricInputError("probabilities must lie in [0, 1]")
    y_int = y_arr.astype(np.int64)
    if need_both:
        pos = int(y_int.sum())
        if pos == 0 or pos == len(y_int):
            raise MetricInputError("labels contain a single class; the metric is undefined")
    return y_int, s_arr


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (fp, tp) at each distinct threshold, thresholds descending."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    distinct = np.where(np.diff(s_sorted))[0]
    idx = np.r_[distinct, len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[idx]
    fps = (idx + 1) - tps
    return fps.astype(np.float64), tps.astype(np.float64), s_sorted[idx]


def roc_auc(y: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half)."""
    y_arr, s = _check(y, score, need_both=True)
    fps, tps, _ = _curve(y_arr, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return float(np.trapezoid(tpr, fpr))


def average_precision(y: ArrayLike, score: ArrayLike) -> float:
    """Average precision: ``sum (R_n - R_{n-1}) P_n`` over distinct thresholds."""
    y_arr, s = _check(y, score)
    if y_arr.sum() == 0:
        raise MetricInputError("no positive labels; average precision is undefined")
    fps, tps, _ = _curve(y_arr, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(y: ArrayLike, score: ArrayLike, max_fpr: float = 0.01) -> float:
    """Highest recall (TPR) over thresholds whose false-positive rate is ``<= max_fpr``."""
    if not 0.0 <= max_fpr <= 1.0:
        raise MetricInputError(f"max_fpr must be in [0, 1], got {max_fpr}")
    y_arr, s = _check(y, score, need_both=True)
    fps, tps, _ = _curve(y_arr, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max())


def threshold_at_fpr(y: ArrayLike, score: ArrayLike, max_fpr: float = 0.01) -> float:
    """The lowest score threshold (flag ``score >= t``) whose false-positive rate is ``<= max_fpr``.

    Returns ``+inf`` when even the highest score exceeds the budget (flag nothing).
    """
    if not 0.0 <= max_fpr <= 1.0:
        raise MetricInputError(f"max_fpr must be in [0, 1], got {max_fpr}")
    y_arr, s = _check(y, score, need_both=True)
    fps, _, thresholds = _curve(y_arr, s)
    ok = np.where(fps / fps[-1] <= max_fpr + 1e-12)[0]
    return float(thresholds[ok[-1]]) if len(ok) else float("inf")


def brier_score(y: ArrayLike, prob: ArrayLike) -> float:
    """Mean squared difference between probabilities and outcomes."""
    y_arr, p = _check(y, prob, probabilities=True)
    return float(np.mean((p - y_arr) ** 2))


def expected_calibration_error(y: ArrayLike, prob: ArrayLike, n_bins: int = 15) -> float:
    """ECE over ``n_bins`` equal-width probability bins (``[0, 1/n), ..., [1 - 1/n, 1]``)."""
    if n_bins < 1:
        raise MetricInputError(f"n_bins must be >= 1, got {n_bins}")
    y_arr, p = _check(y, prob, probabilities=True)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y_arr.astype(np.float64), minlength=n_bins)
    nonempty = counts > 0
    gap = np.abs(sum_y[nonempty] - sum_p[nonempty])  # = n_b * |mean_y - mean_p|
    return float(gap.sum() / len(p))


def card_precision_at_k(
    y: ArrayLike,
    score: ArrayLike,
    card_id: Sequence[Any] | np.ndarray,
    day: Sequence[Any] | np.ndarray,
    k: int = 100,
) -> float:
    """Card precision@k averaged over test days, skipping cards detected on earlier days.

    ``day`` is any sortable day key (date, ``datetime64[D]``, int). For each day in ascending
    order: every card's score is its highest transaction score that day and it is a fraud card
    that day if any of its transactions that day is fraud; cards detected on an earlier day
    (fraud cards that made an earlier top ``k``) are removed; the day's value is
    ``fraud cards in the top k / k``. Returns the mean over days that have transactions.
    """
    if k < 1:
        raise MetricInputError(f"k must be >= 1, got {k}")
    y_arr, s = _check(y, score)
    cards = np.asarray(card_id)
    days = np.asarray(day)
    if len(cards) != len(y_arr) or len(days) != len(y_arr):
        raise MetricInputError(
            f"length mismatch: {len(y_arr)} labels, {len(cards)} card ids, {len(days)} days"
        )
    card_codes, card_idx = np.unique(cards, return_inverse=True)
    day_values, day_idx = np.unique(days, return_inverse=True)
    detected = np.zeros(len(card_codes), dtype=bool)
    per_day: list[float] = []
    for d in range(len(day_values)):
        rows = day_idx == d
        c = card_idx[rows]
        # per card: max score and any fraud that day
        max_score = np.full(len(card_codes), -np.inf)
        np.maximum.at(max_score, c, s[rows])
        fraud = np.zeros(len(card_codes), dtype=bool)
        fraud[c[y_arr[rows] == 1]] = True
        present = np.isfinite(max_score) & ~detected
        candidates = np.where(present)[0]
        # rank by score desc; tie-break by card id for determinism
        order = np.lexsort((candidates, -max_score[candidates]))
        top = candidates[order[:k]]
        hits = top[fraud[top]]
        per_day.append(len(hits) / k)
        detected[hits] = True
    return float(np.mean(per_day))


def dollar_metrics(
    y: ArrayLike,
    prob: ArrayLike,
    amount: ArrayLike,
    threshold: float,
    *,
    false_decline_cost_rate: float = 0.1,
    cost_per_false_decline: float = 0.0,
) -> dict[str, float]:
    """Money at a decision threshold (decline when ``prob >= threshold``).

    Returns the fraud amount caught and missed, the share of fraud dollars caught, the genuine
    amount declined, and the false-decline cost, modelled as
    ``false_decline_cost_rate * declined genuine amount + cost_per_false_decline * count``
    (lost margin and customer friction; defaults: 10 % of the amount, no fixed cost).
    """
    y_arr, p = _check(y, prob)
    amt = np.asarray(amount, dtype=np.float64)
    if amt.shape != p.shape:
        raise MetricInputError(f"length mismatch: {len(p)} scores vs {amt.shape} amounts")
    if not np.isfinite(amt).all() or (amt < 0).any():
        raise MetricInputError("amounts must be finite and >= 0")
    if false_decline_cost_rate < 0 or cost_per_false_decline < 0:
        raise MetricInputError("false-decline costs must be >= 0")
    flagged = p >= threshold
    fraud = y_arr == 1
    caught = float(amt[flagged & fraud].sum())
    total_fraud = float(amt[fraud].sum())
    declined_genuine = float(amt[flagged & ~fraud].sum())
    n_false = int((flagged & ~fraud).sum())
    cost = false_decline_cost_rate * declined_genuine + cost_per_false_decline * n_false
    return {
        "threshold": float(threshold),
        "fraud_amount_total": total_fraud,
        "fraud_amount_caught": caught,
        "fraud_amount_missed": total_fraud - caught,
        "fraud_amount_caught_share": caught / total_fraud if total_fraud > 0 else float("nan"),
        "false_declines": float(n_false),
        "false_decline_amount": declined_genuine,
        "false_decline_cost": float(cost),
        "net_savings": caught - float(cost),
    }


def evaluate(
    y: ArrayLike,
    prob: ArrayLike,
    *,
    amount: ArrayLike | None = None,
    card_id: Sequence[Any] | np.ndarray | None = None,
    day: Sequence[Any] | np.ndarray | None = None,
    k: int = 100,
    max_fpr: float = 0.01,
    threshold: float | None = None,
    n_bins: int = 15,
) -> dict[str, float]:
    """All headline metrics in one flat dict (the shape written to ``metrics.json``).

    Card precision@k needs ``card_id`` and ``day``; dollar figures need ``amount`` and use
    ``threshold`` (default: the threshold at ``max_fpr``).
    """
    y_arr, p = _check(y, prob, probabilities=True, need_both=True)
    out: dict[str, float] = {
        "rows": float(len(y_arr)),
        "fraud_rate": float(y_arr.mean()),
        "roc_auc": roc_auc(y_arr, p),
        "average_precision": average_precision(y_arr, p),
        f"recall_at_fpr_{max_fpr:g}": recall_at_fpr(y_arr, p, max_fpr),
        "ece": expected_calibration_error(y_arr, p, n_bins),
        "brier": brier_score(y_arr, p),
    }
    if card_id is not None and day is not None:
        out[f"card_precision_at_{k}"] = card_precision_at_k(y_arr, p, card_id, day, k)
    if amount is not None:
        t = threshold if threshold is not None else threshold_at_fpr(y_arr, p, max_fpr)
        out.update({f"dollar_{k_}": v for k_, v in dollar_metrics(y_arr, p, amount, t).items()})
    return out


def finite_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a flat dict as floats, keys prefixed (kfp's Metrics cannot hold
    inf/NaN: the protobuf JSON encoding of an artifact's metadata rejects them)."""
    import math

    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out
