"""Probability calibration (isotonic or Platt) stored as JSON, never pickled.

Fitting uses scikit-learn; applying needs only numpy, so serving loads a calibrator from its JSON
(breakpoints or two coefficients) and maps raw scores to probabilities with :func:`numpy.interp`
or a logistic function. Calibrators are fitted on a held-out time slice later than the one the
model trained and early-stopped on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

EPS = 1e-6

Method = Literal["isotonic", "platt"]


class CalibrationError(ValueError):
    """Calibration input or payload is invalid."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted monotone map from a model's raw probability to a calibrated one."""

    method: Method
    # isotonic: breakpoints x (raw prob) -> y (calibrated prob)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    # platt: p = sigmoid(a * logit(raw) + b)
    a: float = 1.0
    b: float = 0.0
    n_fit: int = 0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.transform(raw)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        r = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(r, np.asarray(self.x), np.asarray(self.y))
        z = self.a * _logit(r) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x, "y": self.y, "n_fit": self.n_fit}
        return {"method": "platt", "a": self.a, "b": self.b, "n_fit": self.n_fit}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Calibrator:
        method = payload.get("method")
        if method == "isotonic":
            x = [float(v) for v in payload["x"]]
            y = [float(v) for v in payload["y"]]
            if len(x) != len(y) or len(x) < 1:
                raise CalibrationError("isotonic calibrator needs equal, non-empty x and y")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < -1e-12):
                raise CalibrationError("isotonic breakpoints must be non-decreasing")
            return cls("isotonic", x=x, y=y, n_fit=int(payload.get("n_fit", 0)))
        if method == "platt":
            return cls(
                "platt",
                a=float(payload["a"]),
                b=float(payload["b"]),
                n_fit=int(payload.get("n_fit", 0)),
            )
        raise CalibrationError(f"unknown calibration method {method!r}")


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: Method = "isotonic") -> Calibrator:
    """Fit on held-out (raw probability, label) pairs."""
    r = np.asarray(raw, dtype=np.float64)
    t = np.asarray(y)
    if r.ndim != 1 or r.shape != t.shape:
        raise CalibrationError(f"raw scores {r.shape} and labels {t.shape} must be equal 1-D")
    if not np.isfinite(r).all():
        raise CalibrationError("raw scores contain NaN or infinite values")
    if not np.isin(t, (0, 1)).all():
        raise CalibrationError("labels must be 0 or 1")
    if t.min() == t.max():
        raise CalibrationError("calibration slice has a single class; cannot calibrate")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(r, t.astype(np.float64))
        return Calibrator(
            "isotonic",
            x=[float(v) for v in iso.X_thresholds_],
            y=[float(v) for v in iso.y_thresholds_],
            n_fit=len(r),
        )
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(_logit(r).reshape(-1, 1), t.astype(np.int64))
        return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]), n_fit=len(r))
    raise CalibrationError(f"unknown calibration method {method!r}")
