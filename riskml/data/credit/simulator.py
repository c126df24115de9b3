"""Credit portfolio simulator: instalment loans by vintage, their monthly repayment paths, and
logged offer impressions for returning customers.

``simulate_portfolio(config)`` returns a :class:`Portfolio` of three polars frames (schemas in
:mod:`riskml.data.credit.schema`), deterministic for a seed: the same config gives equal frames.
Each part draws from its own random stream (customers; loans of month ``m``; offers of month
``m``), so changing the offer knobs leaves the loans as they were.

How the world works
-------------------
* **Customers** (``n_customers``, a pool drawn up front) have a latent creditworthiness ``z``, an
  unobserved risk ``hidden`` (what no bureau sees), income, age, tenure at work, an appetite for
  credit (``hunger``: more inquiries, more acceptance, more risk), existing debt, a favourite
  merchant category, a need (the amount they want, relative to income) and a price sensitivity.
* **Loans.** Every month (a *vintage*) ``loans_per_month`` loans are booked, a share
  ``returning_share`` to returning customers (who had a loan before and never reached 90+ days
  past due with us), the rest to new customers from the pool. Bureau-like attributes are drawn at
  each application from the customer's latent traits (score, delinquencies, inquiries,
  utilisation, open accounts, debt-to-income), and the customer's history with us is as known at
  the previous month end (tenure, prior loans, worst days past due: a delinquency with us lowers
  the score and adds a reported delinquency). Amount by category and income, term by amount,
  promotion, and an APR priced from the lender's own noisy view of the applicant's risk (some
  short loans are 0 % APR, merchant-funded); fee and payment from
  :mod:`riskml.data.credit.economics`.
* **True PD** (:func:`true_logit`): a logistic model of the attributes and the loan's payment
  burden with non-linear terms (a convex score effect, an over-limit utilisation kink, a DTI
  kink) and interactions (thin files make a low score worse; utilisation x delinquencies;
  payment-to-income hurts low incomes more), monotone where risk must be
  (:data:`~riskml.data.credit.schema.MONOTONE_RISK`), plus the unobserved part (the customer's
  ``hidden``, loan noise, a merchant effect) and a vintage (macro) shift: vintages around
  ``macro_shock_month`` are worse by up to ``macro_shock`` on the logit scale.
* **Repayment paths.** Default (90+ days past due within 12 months on book) is drawn with the
  true PD; a defaulter stops paying from one payment on and rolls 30 -> 60 -> 90 days past due
  (default) three months later. Others may have one delinquency episode (30, sometimes 60 days,
  then cured: more likely for riskier loans), or prepay in full (a monthly hazard that grows with
  the APR), or run to term (closed). No default after 12 months on book is modelled.
* **Snapshots.** Month on book (mob) 1 is the origination month; every snapshot is at the
  month's last second (UTC). Payment ``j`` falls due ``j`` months after the application (one more
  with a payment holiday), so a payment missed is first seen at the next month end, and the
  earliest default is mob 4. Only snapshots up to ``observation_end`` are in ``performance``.
* **Labels mature by vintage**: ``default_12m`` is null unless the label is mature by
  ``observation_end`` (the default observed, or 12 months on book passed).
* **Offers.** From the second month on, ``offers_per_month`` impressions go to returning
  customers (eligible as above). Each has ``candidates`` offers drawn without replacement from a
  grid of amount (0.25-2 x monthly income) x term x APR (the customer's price -0.05/0/+0.05) x
  promotion. The logging policy shows one with probability ``softmax(log(amount) /
  temperature)`` (it prefers larger amounts), logged as ``propensity``. The customer accepts
  with a true choice model (lower APR, an amount near their need, an affordable payment,
  promotions, credit appetite and loyalty raise acceptance). ``pd_at_offer`` is the logging
  system's PD (true PD without the unobserved part, with model noise); ``value`` uses it;
  ``sim_pd``, ``sim_p_accept`` and ``sim_ev = sim_p_accept x offer_value(sim_pd)`` are the truth
  for every candidate. Accepted offers are not added to ``loans``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskml.data.credit import economics as econ
from riskml.data.credit.schema import (
    APPLICANT_NUMERIC,
    CATEGORIES,
    DEFAULT_DPD,
    LABEL_MONTHS,
    LOAN_COLUMN_NAMES,
    OFFER_COLUMN_NAMES,
    PERFORMANCE_COLUMN_NAMES,
    PROMOTIONS,
    SCHEMA_VERSION,
    TERMS,
    validate_portfolio,
)
from riskml.data.schema import SchemaError

FloatArray = econ.FloatArray

MANIFEST = "manifest.json"
LOANS_FILE = "loans.parquet"
PERFORMANCE_FILE = "performance.parquet"
OFFERS_FILE = "offers.parquet"
PORTFOLIO_FILES = (MANIFEST, LOANS_FILE, PERFORMANCE_FILE, OFFERS_FILE)
MANIFEST_KIND = "credit_portfolio"

_US = 1_000_000
_CAT_MIX = np.array([0.24, 0.26, 0.12, 0.18, 0.12, 0.08])  # order of CATEGORIES
_CAT_AMOUNT = np.array([700.0, 220.0, 1100.0, 900.0, 550.0, 1400.0])
_CAT_RISK = {
    "electronics": 0.10,
    "fashion": 0.0,
    "travel": 0.25,
    "home": -0.10,
    "health": -0.05,
    "education": 0.15,
}
_MERCHANTS_PER_CATEGORY = 30
_PROMO_MIX = np.array([0.70, 0.12, 0.10, 0.08])  # order of PROMOTIONS
#: Offer grid: amount as a multiple of monthly income, and APR offsets from the customer's price.
OFFER_AMOUNT_MULTIPLES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
OFFER_APR_OFFSETS: tuple[float, ...] = (-0.05, 0.0, 0.05)
MAX_APR = 0.36
_MAX_MOB = max(TERMS) + 1 + 3  # longest path: holiday + a 60-day episode on the last payment


class LoanSimConfig(BaseModel):
    """What :func:`simulate_portfolio` simulates. Defaults: 24 vintages x 2,500 loans (60,000,
    half of them with mature labels at the end) and 23 x 420 impressions x 8 candidates, about a
    second."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    n_customers: int = Field(50_000, ge=1, description="Customer pool (new customers).")
    start: dt.date = Field(dt.date(2023, 1, 1), description="First vintage; the 1st of a month.")
    months: int = Field(24, ge=1, le=240, description="Vintages (calendar months).")
    loans_per_month: int = Field(2_500, ge=1)
    returning_share: float = Field(0.3, ge=0, le=1, description="Loans to returning customers.")
    observation_end: dt.datetime | None = Field(
        None, description="As-of time for labels and snapshots; default: the end of the period."
    )
    offers_per_month: int = Field(420, ge=0, description="Impressions per month (from month 2).")
    candidates: int = Field(8, ge=2, le=64, description="Candidate offers per impression.")
    temperature: float = Field(0.5, gt=0, description="Logging policy softmax temperature.")
    macro_shock: float = Field(0.35, ge=0, le=3, description="Worst vintage's logit shift.")
    macro_shock_month: int = Field(6, ge=0, description="Vintage index of the worst vintage.")
    macro_shock_width: float = Field(2.0, gt=0, description="Months (sd) the shock spreads over.")
    base_logit: float = Field(-4.4, description="Intercept of the true PD's logit.")
    pd_model_noise: float = Field(0.3, ge=0, description="Logit sd of the lender's PD estimate.")
    economics: econ.Economics = Field(default_factory=econ.Economics)

    @field_validator("start")
    @classmethod
    def _first_of_month(cls, value: dt.date) -> dt.date:
        if value.day != 1:
            raise ValueError(f"start must be the first day of a month, got {value.isoformat()}")
        return value

    @field_validator("observation_end")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _after_start(self) -> LoanSimConfig:
        end = self.observation_end
        if end is not None and end < _month_start(self.start, 0):
            raise ValueError(f"observation_end {end.isoformat()} is before start {self.start}")
        return self

    @property
    def period_end(self) -> dt.datetime:
        """The first instant after the last vintage."""
        return _month_start(self.start, self.months)

    @property
    def as_of(self) -> dt.datetime:
        """``observation_end``, or the end of the period."""
        return self.observation_end or self.period_end

    @classmethod
    def small(cls, **overrides: Any) -> LoanSimConfig:
        """18 vintages x 150 loans and 17 x 60 impressions: for tests (well under a second)."""
        values: dict[str, Any] = {
            "n_customers": 2_500,
            "months": 18,
            "loans_per_month": 150,
            "offers_per_month": 60,
        }
        return cls.model_validate({**values, **overrides})


@dataclass
class Portfolio:
    """The simulator's output: ``loans``, ``performance`` and ``offers`` (polars) and the config."""

    loans: pl.DataFrame
    performance: pl.DataFrame
    offers: pl.DataFrame
    config: LoanSimConfig
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def observation_end(self) -> dt.datetime:
        return self.config.as_of

    def validate(self) -> Portfolio:
        """Every table's schema checks and the links between them (raises SchemaError)."""
        self.loans, self.performance, self.offers = validate_portfolio(
            self.loans, self.performance, self.offers, self.observation_end
        )
        return self

    def summary(self) -> dict[str, Any]:
        """Counts and rates, overall and per vintage (what the manifest records)."""
        return portfolio_summary(self.loans, self.offers, self.observation_end, self.performance)

    def write(self, path: Path | str, *, overwrite: bool = False) -> Path:
        """Write ``manifest.json`` + one Parquet file per table into the directory ``path``.

        Atomic: written into a sibling temporary directory, then renamed into place, so a
        failure leaves what was at ``path`` untouched. Refuses to replace an existing portfolio
        unless ``overwrite``, and to touch a directory holding anything else.
        """
        from riskml import __version__
        from riskml.data.importer import staged_dataset

        target = Path(path).resolve()
        _check_target(target, PORTFOLIO_FILES, overwrite=overwrite)
        manifest = {
            "kind": MANIFEST_KIND,
            "schema_version": SCHEMA_VERSION,
            "riskml_version": __version__,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config": self.config.model_dump(mode="json"),
            "observation_end": self.observation_end.isoformat(),
            "rows": {
                "loans": self.loans.height,
                "performance": self.performance.height,
                "offers": self.offers.height,
            },
            "summary": self.summary(),
        }
        with staged_dataset(target, "writing") as staging:
            for name, frame in (
                (LOANS_FILE, self.loans),
                (PERFORMANCE_FILE, self.performance),
                (OFFERS_FILE, self.offers),
            ):
                frame.write_parquet(staging / name, compression="zstd", statistics=True)
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
            (staging / MANIFEST).write_text(text)
        self.manifest = manifest
        return target

    @classmethod
    def read(cls, path: Path | str, *, validate: bool = True) -> Portfolio:
        """Read a portfolio written by :meth:`write` (checks the manifest's kind, schema version
        and row counts, then, with ``validate``, the tables: :meth:`validate`)."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no credit portfolio at {root} (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        if manifest.get("kind") != MANIFEST_KIND:
            raise SchemaError(f"{root}: not a credit portfolio (kind {manifest.get('kind')!r})")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(
                f"{root}: schema_version {manifest.get('schema_version')!r}, this riskml reads "
                f"{SCHEMA_VERSION}"
            )
        config = LoanSimConfig.model_validate(manifest["config"])
        frames: dict[str, pl.DataFrame] = {}
        for table, name in (
            ("loans", LOANS_FILE),
            ("performance", PERFORMANCE_FILE),
            ("offers", OFFERS_FILE),
        ):
            try:
                frames[table] = pl.read_parquet(root / name)
            except Exception as exc:  # polars raises several types on unreadable files
                raise SchemaError(f"{root / name}: cannot read ({exc})") from exc
            expected = manifest.get("rows", {}).get(table)
            if expected != frames[table].height:
                raise SchemaError(
                    f"{root / name}: {frames[table].height} rows, manifest says {expected}"
                )
        portfolio = cls(config=config, manifest=manifest, **frames)
        return portfolio.validate() if validate else portfolio


def _check_target(target: Path, own: tuple[str, ...], *, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    names = {p.name for p in target.iterdir()}
    foreign = sorted(names - set(own))
    if foreign:
        raise FileExistsError(
            f"{target} holds files that are not part of a dataset "
            f"({', '.join(foreign[:5])}); write into a new or empty directory"
        )
    if names and not overwrite:
        raise FileExistsError(f"{target} already holds a dataset; pass overwrite=True")


# --- time --------------------------------------------------------------------------------------
def _month_start(start: dt.date, k: int) -> dt.datetime:
    year, month = divmod(start.month - 1 + k, 12)
    return dt.datetime(start.year + year, month + 1, 1, tzinfo=dt.UTC)


def _epoch_us(value: dt.datetime) -> int:
    return round(value.timestamp() * _US)


# --- the true model ----------------------------------------------------------------------------
def _col(features: Mapping[str, Any] | pl.DataFrame, name: str) -> FloatArray:
    try:
        values = features[name]
    except (KeyError, pl.exceptions.ColumnNotFoundError) as exc:
        raise KeyError(f"true_logit needs column {name!r}") from exc
    return np.asarray(values, dtype=np.float64)


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def applicant_logit(features: Mapping[str, Any] | pl.DataFrame) -> FloatArray:
    """The part of the true logit that depends on the applicant only (no intercept)."""
    score = _col(features, "bureau_score")
    s = (680.0 - score) / 60.0
    s_bad = np.maximum(s, 0.0)
    thin = (_col(features, "open_accounts") <= 2).astype(np.float64)
    delinq = np.log1p(_col(features, "delinquencies_24m"))
    util = _col(features, "utilisation")
    inq = np.log1p(_col(features, "inquiries_6m"))
    dti = _col(features, "debt_to_income")
    age = _col(features, "age")
    emp = _col(features, "employment_years")
    log_income = np.log(np.maximum(_col(features, "income_monthly"), 1.0))
    prior_dpd = _col(features, "prior_max_dpd")
    prior_loans = _col(features, "prior_loans")
    tenure = _col(features, "months_on_book")
    category = np.asarray(features["category"], dtype=object)
    cat = np.array([_CAT_RISK.get(c, 0.0) for c in category.tolist()], dtype=np.float64)
    return np.asarray(
        0.29 * s
        + 0.05 * s_bad**2
        + 0.70 * s_bad * thin
        + 0.15 * delinq
        + 0.36 * util
        + 0.64 * np.maximum(util - 0.9, 0.0)
        + 0.60 * util * delinq
        + 0.12 * inq
        + 0.20 * inq * (prior_dpd >= 30)
        + 0.64 * dti
        + 0.64 * np.maximum(dti - 0.45, 0.0)
        + 0.24 * np.maximum((28.0 - age) / 10.0, 0.0) * (1.0 + util)
        - 0.03 * np.minimum(emp, 10.0)
        - 0.20 * (log_income - 8.0)
        + 0.44 * (prior_dpd >= 30)
        + 0.36 * (prior_dpd >= 60)
        - 0.10 * np.minimum(prior_loans, 4.0) * (prior_dpd < 30)
        - 0.04 * np.log1p(tenure)
        + 0.8 * cat,
        dtype=np.float64,
    )


def terms_logit(features: Mapping[str, Any] | pl.DataFrame) -> FloatArray:
    """The part of the true logit that depends on the loan's terms: payment burden (worse for low
    incomes), term, promotion."""
    income = np.maximum(_col(features, "income_monthly"), 1.0)
    pti = _col(features, "monthly_payment") / income
    low_income = np.maximum(8.0 - np.log(income), 0.0)
    term = _col(features, "term_months")
    promo = np.asarray(features["promotion"], dtype=object)
    holiday = np.array([p == "first_payment_holiday" for p in promo.tolist()], dtype=np.float64)
    return np.asarray(
        3.0 * pti + 8.0 * pti * low_income + 0.12 * np.log2(term / 3.0) + 0.15 * holiday,
        dtype=np.float64,
    )


def true_logit(
    features: Mapping[str, Any] | pl.DataFrame,
    *,
    hidden: Any = 0.0,
    vintage_shift: Any = 0.0,
    base_logit: float = LoanSimConfig.model_fields["base_logit"].default,
) -> FloatArray:
    """The simulator's true 12-month default logit for rows of ``features`` (loans or offers
    columns: the numeric applicant attributes, ``category``, ``monthly_payment``,
    ``term_months``, ``promotion``), given the unobserved part ``hidden`` and the vintage's
    macro shift. ``sim_pd`` = ``sigmoid`` of it with the loan's own hidden part."""
    return np.asarray(
        base_logit
        + applicant_logit(features)
        + terms_logit(features)
        + np.asarray(hidden, dtype=np.float64)
        + np.asarray(vintage_shift, dtype=np.float64),
        dtype=np.float64,
    )


def true_pd(
    features: Mapping[str, Any] | pl.DataFrame,
    *,
    hidden: Any = 0.0,
    vintage_shift: Any = 0.0,
    base_logit: float = LoanSimConfig.model_fields["base_logit"].default,
) -> FloatArray:
    """``sigmoid(true_logit(...))``."""
    return _sigmoid(
        true_logit(features, hidden=hidden, vintage_shift=vintage_shift, base_logit=base_logit)
    )


def vintage_shifts(config: LoanSimConfig) -> FloatArray:
    """The macro logit shift of each vintage (index 0 = ``start``): a bump of ``macro_shock``
    around ``macro_shock_month`` plus small month-to-month noise."""
    months = np.arange(config.months, dtype=np.float64)
    bump = config.macro_shock * np.exp(
        -0.5 * ((months - config.macro_shock_month) / config.macro_shock_width) ** 2
    )
    noise = _rng(config.seed, 2).normal(0.0, 0.04, config.months)
    return np.asarray(bump + noise, dtype=np.float64)


# --- the world ---------------------------------------------------------------------------------
def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


@dataclass
class _Customers:
    z: FloatArray
    hidden: FloatArray
    hunger: FloatArray
    log_income: FloatArray
    age0: FloatArray
    emp0: FloatArray
    dti_base: FloatArray
    util_base: FloatArray
    open_rate: FloatArray
    fav_category: np.ndarray
    need: FloatArray
    price_sensitivity: FloatArray
    # state, as known at the current month's start
    first_month: np.ndarray
    n_loans: np.ndarray
    max_dpd: np.ndarray


def _customers(config: LoanSimConfig) -> _Customers:
    rng = _rng(config.seed, 1)
    n = config.n_customers
    z = rng.standard_normal(n)
    hunger = -0.5 * z + 0.87 * rng.standard_normal(n)
    log_income = np.clip(8.0 + 0.15 * z + 0.45 * rng.standard_normal(n), np.log(600), np.log(4e4))
    age0 = np.clip(37.0 + 11.0 * rng.standard_normal(n) + 2.0 * z, 18.0, 78.0)
    emp0 = np.clip((age0 - 18.0) * rng.beta(2.0, 3.0, n), 0.0, age0 - 16.0)
    income = np.exp(log_income)
    return _Customers(
        z=z,
        hidden=rng.standard_normal(n),
        hunger=hunger,
        log_income=log_income,
        age0=age0,
        emp0=emp0,
        dti_base=np.exp(np.log(0.22) - 0.18 * z + 0.12 * hunger + 0.4 * rng.standard_normal(n)),
        util_base=-0.5 - 0.9 * z + 0.35 * hunger + 0.4 * rng.standard_normal(n),
        open_rate=np.exp(
            1.5 + 0.012 * (age0 - 37.0) + 0.25 * hunger + 0.2 * rng.standard_normal(n)
        ),
        fav_category=rng.choice(len(CATEGORIES), n, p=_CAT_MIX),
        need=np.exp(0.4 * rng.standard_normal(n)),
        price_sensitivity=np.exp(0.35 * rng.standard_normal(n)) * (income / 3000.0) ** -0.3,
        first_month=np.full(n, -1, dtype=np.int64),
        n_loans=np.zeros(n, dtype=np.int64),
        max_dpd=np.zeros(n, dtype=np.int64),
    )


@dataclass(frozen=True)
class _Merchants:
    category: np.ndarray  # (M,) category index
    effect: FloatArray  # (M,) logit effect (unobserved)
    by_category: list[np.ndarray]
    weights: list[FloatArray]


def _merchants(config: LoanSimConfig) -> _Merchants:
    rng = _rng(config.seed, 5)
    per = _MERCHANTS_PER_CATEGORY
    category = np.repeat(np.arange(len(CATEGORIES)), per)
    by_category = [np.arange(c * per, (c + 1) * per) for c in range(len(CATEGORIES))]
    zipf = 1.0 / np.arange(1, per + 1) ** 0.9
    weights = [zipf / zipf.sum() for _ in CATEGORIES]
    return _Merchants(category, rng.normal(0.0, 0.15, category.size), by_category, weights)


def _context(
    rng: np.random.Generator, cust: _Customers, idx: np.ndarray, merchants: _Merchants
) -> tuple[np.ndarray, np.ndarray]:
    """(category index, merchant index) of each application / impression."""
    n = idx.size
    cat = np.where(
        rng.random(n) < 0.55, cust.fav_category[idx], rng.choice(len(CATEGORIES), n, p=_CAT_MIX)
    )
    merchant = np.empty(n, dtype=np.int64)
    for c in range(len(CATEGORIES)):
        at = np.flatnonzero(cat == c)
        merchant[at] = rng.choice(merchants.by_category[c], at.size, p=merchants.weights[c])
    return cat, merchant


def _attributes(
    rng: np.random.Generator, cust: _Customers, idx: np.ndarray, month: int
) -> dict[str, np.ndarray]:
    """The applicant attributes of customers ``idx`` at ``month`` (bureau draws are fresh at each
    application; the history with us is the state at the month's start)."""
    n = idx.size
    z = cust.z[idx]
    pmd = cust.max_dpd[idx]
    years = month / 12.0
    score = (
        665.0 + 72.0 * z + 14.0 * rng.standard_normal(n) - 35.0 * (pmd >= 30) - 25.0 * (pmd >= 60)
    )
    util = 1.5 / (1.0 + np.exp(-(cust.util_base[idx] + 0.35 * rng.standard_normal(n))))
    dti = cust.dti_base[idx] * np.exp(0.1 * rng.standard_normal(n))
    first = cust.first_month[idx]
    return {
        "age": np.floor(cust.age0[idx] + years).astype(np.int64),
        "income_monthly": np.round(np.exp(cust.log_income[idx]) * (1.0 + 0.02 * years), 2),
        "employment_years": np.round(cust.emp0[idx] + years, 1),
        "bureau_score": np.clip(np.round(score), 300, 850).astype(np.int64),
        "inquiries_6m": rng.poisson(np.exp(0.1 - 0.25 * z + 0.45 * cust.hunger[idx])),
        "delinquencies_24m": rng.poisson(np.exp(-1.4 - 0.9 * z))
        + (pmd >= 30).astype(np.int64)
        + (pmd >= 60).astype(np.int64),
        "utilisation": np.round(util, 3),
        "open_accounts": rng.poisson(cust.open_rate[idx]),
        "months_on_book": np.where(first >= 0, month - first, 0).astype(np.int64),
        "prior_loans": cust.n_loans[idx].copy(),
        "prior_max_dpd": pmd.copy(),
        "debt_to_income": np.round(np.clip(dti, 0.0, 3.0), 3),
    }


def _price(
    rng: np.random.Generator, attrs: Mapping[str, Any], category: np.ndarray, config: LoanSimConfig
) -> tuple[FloatArray, FloatArray]:
    """(lender's PD estimate from the applicant alone, the APR it prices to)."""
    feats = {**attrs, "category": category}
    noise = config.pd_model_noise
    logit = config.base_logit + applicant_logit(feats)
    pd_est = _sigmoid(logit + noise * rng.standard_normal(len(category)))
    apr = np.clip(0.10 + 1.2 * pd_est + 0.01 * rng.standard_normal(len(category)), 0.0, MAX_APR)
    return pd_est, np.round(apr / 0.005) * 0.005


@dataclass
class _Batch:
    """Loans of one vintage, as numpy columns, and their dpd paths (n, _MAX_MOB)."""

    month: int
    cols: dict[str, np.ndarray]
    dpd: np.ndarray
    perf: dict[str, np.ndarray]


def _paths(
    rng: np.random.Generator,
    config: LoanSimConfig,
    month: int,
    cols: dict[str, np.ndarray],
    sched: econ.Schedule,
    month_end_us: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw each loan's outcome and its monthly snapshots (dpd, balance, paid, status)."""
    n = cols["amount"].size
    pd = cols["sim_pd"]
    term = cols["term_months"]
    promo = cols["promotion"]
    holiday = (promo == "first_payment_holiday").astype(np.int64)
    level = sched.level_payment
    closing = np.concatenate([cols["amount"][:, None], sched.closing_balance], axis=1)

    default = rng.random(n) < pd
    # defaulters stop paying from payment j0 (default seen 3 months later, within 12 on book)
    j0_max = np.minimum(term, LABEL_MONTHS - 3 - holiday)
    j0 = 1 + np.floor(rng.random(n) * j0_max).astype(np.int64)
    default_mob = np.where(default, j0 + holiday + 3, 0)
    # a non-defaulter may have one episode: payment j1 missed for 1 or 2 months, then cured
    episode = ~default & (rng.random(n) < np.minimum(0.6, 0.04 + 4.0 * pd))
    j1 = 1 + np.floor(rng.random(n) * term).astype(np.int64)
    e_len = 1 + (rng.random(n) < 0.35).astype(np.int64)
    # prepayment in full at payment p (2 <= p < term), hazard rising with the APR
    hazard = 0.02 + 0.08 * cols["apr"]
    p = 1 + rng.geometric(hazard)
    prepaid = ~default & ~episode & (p < term)

    first_missed = np.where(default, j0, np.where(episode, j1, 10**6))
    last = np.where(
        default,
        default_mob,
        np.where(
            episode,
            np.maximum(term + holiday + 1, j1 + holiday + e_len + 1),
            np.where(prepaid, p + holiday + 1, term + holiday + 1),
        ),
    )
    k = np.arange(1, _MAX_MOB + 1)[None, :]
    alive = k <= last[:, None]
    due = np.clip(k - 1 - holiday[:, None], 0, term[:, None])
    late_months = k - (first_missed + holiday)[:, None]
    in_episode = (late_months >= 1) & (late_months <= e_len[:, None])
    delinquent = np.where(default[:, None], late_months >= 1, episode[:, None] & in_episode)
    dpd = np.where(delinquent & alive, 30 * late_months, 0)
    missed = np.where(delinquent, np.maximum(due - (first_missed[:, None] - 1), 0), 0)
    paid_count = due - missed
    prepay_row = prepaid[:, None] & (k == last[:, None])
    idx = np.where(paid_count > 0, paid_count + holiday[:, None], 0)
    balance = np.take_along_axis(closing, np.minimum(idx, closing.shape[1] - 1), axis=1)
    before = np.concatenate([np.zeros((n, 1), dtype=np.int64), paid_count[:, :-1]], axis=1)
    paid = level[:, None] * (paid_count - before)
    prev_balance = np.concatenate([cols["amount"][:, None], balance[:, :-1]], axis=1)
    paid = np.where(prepay_row, prev_balance, paid)
    balance = np.where(prepay_row, 0.0, balance)

    status = np.full((n, _MAX_MOB), "current", dtype=object)
    status[dpd > 0] = "delinquent"
    at_last = k == last[:, None]
    status[at_last & default[:, None]] = "default"
    status[at_last & prepaid[:, None]] = "prepaid"
    status[at_last & ~default[:, None] & ~prepaid[:, None]] = "closed"
    dpd = np.where(alive, dpd, 0)

    # snapshots up to observation_end
    vintage_col = month + k - 1  # calendar month index of mob k
    as_of = month_end_us[np.minimum(vintage_col, month_end_us.size - 1)]
    end_us = _epoch_us(config.as_of)
    keep = alive & (as_of <= end_us)
    rows, mobs = np.nonzero(keep)
    perf = {
        "row": rows,
        "mob": mobs.astype(np.int64) + 1,
        "as_of": np.broadcast_to(as_of, keep.shape)[keep],
        "dpd": dpd[keep].astype(np.int64),
        "balance": np.round(balance[keep], 2),
        "paid": np.round(paid[keep], 2),
        "status": status[keep].astype(str),
    }
    outcome = {
        "sim_default_12m": default.astype(np.int8),
        "default_mob_true": default_mob,
        "default_as_of": month_end_us[month + default_mob - 1],
        "prepaid_mob_true": np.where(prepaid, last, 0),
        "prepaid_as_of": month_end_us[month + np.where(prepaid, last, 1) - 1],
    }
    return dpd, outcome, perf


def _book(
    config: LoanSimConfig,
    month: int,
    cust: _Customers,
    merchants: _Merchants,
    shifts: FloatArray,
    month_start_us: np.ndarray,
    month_end_us: np.ndarray,
    next_new: int,
) -> tuple[_Batch, int]:
    rng = _rng(config.seed, 3, month)
    n = config.loans_per_month
    eligible = np.flatnonzero((cust.n_loans > 0) & (cust.max_dpd < DEFAULT_DPD))
    n_ret = int(rng.binomial(n, config.returning_share)) if eligible.size else 0
    n_new = min(n - n_ret, cust.z.size - next_new)
    if eligible.size:
        n_ret = n - n_new
    else:
        n = n_new
    idx = np.concatenate(
        [np.arange(next_new, next_new + n_new), rng.choice(eligible, n_ret)]
        if n_ret
        else [np.arange(next_new, next_new + n_new)]
    ).astype(np.int64)
    next_new += n_new

    attrs = _attributes(rng, cust, idx, month)
    cat, merchant = _context(rng, cust, idx, merchants)
    categories = np.asarray(CATEGORIES, dtype=object)[cat]
    income = attrs["income_monthly"]
    amount = _CAT_AMOUNT[cat] * (income / 3000.0) ** 0.5 * np.exp(0.5 * rng.standard_normal(n))
    amount = np.clip(np.round(amount / 10.0) * 10.0, 50.0, 10_000.0)
    size = np.log(amount / 500.0)[:, None]
    term_logits = np.array([1.0, 0.5, 0.0, -1.0])[None, :] + size * np.array([-0.8, -0.2, 0.4, 0.9])
    term_p = np.exp(term_logits) / np.exp(term_logits).sum(axis=1, keepdims=True)
    term_idx = (rng.random(n)[:, None] > np.cumsum(term_p, axis=1)).sum(axis=1)
    term = np.asarray(TERMS, dtype=np.int64)[np.minimum(term_idx, len(TERMS) - 1)]
    promo = np.asarray(PROMOTIONS, dtype=object)[rng.choice(len(PROMOTIONS), n, p=_PROMO_MIX)]
    _, apr = _price(rng, attrs, categories, config)
    merchant_funded = (term <= 6) & (rng.random(n) < 0.4)
    apr = np.where(merchant_funded, 0.0, apr)
    promo = np.where((apr == 0.0) & (promo == "zero_apr_promo"), "none", promo).astype(str)
    fee = econ.origination_fee(amount, term, promo, economics=config.economics)
    sched = econ.amortisation_schedule(amount, apr, term, promo, economics=config.economics)

    cols: dict[str, np.ndarray] = {
        "customer": idx,
        **attrs,
        "merchant": merchant,
        "category": categories.astype(str),
        "amount": amount,
        "term_months": term,
        "apr": np.round(apr, 4),
        "promotion": promo,
        "origination_fee": fee,
        "monthly_payment": np.round(sched.level_payment, 2),
    }
    hidden = 0.8 * cust.hidden[idx] + 0.25 * rng.standard_normal(n) + merchants.effect[merchant]
    cols["sim_pd"] = true_pd(
        cols, hidden=hidden, vintage_shift=shifts[month], base_logit=config.base_logit
    )
    span = month_start_us[month + 1] - month_start_us[month]
    offset = np.floor(rng.random(n) * span / _US).astype(np.int64) * _US
    cols["application_us"] = month_start_us[month] + offset
    dpd, outcome, perf = _paths(rng, config, month, cols, sched, month_end_us)
    cols.update(outcome)

    # the new loans become history from the next month on
    cust.first_month[idx] = np.where(cust.first_month[idx] < 0, month, cust.first_month[idx])
    np.add.at(cust.n_loans, idx, 1)
    return _Batch(month, cols, dpd, perf), next_new


def _update_history(cust: _Customers, batches: list[_Batch], month: int) -> None:
    """Fold the snapshots at the end of ``month - 1`` into each customer's worst dpd."""
    for batch in batches:
        mob = month - batch.month
        if 1 <= mob <= _MAX_MOB:
            np.maximum.at(cust.max_dpd, batch.cols["customer"], batch.dpd[:, mob - 1])


def _offers(
    config: LoanSimConfig,
    month: int,
    cust: _Customers,
    merchants: _Merchants,
    shifts: FloatArray,
    month_start_us: np.ndarray,
) -> dict[str, np.ndarray] | None:
    eligible = np.flatnonzero((cust.n_loans > 0) & (cust.max_dpd < DEFAULT_DPD))
    n_imp = config.offers_per_month
    if not eligible.size or not n_imp:
        return None
    rng = _rng(config.seed, 4, month)
    idx = rng.choice(eligible, n_imp)
    attrs = _attributes(rng, cust, idx, month)
    cat, merchant = _context(rng, cust, idx, merchants)
    categories = np.asarray(CATEGORIES, dtype=object)[cat].astype(str)
    _, base_apr = _price(rng, attrs, categories, config)
    span = month_start_us[month + 1] - month_start_us[month]
    ts = month_start_us[month] + np.floor(rng.random(n_imp) * span / _US).astype(np.int64) * _US

    # the candidate grid, K drawn without replacement per impression
    grid = np.array(
        np.meshgrid(
            np.arange(len(OFFER_AMOUNT_MULTIPLES)),
            np.arange(len(TERMS)),
            np.arange(len(OFFER_APR_OFFSETS)),
            np.arange(len(PROMOTIONS)),
            indexing="ij",
        )
    ).reshape(4, -1)
    k = config.candidates
    if k > grid.shape[1]:
        raise ValueError(f"candidates ({k}) exceeds the offer grid ({grid.shape[1]})")
    pick = np.argsort(rng.random((n_imp, grid.shape[1])), axis=1)[:, :k]
    a_i, t_i, r_i, p_i = (grid[j][pick].ravel() for j in range(4))
    rep = np.repeat(np.arange(n_imp), k)
    income = attrs["income_monthly"][rep]
    amount = np.asarray(OFFER_AMOUNT_MULTIPLES)[a_i] * income
    amount = np.clip(np.round(amount / 50.0) * 50.0, 100.0, 10_000.0)
    term = np.asarray(TERMS, dtype=np.int64)[t_i]
    apr = np.clip(base_apr[rep] + np.asarray(OFFER_APR_OFFSETS)[r_i], 0.0, MAX_APR)
    apr = np.round(apr, 4)
    promo = np.asarray(PROMOTIONS)[p_i]
    fee = econ.origination_fee(amount, term, promo, economics=config.economics)
    # pd enters the value linearly: one schedule serves the logged and the true value
    parts = econ.value_breakdown(
        amount, term, apr, fee, 0.0, promotion=promo, economics=config.economics
    )
    payment = np.round(parts.monthly_payment, 2)
    cols: dict[str, np.ndarray] = {k_: v[rep] for k_, v in attrs.items()}
    cols.update(
        {
            "category": categories[rep],
            "merchant": merchant[rep],
            "amount": amount,
            "term_months": term,
            "apr": apr,
            "promotion": promo,
            "origination_fee": fee,
            "monthly_payment": payment,
        }
    )
    cid = idx[rep]
    hidden = 0.8 * cust.hidden[cid] + merchants.effect[merchant[rep]]
    logit_known = true_logit(cols, vintage_shift=shifts[month], base_logit=config.base_logit)
    sim_pd = _sigmoid(logit_known + hidden)
    model_noise = np.repeat(rng.normal(0.0, config.pd_model_noise, n_imp), k)
    pd_at_offer = _sigmoid(logit_known + model_noise + rng.normal(0.0, 0.05, rep.size))

    # logging policy: softmax(log(amount) / T) within each impression
    h = (np.log(amount) / config.temperature).reshape(n_imp, k)
    w = np.exp(h - h.max(axis=1, keepdims=True))
    prop = w / w.sum(axis=1, keepdims=True)
    cum = np.cumsum(prop, axis=1)
    choice = np.minimum((rng.random(n_imp)[:, None] > cum).sum(axis=1), k - 1)
    shown = np.zeros((n_imp, k), dtype=np.int8)
    shown[np.arange(n_imp), choice] = 1
    shown_flat = shown.ravel().astype(bool)

    # the true choice model
    need = cust.need[cid] * income
    pti = payment / income
    promo_bonus = np.select(
        [promo == "zero_apr_promo", promo == "fee_waiver", promo == "first_payment_holiday"],
        [0.45, 0.2, 0.3 + 0.2 * (income < 2500.0)],
        0.0,
    )
    utility = (
        0.8
        - 8.0 * cust.price_sensitivity[cid] * apr
        - 0.9 * np.log(amount / need) ** 2
        - 6.0 * pti
        - 4.0 * fee / amount
        + promo_bonus
        + 0.3 * cust.hunger[cid]
        + 0.08 * np.minimum(cols["prior_loans"], 5)
    )
    p_accept = _sigmoid(utility)
    accepted = np.where(shown_flat, rng.random(rep.size) < p_accept, False)
    lgd = config.economics.lgd
    value_logged = parts.margin - econ.expected_loss(pd_at_offer, lgd, parts.ead)
    value_true = parts.margin - econ.expected_loss(sim_pd, lgd, parts.ead)
    cols.update(
        {
            "customer": cid,
            "impression": rep,
            "ts_us": ts[rep],
            "candidate": np.tile(np.arange(k, dtype=np.int64), n_imp),
            "pd_at_offer": pd_at_offer,
            "shown": shown.ravel(),
            "propensity": prop.ravel(),
            "accepted": accepted.astype(np.int8),
            "value": np.where(accepted, value_logged, 0.0),
            "sim_pd": sim_pd,
            "sim_p_accept": p_accept,
            "sim_ev": p_accept * value_true,
        }
    )
    return cols


# --- frames ------------------------------------------------------------------------------------
def _ids(prefix: str, column: str, width: int) -> pl.Expr:
    """``prefix`` + the integer column zero-padded to ``width``."""
    return pl.lit(prefix) + pl.col(column).cast(pl.String).str.zfill(width)


def _ts(values: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _loan_frames(config: LoanSimConfig, batches: list[_Batch]) -> tuple[pl.DataFrame, pl.DataFrame]:
    cols = _concat([b.cols for b in batches])
    n = cols["amount"].size
    order = np.argsort(cols["application_us"], kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    end_us = _epoch_us(config.as_of)
    default_seen = (cols["sim_default_12m"] == 1) & (cols["default_as_of"] <= end_us)
    prepaid_seen = (cols["prepaid_mob_true"] > 0) & (cols["prepaid_as_of"] <= end_us)
    numeric = {name: pl.Series(name, cols[name]) for name in APPLICANT_NUMERIC}
    loans = pl.DataFrame(
        {
            "rank": rank,
            "customer": cols["customer"],
            "application_ts": _ts(cols["application_us"]),
            **numeric,
            "merchant": cols["merchant"],
            "category": pl.Series(cols["category"], dtype=pl.String),
            "amount": cols["amount"],
            "term_months": cols["term_months"].astype(np.int64),
            "apr": cols["apr"],
            "promotion": pl.Series(cols["promotion"], dtype=pl.String),
            "origination_fee": cols["origination_fee"],
            "monthly_payment": cols["monthly_payment"],
            "default_seen": default_seen,
            "default_mob_true": cols["default_mob_true"],
            "default_at": _ts(cols["default_as_of"]),
            "prepaid_mob": pl.Series(
                np.where(prepaid_seen, cols["prepaid_mob_true"], 0), dtype=pl.Int64
            ),
            "sim_pd": cols["sim_pd"],
            "sim_default_12m": pl.Series(cols["sim_default_12m"], dtype=pl.Int8),
        }
    )
    end = pl.lit(config.as_of).cast(pl.Datetime("us", "UTC"))
    twelve = pl.col("application_ts").dt.offset_by(f"{LABEL_MONTHS}mo")
    mature_at = pl.when(pl.col("default_seen")).then(pl.col("default_at")).otherwise(twelve)
    loans = (
        loans.with_columns(
            loan_id=_ids("L", "rank", 8),
            customer_id=_ids("C", "customer", 7),
            merchant_id=_ids("M", "merchant", 4),
            vintage=pl.col("application_ts").dt.strftime("%Y-%m"),
            label_mature_at=mature_at,
        )
        .with_columns(
            default_12m=pl.when(pl.col("default_seen"))
            .then(pl.lit(1, pl.Int8))
            .when(pl.col("label_mature_at") <= end)
            .then(pl.lit(0, pl.Int8))
            .otherwise(pl.lit(None, pl.Int8)),
            default_mob=pl.when(pl.col("default_seen")).then(pl.col("default_mob_true")),
            prepaid_mob=pl.when(pl.col("prepaid_mob") > 0).then(pl.col("prepaid_mob")),
        )
        .sort("rank")
    )
    loans = loans.select(*LOAN_COLUMN_NAMES, "sim_pd", "sim_default_12m")

    perf_parts = []
    offset = 0
    for b in batches:
        perf_parts.append({**b.perf, "row": b.perf["row"] + offset})
        offset += b.cols["amount"].size
    perf = _concat(perf_parts)
    performance = (
        pl.DataFrame(
            {
                "rank": rank[perf["row"]],
                "mob": perf["mob"],
                "as_of": _ts(perf["as_of"]),
                "dpd": perf["dpd"],
                "balance": perf["balance"],
                "paid": perf["paid"],
                "status": pl.Series(perf["status"], dtype=pl.String),
            }
        )
        .sort("rank", "mob")
        .with_columns(loan_id=_ids("L", "rank", 8))
        .select(PERFORMANCE_COLUMN_NAMES)
    )
    return loans, performance


def _offer_frame(parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    from riskml.data.credit.schema import offers_schema

    if not parts:
        return pl.DataFrame(schema=offers_schema(sim=True))
    offset = 0
    shifted = []
    for p in parts:
        shifted.append({**p, "impression": p["impression"] + offset})
        offset += int(p["impression"].max()) + 1
    cols = _concat(shifted)
    numeric = {name: pl.Series(name, cols[name]) for name in APPLICANT_NUMERIC}
    frame = pl.DataFrame(
        {
            "impression": cols["impression"],
            "customer": cols["customer"],
            "ts": _ts(cols["ts_us"]),
            "candidate": cols["candidate"],
            "amount": cols["amount"],
            "term_months": cols["term_months"].astype(np.int64),
            "apr": cols["apr"],
            "promotion": pl.Series(cols["promotion"].astype(str), dtype=pl.String),
            "origination_fee": cols["origination_fee"],
            "monthly_payment": cols["monthly_payment"],
            **numeric,
            "merchant": cols["merchant"],
            "category": pl.Series(cols["category"].astype(str), dtype=pl.String),
            "pd_at_offer": cols["pd_at_offer"],
            "shown": pl.Series(cols["shown"], dtype=pl.Int8),
            "propensity": cols["propensity"],
            "accepted": pl.Series(cols["accepted"], dtype=pl.Int8),
            "value": cols["value"],
            "sim_pd": cols["sim_pd"],
            "sim_p_accept": cols["sim_p_accept"],
            "sim_ev": cols["sim_ev"],
        }
    )
    shown = pl.col("shown") == 1
    return (
        frame.with_columns(
            impression_id=_ids("I", "impression", 8),
            customer_id=_ids("C", "customer", 7),
            merchant_id=_ids("M", "merchant", 4),
            accepted=pl.when(shown).then(pl.col("accepted")),
            value=pl.when(shown).then(pl.col("value")),
        )
        .sort("impression", "candidate")
        .select(*OFFER_COLUMN_NAMES, "sim_pd", "sim_p_accept", "sim_ev")
    )


def simulate_portfolio(config: LoanSimConfig | None = None) -> Portfolio:
    """Simulate loans, their performance and the offers log (see the module doc); validated."""
    config = config or LoanSimConfig()
    cust = _customers(config)
    merchants = _merchants(config)
    shifts = vintage_shifts(config)
    horizon = config.months + _MAX_MOB + 2
    month_start_us = np.array([_epoch_us(_month_start(config.start, k)) for k in range(horizon)])
    month_end_us = month_start_us[1:] - _US  # the last second of month k
    batches: list[_Batch] = []
    offer_parts: list[dict[str, np.ndarray]] = []
    next_new = 0
    for month in range(config.months):
        _update_history(cust, batches, month)
        if month >= 1:
            part = _offers(config, month, cust, merchants, shifts, month_start_us)
            if part is not None:
                offer_parts.append(part)
        batch, next_new = _book(
            config, month, cust, merchants, shifts, month_start_us, month_end_us, next_new
        )
        if batch.cols["amount"].size:
            batches.append(batch)
    if not batches:
        raise ValueError("the configuration books no loans (n_customers exhausted at once?)")
    loans, performance = _loan_frames(config, batches)
    offers = _offer_frame(offer_parts)
    return Portfolio(loans=loans, performance=performance, offers=offers, config=config).validate()


def portfolio_summary(
    loans: pl.DataFrame,
    offers: pl.DataFrame,
    observation_end: dt.datetime,
    performance: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Counts and rates of a portfolio, overall and per vintage.

    ``default_rate`` is over loans whose whole 12-month window has passed by
    ``observation_end`` (``full_window``): the early-mature defaults of younger vintages would
    bias it upwards. ``mature`` counts every loan with a known label."""
    end = pl.lit(observation_end).cast(pl.Datetime("us", "UTC"))
    window = pl.col("application_ts").dt.offset_by(f"{LABEL_MONTHS}mo") <= end
    aggs: list[pl.Expr] = [
        pl.len().alias("loans"),
        pl.col("default_12m").is_not_null().sum().alias("mature"),
        window.sum().alias("full_window"),
        pl.col("default_12m").filter(window).mean().alias("default_rate"),
    ]
    if "sim_pd" in loans.columns:
        aggs.append(pl.col("sim_pd").mean().alias("mean_sim_pd"))
    per_vintage = loans.group_by("vintage").agg(aggs).sort("vintage")
    overall = loans.select(aggs).row(0, named=True) if loans.height else {}
    shown = offers.filter(pl.col("shown") == 1)
    out: dict[str, Any] = {
        **overall,
        "customers": loans.get_column("customer_id").n_unique(),
        "vintages": per_vintage.height,
        "prepaid_share": loans.get_column("prepaid_mob").is_not_null().mean()
        if loans.height
        else None,
        "impressions": shown.height,
        "candidates": offers.height,
        "acceptance_rate": shown.get_column("accepted").mean() if shown.height else None,
        "mean_value_shown": shown.get_column("value").mean() if shown.height else None,
        "per_vintage": {row.pop("vintage"): row for row in per_vintage.iter_rows(named=True)},
    }
    if performance is not None:
        out["performance_rows"] = performance.height
    return out
