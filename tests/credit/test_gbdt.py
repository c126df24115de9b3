"""The XGBoost challenger: monotone constraints hold everywhere, categories split natively,
reason codes come from SHAP contributions, UBJSON round trip scores identically."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskml.models.credit import CreditFeature, CreditFeatureSpec
from riskml.models.credit.gbdt import GBDTError, GBDTModel, GBDTParams, dmatrix, fit_gbdt
from tests.credit.test_scorecard import synthetic_loans

SPEC = CreditFeatureSpec()


@pytest.fixture(scope="module")
def loans() -> pl.DataFrame:
    return synthetic_loans(6_000, seed=1)


@pytest.fixture(scope="module")
def later() -> pl.DataFrame:
    return synthetic_loans(3_000, seed=2)


@pytest.fixture(scope="module")
def fitted(loans: pl.DataFrame) -> tuple[GBDTModel, dict[str, float]]:
    x = SPEC.numeric_matrix(loans)
    y = loans["default_12m"].to_numpy()
    return fit_gbdt(
        x[:4500],
        y[:4500],
        SPEC,
        GBDTParams(num_boost_round=300),
        x_valid=x[4500:],
        y_valid=y[4500:],
    )


def test_it_ranks_and_stops_early(
    fitted: tuple[GBDTModel, dict[str, float]], later: pl.DataFrame
) -> None:
    from riskml.metrics import roc_auc

    model, info = fitted
    y = later["default_12m"].to_numpy()
    auc = roc_auc(y, model.raw_pd(later))
    assert auc > 0.75 and auc > roc_auc(y, later["sim_pd"].to_numpy()) - 0.06
    assert info["best_iteration"] < info["rounds"] <= 300
    assert 0.2 < info["valid_logloss"] < 0.5 and info["valid_auc"] > 0.7
    # the saved model is trimmed to the best iteration
    assert model.booster.num_boosted_rounds() == int(info["best_iteration"]) + 1


def test_constraints_hold_along_every_constrained_feature(
    fitted: tuple[GBDTModel, dict[str, float]], later: pl.DataFrame
) -> None:
    model, _ = fitted
    x = SPEC.numeric_matrix(later.head(300))
    for j, name in enumerate(SPEC.names):
        direction = SPEC.monotone[name]
        if direction == 0:
            continue
        lo, hi = np.nanmin(x[:, j]), np.nanmax(x[:, j])
        grid = np.linspace(lo - 1, hi + 1, 25)
        preds = []
        for v in grid:
            xv = x.copy()
            xv[:, j] = v
            preds.append(model.raw_pd_matrix(xv))
        steps = np.diff(np.column_stack(preds), axis=1) * direction
        assert (steps >= -1e-7).all(), name


def test_reasons_are_the_top_positive_contributions(
    fitted: tuple[GBDTModel, dict[str, float]], later: pl.DataFrame
) -> None:
    model, _ = fitted
    head = later.head(100)
    contrib = model.contributions(head)
    # contributions + bias reproduce the margin
    margin = model.booster.inplace_predict(
        SPEC.numeric_matrix(head).astype(np.float32), predict_type="margin"
    )
    bias = model.booster.predict(dmatrix(SPEC, SPEC.numeric_matrix(head)), pred_contribs=True)[
        :, -1
    ]
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, margin, atol=1e-4)
    reasons = model.reasons(head, k=3)
    for row, names in zip(contrib, reasons, strict=True):
        positive = [SPEC.names[i] for i in np.argsort(-row) if row[i] > 0][:3]
        assert names == positive
    risky = head.with_columns(
        pl.lit(560).alias("bureau_score"), pl.lit(5).alias("delinquencies_24m")
    )
    assert "bureau_score" in model.reasons(risky.head(1), k=2)[0]


def test_categories_split_natively_and_unknown_is_missing(
    fitted: tuple[GBDTModel, dict[str, float]], later: pl.DataFrame
) -> None:
    model, _ = fitted
    j = SPEC.names.index("category")
    assert model.booster.feature_types[j] == "c" and model.booster.feature_types[0] == "q"
    row = later.head(1)
    unknown = row.with_columns(pl.lit("crypto").alias("category"))
    null = row.with_columns(pl.lit(None, dtype=pl.Utf8).alias("category"))
    assert np.isnan(SPEC.numeric_matrix(unknown)[0, j])
    assert model.raw_pd(unknown)[0] == pytest.approx(model.raw_pd(null)[0])


def test_ubj_round_trip_is_identical_and_checked(
    fitted: tuple[GBDTModel, dict[str, float]], later: pl.DataFrame
) -> None:
    model, _ = fitted
    data = model.to_ubj()
    assert data[:1] == b"{"  # UBJSON object marker
    loaded = GBDTModel.from_ubj(data, SPEC)
    np.testing.assert_array_equal(loaded.raw_pd(later), model.raw_pd(later))
    other = CreditFeatureSpec(features=(CreditFeature(name="bureau_score", monotone=-1),))
    with pytest.raises(GBDTError, match="differ from the spec"):
        GBDTModel.from_ubj(data, other)
    with pytest.raises(GBDTError, match="not an XGBoost model"):
        GBDTModel.from_ubj(b"\x00garbage", SPEC)


def test_bad_training_input_is_refused(loans: pl.DataFrame) -> None:
    x = SPEC.numeric_matrix(loans.head(50))
    with pytest.raises(GBDTError, match="both classes"):
        fit_gbdt(x, np.zeros(50), SPEC)
    with pytest.raises(GBDTError, match="columns"):
        fit_gbdt(x[:, :3], np.r_[np.zeros(25), np.ones(25)], SPEC)
    params = GBDTParams().booster_params(SPEC)
    assert params["monotone_constraints"].startswith("(-1,1,1,1,1,1,")
