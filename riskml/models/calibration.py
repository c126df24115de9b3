"""Probability calibration (strict isotonic, Platt or beta; or chosen by "auto") stored as JSON,
never pickled.

Fitting uses scikit-learn; applying needs only numpy, so serving loads a calibrator from its JSON
(breakpoints or two/three coefficients) and maps raw scores to probabilities. Calibrators are
fitted on a held-out time slice later than the one the model trained and early-stopped on.

**Calibration never changes the order the raw model gives.** Every map fitted here (payload
``"version": 2, "strict": true``) is strictly increasing on the whole of [0, 1] — the tails
beyond the fitted data included — so it creates no ties (ties at the top cost average
precision and make card-precision@k depend on tie order) and never swaps two scores:

* ``"isotonic"`` — centred isotonic regression: the PAV fit (scikit-learn) reduced to one point
  per block, at the mean raw score of the block's rows and the block's fraud rate. Adjacent
  blocks have strictly increasing raw means and rates, so linear interpolation between the
  block centres is strictly increasing; beyond the outermost centres it is flat, as in centred
  isotonic regression (Oron & Flournoy, 2017).
* ``"platt"`` — ``sigmoid(a * logit(r) + b)`` with ``a > 0``.
* ``"beta"`` — beta calibration (Kull, Silva Filho & Flach, 2017):
  ``sigmoid(a * ln(r) - b * ln(1 - r) + c)`` with ``a, b >= 0`` and ``a + b > 0``. A fit with a
  negative coefficient is refitted with that feature dropped (as the authors' ``betacal`` does).
* ``"auto"`` — fits each of the above on the earlier 2/3 of the (time-ordered) slice, scores
  them on the later 1/3 by log loss (Brier breaks ties), refits the winner on the whole slice
  and records every candidate's scores in ``selection``. A later part with a single class (or a
  too-small slice) falls back to :data:`AUTO_DEFAULT` (strict isotonic).

The fitted base map ``g`` (non-decreasing, in [0, 1]) is made strictly increasing by two tiny
terms, ``eps = 1e-6``::

    out(r) = (1 - eps) * g(r) * r**eps + eps * r

``eps * r`` keeps it strictly increasing where ``g`` is 0 or flat (isotonic tails, a sigmoid
that rounds to exactly 0 or 1 far in the tails); the factor ``r**eps`` (= ``exp(eps * ln r)``,
between 0.9993 and 1 for every positive double) adds a relative increase ``eps * dr / r``, so
a flat ``g`` far above ``r`` (a bottom block whose fraud rate exceeds its raw scores) does not
swallow the identity term in rounding. The map stays in [0, 1] and moves no probability by
more than ``eps`` absolute plus ~0.07 % relative (at raw scores near 0; 0.001 % at 1e-6).
In float64 two raw scores stay distinct when they differ by more than ~2e-10 relatively (and,
where the calibrated value is close to 1, by more than ~1e-10 absolutely) — every pair of
distinct float32 model scores does (they differ by at least 6e-8 relatively).

Payloads without ``"version"`` (version 1: the old ``isotonic`` x/y step map and the old Platt
map with logits clipped at 1e-6) still load and apply exactly as before, so existing bundles
score the same; only newly fitted calibrators are strict.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

EPS = 1e-6  # version-1 Platt payloads clip logits at [EPS, 1 - EPS] (kept for old bundles)
STRICT_EPS = 1e-6  # the strict map is (1 - eps) * g(r) * r**eps + eps * r
TINY = 1e-300  # r**eps is computed as (r + TINY)**eps: finite log at r = 0, r itself otherwise
MAX_EPS = 1e-4  # the largest eps a payload may carry (keeps both strictness terms negligible)
FIT_CLIP = 1e-15  # raw scores are clipped to [FIT_CLIP, 1 - FIT_CLIP] for the fit's log features
LOGREG_C = 1e6  # effectively unpenalised logistic regression (Platt, beta)
FORMAT_VERSION = 2
AUTO_FIT_FRACTION = 2 / 3  # auto: candidates are fitted on this earlier share of the slice
AUTO_MIN_ROWS = 30  # auto: below this many rows in either part, fall back to AUTO_DEFAULT

FittedMethod = Literal["isotonic", "platt", "beta"]
Method = Literal["isotonic", "platt", "beta", "auto"]
FITTED_METHODS: tuple[FittedMethod, ...] = get_args(FittedMethod)
AUTO_CANDIDATES: tuple[FittedMethod, ...] = ("isotonic", "platt", "beta")
AUTO_DEFAULT: FittedMethod = "isotonic"


class CalibrationError(ValueError):
    """Calibration input or payload is invalid."""


def _legacy_logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (non-decreasing in floating point; ±inf → 1/0)."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _sigmoid_one(z: float) -> float:
    """:func:`_sigmoid` of one number."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def _interp(r: float, xs: list[float], ys: list[float]) -> float:
    """``np.interp`` of one number (clamped at both ends, linear in between)."""
    if r <= xs[0]:
        return ys[0]
    if r >= xs[-1]:
        return ys[-1]
    j = bisect.bisect_right(xs, r) - 1
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return slope * (r - xs[j]) + ys[j]


def _log_features(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ln(r)`` and ``-ln(1 - r)``: non-decreasing, -inf at r = 0 / +inf at r = 1."""
    with np.errstate(divide="ignore"):
        return np.log(r), -np.log1p(-r)


@dataclass
class Calibrator:
    """A fitted strictly increasing map from a model's raw probability to a calibrated one."""

    method: FittedMethod
    # isotonic: block centres x (raw prob) -> y (calibrated prob), both increasing
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    # platt: g = sigmoid(a * logit(raw) + b); beta: g = sigmoid(a * ln(raw) - b * ln(1 - raw) + c)
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    n_fit: int = 0
    # strict (version 2): out = (1 - eps) * g(raw) * raw**eps + eps * raw; False: version 1
    strict: bool = True
    eps: float = STRICT_EPS
    # auto: the chosen method, each candidate's held-out scores, skips and fallbacks
    selection: dict[str, Any] = field(default_factory=dict)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.transform(raw)

    def one(self, raw: float) -> float:
        """:meth:`transform` of one probability in plain float arithmetic: serving calibrates
        one score per request, where a dozen NumPy calls on one-element arrays cost ~35 µs
        and these ~3 µs. Equal to :meth:`transform` to within rounding (tested to 1e-12)."""
        r = float(raw)
        if math.isnan(r):
            return math.nan
        if not self.strict:
            if self.method == "isotonic":
                return _interp(r, self.x, self.y)
            q = min(max(r, EPS), 1 - EPS)
            return _sigmoid_one(self.a * math.log(q / (1 - q)) + self.b)
        r = min(max(r, 0.0), 1.0)
        relative = (r + TINY) ** self.eps
        return (1.0 - self.eps) * self._base_one(r) * relative + self.eps * r

    def _base_one(self, r: float) -> float:
        """:meth:`_base` of one probability (ln 0 = -inf, as NumPy gives it)."""
        if self.method == "isotonic":
            return _interp(r, self.x, self.y)
        ln_r = math.log(r) if r > 0 else -math.inf
        ln_1mr = -math.log1p(-r) if r < 1 else math.inf
        if self.method == "platt":
            return _sigmoid_one(self.b + self.a * (ln_r + ln_1mr))
        z = self.c
        if self.a > 0:
            z += self.a * ln_r
        if self.b > 0:
            z += self.b * ln_1mr
        return _sigmoid_one(z)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        r = np.asarray(raw, dtype=np.float64)
        if not self.strict:
            if self.method == "isotonic":
                return np.interp(r, np.asarray(self.x), np.asarray(self.y))
            return 1.0 / (1.0 + np.exp(-(self.a * _legacy_logit(r) + self.b)))
        r = np.clip(r, 0.0, 1.0)
        relative = np.power(r + TINY, self.eps)  # in (0.9993, 1], relative slope eps / r
        return (1.0 - self.eps) * self._base(r) * relative + self.eps * r

    def _base(self, r: np.ndarray) -> np.ndarray:
        """The fitted non-decreasing map ``g`` on [0, 1] (before the strictness terms)."""
        if self.method == "isotonic":
            return np.interp(r, np.asarray(self.x), np.asarray(self.y))
        ln_r, ln_1mr = _log_features(r)  # ln(r), -ln(1 - r)
        z = np.full_like(r, self.b if self.method == "platt" else self.c)
        if self.method == "platt":  # logit = ln(r) - ln(1 - r), never inf - inf; a > 0
            z += self.a * (ln_r + ln_1mr)
        else:  # a term whose coefficient is 0 is left out (0 * inf would be NaN)
            if self.a > 0:
                z += self.a * ln_r
            if self.b > 0:
                z += self.b * ln_1mr
        return _sigmoid(z)

    def to_json(self) -> dict[str, Any]:
        if not self.strict:  # exactly the version-1 payload it was loaded from
            if self.method == "isotonic":
                return {"method": "isotonic", "x": self.x, "y": self.y, "n_fit": self.n_fit}
            return {"method": self.method, "a": self.a, "b": self.b, "n_fit": self.n_fit}
        out: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "method": self.method,
            "strict": True,
            "eps": self.eps,
        }
        if self.method == "isotonic":
            out.update(x=self.x, y=self.y)
        elif self.method == "platt":
            out.update(a=self.a, b=self.b)
        else:
            out.update(a=self.a, b=self.b, c=self.c)
        out["n_fit"] = self.n_fit
        if self.selection:
            out["selection"] = self.selection
        return out

    def summary(self) -> dict[str, Any]:
        """A small JSON-able description (no breakpoint arrays): method, size, coefficients or
        number of breakpoints, and ``auto``'s selection."""
        out: dict[str, Any] = {"method": self.method, "strict": self.strict, "n_fit": self.n_fit}
        if self.method == "isotonic":
            out["n_breakpoints"] = len(self.x)
        else:
            out.update(a=self.a, b=self.b)
            if self.method == "beta":
                out["c"] = self.c
        if self.selection:
            out["selection"] = self.selection
        return out

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Calibrator:
        """Load and validate a payload; raises :class:`CalibrationError` on anything off."""
        if not isinstance(payload, dict):
            raise CalibrationError("a calibrator payload must be a JSON object")
        try:
            return cls._from_json(payload)
        except CalibrationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed calibrator payload: {exc!r}") from exc

    @classmethod
    def _from_json(cls, payload: dict[str, Any]) -> Calibrator:
        method = payload.get("method")
        if method not in FITTED_METHODS:
            hint = " ('auto' is resolved at fit time)" if method == "auto" else ""
            raise CalibrationError(f"unknown calibration method {method!r}{hint}")
        version = payload.get("version", 1)
        if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
            raise CalibrationError(f"unsupported calibration payload version {version!r}")
        strict = payload.get("strict", version == FORMAT_VERSION)
        if strict is not (version == FORMAT_VERSION):
            raise CalibrationError(
                "strict calibrators are version 2 payloads; version 1 (no version) are the "
                f"legacy maps (got version {version!r}, strict {strict!r})"
            )
        if not strict and method == "beta":
            raise CalibrationError("beta calibration exists only as a version 2 (strict) payload")
        n_fit = payload.get("n_fit", 0)
        if isinstance(n_fit, bool) or int(n_fit) != n_fit or n_fit < 0:
            raise CalibrationError(f"n_fit must be a non-negative integer, got {n_fit!r}")
        eps = _finite(payload, "eps") if strict else 0.0
        if strict and not 0 < eps <= MAX_EPS:
            raise CalibrationError(f"eps must be in (0, {MAX_EPS}], got {eps}")
        selection = payload.get("selection", {})
        if not isinstance(selection, dict):
            raise CalibrationError("selection must be a JSON object")
        _check_finite_tree(selection, "selection")
        common: dict[str, Any] = {
            "n_fit": int(n_fit),
            "strict": strict,
            "eps": eps,
            "selection": selection,
        }

        if method == "isotonic":
            x = [float(v) for v in payload["x"]]
            y = [float(v) for v in payload["y"]]
            if len(x) != len(y) or len(x) < 1:
                raise CalibrationError("isotonic calibrator needs equal, non-empty x and y")
            if not all(math.isfinite(v) for v in x + y):
                raise CalibrationError("isotonic breakpoints must be finite numbers")
            if min(x + y) < 0 or max(x + y) > 1:
                raise CalibrationError("isotonic breakpoints must lie in [0, 1]")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < -1e-12):
                raise CalibrationError("isotonic breakpoints must be non-decreasing")
            if strict and (np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0)):
                raise CalibrationError(
                    "strict isotonic breakpoints need strictly increasing x, non-decreasing y"
                )
            return cls("isotonic", x=x, y=y, **common)
        if method == "platt":
            a, b = _finite(payload, "a"), _finite(payload, "b")
            if strict and a <= 0:
                raise CalibrationError(f"Platt slope a must be positive, got {a}")
            return cls("platt", a=a, b=b, **common)
        a, b, c = _finite(payload, "a"), _finite(payload, "b"), _finite(payload, "c")
        if a < 0 or b < 0 or a + b <= 0:
            raise CalibrationError(
                f"beta coefficients a, b must be >= 0 and not both 0, got a={a}, b={b}"
            )
        return cls("beta", a=a, b=b, c=c, **common)


def _finite(payload: dict[str, Any], key: str) -> float:
    value = payload[key]
    if isinstance(value, bool):
        raise CalibrationError(f"{key} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise CalibrationError(f"{key} must be a finite number, got {value!r}")
    return out


def _check_finite_tree(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalibrationError(f"{where} holds a non-finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite_tree(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite_tree(v, f"{where}[{i}]")


# -- fitting ---------------------------------------------------------------------------------


def _fit_isotonic(r: np.ndarray, t: np.ndarray) -> Calibrator:
    """Centred isotonic regression: one breakpoint per PAV block, at the block's mean raw
    score and fraud rate (both strictly increasing from block to block)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(r, t.astype(np.float64))
    rs = np.sort(r)
    fitted = iso.predict(rs)  # equal raw scores share a block (sklearn pools them)
    starts = np.flatnonzero(np.r_[True, fitted[1:] != fitted[:-1]])
    ends = np.r_[starts[1:], len(rs)] - 1
    counts = np.diff(np.r_[starts, len(rs)])
    centres = np.add.reduceat(rs, starts) / counts
    # a mean is inside its block's range (guard against rounding), blocks' ranges are disjoint
    centres = np.clip(centres, rs[starts], rs[ends])
    values = np.clip(fitted[starts], 0.0, 1.0)
    if np.any(np.diff(centres) <= 0) or np.any(np.diff(values) <= 0):  # pragma: no cover
        raise CalibrationError("isotonic blocks are not strictly increasing (internal error)")
    return Calibrator(
        "isotonic",
        x=[float(v) for v in centres],
        y=[float(v) for v in values],
        n_fit=len(r),
    )


def _logreg(features: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=LOGREG_C, max_iter=1000)
    lr.fit(features, t.astype(np.int64))
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _clipped(r: np.ndarray) -> np.ndarray:
    return np.clip(r, FIT_CLIP, 1 - FIT_CLIP)


def _fit_platt(r: np.ndarray, t: np.ndarray) -> Calibrator:
    p = _clipped(r)
    coef, intercept = _logreg((np.log(p) - np.log1p(-p)).reshape(-1, 1), t)
    a = float(coef[0])
    if not a > 0:
        raise CalibrationError(
            f"Platt scaling fitted a non-positive slope (a={a:.4g}): the raw scores do not rank "
            "the calibration slice, so a monotone Platt map does not exist; use 'isotonic' or "
            "'auto'"
        )
    return Calibrator("platt", a=a, b=intercept, n_fit=len(r))


def _fit_beta(r: np.ndarray, t: np.ndarray) -> Calibrator:
    """Beta calibration: logistic regression on ``ln(r)`` and ``-ln(1 - r)``; a negative
    coefficient drops its feature and the other is refitted alone (Kull et al., 2017)."""
    p = _clipped(r)
    feats = np.column_stack([np.log(p), -np.log1p(-p)])
    coef, c = _logreg(feats, t)
    a, b = float(coef[0]), float(coef[1])
    if a < 0:
        coef, c = _logreg(feats[:, 1:], t)
        a, b = 0.0, float(coef[0])
    elif b < 0:
        coef, c = _logreg(feats[:, :1], t)
        a, b = float(coef[0]), 0.0
    if not (a >= 0 and b >= 0 and a + b > 0):
        raise CalibrationError(
            f"beta calibration fitted non-positive coefficients (a={a:.4g}, b={b:.4g}): the raw "
            "scores do not rank the calibration slice, so a monotone beta map does not exist; "
            "use 'isotonic' or 'auto'"
        )
    return Calibrator("beta", a=a, b=b, c=c, n_fit=len(r))


_FITTERS = {"isotonic": _fit_isotonic, "platt": _fit_platt, "beta": _fit_beta}


def _holdout_scores(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, log_loss

    return {
        "log_loss": float(log_loss(t, p, labels=[0, 1])),
        "brier": float(brier_score_loss(t, p, labels=[0, 1])),
    }


def _fit_auto(r: np.ndarray, t: np.ndarray) -> Calibrator:
    """Choose among :data:`AUTO_CANDIDATES` on the later part of the slice, refit on all of it."""
    n_early = round(len(r) * AUTO_FIT_FRACTION)
    r_fit, t_fit, r_hold, t_hold = r[:n_early], t[:n_early], r[n_early:], t[n_early:]
    selection: dict[str, Any] = {
        "criterion": "holdout log loss, then Brier",
        "candidates": list(AUTO_CANDIDATES),
        "fit_rows": int(n_early),
        "holdout_rows": len(r) - int(n_early),
        "scores": {},
        "skipped": {},
    }
    scores: dict[str, dict[str, float]] = selection["scores"]
    if min(n_early, len(r) - n_early) < AUTO_MIN_ROWS:
        selection["fallback"] = f"fewer than {AUTO_MIN_ROWS} rows to fit or score candidates"
    elif t_fit.min() == t_fit.max() or t_hold.min() == t_hold.max():
        part = "earlier" if t_fit.min() == t_fit.max() else "later"
        selection["fallback"] = f"the {part} part of the calibration slice has a single class"
    else:
        for m in AUTO_CANDIDATES:
            try:
                cal = _FITTERS[m](r_fit, t_fit)
            except CalibrationError as exc:
                selection["skipped"][m] = str(exc)
                continue
            scores[m] = _holdout_scores(t_hold, cal(r_hold))
    fitted = [m for m in AUTO_CANDIDATES if m in scores]
    chosen: FittedMethod
    if fitted:  # lowest held-out log loss; Brier, then the candidates' order, break ties
        chosen = min(
            fitted,
            key=lambda m: (scores[m]["log_loss"], scores[m]["brier"], AUTO_CANDIDATES.index(m)),
        )
    else:
        chosen = AUTO_DEFAULT
        selection.setdefault("fallback", "no candidate could be fitted")
    try:
        final = _FITTERS[chosen](r, t)
    except CalibrationError as exc:  # e.g. Platt's slope turns non-positive on the whole slice
        selection["refit_failed"] = {chosen: str(exc)}
        chosen = AUTO_DEFAULT
        final = _FITTERS[chosen](r, t)
    selection["chosen"] = chosen
    final.selection = selection
    return final


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: Method = "isotonic") -> Calibrator:
    """Fit a strictly increasing calibrator on held-out (raw probability, label) pairs; the rows
    must be in time order for ``method="auto"`` (it validates on the later part)."""
    r = np.asarray(raw, dtype=np.float64)
    t = np.asarray(y)
    if r.ndim != 1 or r.shape != t.shape:
        raise CalibrationError(f"raw scores {r.shape} and labels {t.shape} must be equal 1-D")
    if not np.isfinite(r).all():
        raise CalibrationError("raw scores contain NaN or infinite values")
    if r.size and (r.min() < 0 or r.max() > 1):
        raise CalibrationError("raw scores must be probabilities in [0, 1]")
    if not np.isin(t, (0, 1)).all():
        raise CalibrationError("labels must be 0 or 1")
    if t.size == 0 or t.min() == t.max():
        raise CalibrationError("calibration slice has a single class; cannot calibrate")
    t = t.astype(np.int64)
    if method == "auto":
        return _fit_auto(r, t)
    if method not in _FITTERS:
        raise CalibrationError(f"unknown calibration method {method!r}")
    return _FITTERS[method](r, t)


TOP_K = 2_000  # the ranking check looks at the top this many scores (the measured defect)


def ranking_check(
    raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, k: int = TOP_K
) -> dict[str, float | int]:
    """Did calibration keep the raw ranking? Distinct values among the top ``k`` raw and
    calibrated scores (fewer rows when the slice is smaller) and average precision of both:
    equal counts and equal AP when no ties were created."""
    from riskml.metrics import average_precision

    r = np.asarray(raw, dtype=np.float64)
    c = np.asarray(calibrated, dtype=np.float64)
    top = min(k, len(r))
    out: dict[str, float | int] = {
        "top_k": top,
        "top_k_distinct_raw": int(np.unique(np.sort(r)[len(r) - top :]).size),
        "top_k_distinct_calibrated": int(np.unique(np.sort(c)[len(c) - top :]).size),
    }
    t = np.asarray(y)
    if t.size and t.min() != t.max():
        out["average_precision_raw"] = average_precision(t, r)
        out["average_precision_calibrated"] = average_precision(t, c)
    return out
