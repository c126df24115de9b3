"""PD calibration: four methods chosen out of time, all strictly increasing, Venn–Abers intervals
matching the venn-abers package, beta matching betacal, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from riskml.models.calibration import CalibrationError
from riskml.models.credit.calibration import (
    METHODS,
    PDCalibrator,
    VennAbers,
    _logit_grid,
    adjust_in_the_large,
    calibration_scores,
    fit_method,
    fit_venn_abers,
    in_the_large_shift,
    is_strictly_increasing,
    select_calibrator,
    shift_logit,
)


def _window(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores that are over-confident and too low (true logit = 0.7 * raw logit + 0.4)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-3.0, 1.2, n)
    raw = 1 / (1 + np.exp(-z))
    true = 1 / (1 + np.exp(-(0.7 * z + 0.4 + shift)))
    return raw, (rng.uniform(size=n) < true).astype(np.int64)


@pytest.fixture(scope="module")
def windows() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"fit": _window(6_000, 1), "select": _window(4_000, 2), "test": _window(6_000, 3)}


@pytest.fixture(scope="module")
def chosen(windows: dict[str, tuple[np.ndarray, np.ndarray]]) -> PDCalibrator:
    return select_calibrator(*windows["fit"], *windows["select"])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_the_ranking_strictly(
    method: str, windows: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    cal = fit_method(method, *windows["fit"])  # type: ignore[arg-type]
    grid = np.r_[0.0, np.logspace(-9, -1e-9, 4_000), 1.0]
    out = cal(grid)
    assert np.all(np.diff(out) > 0), method
    assert out.min() >= 0 and out.max() <= 1
    raw, y = windows["test"]
    before = calibration_scores(y, raw)
    after = calibration_scores(y, cal(raw))
    assert after["log_loss"] < before["log_loss"] and after["ece"] < before["ece"] / 2
    assert after["ece"] < 0.02


def test_venn_abers_matches_the_package_and_brackets_its_pd(
    windows: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    from venn_abers import VennAbers as PackageVA

    raw, y = windows["fit"]
    va = fit_venn_abers(raw, y)
    test_raw = windows["test"][0]
    s_fit, s_test = _logit_grid(raw), _logit_grid(test_raw)
    with np.errstate(divide="ignore", invalid="ignore"):
        pkg = PackageVA().fit(np.column_stack([1 - s_fit, s_fit]), y)
        _, p0p1 = pkg.predict_proba(np.column_stack([1 - s_test, s_test]))
    lo, hi = va._raw_bounds(test_raw)
    np.testing.assert_allclose(lo, p0p1[:, 0], atol=1e-12)
    np.testing.assert_allclose(hi, p0p1[:, 1], atol=1e-12)
    slo, shi = va.bounds(test_raw)
    p = va(test_raw)
    assert (slo <= p).all() and (p <= shi).all() and (shi - slo).max() < 0.5
    # the interval narrows with more calibration data (the ~1/n term of IVAP)
    small = fit_venn_abers(raw[:600], y[:600])
    s_lo, s_hi = small.bounds(test_raw)
    assert np.median(s_hi - s_lo) > 2 * np.median(shi - slo)
    # the package's import-time np.seterr did not leak into this process
    assert np.geterr()["divide"] == "warn"


def test_beta_reuses_riskml_calibrator_and_agrees_with_betacal(
    windows: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    from betacal import BetaCalibration

    raw, y = windows["fit"]
    ours = fit_method("beta", raw, y)
    ref = BetaCalibration(parameters="abm").fit(raw, y)
    probe = np.linspace(0.001, 0.6, 300)
    np.testing.assert_allclose(ours(probe), ref.predict(probe), atol=2e-4)


def test_selection_scores_all_four_and_refits_the_winner(
    chosen: PDCalibrator, windows: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    sel = chosen.selection
    assert set(sel["scores"]) == set(METHODS) and sel["chosen"] == chosen.method
    best = min(sel["scores"], key=lambda m: sel["scores"][m]["log_loss"])
    assert chosen.method == best
    assert sel["refit_rows"] == sel["fit_rows"] + sel["select_rows"] == 10_000
    # the raw scores are badly calibrated; every method fixes most of it
    for scores in sel["scores"].values():
        assert scores["ece"] < sel["raw"]["ece"] / 2
    raw, y = windows["test"]
    assert calibration_scores(y, chosen(raw))["ece"] < 0.02
    assert is_strictly_increasing(chosen)


def test_interval_contains_the_served_pd(chosen: PDCalibrator) -> None:
    grid = np.linspace(1e-4, 0.9, 5_000)
    pd, lo, hi = chosen.predict(grid)
    assert (lo <= pd).all() and (pd <= hi).all()
    assert np.all(np.diff(lo) > 0) and np.all(np.diff(hi) > 0)


def test_a_non_venn_abers_choice_is_widened_to_hold_its_pd(
    windows: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    cal = select_calibrator(*windows["fit"], *windows["select"], methods=("platt",))
    assert cal.method == "platt" and isinstance(cal.interval, VennAbers)
    grid = np.linspace(1e-4, 0.99, 3_000)
    pd, lo, hi = cal.predict(grid)
    va_lo, va_hi = cal.interval.bounds(grid)
    assert (lo <= pd).all() and (pd <= hi).all()
    assert np.array_equal(lo, np.minimum(va_lo, pd)) and np.array_equal(hi, np.maximum(va_hi, pd))


def test_json_round_trip_is_identical(chosen: PDCalibrator) -> None:
    grid = np.linspace(0, 1, 1_001)
    for cal in (chosen, select_calibrator(*_window(3000, 5), *_window(2000, 6), methods=("beta",))):
        loaded = PDCalibrator.from_json(json.loads(json.dumps(cal.to_json(), allow_nan=False)))
        assert loaded.method == cal.method
        for a, b in zip(loaded.predict(grid), cal.predict(grid), strict=True):
            np.testing.assert_array_equal(a, b)


def test_bad_input_and_payloads_are_refused(
    chosen: PDCalibrator, windows: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    raw, y = windows["fit"]
    with pytest.raises(CalibrationError, match="single class"):
        select_calibrator(raw, np.zeros_like(y), raw, y)
    with pytest.raises(CalibrationError, match="subset"):
        select_calibrator(raw, y, raw, y, methods=("magic",))  # type: ignore[arg-type]
    with pytest.raises(CalibrationError, match="probabilities"):
        fit_venn_abers(raw * 3, y)
    payload = chosen.to_json()
    bad = json.loads(json.dumps(payload))
    bad["interval"]["p1"] = bad["interval"]["p1"][::-1]
    with pytest.raises(CalibrationError, match="must be non-decreasing"):
        PDCalibrator.from_json(bad)
    bad = json.loads(json.dumps(payload))
    bad["method"] = "isotonic" if chosen.method != "isotonic" else "platt"
    with pytest.raises(CalibrationError, match="differs"):
        PDCalibrator.from_json(bad)
    with pytest.raises(CalibrationError, match="not a"):
        PDCalibrator.from_json({"format": "x"})


def test_in_the_large_matches_the_recent_default_level_and_keeps_the_order(
    chosen: PDCalibrator,
) -> None:
    # the newest vintage defaults less (logit -0.3): the chosen map runs high on it
    raw, y = _window(5_000, 11, shift=-0.3)
    adjusted = adjust_in_the_large(chosen, raw, y, label="2023-11")
    info = adjusted.selection["in_the_large"]
    assert info["mean_pd_before"] > info["default_rate"] and info["shift"] < 0
    assert adjusted(raw).mean() == pytest.approx(y.mean(), abs=1e-8)
    assert info["window"] == "2023-11" and info["rows"] == 5_000
    assert adjusted.selection["chosen"] == chosen.method  # selection kept
    # a logit shift: same order, interval shifted alike, PD still inside it
    grid = np.linspace(1e-4, 0.99, 3_000)
    np.testing.assert_array_equal(np.argsort(adjusted(grid)), np.argsort(chosen(grid)))
    assert is_strictly_increasing(adjusted)
    pd, lo, hi = adjusted.predict(grid)
    assert (lo <= pd).all() and (pd <= hi).all() and (pd < chosen(grid)).all()
    np.testing.assert_allclose(
        adjusted.bounds(grid)[0], shift_logit(chosen.bounds(grid)[0], info["shift"])
    )
    # it is stored (version 2) and read back identically
    loaded = PDCalibrator.from_json(json.loads(json.dumps(adjusted.to_json())))
    assert loaded.intercept == adjusted.intercept
    for a, b in zip(loaded.predict(grid), adjusted.predict(grid), strict=True):
        np.testing.assert_array_equal(a, b)


def test_in_the_large_refuses_what_it_cannot_solve(chosen: PDCalibrator) -> None:
    p = np.full(100, 0.05)
    assert in_the_large_shift(p, np.r_[np.ones(10), np.zeros(90)]) == pytest.approx(
        np.log(0.1 / 0.9) - np.log(0.05 / 0.95)
    )
    with pytest.raises(CalibrationError, match="no finite intercept"):
        in_the_large_shift(p, np.zeros(100))
    with pytest.raises(CalibrationError, match="exceeds"):
        in_the_large_shift(np.full(100, 1e-6), np.r_[np.ones(90), np.zeros(10)])
    with pytest.raises(CalibrationError, match="equal, non-empty"):
        in_the_large_shift(p, np.zeros(3))
    # version 1 payloads (no intercept) still load; a bad intercept is refused
    v1 = {**chosen.to_json(), "version": 1, "intercept": 0.7}
    assert PDCalibrator.from_json(v1).intercept == 0.0
    bad = {**chosen.to_json(), "intercept": "high"}
    with pytest.raises(CalibrationError, match="intercept"):
        PDCalibrator.from_json(bad)
    with pytest.raises(CalibrationError, match="intercept"):
        PDCalibrator.from_json({**chosen.to_json(), "intercept": 50.0})
