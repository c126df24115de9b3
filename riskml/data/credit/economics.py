"""Unit economics of an instalment loan: payments, amortisation, margin, expected loss, value.

Pure, vectorised numpy: every function takes scalars or 1-D arrays (broadcast together) and
returns 1-D ``float64`` arrays (length 1 for all-scalar input). Nothing here reads data or state.

Definitions (all amounts in the loan's currency, undiscounted sums over the schedule):

* **Monthly rate** ``r = apr / 12``. **Annuity payment** ``P = A r (1+r)^n / ((1+r)^n - 1)``,
  ``A / n`` at ``r = 0`` (1,000 over 12 months at 12 % APR: 88.85).
* **Schedule** (:func:`amortisation_schedule`): month ``t`` accrues ``interest_t = B_{t-1} r_t``
  on the opening balance; the payment ``P`` (0 in a month with no payment due) pays interest
  first, the rest reduces the balance. The level payment is solved so the balance ends at 0
  exactly, whatever the month rates, so the principal column always sums to the amount.
* **Promotions** change the cash flows (:data:`~riskml.data.credit.schema.PROMOTIONS`):
  ``zero_apr_promo``: no interest in the first ``Economics.promo_months`` months;
  ``fee_waiver``: the origination fee is not charged (no fee income);
  ``first_payment_holiday``: the first payment is deferred one month (the schedule runs
  ``term + 1`` months with ``term`` payments; the holiday month's interest is capitalised).
* **Margin** (:func:`margin`) = interest income + fee income - cost of funds (``cost_of_funds /
  12`` on every month's opening balance) - servicing cost (``servicing_cost_monthly`` per month
  of the schedule): what the loan earns if it runs to term.
* **EAD** (:func:`exposure_at_default`): the mean opening balance over the first
  ``min(ead_horizon_months, schedule length)`` months (a default within 12 months on book
  happens on a balance somewhere along that path).
* **Expected loss** = PD x LGD x EAD; **offer value** (:func:`offer_value`) = margin - expected
  loss: the expected contribution of booking the loan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskml.data.credit.schema import NO_PROMOTION, PROMOTIONS, TERMS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Economics(BaseModel):
    """Portfolio-level economic assumptions (defaults: a pay-over-time lender)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lgd: float = Field(0.85, ge=0, le=1, description="Loss given default (share of EAD).")
    cost_of_funds: float = Field(0.05, ge=0, le=1, description="Annual rate on the balance.")
    servicing_cost_monthly: float = Field(1.0, ge=0, description="Per loan per schedule month.")
    promo_months: int = Field(3, ge=1, le=24, description="zero_apr_promo: interest-free months.")
    ead_horizon_months: int = Field(12, ge=1, le=60, description="Months averaged for EAD.")
    fee_rate_by_term: dict[int, float] = Field(
        default_factory=lambda: {3: 0.0, 6: 0.01, 12: 0.02, 24: 0.03},
        description="Origination fee as a share of the amount, by term (months).",
    )
    fee_cap: float = Field(150.0, ge=0, description="Maximum origination fee.")

    @field_validator("fee_rate_by_term")
    @classmethod
    def _all_terms(cls, value: dict[int, float]) -> dict[int, float]:
        missing = sorted(set(TERMS) - set(value))
        if missing:
            raise ValueError(f"fee_rate_by_term lacks terms {missing}")
        bad = {k: v for k, v in value.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"fee rates must be in [0, 1], got {bad}")
        return value


@dataclass(frozen=True)
class Schedule:
    """An amortisation schedule per loan: arrays of shape ``(n_loans, months)``, month ``t`` in
    column ``t - 1``, zeros after a loan's own ``length``."""

    payment: FloatArray
    interest: FloatArray
    principal: FloatArray
    opening_balance: FloatArray
    closing_balance: FloatArray
    level_payment: FloatArray  # (n,): the payment due in every month with one due
    length: IntArray  # (n,): months in the schedule (term, + 1 with a payment holiday)

    @property
    def total_interest(self) -> FloatArray:
        return np.asarray(self.interest.sum(axis=1), dtype=np.float64)

    @property
    def total_paid(self) -> FloatArray:
        return np.asarray(self.payment.sum(axis=1), dtype=np.float64)


@dataclass(frozen=True)
class ValueBreakdown:
    """The parts of :func:`offer_value`, each ``(n,)`` (and the loan's level payment)."""

    monthly_payment: FloatArray
    interest_income: FloatArray
    fee_income: FloatArray
    funding_cost: FloatArray
    servicing_cost: FloatArray
    margin: FloatArray
    ead: FloatArray
    expected_loss: FloatArray
    value: FloatArray


_DEFAULT = Economics()


def _econ(economics: Economics | None) -> Economics:
    return _DEFAULT if economics is None else economics


def _promotions(promotion: Any, n: int) -> npt.NDArray[np.str_]:
    promo = np.broadcast_to(np.asarray(promotion, dtype=str), (n,))
    known = np.zeros(n, dtype=bool)
    for name in PROMOTIONS:  # a few vectorised comparisons: cheaper than np.unique on strings
        known |= promo == name
    if not known.all():
        unknown = sorted(set(promo[~known].tolist()))
        raise ValueError(f"unknown promotion(s) {unknown}; expected one of {list(PROMOTIONS)}")
    return promo


def _broadcast(**arrays: Any) -> tuple[int, dict[str, FloatArray]]:
    values = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    for name, v in values.items():
        if v.ndim > 1:
            raise ValueError(f"{name} must be a scalar or 1-D, got shape {v.shape}")
    try:
        shape = np.broadcast_shapes(*(v.shape for v in values.values()))
    except ValueError as exc:
        lengths = {k: v.shape for k, v in values.items()}
        raise ValueError(f"inputs of different lengths: {lengths}") from exc
    n = int(shape[0]) if shape else 1
    out = {k: np.broadcast_to(v, (n,)).astype(np.float64) for k, v in values.items()}
    for name, v in out.items():
        if not np.isfinite(v).all():
            raise ValueError(f"{name} must be finite")
    return n, out


def _terms(term_months: Any, n: int) -> IntArray:
    term = np.broadcast_to(np.asarray(term_months), (n,))
    as_int = term.astype(np.int64)
    if not np.array_equal(as_int, term) or (as_int < 1).any():
        raise ValueError("term_months must be positive whole numbers of months")
    return as_int


def monthly_rate(apr: Any) -> FloatArray:
    """``apr / 12`` (nominal annual rate compounded monthly)."""
    return np.atleast_1d(np.asarray(apr, dtype=np.float64)) / 12.0


def annuity_payment(amount: Any, apr: Any, term_months: Any) -> FloatArray:
    """Level monthly payment that repays ``amount`` over ``term_months`` at ``apr``."""
    n, v = _broadcast(amount=amount, apr=apr)
    term = _terms(term_months, n).astype(np.float64)
    r = v["apr"] / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = (1.0 + r) ** term
        pay = v["amount"] * r * growth / (growth - 1.0)
    return np.where(r == 0, v["amount"] / term, pay)


def amortisation_schedule(
    amount: Any,
    apr: Any,
    term_months: Any,
    promotion: Any = NO_PROMOTION,
    *,
    economics: Economics | None = None,
) -> Schedule:
    """The month-by-month schedule of each loan (see the module doc for promotions)."""
    econ = _econ(economics)
    n, v = _broadcast(amount=amount, apr=apr)
    if (v["amount"] <= 0).any():
        raise ValueError("amount must be > 0")
    if ((v["apr"] < 0) | (v["apr"] > 1)).any():
        raise ValueError("apr must be a fraction in [0, 1]")
    term = _terms(term_months, n)
    promo = _promotions(promotion, n)
    holiday = (promo == "first_payment_holiday").astype(np.int64)
    length = term + holiday
    width = int(length.max())
    month = np.arange(1, width + 1)[None, :]  # 1-based month t
    active = month <= length[:, None]
    due = active & (month > holiday[:, None])
    rate = np.broadcast_to((v["apr"] / 12.0)[:, None], (n, width)).copy()
    rate[(promo == "zero_apr_promo")[:, None] & (month <= econ.promo_months)] = 0.0
    rate[~active] = 0.0
    # level payment P with B_L = 0: A * prod(1 + r_t) = P * sum_{t due} prod_{j > t}(1 + r_j)
    growth = 1.0 + rate
    from_t = np.cumprod(growth[:, ::-1], axis=1)[:, ::-1]  # prod_{j >= t}
    after_t = np.concatenate([from_t[:, 1:], np.ones((n, 1))], axis=1)  # prod_{j > t}
    level = v["amount"] * from_t[:, 0] / (due * after_t).sum(axis=1)

    payment = np.where(due, level[:, None], 0.0)
    interest = np.zeros((n, width))
    opening = np.zeros((n, width))
    closing = np.zeros((n, width))
    balance = v["amount"].copy()
    for j in range(width):
        opening[:, j] = np.where(active[:, j], balance, 0.0)
        interest[:, j] = opening[:, j] * rate[:, j]
        balance = np.where(active[:, j], balance + interest[:, j] - payment[:, j], balance)
        last = length == j + 1
        balance = np.where(last, 0.0, balance)  # absorb float residue (~1e-12) at the end
        closing[:, j] = np.where(active[:, j], balance, 0.0)
    principal = np.where(active, opening - closing, 0.0)
    return Schedule(
        payment=payment,
        interest=interest,
        principal=principal,
        opening_balance=opening,
        closing_balance=closing,
        level_payment=level,
        length=length,
    )


def monthly_payment(
    amount: Any,
    apr: Any,
    term_months: Any,
    promotion: Any = NO_PROMOTION,
    *,
    economics: Economics | None = None,
) -> FloatArray:
    """The level payment of each loan, promotions included (plain annuity without one)."""
    return amortisation_schedule(
        amount, apr, term_months, promotion, economics=economics
    ).level_payment


def origination_fee(
    amount: Any,
    term_months: Any,
    promotion: Any = NO_PROMOTION,
    *,
    economics: Economics | None = None,
) -> FloatArray:
    """The standard fee: ``fee_rate_by_term[term] * amount``, capped at ``fee_cap``, rounded to
    cents; 0 with ``fee_waiver``."""
    econ = _econ(economics)
    n, v = _broadcast(amount=amount)
    term = _terms(term_months, n)
    unknown = sorted(set(np.unique(term).tolist()) - set(econ.fee_rate_by_term))
    if unknown:
        raise ValueError(f"no fee rate for term(s) {unknown}")
    rate = np.vectorize(econ.fee_rate_by_term.__getitem__, otypes=[np.float64])(term)
    fee = np.round(np.minimum(rate * v["amount"], econ.fee_cap), 2)
    return np.where(_promotions(promotion, n) == "fee_waiver", 0.0, fee)


def fee_income(fee: Any, promotion: Any = NO_PROMOTION) -> FloatArray:
    """The fee actually earned: ``fee``, or 0 under ``fee_waiver``."""
    n, v = _broadcast(fee=fee)
    return np.where(_promotions(promotion, n) == "fee_waiver", 0.0, v["fee"])


def exposure_at_default(
    amount: Any,
    term_months: Any,
    apr: Any,
    promotion: Any = NO_PROMOTION,
    *,
    economics: Economics | None = None,
) -> FloatArray:
    """Mean opening balance over the first ``min(ead_horizon_months, length)`` months."""
    return value_breakdown(
        amount, term_months, apr, 0.0, 0.0, promotion=promotion, economics=economics
    ).ead


def expected_loss(pd: Any, lgd: Any, ead: Any) -> FloatArray:
    """``pd * lgd * ead`` (PD and LGD in [0, 1])."""
    _, v = _broadcast(pd=pd, lgd=lgd, ead=ead)
    for name in ("pd", "lgd"):
        if ((v[name] < 0) | (v[name] > 1)).any():
            raise ValueError(f"{name} must be in [0, 1]")
    return v["pd"] * v["lgd"] * v["ead"]


def value_breakdown(
    amount: Any,
    term_months: Any,
    apr: Any,
    fee: Any,
    pd: Any,
    *,
    promotion: Any = NO_PROMOTION,
    lgd: float | None = None,
    cost_of_funds: float | None = None,
    economics: Economics | None = None,
) -> ValueBreakdown:
    """Every part of :func:`offer_value`. ``lgd`` / ``cost_of_funds`` override ``economics``."""
    econ = _econ(economics)
    updates: dict[str, float] = {}
    if lgd is not None:
        updates["lgd"] = lgd
    if cost_of_funds is not None:
        updates["cost_of_funds"] = cost_of_funds
    if updates:
        econ = Economics.model_validate({**econ.model_dump(), **updates})
    n, v = _broadcast(amount=amount, apr=apr, fee=fee, pd=pd)
    promo = _promotions(promotion, n)
    sched = amortisation_schedule(v["amount"], v["apr"], term_months, promo, economics=econ)
    interest = sched.total_interest
    fees = fee_income(v["fee"], promo)
    funding = sched.opening_balance.sum(axis=1) * econ.cost_of_funds / 12.0
    servicing = sched.length * econ.servicing_cost_monthly
    margin = interest + fees - funding - servicing
    months = np.minimum(sched.length, econ.ead_horizon_months)
    window = np.arange(1, sched.opening_balance.shape[1] + 1)[None, :] <= months[:, None]
    ead = (sched.opening_balance * window).sum(axis=1) / months
    loss = expected_loss(v["pd"], econ.lgd, ead)
    return ValueBreakdown(
        monthly_payment=sched.level_payment,
        interest_income=interest,
        fee_income=fees,
        funding_cost=funding,
        servicing_cost=servicing.astype(np.float64),
        margin=margin,
        ead=ead,
        expected_loss=loss,
        value=margin - loss,
    )


def margin(
    amount: Any,
    term_months: Any,
    apr: Any,
    fee: Any,
    *,
    promotion: Any = NO_PROMOTION,
    economics: Economics | None = None,
) -> FloatArray:
    """Interest + fee income - cost of funds - servicing cost over the schedule."""
    return value_breakdown(
        amount, term_months, apr, fee, 0.0, promotion=promotion, economics=economics
    ).margin


def offer_value(
    amount: Any,
    term_months: Any,
    apr: Any,
    fee: Any,
    pd: Any,
    *,
    promotion: Any = NO_PROMOTION,
    lgd: float | None = None,
    cost_of_funds: float | None = None,
    economics: Economics | None = None,
) -> FloatArray:
    """``margin - pd * lgd * ead``: the expected value of booking each loan/offer."""
    return value_breakdown(
        amount,
        term_months,
        apr,
        fee,
        pd,
        promotion=promotion,
        lgd=lgd,
        cost_of_funds=cost_of_funds,
        economics=economics,
    ).value
