"""Calibration keeps the order the raw model gives: every method (strict isotonic, Platt, beta and
auto's choice) is strictly increasing on [0, 1] tails included, creates no ties, leaves average
precision unchanged, still calibrates, round-trips through JSON and validates payloads.

Synthetic numpy data only (no Ray, no model training): 20k rows, ~1 % positives, raw scores
deliberately miscalibrated as ``sigmoid(2 * logit(p) + 1)`` — a Platt-shaped distortion."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss

from riskml.models.calibration import (
    AUTO_CANDIDATES,
    CalibrationError,
    Calibrator,
    fit_calibrator,
    ranking_check,
)

METHODS = ["isotonic", "platt", "beta", "auto"]
N = 20_000
# 0, the far low tail, the body, and the far top tail (the top matters most for fraud)
GRID = np.unique(
    np.r_[
        0.0,
        1e-300,
        1e-15,
        1e-12,
        1e-9,
        1e-6,
        np.logspace(-6, -1, 500),
        np.linspace(1e-4, 1 - 1e-4, 20_001),
        1 - np.logspace(-1, -9, 9),  # float64 cannot resolve much denser steps near 1
        1.0,
    ]
)


def _distorted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw, y, true p): ~1 % positives; raw = sigmoid(2 * logit(p) + 1) (overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-5.6, 1.4, n)
    p = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < p).astype(np.int8)
    raw = 1 / (1 + np.exp(-(2 * z + 1)))
    return raw, y, p


@pytest.fixture(scope="module")
def calib() -> tuple[np.ndarray, np.ndarray]:
    raw, y, _ = _distorted(N, seed=0)
    assert 0.005 < y.mean() < 0.015
    return raw, y


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    raw, y, _ = _distorted(N, seed=1)
    return raw, y


@pytest.fixture(scope="module")
def fitted(calib: tuple[np.ndarray, np.ndarray]) -> dict[str, Calibrator]:
    raw, y = calib
    return {m: fit_calibrator(raw, y, m) for m in METHODS}  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_map_is_strictly_increasing_on_all_of_0_1(
    fitted: dict[str, Calibrator], method: str
) -> None:
    cal = fitted[method]
    out = cal(GRID)
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(np.diff(out) > 0), f"{cal.method} is not strictly increasing"
    if method != "auto":
        assert cal.method == method
    assert cal.strict and cal.to_json()["version"] == 2


def _float32_run(start: float, n: int = 3_000) -> np.ndarray:
    """``n`` consecutive float32 values from ``start`` up (as float64): the densest scores a
    float32 model can emit there."""
    first = np.array([start], dtype=np.float32).view(np.int32)[0]
    return (first + np.arange(n, dtype=np.int32)).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("method", METHODS)
def test_every_float32_score_keeps_its_own_value(
    fitted: dict[str, Calibrator], method: str
) -> None:
    """Adjacent float32 raw scores never tie after calibration: at the very top (just below
    1), in the body, and deep in the low tail where isotonic / beta(a=0) are flat."""
    cal = fitted[method]
    below_one = np.float32(1.0) - np.float32(2**-24) * np.arange(3_000, 0, -1, dtype=np.float32)
    runs = [below_one.astype(np.float64), np.array([1.0])]
    runs += [_float32_run(s) for s in (1e-38, 1e-20, 1e-9, 1e-5, 1e-3, 0.02, 0.5, 0.9)]
    r = np.unique(np.concatenate([[0.0], *runs]))
    assert np.all(np.diff(cal(r)) > 0)


@pytest.mark.parametrize("method", METHODS)
def test_calibration_creates_no_ties_and_keeps_average_precision(
    fitted: dict[str, Calibrator], held_out: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    """A calibrated model may not rank worse than its raw scores."""
    raw, y = held_out
    out = fitted[method](raw)
    assert np.unique(out).size == np.unique(raw).size == N
    assert np.array_equal(np.argsort(out, kind="stable"), np.argsort(raw, kind="stable"))
    ap_raw = average_precision_score(y, raw)
    assert abs(average_precision_score(y, out) - ap_raw) <= 1e-12
    check = ranking_check(raw, out, y)
    assert check["top_k"] == 2_000
    assert check["top_k_distinct_calibrated"] == check["top_k_distinct_raw"] == 2_000
    assert check["average_precision_calibrated"] == pytest.approx(ap_raw, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_calibration_beats_miscalibrated_raw_on_held_out_data(
    fitted: dict[str, Calibrator], held_out: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    raw, y = held_out
    out = fitted[method](raw)
    assert log_loss(y, out) < 0.9 * log_loss(y, raw)
    assert brier_score_loss(y, out) < brier_score_loss(y, raw)


@pytest.mark.parametrize("method", METHODS)
def test_json_round_trip_gives_identical_outputs(
    fitted: dict[str, Calibrator], held_out: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    cal = fitted[method]
    text = json.dumps(cal.to_json(), allow_nan=False)  # plain JSON, no pickle
    again = Calibrator.from_json(json.loads(text))
    assert again == cal
    assert np.array_equal(again(held_out[0]), cal(held_out[0]))
    assert np.array_equal(again(GRID), cal(GRID))
    assert json.loads(json.dumps(again.to_json())) == json.loads(text)


def test_legacy_isotonic_payload_loads_and_applies_as_before(
    calib: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """Old bundles (no version: sklearn's step breakpoints) score exactly as they did — and show
    the defect the strict map removes: ties among the top scores."""
    raw, y = calib
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y.astype(float))
    xs, ys = [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]
    old: dict[str, Any] = {"method": "isotonic", "x": xs, "y": ys, "n_fit": len(raw)}
    legacy = Calibrator.from_json(json.loads(json.dumps(old)))
    assert not legacy.strict
    raw_test = held_out[0]
    assert np.array_equal(legacy(raw_test), np.interp(raw_test, xs, ys))
    assert legacy.to_json() == old
    top = np.sort(raw_test)[-2_000:]
    assert np.unique(legacy(top)).size < 200  # the step map ties the top scores...
    strict = fit_calibrator(raw, y, "isotonic")
    assert np.unique(strict(top)).size == 2_000  # ...the strict one does not


def test_legacy_platt_payload_applies_as_before() -> None:
    legacy = Calibrator.from_json({"method": "platt", "a": 0.5, "b": -0.5, "n_fit": 10})
    p = np.array([0.0, 1e-9, 0.3, 0.9, 1.0])
    q = np.clip(p, 1e-6, 1 - 1e-6)
    expected = 1 / (1 + np.exp(-(0.5 * np.log(q / (1 - q)) - 0.5)))
    assert np.array_equal(legacy(p), expected)
    assert legacy.to_json() == {"method": "platt", "a": 0.5, "b": -0.5, "n_fit": 10}


GOOD_BETA = {"version": 2, "method": "beta", "strict": True, "eps": 1e-6, "a": 0.5, "b": 0.2}


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"method": "magic"}, "unknown calibration method"),
        ({"version": 2, "method": "auto", "strict": True, "eps": 1e-6}, "unknown"),
        ({**GOOD_BETA, "c": 0.1, "a": -0.1}, "beta coefficients"),
        ({**GOOD_BETA, "c": 0.1, "b": -1e-3}, "beta coefficients"),
        ({**GOOD_BETA, "c": 0.1, "a": 0.0, "b": 0.0}, "beta coefficients"),
        ({**GOOD_BETA, "c": float("nan")}, "finite"),
        ({**GOOD_BETA, "c": 0.1, "a": float("inf")}, "finite"),
        ({**GOOD_BETA, "c": 0.1, "a": True}, "number"),
        (GOOD_BETA, "malformed"),  # no c
        ({**GOOD_BETA, "c": 0.1, "version": 3}, "version"),
        ({**GOOD_BETA, "c": 0.1, "eps": 0.5}, "eps"),
        ({**GOOD_BETA, "c": 0.1, "eps": 0.0}, "eps"),
        ({**GOOD_BETA, "c": 0.1, "strict": False}, "strict"),
        ({**GOOD_BETA, "c": 0.1, "selection": {"scores": {"beta": float("nan")}}}, "non-finite"),
        ({**GOOD_BETA, "c": 0.1, "n_fit": -1}, "n_fit"),
        ({"method": "beta", "a": 0.5, "b": 0.2, "c": 0.0, "strict": False}, "version 2"),
        ({"method": "platt", "a": 1.0, "b": 0.0, "strict": True}, "version"),
        ({"version": 2, "method": "platt", "strict": True, "eps": 1e-6, "a": 0.0, "b": 0}, "slope"),
        ({"method": "platt", "a": float("nan"), "b": 0.0}, "finite"),
        ({"method": "isotonic", "x": [0.5, 0.1], "y": [0.1, 0.2]}, "non-decreasing"),
        ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.3, 0.2]}, "non-decreasing"),
        ({"method": "isotonic", "x": [0.1, float("nan")], "y": [0.1, 0.2]}, "finite"),
        ({"method": "isotonic", "x": [0.1, 1.5], "y": [0.1, 0.2]}, r"\[0, 1\]"),
        ({"method": "isotonic", "x": [], "y": []}, "non-empty"),
        ({"method": "isotonic", "x": [0.1]}, "malformed"),
        (
            {"version": 2, "method": "isotonic", "strict": True, "eps": 1e-6, "x": [0.2, 0.2]}
            | {"y": [0.1, 0.2]},
            "strictly increasing",
        ),
        (
            {"version": 2, "method": "isotonic", "strict": True, "eps": 1e-6, "x": [0.2, 0.3]}
            | {"y": [0.2, 0.2 - 1e-13]},
            "non-decreasing y",
        ),
    ],
)
def test_bad_payloads_raise(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        Calibrator.from_json(payload)


def test_auto_chooses_lowest_held_out_log_loss_on_platt_shaped_distortion(
    fitted: dict[str, Calibrator], calib: tuple[np.ndarray, np.ndarray]
) -> None:
    cal = fitted["auto"]
    sel = cal.selection
    assert set(sel["scores"]) == set(AUTO_CANDIDATES) == {"isotonic", "platt", "beta"}
    assert not sel["skipped"] and "fallback" not in sel
    best = min(sel["scores"], key=lambda m: sel["scores"][m]["log_loss"])
    assert sel["chosen"] == cal.method == best
    assert cal.method in {"platt", "beta"}  # the distortion is Platt-shaped (beta nests Platt)
    assert sel["fit_rows"] + sel["holdout_rows"] == N
    # the winner is refitted on the whole slice, identical to fitting that method directly
    raw, y = calib
    direct = fit_calibrator(raw, y, cal.method)
    assert np.array_equal(direct(GRID), cal(GRID))
    # and the payload says what was chosen and why
    payload = cal.to_json()
    assert payload["method"] == cal.method and payload["selection"]["chosen"] == cal.method
    assert cal.summary()["selection"] == sel and "x" not in cal.summary()


def test_auto_falls_back_to_strict_isotonic_when_later_part_has_one_class() -> None:
    raw, y, _ = _distorted(3_000, seed=5)
    y = y.copy()
    y[2_000:] = 0  # the later third: no fraud
    y[:10] = 1
    cal = fit_calibrator(raw, y, "auto")
    assert cal.method == "isotonic" and cal.strict
    assert "later part" in cal.selection["fallback"] and cal.selection["chosen"] == "isotonic"
    assert not cal.selection["scores"]
    assert np.all(np.diff(cal(GRID)) > 0)


def test_inverted_scores_raise_for_platt_and_beta_and_auto_skips_them() -> None:
    raw, y, _ = _distorted(6_000, seed=7)
    inverted = 1 - raw  # ranks fraud last: no increasing Platt/beta map fits
    for method in ("platt", "beta"):
        with pytest.raises(CalibrationError, match="non-positive"):
            fit_calibrator(inverted, y, method)
    cal = fit_calibrator(inverted, y, "auto")
    assert cal.method == "isotonic"
    assert set(cal.selection["skipped"]) == {"platt", "beta"}
    assert set(cal.selection["scores"]) == {"isotonic"}
    assert np.all(np.diff(cal(GRID)) > 0)  # still strictly increasing, never reversing


@pytest.mark.parametrize("dropped", ["a", "b"])
def test_beta_drops_a_negative_coefficient_and_stays_monotone(dropped: str) -> None:
    """Shapes that drive one beta coefficient negative in the two-feature fit; the refit without
    that feature keeps a, b >= 0 (the dropped one exactly 0) and the map strictly increasing."""
    rng = np.random.default_rng(3)
    n = 20_000
    if dropped == "b":  # the rate rises at the low end and saturates: -ln(1 - r) gets b < 0
        raw = rng.uniform(0.0, 1.0, n)
        rate = np.where(raw < 0.5, 0.4 * raw, 0.2)
    else:  # a higher rate among the tiniest scores than in the middle: ln(r) gets a < 0
        raw = np.minimum(10 ** rng.uniform(-8, 0, n), 1 - 1e-9)
        rate = np.where(raw < 1e-6, 0.1, np.where(raw > 0.5, 0.3, 0.03))
    y = (rng.random(n) < rate).astype(np.int8)
    cal = fit_calibrator(raw, y, "beta")
    assert getattr(cal, dropped) == 0.0
    assert cal.a >= 0 and cal.b >= 0 and cal.a + cal.b > 0
    assert np.all(np.diff(cal(GRID)) > 0)
    assert Calibrator.from_json(cal.to_json()) == cal


@pytest.mark.parametrize(
    "payload",
    [  # a bottom block whose rate (1 %) is far above its raw scores; beta with a flat low tail
        {"method": "isotonic", "x": [0.001, 0.5], "y": [0.01, 0.2]},
        {"method": "beta", "a": 0.0, "b": 0.8, "c": -3.0},
    ],
)
def test_flat_low_tail_far_above_raw_still_separates_float32_scores(
    payload: dict[str, Any],
) -> None:
    """The relative term ``r**eps`` is what keeps these apart: ``(1 - eps) * g + eps * r``
    alone rounds adjacent tiny float32 scores to the same value."""
    cal = Calibrator.from_json({"version": 2, "strict": True, "eps": 1e-6, **payload})
    r = np.concatenate([_float32_run(s) for s in (1e-30, 1e-12, 1e-7, 1e-4)])
    assert np.all(np.diff(cal(r)) > 0)
    additive_only = (1 - cal.eps) * cal._base(r) + cal.eps * r
    assert np.unique(additive_only).size <= r.size - 3_000  # whole runs collapse


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(CalibrationError, match="single class"):
        fit_calibrator(np.array([0.1, 0.2]), np.array([0, 0]), "auto")
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        fit_calibrator(np.array([0.1, 1.2]), np.array([0, 1]))
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        fit_calibrator(np.array([0.1, 0.2]), np.array([0, 1]), "magic")  # type: ignore[arg-type]


def test_raw_scores_at_exactly_0_and_1_fit_and_apply() -> None:
    raw, y, _ = _distorted(5_000, seed=9)
    raw = raw.copy()
    raw[:50] = 0.0
    raw[50:60] = 1.0
    for method in METHODS:
        cal = fit_calibrator(raw, y, method)  # type: ignore[arg-type]
        out = cal(np.array([0.0, 0.5, 1.0]))
        assert np.isfinite(out).all() and out[0] < out[1] < out[2] <= 1.0


def test_calibrate_and_blend_defaults_to_auto_and_reports_the_ranking_check() -> None:
    """The training path: ``auto`` calibration per model, its selection in the metrics, and on
    *valid* equal top-2,000 distinct counts and equal AP for raw and calibrated scores."""
    from riskml.models.features import ModelInputs
    from riskml.training.pipeline import TimeSplit, TrainConfig, calibrate_and_blend

    def inputs(y: np.ndarray, seed: int) -> ModelInputs:
        n = len(y)
        rng = np.random.default_rng(seed)
        return ModelInputs(
            tabular=np.zeros((n, 1), dtype=np.float32),
            sequence=None,
            y=y,
            amount=rng.uniform(1, 500, n),
            customer_id=rng.integers(0, 3_000, n),
            ts=np.datetime64("2024-01-01T00:00:00", "us")
            + np.sort(rng.integers(0, 10 * 86_400_000_000, n)).astype("timedelta64[us]"),
        )

    raw_va, y_va, _ = _distorted(6_000, seed=21)
    raw_ca, y_ca, _ = _distorted(6_000, seed=22)
    split = TimeSplit(inputs(y_ca, 1), inputs(y_va, 2), inputs(y_ca, 3), {}, None)
    noisy: dict[
        str, np.ndarray
    ] = {  # a second, weaker model: the raw scores plus noise, as float32 like XGBoost
        "valid": np.clip(raw_va + np.random.default_rng(4).normal(0, 1e-3, 6_000), 0, 1),
        "calib": np.clip(raw_ca + np.random.default_rng(5).normal(0, 1e-3, 6_000), 0, 1),
    }
    raw_valid: dict[str, np.ndarray] = {
        "xgb": raw_va.astype(np.float32),
        "sequence": noisy["valid"],
    }
    raw_calib: dict[str, np.ndarray] = {
        "xgb": raw_ca.astype(np.float32),
        "sequence": noisy["calib"],
    }
    config = TrainConfig()
    assert config.calibration == "auto"
    calibrators, _, metrics = calibrate_and_blend(split, raw_valid, raw_calib, config)
    for m in ("xgb", "sequence"):
        summary = metrics[f"calibration_{m}"]
        assert summary["method"] == calibrators[m].method
        assert summary["selection"]["chosen"] == summary["method"]
        assert set(summary["selection"]["scores"]) == set(AUTO_CANDIDATES)
        valid = summary["valid"]
        assert valid["top_k"] == 2_000
        assert valid["top_k_distinct_calibrated"] == valid["top_k_distinct_raw"]
        assert valid["average_precision_calibrated"] == pytest.approx(
            valid["average_precision_raw"], abs=1e-12
        )
    json.dumps(metrics, allow_nan=False)  # the metrics stay plain JSON


@pytest.mark.parametrize("method", METHODS)
def test_one_value_path_equals_transform_on_the_whole_grid(
    fitted: dict[str, Calibrator], method: str
) -> None:
    """Serving calibrates one score at a time with :meth:`Calibrator.one` (plain floats): the
    same numbers as the vectorised :meth:`transform` the backtest uses, on 0, 1, the far tails
    and the body, and NaN stays NaN."""
    cal = fitted[method]
    one = np.array([cal.one(float(r)) for r in GRID])
    np.testing.assert_allclose(one, cal.transform(GRID), rtol=1e-12, atol=1e-15)
    assert np.isnan(cal.one(float("nan")))


@pytest.mark.parametrize(
    "payload",
    [
        {"method": "platt", "a": 0.5, "b": -0.5, "n_fit": 10},
        {"method": "isotonic", "x": [0.1, 0.2, 0.6], "y": [0.01, 0.3, 0.9], "n_fit": 3},
        {**GOOD_BETA, "c": 0.1},
        {**GOOD_BETA, "c": 0.1, "a": 0.0},
        {**GOOD_BETA, "c": 0.1, "b": 0.0},
    ],
)
def test_one_value_path_equals_transform_for_legacy_and_edge_payloads(
    payload: dict[str, Any],
) -> None:
    cal = Calibrator.from_json(payload)
    one = np.array([cal.one(float(r)) for r in GRID])
    np.testing.assert_allclose(one, cal.transform(GRID), rtol=1e-12, atol=1e-15)
