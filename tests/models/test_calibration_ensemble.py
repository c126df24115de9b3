"""Calibration improves ECE on held-out data; blends pick sensible weights; JSON round trips."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from riskml.metrics import brier_score, expected_calibration_error
from riskml.models.calibration import CalibrationError, Calibrator, fit_calibrator
from riskml.models.ensemble import Blend, BlendError, fit_blend
from riskml.models.features import FeatureSpec, extract_inputs
from riskml.models.xgb import XGBParams, fit_booster, predict


@pytest.fixture(scope="module")
def reweighted_xgb(frame: Any, spec: FeatureSpec) -> dict[str, Any]:
    """A real XGBoost model trained with scale_pos_weight (so its probabilities run high)."""
    inp = extract_inputs(frame, spec)
    assert inp.y is not None
    n = len(inp)
    tr, cal, te = slice(0, n // 2), slice(n // 2, 3 * n // 4), slice(3 * n // 4, n)
    booster, _ = fit_booster(
        XGBParams(num_boost_round=60, early_stopping_rounds=None, scale_pos_weight="auto"),
        inp.tabular[tr],
        inp.y[tr],
        nthread=1,
    )
    return {
        "cal": (predict(booster, inp.tabular[cal]), inp.y[cal]),
        "test": (predict(booster, inp.tabular[te]), inp.y[te]),
    }


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_improves_ece_on_later_held_out_slice(
    reweighted_xgb: dict[str, Any], method: str
) -> None:
    raw_cal, y_cal = reweighted_xgb["cal"]
    raw_test, y_test = reweighted_xgb["test"]
    cal = fit_calibrator(raw_cal, y_cal, method)  # type: ignore[arg-type]
    before = expected_calibration_error(y_test, raw_test)
    after = expected_calibration_error(y_test, cal(raw_test))
    assert before > 0.05  # scale_pos_weight inflated the probabilities
    assert after < before / 3
    assert brier_score(y_test, cal(raw_test)) < brier_score(y_test, raw_test)
    # JSON round trip gives identical outputs; no pickle involved
    again = Calibrator.from_json(json.loads(json.dumps(cal.to_json())))
    assert np.allclose(again(raw_test), cal(raw_test))
    # monotone: ranking is never inverted
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(cal(grid)) >= -1e-12)


def test_calibration_rejects_bad_input() -> None:
    with pytest.raises(CalibrationError, match="single class"):
        fit_calibrator(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(CalibrationError, match="NaN"):
        fit_calibrator(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        Calibrator.from_json({"method": "magic"})
    with pytest.raises(CalibrationError, match="non-decreasing"):
        Calibrator.from_json({"method": "isotonic", "x": [0.5, 0.1], "y": [0.1, 0.2]})


def _two_models(n: int = 4000, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int8)
    good = np.clip(0.05 + 0.6 * y + rng.normal(0, 0.15, n), 0.001, 0.999)
    noise = np.clip(rng.random(n), 0.001, 0.999)
    return {"good": good, "noise": noise}, y


@pytest.mark.parametrize("method", ["weighted", "stacked", "auto"])
def test_blend_prefers_the_informative_model(method: str) -> None:
    probs, y = _two_models()
    blend = fit_blend(probs, y, method)  # type: ignore[arg-type]
    if blend.method == "weighted":
        assert blend.weights[0] >= 0.8
    else:
        assert blend.coef[0] > 5 * abs(blend.coef[1])
    if method == "auto":
        assert set(blend.selection) == {"holdout_logloss_weighted", "holdout_logloss_stacked"}
    again = Blend.from_json(json.loads(json.dumps(blend.to_json())))
    assert np.allclose(again(probs), blend(probs))
    out = blend(probs)
    assert out.min() >= 0 and out.max() <= 1


def test_blend_errors_are_clear() -> None:
    probs, y = _two_models(200)
    with pytest.raises(BlendError, match="both classes"):
        fit_blend(probs, np.zeros_like(y))
    with pytest.raises(BlendError, match="in \\[0, 1\\]"):
        fit_blend({"a": np.full(200, 1.5)}, y)
    blend = fit_blend(probs, y, "weighted")
    with pytest.raises(BlendError, match="noise"):
        blend({"good": probs["good"]})
    with pytest.raises(BlendError, match="sum 1"):
        Blend.from_json({"method": "weighted", "models": ["a", "b"], "weights": [0.9, 0.9]})


@pytest.mark.parametrize("method", ["weighted", "stacked"])
def test_blend_of_one_row_equals_the_vectorised_blend(method: str) -> None:
    """Serving blends one request with :meth:`Blend.one` (plain floats): the backtest's numbers,
    the probabilities' extremes included; a missing model is the same clear error."""
    probs, y = _two_models()
    probs = {
        m: np.r_[v, 0.0, 1.0, 1e-12, 1 - 1e-12] for m, v in probs.items()
    }  # the clip at both ends
    blend = fit_blend({m: v[:-4] for m, v in probs.items()}, y, method)  # type: ignore[arg-type]
    rows = [{m: float(v[i]) for m, v in probs.items()} for i in range(len(y) + 4)]
    one = np.array([blend.one(r) for r in rows])
    np.testing.assert_allclose(one, blend(probs), rtol=1e-12, atol=1e-15)
    with pytest.raises(BlendError, match="noise"):
        blend.one({"good": 0.5})
    huge = Blend.from_json(
        {"method": "stacked", "models": ["a"], "coef": [200.0], "intercept": -5.0}
    )
    assert huge.one({"a": 1e-9}) == pytest.approx(float(huge({"a": np.array([1e-9])})[0]))
