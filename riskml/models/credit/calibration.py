"""PD calibration chosen out of time among isotonic, Platt, beta and Venn–Abers, with a PD
interval; JSON, never pickled.

Isotonic, Platt and beta are riskml's strictly increasing :class:`~riskml.models.calibration.
Calibrator` (centred isotonic regression; Platt and beta calibration fitted as Kull et al.'s
``betacal`` does, a test checks they agree). Venn–Abers is the inductive Venn–Abers predictor of
the ``venn-abers`` package (Vovk, Petej & Fedorova, 2015): for a raw score it gives two
probabilities ``p0 <= p1`` — the isotonic fits with the new point labelled 0 and 1 — and the point
PD ``p1 / (1 - p0 + p1)``. Its fit reduces to three arrays (the distinct calibration scores and
``p0``/``p1`` at each gap), stored here as JSON, so serving needs numpy only.

**Order kept.** Venn–Abers' outputs are step functions of the raw score; like the other three
they get riskml's strictness terms, ``out = (1 - eps) * g(r) * r**eps + eps * r``
(:mod:`riskml.models.calibration`), so every map is strictly increasing, creates no ties and
never swaps two applicants. Scores are placed on a grid of ``0.01`` in log-odds before the
Venn–Abers fit (the predictor depends only on the order of scores, so this only merges scores
within 1 % odds of each other) to keep the stored arrays small.

**Choice out of time** (:func:`select_calibrator`): every method is fitted on one window of
vintages and scored on the next (log loss, then ECE and Brier), the winner is refitted on both
windows (``refit``), and all four methods' scores are kept in ``selection``.

**Calibration in the large** (:func:`adjust_in_the_large`). The calibration windows average
several vintages; when the portfolio's default level drifts (a macro shock fading), their mean
level lags the newest vintages. After the shape is chosen and refitted, one logit shift
``delta`` (``pd' = sigmoid(logit(pd) + delta)``) is solved so that the mean PD of the most
recent complete vintage(s) equals their observed default rate. A shift of the log-odds keeps
the order (Gini unchanged) and is applied to the interval bounds as well. Stored as
``intercept`` (format version 2; version 1 payloads read with ``intercept = 0``).

**PD interval.** The served interval is always the Venn–Abers ``[p0, p1]`` fitted on the same
rows as the chosen method. When another method wins and its point PD falls outside that
interval, the interval is widened to contain it (``lo = min(p0, pd)``, ``hi = max(p1, pd)``):
the interval then still shows how much the calibration data pin the PD down around that score,
and never excludes the PD actually served.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from riskml.models.calibration import (
    STRICT_EPS,
    TINY,
    CalibrationError,
    Calibrator,
    fit_calibrator,
)

CalibrationMethod = Literal["isotonic", "platt", "beta", "venn_abers"]
METHODS: tuple[CalibrationMethod, ...] = get_args(CalibrationMethod)
Criterion = Literal["log_loss", "ece", "brier"]
FORMAT = "riskml-credit-pd-calibration"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)  # version 1: no intercept
MAX_INTERCEPT = 5.0  # |logit shift| bound for calibration in the large
VA_GRID = 0.01  # log-odds grid the Venn–Abers scores are placed on
LOGIT_CLIP = 1e-12


def _logit_grid(raw: np.ndarray) -> np.ndarray:
    r = np.clip(np.asarray(raw, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.round((np.log(r) - np.log1p(-r)) / VA_GRID) * VA_GRID


def _strict(g: np.ndarray, raw: np.ndarray, eps: float) -> np.ndarray:
    """riskml's strictness terms (see :mod:`riskml.models.calibration`)."""
    r = np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)
    return np.asarray((1.0 - eps) * g * np.power(r + TINY, eps) + eps * r, dtype=np.float64)


@dataclass
class VennAbers:
    """A fitted inductive Venn–Abers predictor (grid scores ``c``, ``p0``/``p1`` per gap)."""

    c: list[float]
    p0: list[float]  # len(c) + 1
    p1: list[float]  # len(c) + 1
    n_fit: int = 0
    eps: float = STRICT_EPS

    def _raw_bounds(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = _logit_grid(raw)
        c = np.asarray(self.c)
        p0 = np.asarray(self.p0)[np.searchsorted(c, s, side="right")]
        p1 = np.asarray(self.p1)[np.searchsorted(c, s, side="left")]
        return p0, p1

    def bounds(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The multiprobability ``(p0, p1)`` per raw score, strictly increasing in it."""
        p0, p1 = self._raw_bounds(raw)
        return _strict(p0, raw, self.eps), _strict(p1, raw, self.eps)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        p0, p1 = self._raw_bounds(raw)
        return _strict(p1 / (1.0 - p0 + p1), raw, self.eps)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "venn_abers",
            "grid": VA_GRID,
            "c": self.c,
            "p0": self.p0,
            "p1": self.p1,
            "n_fit": self.n_fit,
            "eps": self.eps,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> VennAbers:
        try:
            va = cls(
                c=[float(v) for v in payload["c"]],
                p0=[float(v) for v in payload["p0"]],
                p1=[float(v) for v in payload["p1"]],
                n_fit=int(payload.get("n_fit", 0)),
                eps=float(payload.get("eps", STRICT_EPS)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed Venn-Abers payload: {exc!r}") from exc
        if payload.get("grid", VA_GRID) != VA_GRID:
            raise CalibrationError(f"Venn-Abers payload grid {payload.get('grid')} != {VA_GRID}")
        _check_va(va)
        return va


def _check_va(va: VennAbers) -> None:
    c, p0, p1 = (np.asarray(v) for v in (va.c, va.p0, va.p1))
    if len(c) < 1 or len(p0) != len(c) + 1 or len(p1) != len(c) + 1:
        raise CalibrationError("Venn-Abers needs c and len(c) + 1 values of p0 and p1")
    if not (np.isfinite(c).all() and np.isfinite(p0).all() and np.isfinite(p1).all()):
        raise CalibrationError("Venn-Abers arrays must be finite")
    if np.any(np.diff(c) <= 0):
        raise CalibrationError("Venn-Abers scores c must be strictly increasing")
    if np.any(np.diff(p0) < 0) or np.any(np.diff(p1) < 0):
        raise CalibrationError("Venn-Abers p0 and p1 must be non-decreasing")
    if p0.min() < 0 or p1.max() > 1 or np.any(p0[1:] > p1[:-1] + 1e-12):
        raise CalibrationError("Venn-Abers needs 0 <= p0 <= p1 <= 1")
    if not 0 < va.eps <= 1e-4:
        raise CalibrationError(f"eps must be in (0, 1e-4], got {va.eps}")


def fit_venn_abers(raw: np.ndarray, y: np.ndarray) -> VennAbers:
    """Fit an inductive Venn–Abers predictor (``venn-abers`` package) on calibration rows."""
    r, t = _check_fit_input(raw, y)
    saved = np.geterr()
    try:
        from venn_abers import VennAbers as _VA  # sets np.seterr at import: restored below
    finally:
        np.seterr(**saved)
    s = _logit_grid(r)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        va = _VA().fit(np.column_stack([1.0 - s, s]), t)
    p0 = np.clip(np.asarray(va.p0_)[:, 1], 0.0, 1.0)
    p1 = np.clip(np.asarray(va.p1_)[:, 1], 0.0, 1.0)
    if not (np.isfinite(p0).all() and np.isfinite(p1).all()):
        raise CalibrationError("Venn-Abers fit produced non-finite values")
    # guard float noise in the package's convex-minorant slopes (order is what we serve)
    p0, p1 = np.maximum.accumulate(p0), np.maximum.accumulate(p1)
    out = VennAbers(
        c=[float(v) for v in va.c_],
        p0=[float(v) for v in p0],
        p1=[float(v) for v in p1],
        n_fit=len(r),
    )
    _check_va(out)
    return out


def _check_fit_input(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(raw, dtype=np.float64)
    t = np.asarray(y)
    if r.ndim != 1 or r.shape != t.shape:
        raise CalibrationError(f"raw scores {r.shape} and labels {t.shape} must be equal 1-D")
    if not np.isfinite(r).all() or (r.size and (r.min() < 0 or r.max() > 1)):
        raise CalibrationError("raw scores must be finite probabilities in [0, 1]")
    if not np.isin(t, (0, 1)).all():
        raise CalibrationError("labels must be 0 or 1")
    if t.size == 0 or t.min() == t.max():
        raise CalibrationError("calibration rows have a single class; cannot calibrate")
    return r, t.astype(np.int64)


PointMap = Calibrator | VennAbers


def fit_method(method: CalibrationMethod, raw: np.ndarray, y: np.ndarray) -> PointMap:
    """Fit one calibration method on (raw PD, label) rows."""
    if method == "venn_abers":
        return fit_venn_abers(raw, y)
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; known: {METHODS}")
    r, t = _check_fit_input(raw, y)
    return fit_calibrator(r, t, method)


def calibration_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss, Brier and ECE (riskml.metrics, 15 equal-width bins) of probabilities."""
    from sklearn.metrics import log_loss

    from riskml.metrics import brier_score, expected_calibration_error

    pc = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return {
        "log_loss": float(log_loss(y, pc, labels=[0, 1])),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p),
        "mean_pd": float(np.mean(p)),
        "default_rate": float(np.mean(y)),
    }


@dataclass
class PDCalibrator:
    """The served calibration: the chosen point map and the Venn–Abers interval."""

    method: CalibrationMethod
    point: PointMap
    interval: VennAbers
    selection: dict[str, Any] = field(default_factory=dict)
    intercept: float = 0.0  # logit shift of calibration in the large (0: none)

    def _shift(self, p: np.ndarray) -> np.ndarray:
        return p if self.intercept == 0.0 else shift_logit(p, self.intercept)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        point = np.asarray(self.point(np.asarray(raw, dtype=np.float64)), dtype=np.float64)
        return self._shift(point)

    def bounds(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Venn–Abers ``(p0, p1)`` with the same intercept shift as the point PD."""
        lo, hi = self.interval.bounds(np.asarray(raw, dtype=np.float64))
        return self._shift(lo), self._shift(hi)

    def predict(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pd, lo, hi)`` per raw score with ``lo <= pd <= hi`` (see the module doc)."""
        r = np.asarray(raw, dtype=np.float64)
        pd = self(r)
        lo, hi = self.bounds(r)
        return pd, np.minimum(lo, pd), np.maximum(hi, pd)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "point": self.point.to_json(),
            "interval": self.interval.to_json(),
            "intercept": self.intercept,
            "selection": self.selection,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PDCalibrator:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CalibrationError(f"not a {FORMAT} payload")
        if payload.get("version") not in READ_VERSIONS:
            raise CalibrationError(f"unsupported PD calibration version {payload.get('version')}")
        method = payload.get("method")
        if method not in METHODS:
            raise CalibrationError(f"unknown calibration method {method!r}")
        point_payload = payload.get("point")
        if not isinstance(point_payload, dict) or point_payload.get("method") != method:
            raise CalibrationError("the point map's method differs from the chosen method")
        point: PointMap = (
            VennAbers.from_json(point_payload)
            if method == "venn_abers"
            else Calibrator.from_json(point_payload)
        )
        if isinstance(point, Calibrator) and not point.strict:
            raise CalibrationError("PD calibrators must be strict (version 2) maps")
        selection = payload.get("selection", {})
        if not isinstance(selection, dict):
            raise CalibrationError("selection must be a JSON object")
        intercept = payload.get("intercept", 0.0) if payload["version"] >= 2 else 0.0
        if (
            isinstance(intercept, bool)
            or not isinstance(intercept, int | float)
            or not abs(intercept) <= MAX_INTERCEPT
        ):
            raise CalibrationError(f"intercept must be a number in +-{MAX_INTERCEPT}")
        return cls(
            method=method,
            point=point,
            interval=VennAbers.from_json(payload.get("interval") or {}),
            selection=selection,
            intercept=float(intercept),
        )


def select_calibrator(
    raw_fit: np.ndarray,
    y_fit: np.ndarray,
    raw_select: np.ndarray,
    y_select: np.ndarray,
    *,
    methods: tuple[CalibrationMethod, ...] = METHODS,
    criterion: Criterion = "log_loss",
    refit: bool = True,
) -> PDCalibrator:
    """Fit every method on the earlier window, score all on the later one, keep the best.

    The winner (lowest ``criterion``; then log loss, ECE, Brier and the order of ``methods``
    break ties) is refitted on both windows when ``refit``; the Venn–Abers interval is fitted on
    the same rows as the served map. ``selection`` records every method's scores.
    """
    if not methods or any(m not in METHODS for m in methods):
        raise CalibrationError(f"methods must be a non-empty subset of {METHODS}")
    r_fit, t_fit = _check_fit_input(raw_fit, y_fit)
    r_sel, t_sel = _check_fit_input(raw_select, y_select)
    scores: dict[CalibrationMethod, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for m in methods:
        try:
            fitted = fit_method(m, r_fit, t_fit)
        except CalibrationError as exc:  # e.g. Platt with a non-positive slope
            skipped[m] = str(exc)
            continue
        scores[m] = calibration_scores(t_sel, fitted(r_sel))
    if not scores:
        raise CalibrationError(f"no calibration method could be fitted: {skipped}")
    raw_scores = calibration_scores(t_sel, r_sel)

    def key(m: CalibrationMethod) -> tuple[float, ...]:
        s = scores[m]
        return (s[criterion], s["log_loss"], s["ece"], s["brier"], float(methods.index(m)))

    chosen = min(scores, key=key)
    r_all = np.r_[r_fit, r_sel] if refit else r_fit
    t_all = np.r_[t_fit, t_sel] if refit else t_fit
    point = fit_method(chosen, r_all, t_all)
    interval = point if isinstance(point, VennAbers) else fit_venn_abers(r_all, t_all)
    selection = {
        "criterion": criterion,
        "chosen": chosen,
        "fit_rows": len(r_fit),
        "select_rows": len(r_sel),
        "refit_rows": len(r_all),
        "scores": scores,
        "raw": raw_scores,
        "skipped": skipped,
    }
    return PDCalibrator(method=chosen, point=point, interval=interval, selection=selection)


def shift_logit(p: np.ndarray, delta: float) -> np.ndarray:
    """``sigmoid(logit(p) + delta)``: strictly increasing in ``p``, 0 and 1 kept."""
    from scipy.special import expit, logit

    with np.errstate(divide="ignore"):
        return np.asarray(expit(logit(np.asarray(p, dtype=np.float64)) + delta), np.float64)


def in_the_large_shift(pd: np.ndarray, y: np.ndarray) -> float:
    """The logit shift ``delta`` with ``mean(shift_logit(pd, delta)) == mean(y)``."""
    from scipy.optimize import brentq

    p = np.asarray(pd, dtype=np.float64)
    t = np.asarray(y)
    if p.ndim != 1 or p.shape != t.shape or p.size == 0:
        raise CalibrationError("calibration in the large needs equal, non-empty 1-D inputs")
    if not np.isin(t, (0, 1)).all():
        raise CalibrationError("labels must be 0 or 1")
    rate = float(t.mean())
    if not 0.0 < rate < 1.0:
        raise CalibrationError(f"default rate {rate} leaves no finite intercept shift")
    if not ((p > 0) & (p < 1)).any():
        raise CalibrationError("every PD is 0 or 1; no shift can move the mean")

    def gap(d: float) -> float:
        return float(shift_logit(p, d).mean()) - rate

    lo, hi = -MAX_INTERCEPT, MAX_INTERCEPT
    if gap(lo) > 0 or gap(hi) < 0:
        raise CalibrationError(f"the shift to a default rate of {rate:.4f} exceeds +-{hi}")
    return float(brentq(gap, lo, hi, xtol=1e-10))


def adjust_in_the_large(
    cal: PDCalibrator, raw: np.ndarray, y: np.ndarray, *, label: str = ""
) -> PDCalibrator:
    """``cal`` with its intercept set so that its mean PD on ``(raw, y)`` — the most recent
    complete vintage(s) — equals their default rate (see the module doc). The shift is solved
    on the unshifted map; ``selection["in_the_large"]`` records it."""
    r, t = _check_fit_input(raw, y)
    base = PDCalibrator(method=cal.method, point=cal.point, interval=cal.interval)
    before = base(r)
    delta = in_the_large_shift(before, t)
    info = {
        "rows": len(r),
        "default_rate": float(t.mean()),
        "mean_pd_before": float(before.mean()),
        "shift": delta,
        "window": label,
    }
    return PDCalibrator(
        method=cal.method,
        point=cal.point,
        interval=cal.interval,
        selection={**cal.selection, "in_the_large": info},
        intercept=delta,
    )


def is_strictly_increasing(cal: PDCalibrator, grid: np.ndarray | None = None) -> bool:
    """True when the point PD and both interval bounds strictly increase over ``grid``."""
    g = np.sort(np.unique(grid if grid is not None else np.linspace(1e-6, 1 - 1e-6, 20_001)))
    pd, lo, hi = cal.predict(g)
    return bool(
        np.all(np.diff(pd) > 0)
        and np.all(np.diff(cal.bounds(g)[0]) > 0)
        and np.all(np.diff(cal.bounds(g)[1]) > 0)
        and np.all(lo <= pd)
        and np.all(pd <= hi)
        and math.isfinite(float(pd.sum()))
    )


__all__ = [
    "METHODS",
    "CalibrationMethod",
    "PDCalibrator",
    "VennAbers",
    "adjust_in_the_large",
    "calibration_scores",
    "fit_method",
    "fit_venn_abers",
    "in_the_large_shift",
    "is_strictly_increasing",
    "select_calibrator",
    "shift_logit",
]
