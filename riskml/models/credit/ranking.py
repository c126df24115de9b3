"""The offer ranker: rank a returning customer's candidate offers by expected value.

Expected value of showing a candidate offer ``a`` to customer ``x``::

    EV(x, a) = P(accept | x, a) × (margin(a) − PD × LGD × EAD(a))

The second factor is the unit economics (:func:`riskml.data.credit.economics.value_breakdown`
with the PD the system uses, ``pd_at_offer`` in the log); the first is learned from the logged
impressions, where only the shown candidate's outcome is known.

Two XGBoost models, trained by :meth:`OfferRanker.fit` on the contract's ``offers`` log:

1. **Reward model** ``P(accept | x, a)`` (``binary:logistic``) on the *shown* candidates, each
   weighted by ``1 / propensity`` (clipped at ``max_weight``, normalised to mean 1). The
   logging policy shows large offers more often; inverse-propensity weights make the fit
   represent every candidate as if shown uniformly, which is what predicting it for *every*
   candidate needs.
2. **Ranker** (``rank:ndcg``, LambdaMART) over candidates grouped by impression. Its labels are
   counterfactual graded relevances from a **doubly robust estimate of each candidate's value**::

       DR(x, a) = q(x, a) + 1[a shown] / π0(a|x) × (r − q(x, a)),   q = P̂(accept) × value(a)

   with ``r`` the logged reward of the shown candidate (``value``: accepted × value) and
   ``P̂`` *cross-fitted* (``cross_fit_folds`` folds of impressions: each impression's ``q``
   comes from a reward model that never saw it, so the correction term stays unbiased). Not
   shown candidates get the reward model's value; the shown one is corrected by its observed
   outcome. ``labels="dm"`` drops the correction (the reward model's values alone; see
   "DR or DM labels" below).

   **Grades.** ``rank:ndcg`` needs small non-negative integers; a value ``<= 0`` (an offer
   not worth showing) is always grade 0. ``grading="impression"`` (default): positive values
   as a share of the impression's best, ``ceil(v / max_v × (n_grades - 1))`` — the ranker
   orders candidates *within* an impression, so each impression keeps its full resolution
   however rich or poor the customer. ``"quantile"``: equal-count bins of the *training*
   positives over all impressions (cut points kept in the files); ``"rank"``: the position
   among the impression's positive candidates (best ``n_grades - 1``, next one less, ...).
   Gains are linear in the grade unless ``exp_gain``. Measured on the simulator (3 seeds,
   default portfolio, held-out month): "impression" beat "quantile" on the top offer's true
   value, and a value-proportional global scale (tried first) collapsed most impressions to
   grade 0 and ranked badly.

   Clipping ``1/π0`` of the shown candidate at ``label_max_weight`` bounds the correction:
   without it a single accepted candidate shown with propensity 0.003 is worth hundreds of
   times its value and flattens its impression's other grades.

With ``stack_reward_model`` (default) the ranker also reads the reward model's ``P̂(accept)``
and ``q`` (cross-fitted ones in training, the full model's at serving), and with
``margin_scale`` (default 1) it boosts *from* the reward model's ordering: its base margin is
``q / (margin_scale × sd(q))``, so its trees learn corrections to that ordering, and early
stopping on the valid month keeps only the corrections that hold there.

**DR or DM labels — measured.** On the simulator (default portfolio, seeds 0-4, the latest
month held out; ground truth ``sim_ev``) the ranker with DR labels reached NDCG@5 0.943 and a
true value of its top offer of 75.0 per impression; with ``labels="dm"`` 0.959 and 78.0, the
same as showing the reward model's top offer. The DR value of a candidate is unbiased, but its
*grade* is not: the grading is non-linear (clipped at 0, scaled by the impression's best), so a
shown candidate that was declined (most are) falls to grade 0 whatever its expected value, and
an accepted one flattens the others. DR stays the default (it protects against a misspecified
reward model on real logs); ``labels="dm"`` is the better choice when the reward model is
trusted, as on the simulator.

Serving: :meth:`OfferRanker.rank` takes a customer's attributes, the candidate offers and the
PD, and returns the offers sorted by the ranker's score, each with ``p_accept``, ``margin``,
``expected_loss``, ``value`` (= margin − expected loss) and ``expected_value`` (= p_accept ×
value). :meth:`to_files` / :meth:`from_files` store both boosters as UBJSON plus one JSON
document (features, parameters, economics, grade cuts, sha256 of each booster; checked on load).
No pickle.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.data.credit import economics as econ
from riskml.data.credit.schema import APPLICANT_NUMERIC, CATEGORIES, NO_PROMOTION, PROMOTIONS

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    import xgboost as xgb

FORMAT = "riskml-offer-ranker"
FORMAT_VERSION = 1
META_FILE = "offer_ranker.json"
REWARD_FILE = "reward.ubj"
RANKER_FILE = "ranker.ubj"
PD_COLUMN = "pd_at_offer"
#: Candidate terms an offer must have (``origination_fee`` and ``monthly_payment`` are derived
#: from the economics when absent).
OFFER_TERMS: tuple[str, ...] = ("amount", "term_months", "apr", "promotion")
#: Columns the ranker adds to the offers it returns from :meth:`OfferRanker.rank`.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "p_accept",
    "margin",
    "expected_loss",
    "value",
    "expected_value",
    "score",
    "rank",
)
_PROMO_FLAGS = tuple(p for p in PROMOTIONS if p != NO_PROMOTION)
#: Features both models read, in order (see :func:`candidate_features`).
BASE_FEATURES: tuple[str, ...] = (
    *APPLICANT_NUMERIC,
    "category_code",
    "amount",
    "term_months",
    "apr",
    "origination_fee",
    "monthly_payment",
    *(f"promo_{p}" for p in _PROMO_FLAGS),
    "pd",
    "payment_to_income",
    "amount_to_income",
    "margin",
    "expected_loss",
    "value",
)
#: What the ranker reads on top with ``stack_reward_model``.
STACKED_FEATURES: tuple[str, ...] = ("p_accept_hat", "ev_hat")
#: Customer attributes given as text (:meth:`OfferRanker.rank`).
_TEXT_ATTRIBUTES = ("category", "merchant_id")


class RankingError(ValueError):
    """Offer data, parameters or ranker files are invalid."""


class BoosterParams(BaseModel):
    """Hyper-parameters and schedule of one of the two boosters."""

    model_config = ConfigDict(extra="forbid")

    num_boost_round: int = Field(default=300, ge=1)
    early_stopping_rounds: int | None = Field(
        default=30, ge=1, description="Used only when a validation frame is given."
    )
    eta: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=5, ge=1, le=12)
    min_child_weight: float = Field(default=5.0, ge=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.9, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    max_bin: int = Field(default=256, ge=2)

    def common(self, *, seed: int, nthread: int) -> dict[str, Any]:
        return {
            "tree_method": "hist",
            "eta": self.eta,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "seed": seed,
            "nthread": max(1, int(nthread)),
        }


class RankerParams(BaseModel):
    """How :meth:`OfferRanker.fit` builds labels and trains the two boosters."""

    model_config = ConfigDict(extra="forbid")

    reward: BoosterParams = Field(
        default_factory=lambda: BoosterParams(max_depth=4, num_boost_round=200)
    )
    ranker: BoosterParams = Field(default_factory=BoosterParams)
    labels: Literal["dr", "dm"] = Field(
        default="dr",
        description="dr: doubly robust candidate values (reward model corrected on the shown "
        "candidate); dm: the reward model's values alone (ablation).",
    )
    grading: Literal["impression", "quantile", "rank"] = "impression"
    n_grades: int = Field(default=8, ge=2, le=31)
    cross_fit_folds: int = Field(default=3, ge=2, le=10)
    max_weight: float | None = Field(
        default=50.0,
        gt=1,
        description="Clip of 1/propensity in the reward model's weights (None: no clipping).",
    )
    label_max_weight: float | None = Field(
        default=10.0,
        gt=1,
        description="Clip of 1/propensity in the DR labels' correction (None: no clipping).",
    )
    stack_reward_model: bool = True
    pair_method: Literal["topk", "mean"] = "topk"
    pairs_per_sample: int = Field(
        default=5, ge=1, description="topk: the top positions optimised (NDCG@k); mean: pairs."
    )
    margin_scale: float | None = Field(
        default=1.0,
        gt=0,
        description="Boost the ranker from the reward model's ordering: its base margin is "
        "q / (margin_scale × sd of the training q), so the trees learn corrections to it. "
        "None: start from 0.",
    )
    exp_gain: bool = Field(
        default=False, description="Gain 2^grade - 1 (XGBoost ndcg_exp_gain) instead of grade."
    )
    reward_monotone: dict[str, Literal[-1, 0, 1]] = Field(
        default_factory=dict,
        description="Monotone constraints of P(accept) by base feature, e.g. {'apr': -1}.",
    )
    seed: int = 7


# -- features -----------------------------------------------------------------------------


def _col(frame: pl.DataFrame, name: str) -> np.ndarray:
    import polars as pl

    return frame.get_column(name).cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)


def prepare_offers(frame: pl.DataFrame, *, economics: econ.Economics | None = None) -> pl.DataFrame:
    """Check the candidate columns and fill derivable ones (fee, monthly payment); applicant
    columns missing from ``frame`` become nulls (unknown to the model)."""
    import polars as pl

    missing = [c for c in (*OFFER_TERMS, PD_COLUMN) if c not in frame.columns]
    if missing:
        raise RankingError(f"offers lack columns {missing}")
    if frame.is_empty():
        raise RankingError("no candidate offers")
    for c in (*OFFER_TERMS, PD_COLUMN):
        if frame.get_column(c).null_count():
            raise RankingError(f"{c} has nulls; every candidate needs its terms and a PD")
    pd_values = _col(frame, PD_COLUMN)
    if not np.isfinite(pd_values).all() or ((pd_values < 0) | (pd_values > 1)).any():
        raise RankingError(f"{PD_COLUMN} must be a probability in [0, 1]")
    promo = frame.get_column("promotion").cast(pl.Utf8).to_numpy()
    unknown = sorted(set(promo.tolist()) - set(PROMOTIONS))
    if unknown:
        raise RankingError(f"unknown promotion(s) {unknown}; expected one of {list(PROMOTIONS)}")
    amount, apr = _col(frame, "amount"), _col(frame, "apr")
    term = frame.get_column("term_months").to_numpy()
    adds: list[pl.Series] = []
    try:
        if "origination_fee" not in frame.columns or frame["origination_fee"].null_count():
            fee = econ.origination_fee(amount, term, promo, economics=economics)
            if "origination_fee" in frame.columns:
                fee = np.where(
                    np.isnan(_col(frame, "origination_fee")), fee, frame["origination_fee"]
                )
            adds.append(pl.Series("origination_fee", fee, dtype=pl.Float64))
        if "monthly_payment" not in frame.columns or frame["monthly_payment"].null_count():
            pay = econ.monthly_payment(amount, apr, term, promo, economics=economics)
            if "monthly_payment" in frame.columns:
                pay = np.where(
                    np.isnan(_col(frame, "monthly_payment")), pay, frame["monthly_payment"]
                )
            adds.append(pl.Series("monthly_payment", pay, dtype=pl.Float64))
    except ValueError as exc:
        raise RankingError(f"invalid offer terms: {exc}") from exc
    out = frame.with_columns(adds) if adds else frame
    absent = [c for c in (*APPLICANT_NUMERIC, "category") if c not in out.columns]
    if absent:
        out = out.with_columns(
            [
                pl.lit(None, dtype=pl.Utf8 if c == "category" else pl.Float64).alias(c)
                for c in absent
            ]
        )
    return out


@dataclass(frozen=True)
class CandidateEconomics:
    """The unit economics of each candidate at the PD given (each ``(n,)``)."""

    margin: np.ndarray
    expected_loss: np.ndarray
    value: np.ndarray


def candidate_economics(
    frame: pl.DataFrame, *, economics: econ.Economics | None = None
) -> CandidateEconomics:
    """``margin``, ``expected_loss`` (PD × LGD × EAD) and ``value`` of every candidate row, with
    the frame's ``pd_at_offer`` (via :func:`riskml.data.credit.economics.value_breakdown`)."""
    import polars as pl

    try:
        parts = econ.value_breakdown(
            _col(frame, "amount"),
            frame.get_column("term_months").to_numpy(),
            _col(frame, "apr"),
            _col(frame, "origination_fee"),
            _col(frame, PD_COLUMN),
            promotion=frame.get_column("promotion").cast(pl.Utf8).to_numpy(),
            economics=economics,
        )
    except ValueError as exc:
        raise RankingError(f"invalid offer terms: {exc}") from exc
    return CandidateEconomics(parts.margin, parts.expected_loss, parts.value)


def candidate_features(frame: pl.DataFrame, money: CandidateEconomics) -> np.ndarray:
    """The :data:`BASE_FEATURES` matrix (float64, NaN = missing) of a prepared frame."""
    import polars as pl

    income = _col(frame, "income_monthly")
    safe_income = np.where(income > 0, income, np.nan)
    promo = frame.get_column("promotion").cast(pl.Utf8).to_numpy()
    codes = {c: float(i) for i, c in enumerate(CATEGORIES)}
    category = np.array(
        [codes.get(v, np.nan) for v in frame.get_column("category").cast(pl.Utf8).to_list()]
    )
    cols = [
        *(_col(frame, c) for c in APPLICANT_NUMERIC),
        category,
        _col(frame, "amount"),
        _col(frame, "term_months"),
        _col(frame, "apr"),
        _col(frame, "origination_fee"),
        _col(frame, "monthly_payment"),
        *((promo == p).astype(np.float64) for p in _PROMO_FLAGS),
        _col(frame, PD_COLUMN),
        _col(frame, "monthly_payment") / safe_income,
        _col(frame, "amount") / safe_income,
        money.margin,
        money.expected_loss,
        money.value,
    ]
    return np.column_stack(cols)


# -- labels --------------------------------------------------------------------------------


def doubly_robust_values(
    q_hat: np.ndarray,
    reward: np.ndarray,
    shown: np.ndarray,
    propensity: np.ndarray,
    *,
    max_weight: float | None = None,
) -> np.ndarray:
    """Per-candidate DR value ``q + 1[shown] / π0 × (r − q)`` (``1/π0`` clipped at
    ``max_weight``); ``reward`` is read on shown rows only."""
    shown_b = np.asarray(shown).astype(bool)
    prop = np.asarray(propensity, dtype=np.float64)
    if (prop[shown_b] <= 0).any():
        raise RankingError("shown candidates need a propensity > 0")
    w = np.zeros(len(prop))
    w[shown_b] = 1.0 / prop[shown_b]
    if max_weight is not None:
        w = np.minimum(w, max_weight)
    r = np.where(shown_b, np.nan_to_num(np.asarray(reward, dtype=np.float64)), 0.0)
    return q_hat + w * (r - q_hat)


@dataclass(frozen=True)
class Grading:
    """How continuous values became integer grades (kept in the files for the record)."""

    method: str
    n_grades: int
    cuts: tuple[float, ...]

    def apply(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Grades of ``values`` (``codes``: impression index per row, for per-impression
        grading)."""
        v = np.asarray(values, dtype=np.float64)
        if self.method == "impression":
            top = np.zeros(int(codes.max()) + 1)
            np.maximum.at(top, codes, v)
            scale = np.where(top[codes] > 0, top[codes], 1.0)
            g = np.where(v > 0, np.ceil(v / scale * (self.n_grades - 1)), 0)
        elif self.method == "rank":
            order = np.lexsort((-v, codes))
            c = codes[order]
            first = np.r_[True, c[1:] != c[:-1]]
            start = np.maximum.accumulate(np.where(first, np.arange(len(c)), 0))
            position = np.empty(len(v), dtype=np.int64)
            position[order] = np.arange(len(c)) - start
            g = np.where(v > 0, self.n_grades - 1 - position, 0)
        elif self.method == "quantile":
            g = np.where(v > 0, 1 + np.searchsorted(np.asarray(self.cuts), v, side="right"), 0)
        else:
            raise RankingError(f"unknown grading {self.method!r}")
        return np.clip(g, 0, self.n_grades - 1).astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "n_grades": self.n_grades, "cuts": list(self.cuts)}


def fit_grading(values: np.ndarray, *, method: str, n_grades: int) -> Grading:
    """Cut points from training values (see the module doc)."""
    pos = np.asarray(values, dtype=np.float64)
    pos = pos[pos > 0]
    need = n_grades if method == "quantile" else 1
    if len(pos) < need:
        raise RankingError(
            f"only {len(pos)} candidates have a positive value; {method} grading needs {need}"
        )
    if method == "quantile":
        levels = np.arange(1, n_grades - 1) / (n_grades - 1)
        return Grading(method, n_grades, tuple(float(c) for c in np.quantile(pos, levels)))
    if method in ("impression", "rank"):
        return Grading(method, n_grades, ())
    raise RankingError(f"unknown grading {method!r}")


# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferScores:
    """What the two models say about each candidate row (each ``(n,)``)."""

    p_accept: np.ndarray
    margin: np.ndarray
    expected_loss: np.ndarray
    value: np.ndarray
    expected_value: np.ndarray
    score: np.ndarray


@dataclass
class OfferRanker:
    """Reward model + LambdaMART ranker + the economics they were trained with."""

    reward_booster: xgb.Booster
    rank_booster: xgb.Booster
    params: RankerParams
    economics: econ.Economics
    grading: Grading
    info: dict[str, Any] = field(default_factory=dict)
    #: divisor of q in the ranker's base margin (None: no base margin); see ``margin_scale``
    margin_unit: float | None = None

    @property
    def rank_features(self) -> list[str]:
        extra = list(STACKED_FEATURES) if self.params.stack_reward_model else []
        return [*BASE_FEATURES, *extra]

    # -- training ------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        offers: pl.DataFrame,
        params: RankerParams | None = None,
        *,
        economics: econ.Economics | None = None,
        valid: pl.DataFrame | None = None,
        nthread: int = 1,
    ) -> OfferRanker:
        """Train on logged impressions (the contract's ``offers``); ``valid`` (later
        impressions) drives early stopping of both boosters when given."""
        params = params or RankerParams()
        economics = economics or econ.Economics()
        t0 = time.perf_counter()
        train = _LoggedCandidates.build(offers, economics)
        val = _LoggedCandidates.build(valid, economics) if valid is not None else None

        reward_booster = _fit_reward(train, None, params, nthread=nthread, valid=val)
        rounds = reward_booster.num_boosted_rounds()
        if val is not None and reward_booster.attr("best_iteration") is not None:
            rounds = int(reward_booster.attr("best_iteration") or 0) + 1
        # cross-fitted P(accept): each impression scored by a model that never saw it
        rng = np.random.default_rng(params.seed)
        fold_of_imp = rng.permutation(train.n_impressions) % params.cross_fit_folds
        fold = fold_of_imp[train.codes]
        p_oof = np.empty(train.n_rows)
        for f in range(params.cross_fit_folds):
            booster = _fit_reward(train, fold != f, params, nthread=nthread, rounds=rounds)
            p_oof[fold == f] = _predict(booster, train.x[fold == f])
        values = _label_values(train, p_oof, params)
        grading = fit_grading(values, method=params.grading, n_grades=params.n_grades)
        grades = grading.apply(values, train.codes)
        q_oof = p_oof * train.money.value
        unit = None
        if params.margin_scale is not None:
            unit = params.margin_scale * max(float(np.std(q_oof)), 1e-9)
        x_rank = _rank_matrix(train, p_oof, params)
        valid_set = None
        if val is not None:
            p_val = _predict(reward_booster, val.x)
            valid_set = _RankData(
                _rank_matrix(val, p_val, params),
                grading.apply(_label_values(val, p_val, params), val.codes),
                val.codes,
                None if unit is None else p_val * val.money.value / unit,
            )
        train_set = _RankData(x_rank, grades, train.codes, None if unit is None else q_oof / unit)
        rank_booster = _fit_ranker(train_set, params, valid_set, nthread)
        info = {
            "n_impressions": train.n_impressions,
            "n_candidates": train.n_rows,
            "valid_impressions": val.n_impressions if val is not None else 0,
            "reward_rounds": reward_booster.num_boosted_rounds(),
            "reward_rounds_used": rounds,
            "rank_rounds": rank_booster.num_boosted_rounds(),
            "grade_counts": np.bincount(grades, minlength=params.n_grades).tolist(),
            "seconds": time.perf_counter() - t0,
        }
        return cls(reward_booster, rank_booster, params, economics, grading, info, unit)

    # -- scoring -------------------------------------------------------------------------

    def score_frame(self, frame: pl.DataFrame) -> OfferScores:
        """Score candidate rows (offers-log layout: applicant columns, terms, ``pd_at_offer``)."""
        prepared = prepare_offers(frame, economics=self.economics)
        money = candidate_economics(prepared, economics=self.economics)
        x = candidate_features(prepared, money)
        p = _predict(self.reward_booster, x)
        ev = p * money.value
        x_rank = np.column_stack([x, p, ev]) if self.params.stack_reward_model else x
        margin = None if self.margin_unit is None else ev / self.margin_unit
        score = _predict(self.rank_booster, x_rank, base_margin=margin)
        return OfferScores(p, money.margin, money.expected_loss, money.value, ev, score)

    def rank(
        self,
        customer: Mapping[str, Any],
        offers: pl.DataFrame | Sequence[Mapping[str, Any]],
        pd: float | Sequence[float] | np.ndarray,
    ) -> pl.DataFrame:
        """The customer's candidate ``offers`` sorted best first by the ranker, each with
        ``p_accept``, ``margin``, ``expected_loss``, ``value`` (= margin − PD×LGD×EAD),
        ``expected_value`` (= p_accept × value), ``score`` and ``rank`` (1 = best).

        ``customer``: applicant attributes (:data:`APPLICANT_NUMERIC`, ``category``; absent ones
        are unknown). ``pd``: one PD for all offers or one per offer (a PD model that reads the
        amount and term gives one per offer).
        """
        import polars as pl

        frame = offers if isinstance(offers, pl.DataFrame) else pl.DataFrame(list(offers))
        if frame.is_empty():
            raise RankingError("no candidate offers to rank")
        clash = sorted(set(frame.columns) & set(customer))
        if clash:
            raise RankingError(f"given both as customer attributes and offer columns: {clash}")
        unknown = sorted(set(customer) - {*APPLICANT_NUMERIC, *_TEXT_ATTRIBUTES})
        if unknown:
            raise RankingError(f"unknown customer attributes {unknown}")
        try:
            pd_arr = np.broadcast_to(np.asarray(pd, dtype=np.float64), (frame.height,)).copy()
        except ValueError as exc:
            raise RankingError(f"pd: one value or one per offer ({frame.height}): {exc}") from exc
        attrs = [
            pl.Series(k, [v] * frame.height, dtype=pl.Utf8 if k in _TEXT_ATTRIBUTES else pl.Float64)
            for k, v in customer.items()
        ]
        full = prepare_offers(
            frame.with_columns([pl.Series(PD_COLUMN, pd_arr), *attrs]), economics=self.economics
        )
        scores = self.score_frame(full)
        keep = [*frame.columns]
        keep += [c for c in ("origination_fee", "monthly_payment", PD_COLUMN) if c not in keep]
        out = full.select(keep).with_columns(
            pl.Series("p_accept", scores.p_accept),
            pl.Series("margin", scores.margin),
            pl.Series("expected_loss", scores.expected_loss),
            pl.Series("value", scores.value),
            pl.Series("expected_value", scores.expected_value),
            pl.Series("score", scores.score),
        )
        order = np.lexsort((-scores.expected_value, -scores.score))
        return out[order.tolist()].with_columns(
            pl.Series("rank", np.arange(1, frame.height + 1, dtype=np.int64))
        )

    # -- files ---------------------------------------------------------------------------

    def to_bytes(self) -> dict[str, bytes]:
        """``{file name: bytes}`` of :meth:`to_files` (UBJSON boosters + the JSON document)."""
        reward = bytes(self.reward_booster.save_raw(raw_format="ubj"))
        ranker = bytes(self.rank_booster.save_raw(raw_format="ubj"))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "base_features": list(BASE_FEATURES),
            "rank_features": self.rank_features,
            "params": self.params.model_dump(mode="json"),
            "economics": self.economics.model_dump(mode="json"),
            "grading": self.grading.to_json(),
            "margin_unit": self.margin_unit,
            "info": _jsonable(self.info),
            "files": {
                REWARD_FILE: hashlib.sha256(reward).hexdigest(),
                RANKER_FILE: hashlib.sha256(ranker).hexdigest(),
            },
        }
        text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
        return {REWARD_FILE: reward, RANKER_FILE: ranker, META_FILE: text.encode()}

    def to_files(self, directory: Path | str) -> Path:
        """Write the ranker under ``directory`` (created); returns it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_bytes().items():
            (out / name).write_bytes(data)
        return out

    @classmethod
    def from_bytes(cls, files: Mapping[str, bytes], *, nthread: int = 1) -> OfferRanker:
        """Rebuild from :meth:`to_bytes`; refuses changed bytes or mismatched features."""
        import xgboost as xgb

        missing = [n for n in (META_FILE, REWARD_FILE, RANKER_FILE) if n not in files]
        if missing:
            raise RankingError(f"ranker files missing: {missing}")
        try:
            meta = json.loads(files[META_FILE])
        except (ValueError, UnicodeDecodeError) as exc:
            raise RankingError(f"{META_FILE} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise RankingError(
                f"not an offer ranker of format {FORMAT} v{FORMAT_VERSION}: "
                f"{meta.get('format')} v{meta.get('format_version')}"
            )
        for name, digest in meta["files"].items():
            if hashlib.sha256(files[name]).hexdigest() != digest:
                raise RankingError(f"{name} differs from its sha256 in {META_FILE}")
        if list(meta["base_features"]) != list(BASE_FEATURES):
            raise RankingError("the files' features differ from this version's BASE_FEATURES")
        params = RankerParams.model_validate(meta["params"])
        g = meta["grading"]
        grading = Grading(str(g["method"]), int(g["n_grades"]), tuple(float(c) for c in g["cuts"]))
        boosters = []
        for name, expect in (
            (REWARD_FILE, list(BASE_FEATURES)),
            (RANKER_FILE, meta["rank_features"]),
        ):
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(files[name]))
            except xgb.core.XGBoostError as exc:
                raise RankingError(f"{name} is not an XGBoost UBJSON model: {exc}") from exc
            if list(booster.feature_names or []) != list(expect):
                raise RankingError(f"{name}: feature names differ from {META_FILE}")
            booster.set_param({"nthread": nthread})
            boosters.append(booster)
        return cls(
            reward_booster=boosters[0],
            rank_booster=boosters[1],
            params=params,
            economics=econ.Economics.model_validate(meta["economics"]),
            grading=grading,
            margin_unit=None if meta.get("margin_unit") is None else float(meta["margin_unit"]),
            info=dict(meta.get("info") or {}),
        )

    @classmethod
    def from_files(cls, directory: Path | str, *, nthread: int = 1) -> OfferRanker:
        d = Path(directory)
        files = {}
        for name in (META_FILE, REWARD_FILE, RANKER_FILE):
            if not (d / name).is_file():
                raise RankingError(f"{d}: missing ranker file {name}")
            files[name] = (d / name).read_bytes()
        return cls.from_bytes(files, nthread=nthread)


# -- internals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _LoggedCandidates:
    """A logged offers frame sorted by impression and candidate, as model inputs."""

    frame: pl.DataFrame
    x: np.ndarray
    money: CandidateEconomics
    codes: np.ndarray  # impression index per row, non-decreasing
    shown: np.ndarray  # bool
    accepted: np.ndarray  # 0/1 on shown rows, 0 elsewhere
    propensity: np.ndarray
    reward: np.ndarray  # logged reward on shown rows, 0 elsewhere

    @property
    def n_rows(self) -> int:
        return len(self.codes)

    @property
    def n_impressions(self) -> int:
        return int(self.codes[-1]) + 1

    @classmethod
    def build(cls, offers: pl.DataFrame, economics: econ.Economics) -> _LoggedCandidates:
        import polars as pl

        need = ["impression_id", "candidate", "shown", "propensity", "accepted"]
        missing = [c for c in need if c not in offers.columns]
        if missing:
            raise RankingError(f"logged offers lack columns {missing}")
        frame = prepare_offers(offers, economics=economics).sort(["impression_id", "candidate"])
        shown = frame.get_column("shown").fill_null(0).to_numpy().astype(bool)
        codes = frame.get_column("impression_id").rank("dense").to_numpy().astype(np.int64) - 1
        per = np.bincount(codes[shown], minlength=int(codes[-1]) + 1)
        if (per != 1).any():
            bad = int((per != 1).sum())
            raise RankingError(f"every impression needs exactly one shown candidate; {bad} do not")
        accepted_col = frame.get_column("accepted").cast(pl.Float64).to_numpy()
        if np.isnan(accepted_col[shown]).any():
            raise RankingError("accepted is null on a shown candidate")
        accepted = np.where(shown, np.nan_to_num(accepted_col), 0.0)
        prop = _col(frame, "propensity")
        if not np.isfinite(prop).all() or (prop <= 0).any() or (prop > 1).any():
            raise RankingError("propensity must lie in (0, 1]")
        money = candidate_economics(frame, economics=economics)
        if "value" in frame.columns:
            logged = _col(frame, "value")
            reward = np.where(shown, np.nan_to_num(logged), 0.0)
        else:
            reward = accepted * money.value
        return cls(
            frame=frame,
            x=candidate_features(frame, money),
            money=money,
            codes=codes,
            shown=shown,
            accepted=accepted,
            propensity=prop,
            reward=reward,
        )


def _predict(
    booster: xgb.Booster, x: np.ndarray, *, base_margin: np.ndarray | None = None
) -> np.ndarray:
    best = booster.attr("best_iteration")
    rng = (0, int(best) + 1) if best is not None else (0, 0)
    out = booster.inplace_predict(
        np.ascontiguousarray(x, dtype=np.float32), iteration_range=rng, base_margin=base_margin
    )
    return np.asarray(out, dtype=np.float64)


def _reward_weights(data: _LoggedCandidates, rows: np.ndarray, clip: float | None) -> np.ndarray:
    w = 1.0 / data.propensity[rows]
    if clip is not None:
        w = np.minimum(w, clip)
    return w / w.mean()


def _fit_reward(
    data: _LoggedCandidates,
    mask: np.ndarray | None,
    params: RankerParams,
    *,
    nthread: int,
    valid: _LoggedCandidates | None = None,
    rounds: int | None = None,
) -> xgb.Booster:
    """P(accept) on the shown candidates (of ``mask`` rows), IPS-weighted."""
    import xgboost as xgb

    rows = data.shown if mask is None else data.shown & mask
    idx = np.flatnonzero(rows)
    y = data.accepted[idx]
    if y.min() == y.max():
        raise RankingError("the shown candidates are all accepted or all declined")
    p = params.reward
    names = list(BASE_FEATURES)
    dtrain = xgb.DMatrix(
        data.x[idx],
        label=y,
        weight=_reward_weights(data, idx, params.max_weight),
        feature_names=names,
        nthread=nthread,
    )
    booster_params = {
        **p.common(seed=params.seed, nthread=nthread),
        "objective": "binary:logistic",
        "eval_metric": "logloss",
    }
    if params.reward_monotone:
        unknown = sorted(set(params.reward_monotone) - set(names))
        if unknown:
            raise RankingError(f"reward_monotone names unknown features {unknown}")
        booster_params["monotone_constraints"] = (
            "(" + ",".join(str(params.reward_monotone.get(n, 0)) for n in names) + ")"
        )
    evals: list[tuple[Any, str]] = []
    callbacks: list[Any] = []
    if valid is not None and rounds is None:
        vidx = np.flatnonzero(valid.shown)
        dvalid = xgb.DMatrix(
            valid.x[vidx],
            label=valid.accepted[vidx],
            weight=_reward_weights(valid, vidx, params.max_weight),
            feature_names=names,
            nthread=nthread,
        )
        evals.append((dvalid, "valid"))
        if p.early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(rounds=p.early_stopping_rounds, save_best=False)
            )
    return xgb.train(
        booster_params,
        dtrain,
        num_boost_round=rounds or p.num_boost_round,
        evals=evals,
        callbacks=callbacks,
        verbose_eval=False,
    )


def _label_values(
    data: _LoggedCandidates, p_accept: np.ndarray, params: RankerParams
) -> np.ndarray:
    q = p_accept * data.money.value
    if params.labels == "dm":
        return q
    return doubly_robust_values(
        q, data.reward, data.shown, data.propensity, max_weight=params.label_max_weight
    )


def _rank_matrix(data: _LoggedCandidates, p_accept: np.ndarray, params: RankerParams) -> np.ndarray:
    if not params.stack_reward_model:
        return data.x
    return np.column_stack([data.x, p_accept, p_accept * data.money.value])


@dataclass(frozen=True)
class _RankData:
    x: np.ndarray
    grades: np.ndarray
    codes: np.ndarray
    base_margin: np.ndarray | None

    def dmatrix(self, names: list[str], nthread: int) -> xgb.DMatrix:
        import xgboost as xgb

        return xgb.DMatrix(
            self.x, label=self.grades, qid=self.codes, base_margin=self.base_margin,
            feature_names=names, nthread=nthread,
        )  # fmt: skip


def _fit_ranker(
    train: _RankData, params: RankerParams, valid: _RankData | None, nthread: int
) -> xgb.Booster:
    import xgboost as xgb

    p = params.ranker
    names = list(BASE_FEATURES) + (list(STACKED_FEATURES) if params.stack_reward_model else [])
    k = params.pairs_per_sample
    booster_params = {
        **p.common(seed=params.seed, nthread=nthread),
        "objective": "rank:ndcg",
        "eval_metric": f"ndcg@{k if params.pair_method == 'topk' else 5}",
        "lambdarank_pair_method": params.pair_method,
        "lambdarank_num_pair_per_sample": k,
        "ndcg_exp_gain": params.exp_gain,
    }
    evals: list[tuple[Any, str]] = []
    callbacks: list[Any] = []
    if valid is not None:
        evals.append((valid.dmatrix(names, nthread), "valid"))
        if p.early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=p.early_stopping_rounds, maximize=True, save_best=False
                )
            )
    return xgb.train(
        booster_params,
        train.dmatrix(names, nthread),
        num_boost_round=p.num_boost_round,
        evals=evals,
        callbacks=callbacks,
        verbose_eval=False,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
