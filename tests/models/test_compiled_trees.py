"""The compiled tree tables score and explain exactly as XGBoost does (serving's XGBoost stage)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from scipy.special import expit

from riskml.models.compiled_trees import CompiledTrees, NotCompilable
from serving.scorers import compile_booster, is_logistic, tabular_result


def _data(n: int, f: int, seed: int, nan_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[:, 0] = np.round(x[:, 0])  # ties on thresholds: the `<` of a split matters
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(0, 1, n) > 1.2).astype(np.float32)
    x[rng.random(x.shape) < nan_share] = np.nan  # missing values follow each node's default
    return x, y


def _train(params: dict, rounds: int = 40, *, early: bool = False) -> xgb.Booster:
    x, y = _data(3000, 12, seed=1)
    dtrain = xgb.DMatrix(x[:2400], y[:2400])
    dvalid = xgb.DMatrix(x[2400:], y[2400:])
    return xgb.train(
        {"objective": "binary:logistic", "nthread": 1, "seed": 3, **params},
        dtrain,
        rounds,
        evals=[(dvalid, "valid")] if early else (),
        early_stopping_rounds=5 if early else None,
        verbose_eval=False,
    )


def _xgb(booster: xgb.Booster, x: np.ndarray, rng: tuple[int, int]) -> tuple[np.ndarray, ...]:
    dm = xgb.DMatrix(x)
    margin = booster.predict(dm, output_margin=True, iteration_range=rng)
    contribs = booster.predict(dm, pred_contribs=True, approx_contribs=True, iteration_range=rng)
    return margin.astype(np.float64), contribs.astype(np.float64)


@pytest.mark.parametrize(
    "params",
    [
        {"max_depth": 6, "eta": 0.3},
        {"max_depth": 2, "eta": 0.1, "scale_pos_weight": 9.0},
        {"max_depth": 8, "eta": 0.2, "subsample": 0.7, "base_score": 0.2, "lambda": 5.0},
        {"max_depth": 0, "max_leaves": 16, "grow_policy": "lossguide", "tree_method": "hist"},
    ],
)
def test_margins_and_saabas_contributions_match_xgboost(params: dict) -> None:
    booster = _train(params)
    trees = CompiledTrees(booster)
    x, _ = _data(2000, 12, seed=9, nan_share=0.2)
    x[0] = np.nan  # a row with nothing known
    margin, contribs = trees.explain(x)
    want_margin, want_contribs = _xgb(booster, x, (0, 0))
    # XGBoost sums in float32, the tables in float64
    np.testing.assert_allclose(margin, want_margin, atol=2e-5)
    np.testing.assert_allclose(contribs, want_contribs, atol=2e-5)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, atol=1e-9)
    assert np.abs(expit(margin) - booster.inplace_predict(x)).max() <= 1e-6
    np.testing.assert_array_equal(trees.margin(x), margin)


def test_an_iteration_range_compiles_only_those_trees() -> None:
    booster = _train({"max_depth": 4, "eta": 0.3}, rounds=200, early=True)
    best = int(booster.attr("best_iteration"))
    assert best + 1 < booster.num_boosted_rounds()  # early stopping kept extra trees
    trees = CompiledTrees(booster, (0, best + 1))
    assert trees.n_trees == best + 1
    x, _ = _data(500, 12, seed=4)
    margin, contribs = trees.explain(x)
    want_margin, want_contribs = _xgb(booster, x, (0, best + 1))
    np.testing.assert_allclose(margin, want_margin, atol=2e-5)
    np.testing.assert_allclose(contribs, want_contribs, atol=2e-5)
    # ... not every tree of the booster
    assert np.abs(margin - _xgb(booster, x, (0, 0))[0]).max() > 1e-3


def test_one_row_scores_like_a_batch_and_bad_shapes_are_refused() -> None:
    trees = CompiledTrees(_train({"max_depth": 5}))
    x, _ = _data(20, 12, seed=5)
    batch = trees.explain(x)
    for i in range(len(x)):
        margin, contribs = trees.explain(x[i : i + 1])
        assert margin[0] == pytest.approx(batch[0][i], abs=1e-12)
        np.testing.assert_allclose(contribs[0], batch[1][i], atol=1e-12)
    with pytest.raises(ValueError, match=r"expected \(n, 12\) features"):
        trees.margin(x[:, :5])
    with pytest.raises(ValueError, match=r"expected \(n, 12\) features"):
        trees.margin(x[0])


def test_what_the_tables_do_not_reproduce_is_refused() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"cat": pd.Categorical(rng.choice(["a", "b", "c"], 500)), "v": rng.normal(size=500)}
    )
    y = ((frame["cat"] == "b") ^ (frame["v"] > 0)).astype(int)
    cat = xgb.train(
        {"objective": "binary:logistic", "max_cat_to_onehot": 1, "max_depth": 3},
        xgb.DMatrix(frame, y, enable_categorical=True),
        10,
    )
    with pytest.raises(NotCompilable, match="categorical"):
        CompiledTrees(cat)
    x, _ = _data(300, 4, seed=2)
    multi = xgb.train(
        {"objective": "multi:softprob", "num_class": 3},
        xgb.DMatrix(x, rng.integers(0, 3, 300)),
        5,
    )
    with pytest.raises(NotCompilable, match="single-output"):
        CompiledTrees(multi)
    assert compile_booster(cat, logistic=True) is None  # serving keeps XGBoost for it


def test_the_serving_scorer_gives_xgboost_probabilities_and_reasons() -> None:
    """``tabular_result`` through the compiled tables vs the same booster without them: the
    probabilities to 1e-6, the contributions (reason codes) to float32 rounding; ``exact``
    (TreeSHAP) is XGBoost's own."""
    booster = _train({"max_depth": 6})

    class Scorer:
        def __init__(self, compiled: bool) -> None:
            from serving.scorers import booster_explain

            self.logistic = is_logistic(booster)
            self.compiled = compile_booster(booster, logistic=True) if compiled else None
            self.explain = lambda x, exact=False: booster_explain(
                booster, x, 1, exact, logistic=self.logistic, compiled=self.compiled
            )

    fast, slow = Scorer(True), Scorer(False)
    assert fast.compiled is not None
    x, _ = _data(64, 12, seed=8)
    for mode in ("approx", "exact"):
        a, b = tabular_result(fast, x, mode), tabular_result(slow, x, mode)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
        assert a.contributions is not None and b.contributions is not None
        np.testing.assert_allclose(a.contributions, b.contributions, atol=2e-5)
