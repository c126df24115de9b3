"""PD training out of time by vintage, the servable PDModel (predict, decide, files) and its
monotonicity, checked by property tests; the Ray Tune + Ray Train path on a shared local Ray."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskml.evaluation.credit.pd_report import training_report
from riskml.models.credit.gbdt import GBDTModel, GBDTParams
from riskml.models.credit.pd import (
    AFFORDABILITY,
    DecisionPolicy,
    GradeScale,
    PDModel,
    PDModelError,
)
from riskml.training.credit import (
    CreditTrainingError,
    PDTrainingConfig,
    PDTrainingResult,
    PDTuneConfig,
    VintageSplitConfig,
    split_vintages,
    train_pd,
)

SPLIT = VintageSplitConfig(select_vintages=1, calibration_vintages=1)


@pytest.fixture(scope="module")
def portfolio() -> Any:
    """20 vintages x 400 loans: the first 8 are complete at the end of the period."""
    from riskml.data.credit.simulator import LoanSimConfig, simulate_portfolio

    return simulate_portfolio(
        LoanSimConfig(seed=3, months=20, loans_per_month=400, n_customers=8_000, offers_per_month=0)
    )


@pytest.fixture(scope="module")
def result(portfolio: Any) -> PDTrainingResult:
    return train_pd(portfolio, PDTrainingConfig(split=SPLIT))


@pytest.fixture(scope="module")
def test_rows(portfolio: Any, result: PDTrainingResult) -> pl.DataFrame:
    return portfolio.loans.filter(pl.col("vintage").is_in(result.split.test))


def test_split_uses_complete_vintages_in_time_order(credit_portfolio: Any) -> None:
    loans = credit_portfolio.loans  # 18 vintages, the first 6 complete at the end
    small = VintageSplitConfig(select_vintages=1, calibration_vintages=1)
    split = split_vintages(loans, small, credit_portfolio.observation_end)
    order = (
        split.train + split.valid + split.calibration_fit + split.calibration_select + split.test
    )
    assert order == sorted(order) and len(set(order)) == len(order) == 6
    assert len(split.train) == 2 and split.test == ["2023-06"]
    complete = loans.group_by("vintage").agg(pl.col("default_12m").null_count().alias("nulls"))
    nulls = dict(complete.iter_rows())
    assert all(nulls[v] == 0 for v in order)
    # immature vintages are left out, early defaults and all, with the reason
    assert set(split.excluded) == {v for v, k in nulls.items() if k > 0}
    assert all("immature" in why for why in split.excluded.values())
    early = loans.filter(pl.col("default_12m") == 1, pl.col("vintage") > "2023-06")
    assert early.height > 0 and not set(early["vintage"]) & set(order)
    # the observation end can also be read off the labels of a bare loans frame
    assert split_vintages(loans, small).summary()["test"] == split.test


def test_an_earlier_training_cut_off_drops_vintages_not_yet_complete(portfolio: Any) -> None:
    cut = dt.datetime(2023, 5, 1, tzinfo=dt.UTC)  # 4 months after the start: nothing complete
    with pytest.raises(CreditTrainingError, match="train_as_of"):
        split_vintages(portfolio.loans, SPLIT.model_copy(update={"train_as_of": cut}))
    # a cut-off 13 months after the start: only the first vintage is complete for training
    later = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    split = split_vintages(
        portfolio.loans,
        SPLIT.model_copy(update={"train_as_of": later, "min_train_vintages": 1}),
        portfolio.observation_end,
    )
    assert split.train == ["2023-01"] and split.valid == ["2023-02"]
    assert "train_as_of" in split.excluded["2023-03"]
    with pytest.raises(CreditTrainingError, match="complete vintages"):
        split_vintages(portfolio.loans, VintageSplitConfig(test_vintages=5))
    with pytest.raises(CreditTrainingError, match="timezone"):
        split_vintages(
            portfolio.loans, SPLIT.model_copy(update={"test_as_of": dt.datetime(2024, 1, 1)})
        )


def test_bad_configs_are_refused_up_front() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="glm"):
        PDTrainingConfig.model_validate({"models": ["random_forest"]})
    with pytest.raises(ValidationError, match="extra"):
        PDTrainingConfig.model_validate({"split": {"test_vintage": 2}})
    with pytest.raises(CreditTrainingError, match="unknown GBDT params"):
        PDTuneConfig.model_validate(
            {"search_space": {"depth": {"type": "randint", "low": 2, "high": 4}}}
        ).check()


def test_both_models_train_calibrate_and_a_champion_is_chosen(result: PDTrainingResult) -> None:
    assert set(result.models) == {"glm", "gbdt"}
    g = result.models["gbdt"].selection["gini_select"]
    s = result.models["glm"].selection["gini_select"]
    expected = "gbdt" if g >= s + result.config.champion_margin else "glm"
    assert result.champion == expected
    for out in result.models.values():
        scored = out.scored
        assert set(scored["role"].unique()) >= {"train", "valid", "test", "unused"}
        test = scored.filter(pl.col("role") == "test")
        assert test["default_12m"].null_count() == 0
        assert (test["pd_low"] <= test["pd"]).all() and (test["pd"] <= test["pd_high"]).all()
        cal = out.selection["calibration"]
        assert set(cal["scores"]) == {"isotonic", "platt", "beta", "venn_abers"}
    assert result.models["glm"].model.kind == "scorecard"
    assert result.models["gbdt"].model.kind == "gbdt"
    assert "gbdt_fit_seconds" in result.timings and "glm_fit_seconds" in result.timings


def test_pd_level_is_set_on_the_newest_calibration_vintage(
    portfolio: Any, result: PDTrainingResult
) -> None:
    newest = result.split.calibration_select[-1]
    rows = portfolio.loans.filter(pl.col("vintage") == newest)
    y = rows["default_12m"].to_numpy()
    for out in result.models.values():
        cal = out.model.calibrator
        info = cal.selection["in_the_large"]
        assert info["window"] == newest and info["rows"] == rows.height
        assert cal.intercept == info["shift"] != 0.0
        assert float(out.model.pd(rows).mean()) == pytest.approx(y.mean(), abs=1e-6)


def test_intercept_shift_keeps_the_ranking(portfolio: Any, result: PDTrainingResult) -> None:
    plain = train_pd(
        portfolio, PDTrainingConfig(split=SPLIT, models=("glm",), calibration_intercept_vintages=0)
    )
    a = plain.models["glm"].scored.filter(pl.col("role") == "test")
    b = result.models["glm"].scored.filter(pl.col("role") == "test")
    assert plain.models["glm"].model.calibrator.intercept == 0.0
    assert "in_the_large" not in plain.models["glm"].model.calibrator.selection
    np.testing.assert_array_equal(a["raw_pd"].to_numpy(), b["raw_pd"].to_numpy())
    np.testing.assert_array_equal(
        np.argsort(a["pd"].to_numpy(), kind="stable"), np.argsort(b["pd"].to_numpy(), kind="stable")
    )
    with pytest.raises(CreditTrainingError, match="exceeds the 2 calibration vintages"):
        train_pd(portfolio, PDTrainingConfig(split=SPLIT, calibration_intercept_vintages=3))


def test_training_report_has_the_issue_keys(result: PDTrainingResult) -> None:
    rep = training_report(result)
    for key in (
        "gini_gbdt",
        "gini_glm",
        "ece_calibrated",
        "ece_calibrated_quantile",
        "jeffreys_pass_share",
    ):
        assert isinstance(rep[key], float) and np.isfinite(rep[key]), key
    assert 0.3 < rep["gini_glm"] < 0.9 and 0.3 < rep["gini_gbdt"] < 0.9
    assert rep["ece_calibrated"] < 0.06 and rep["jeffreys_pass_share"] >= 0.5
    diff = rep["gini_gbdt_minus_glm"]
    assert diff["low"] <= diff["difference"] <= diff["high"]
    assert diff["difference"] == pytest.approx(rep["gini_gbdt"] - rep["gini_glm"])
    per = rep["models"]["gbdt"]["per_vintage"]
    assert len(per) == 20 and all("psi" in r for r in per)
    assert sum("gini" in r for r in per) == 8  # labels mature in the 8 complete vintages
    json.dumps(rep, default=str, allow_nan=True)


def test_predict_gives_pd_interval_grade_and_reasons(
    result: PDTrainingResult, test_rows: pl.DataFrame
) -> None:
    for out in result.models.values():
        pred = out.model.predict(test_rows.head(300))
        assert ((pred.pd_low <= pred.pd) & (pred.pd <= pred.pd_high)).all()
        assert set(pred.grade) <= set(GradeScale().names)
        assert all(len(r) <= 4 for r in pred.reasons) and any(pred.reasons)
        np.testing.assert_allclose(pred.pd, out.model.pd(test_rows.head(300)))
        assert (pred.score is not None) == (out.model.kind == "scorecard")
        row = pred.rows()[0]
        assert set(row) >= {"pd", "pd_low", "pd_high", "grade", "reasons"}


@pytest.mark.parametrize("name", ["glm", "gbdt"])
def test_files_round_trip_identically_and_are_verified(
    name: str, result: PDTrainingResult, test_rows: pl.DataFrame, tmp_path: Path
) -> None:
    model = result.models[name].model
    path = model.to_files(tmp_path / name)
    names = sorted(p.name for p in path.iterdir())
    assert names == (["gbdt.ubj"] if name == "gbdt" else []) + ["manifest.json", "pd_model.json"]
    loaded = PDModel.from_files(path)
    a, b = loaded.predict(test_rows), model.predict(test_rows)
    for field in ("pd", "pd_low", "pd_high", "raw"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.grade == b.grade and a.reasons == b.reasons
    target = path / ("gbdt.ubj" if name == "gbdt" else "pd_model.json")
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(PDModelError, match="sha256"):
        PDModel.from_files(path)


def test_decisions_decline_risky_and_cap_amounts_by_affordability(
    result: PDTrainingResult, test_rows: pl.DataFrame
) -> None:
    model = result.champion_model
    rows = test_rows.head(200)
    dec = model.decide(rows)
    pd = dec.prediction.pd
    assert not dec.approve[pd > model.policy.pd_cutoff].any()
    assert (dec.approved_amount <= rows["amount"].to_numpy() + 1e-9).all()
    assert (dec.approved_amount <= dec.max_amount + 1e-9).all()
    assert all(r == [] for r, ok in zip(dec.reasons, dec.approve, strict=True) if ok)
    assert all(r for r, ok in zip(dec.reasons, dec.approve, strict=True) if not ok)
    # the same applicants with half the income can afford less, never more
    poorer = rows.with_columns(pl.col("income_monthly") / 2)
    assert (model.max_amount(poorer)[0] <= model.max_amount(rows)[0] + 1e-9).all()
    # an applicant whose existing debt already uses the DTI cap is declined for affordability
    safe = rows.filter(pl.Series(dec.approve)).head(1)
    broke = safe.with_columns(pl.lit(model.policy.dti_cap).alias("debt_to_income"))
    out = model.decide(broke)
    assert not out.approve[0] and out.reasons[0][0] == AFFORDABILITY
    strict = DecisionPolicy(pd_cutoff=1e-4)
    tight = PDModel(**{**model.__dict__, "policy": strict})
    declined = tight.decide(rows)
    assert not declined.approve.any()
    # every decline names its factors, the applicants better than average included
    assert all(1 <= len(r) <= strict.reasons for r in declined.reasons)


# -- monotonicity of the served model (property tests) --------------------------------------


def _pd_pair(model: PDModel, row: pl.DataFrame, column: str, low: float, high: float) -> Any:
    dtype = row.schema[column]
    pair = pl.concat([row, row]).with_columns(pl.Series(column, [low, high]).cast(dtype))
    return model.pd(pair)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, 299),
    score=st.integers(300, 849),
    step=st.integers(1, 300),
    name=st.sampled_from(["glm", "gbdt"]),
)
def test_raising_bureau_score_never_raises_pd(
    result: PDTrainingResult, test_rows: pl.DataFrame, i: int, score: int, step: int, name: str
) -> None:
    model = result.models[name].model
    low, high = _pd_pair(model, test_rows[i], "bureau_score", score, min(850, score + step))
    assert high <= low


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, 299),
    base=st.integers(0, 8),
    step=st.integers(1, 6),
    name=st.sampled_from(["glm", "gbdt"]),
)
def test_raising_delinquencies_never_lowers_pd(
    result: PDTrainingResult, test_rows: pl.DataFrame, i: int, base: int, step: int, name: str
) -> None:
    model = result.models[name].model
    low, high = _pd_pair(model, test_rows[i], "delinquencies_24m", base, base + step)
    assert high >= low


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, 299),
    column=st.sampled_from(
        [
            "utilisation",
            "debt_to_income",
            "inquiries_6m",
            "prior_max_dpd",
            "income_monthly",
            "monthly_payment",
        ]
    ),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
    name=st.sampled_from(["glm", "gbdt"]),
)
def test_every_constrained_feature_moves_pd_its_way(
    result: PDTrainingResult,
    test_rows: pl.DataFrame,
    i: int,
    column: str,
    a: float,
    b: float,
    name: str,
) -> None:
    model = result.models[name].model
    scale = {
        "inquiries_6m": 15,
        "prior_max_dpd": 120,
        "income_monthly": 20_000,
        "monthly_payment": 2_000,
        "utilisation": 1.5,
        "debt_to_income": 1.5,
    }[column]
    lo, hi = sorted((a * scale, b * scale))
    if test_rows.schema[column].is_integer():
        lo, hi = float(round(lo)), float(round(hi))
    p_lo, p_hi = _pd_pair(model, test_rows[i], column, lo, hi)
    direction = model.spec.monotone[column]
    assert direction != 0 and (p_hi - p_lo) * direction >= 0


# -- Ray ------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
def test_ray_tune_and_train_match_the_plain_fit(
    portfolio: Any, ray_head: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from riskml.models.credit.gbdt import fit_gbdt
    from riskml.settings import get_settings

    monkeypatch.setenv("RISKML_RAY_ADDRESS", ray_head.gcs_address)
    get_settings.cache_clear()
    config = PDTrainingConfig(
        split=SPLIT,
        models=("gbdt",),
        use_ray=True,
        gbdt=GBDTParams(num_boost_round=150),
        tune=PDTuneConfig(num_samples=2, time_budget_s=240),
    )
    try:
        out = train_pd(portfolio, config)
    finally:
        ray.shutdown()
    assert out.tune is not None and len(out.tune["trials"]) == 2
    assert all(t["status"] == "ok" for t in out.tune["trials"])
    best = out.tune["best_params"]
    for key in config.tune.search_space:  # type: ignore[union-attr]
        assert best[key] == out.tune["best_config"][key]
    t = out.timings
    assert t["gbdt_ray_over_plain"] == pytest.approx(
        t["gbdt_ray_seconds"] / t["gbdt_plain_seconds"]
    )
    # Ray Train ran the same plain function: the same booster as training in process
    spec = config.spec
    train = portfolio.loans.filter(pl.col("vintage").is_in(out.split.train))
    valid = portfolio.loans.filter(pl.col("vintage").is_in(out.split.valid))
    plain, _ = fit_gbdt(
        spec.numeric_matrix(train),
        train["default_12m"].to_numpy(),
        spec,
        GBDTParams.model_validate(best),
        x_valid=spec.numeric_matrix(valid),
        y_valid=valid["default_12m"].to_numpy(),
    )
    gbdt = out.models["gbdt"].model.model
    assert isinstance(gbdt, GBDTModel)
    x = spec.numeric_matrix(valid)
    np.testing.assert_allclose(gbdt.raw_pd_matrix(x), plain.raw_pd_matrix(x), atol=1e-6)
