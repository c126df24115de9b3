"""The credit portfolio simulator: determinism, labels that mature by vintage, a plausible and
learnable world (monotone true PD, a vintage effect), repayment paths, the offers log, IO."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from riskml.data.credit import economics as econ
from riskml.data.credit.schema import (
    MONOTONE_RISK,
    STATUSES,
    validate_loans,
    validate_offers,
    validate_performance,
)
from riskml.data.credit.simulator import (
    LoanSimConfig,
    Portfolio,
    simulate_portfolio,
    true_pd,
    vintage_shifts,
)
from riskml.data.schema import SchemaError

TINY = LoanSimConfig.small(months=8, loans_per_month=60, offers_per_month=15, n_customers=600)


def twelve_months_after(col: str) -> pl.Expr:
    return pl.col(col).dt.offset_by("12mo")


# --- determinism -------------------------------------------------------------------------------
def test_same_seed_same_portfolio_other_seed_other_portfolio() -> None:
    a, b = simulate_portfolio(TINY), simulate_portfolio(TINY)
    for name in ("loans", "performance", "offers"):
        assert getattr(a, name).equals(getattr(b, name)), name
    c = simulate_portfolio(TINY.model_copy(update={"seed": TINY.seed + 1}))
    assert not a.loans.equals(c.loans)


def test_offer_knobs_leave_the_loans_alone() -> None:
    base = simulate_portfolio(TINY)
    other = simulate_portfolio(TINY.model_copy(update={"offers_per_month": 40, "temperature": 2}))
    assert base.loans.equals(other.loans)
    assert base.performance.equals(other.performance)
    assert other.offers.height == (TINY.months - 1) * 40 * TINY.candidates


def test_shapes_of_the_small_portfolio(credit_portfolio: Portfolio) -> None:
    cfg = credit_portfolio.config
    assert credit_portfolio.loans.height == cfg.months * cfg.loans_per_month
    assert credit_portfolio.offers.height == (cfg.months - 1) * cfg.offers_per_month * 8
    assert credit_portfolio.loans.get_column("vintage").n_unique() == cfg.months
    # every table passes its validator (the simulator validates before returning)
    validate_loans(credit_portfolio.loans, observation_end=credit_portfolio.observation_end)
    validate_performance(credit_portfolio.performance)
    validate_offers(credit_portfolio.offers)


# --- labels ------------------------------------------------------------------------------------
def test_labels_mature_by_vintage(credit_portfolio: Portfolio) -> None:
    loans = credit_portfolio.loans
    end = credit_portfolio.observation_end
    young = twelve_months_after("application_ts") > end
    # no label before 12 months on book unless the loan already defaulted
    early = loans.filter(young & pl.col("default_12m").is_not_null())
    assert early.height > 0
    assert (early.get_column("default_12m") == 1).all()
    assert (early.get_column("label_mature_at") <= end).all()
    assert early.get_column("default_mob").is_not_null().all()
    # the not-yet-observed defaults of young loans stay null (truth says 1, the data does not)
    hidden = loans.filter(
        young & (pl.col("sim_default_12m") == 1) & pl.col("default_12m").is_null()
    )
    assert hidden.height > 0
    assert (hidden.get_column("label_mature_at") > end).all()
    # every loan with a full 12-month window is labelled, and the label is the truth
    old = loans.filter(~young)
    assert old.get_column("default_12m").is_not_null().all()
    assert (old.get_column("default_12m") == old.get_column("sim_default_12m")).all()
    # the youngest vintage has no mature non-default
    last = loans.filter(pl.col("vintage") == loans.get_column("vintage").max())
    assert (last.get_column("default_12m").drop_nulls() == 1).all()


def test_an_earlier_observation_end_sees_less() -> None:
    end = dt.datetime(2023, 6, 1, tzinfo=dt.UTC)  # TINY runs to 2023-09-01
    full = simulate_portfolio(TINY)
    cut = simulate_portfolio(TINY.model_copy(update={"observation_end": end}))
    assert cut.performance.get_column("as_of").max() <= end
    assert cut.performance.height < full.performance.height
    labelled = cut.loans.get_column("default_12m").is_not_null().sum()
    assert labelled < full.loans.get_column("default_12m").is_not_null().sum()
    # same world, same truth: only what is visible changes
    assert (cut.loans.get_column("sim_pd") == full.loans.get_column("sim_pd")).all()


def test_default_rate_is_plausible_and_matches_the_true_pd(credit_portfolio: Portfolio) -> None:
    loans = credit_portfolio.loans
    window = loans.filter(twelve_months_after("application_ts") <= credit_portfolio.observation_end)
    rate = window.get_column("default_12m").mean()
    assert isinstance(rate, float) and 0.03 <= rate <= 0.15
    mean_pd = window.get_column("sim_pd").mean()
    assert isinstance(mean_pd, float)
    se = (mean_pd * (1 - mean_pd) / window.height) ** 0.5
    assert abs(rate - mean_pd) < 4 * se
    summary = credit_portfolio.summary()
    assert summary["default_rate"] == pytest.approx(rate)
    assert summary["full_window"] == window.height


def test_true_pd_ranks_the_observed_defaults(credit_portfolio: Portfolio) -> None:
    mature = credit_portfolio.loans.filter(pl.col("default_12m").is_not_null())
    q = mature.with_columns(q=pl.col("sim_pd").qcut(5, labels=[str(i) for i in range(5)]))
    rates = q.group_by("q").agg(pl.col("default_12m").mean()).sort("q")
    low, high = rates.get_column("default_12m")[0], rates.get_column("default_12m")[-1]
    assert high > 4 * low


@pytest.mark.parametrize("column", sorted(MONOTONE_RISK))
def test_true_pd_is_monotone_where_risk_must_be(credit_portfolio: Portfolio, column: str) -> None:
    loans = credit_portfolio.loans.head(500)
    grid = {
        "bureau_score": np.arange(300, 851, 25),
        "inquiries_6m": np.arange(0, 15),
        "delinquencies_24m": np.arange(0, 10),
        "utilisation": np.linspace(0, 1.5, 16),
        "debt_to_income": np.linspace(0, 2, 16),
    }[column]
    pds = np.stack(
        [true_pd(loans.with_columns(pl.lit(v).alias(column))) for v in grid.tolist()]
    )  # (grid, rows)
    steps = np.diff(pds, axis=0) * MONOTONE_RISK[column]
    assert (steps >= 0).all()  # every row, every step
    assert (steps.sum(axis=0) > 0).all()  # and it matters for every row


def test_prior_delinquency_with_us_raises_the_pd(credit_portfolio: Portfolio) -> None:
    loans = credit_portfolio.loans.head(200)
    # (90+ never happens: a customer who defaulted with us gets no more loans or offers)
    pds = [true_pd(loans.with_columns(prior_max_dpd=pl.lit(v))) for v in (0, 30, 60)]
    assert all((b > a).all() for a, b in itertools.pairwise(pds))


def test_vintage_effect() -> None:
    cfg = LoanSimConfig.small(loans_per_month=300, offers_per_month=0)
    shifts = vintage_shifts(cfg)
    assert shifts[cfg.macro_shock_month] > 0.25 and abs(shifts[0]) < 0.2
    calm = simulate_portfolio(cfg.model_copy(update={"macro_shock": 0.0}))
    shocked = simulate_portfolio(cfg)

    def mean_pd(p: Portfolio) -> dict[str, float]:
        frame = p.loans.group_by("vintage").agg(pl.col("sim_pd").mean()).sort("vintage")
        return dict(frame.iter_rows())

    a, b = mean_pd(calm), mean_pd(shocked)
    worst = sorted(a)[cfg.macro_shock_month]
    assert b[worst] / a[worst] > 1.25  # the shock month's vintage is clearly worse
    first = sorted(a)[0]
    assert b[first] / a[first] < 1.05  # far from the shock: nearly unchanged


# --- repayment paths ---------------------------------------------------------------------------
def test_performance_paths_agree_with_the_loans(credit_portfolio: Portfolio) -> None:
    loans, perf = credit_portfolio.loans, credit_portfolio.performance
    end = credit_portfolio.observation_end
    assert perf.get_column("as_of").max() <= end
    assert set(perf.get_column("status").unique()) == set(STATUSES)
    # every observed default shows as status default at default_mob with 90 days past due
    defaults = loans.filter(pl.col("default_12m") == 1).select("loan_id", mob="default_mob")
    rows = defaults.join(perf, on=["loan_id", "mob"], how="left")
    assert (rows.get_column("status") == "default").all()
    assert (rows.get_column("dpd") == 90).all()
    assert perf.filter(pl.col("status") == "default").height == defaults.height
    # the path to it rolls 30 -> 60 -> 90
    path = defaults.join(perf, on="loan_id").filter(pl.col("mob_right") >= pl.col("mob") - 2)
    assert (
        path.group_by("loan_id").agg(pl.col("dpd").sort_by("mob_right")).get_column("dpd").to_list()
        == [[30, 60, 90]] * defaults.height
    )
    # prepaid loans end with a zero balance at prepaid_mob
    prepaid = loans.filter(pl.col("prepaid_mob").is_not_null()).select("loan_id", mob="prepaid_mob")
    assert prepaid.height > 0
    rows = prepaid.join(perf, on=["loan_id", "mob"], how="left")
    assert (rows.get_column("status") == "prepaid").all() and (
        rows.get_column("balance") == 0
    ).all()
    # a closed loan paid its schedule: term x the level payment (cents rounding aside)
    closed = perf.filter(pl.col("status") == "closed").select("loan_id")
    paid = perf.join(closed, on="loan_id").group_by("loan_id").agg(pl.col("paid").sum())
    check = paid.join(loans, on="loan_id").filter(pl.col("promotion") != "zero_apr_promo")
    expected = check.get_column("monthly_payment") * check.get_column("term_months")
    np.testing.assert_allclose(check.get_column("paid"), expected, atol=0.011 * 24 + 1e-9, rtol=0)
    # delinquency episodes cure as well as roll
    cured = perf.sort("loan_id", "mob").with_columns(nxt=pl.col("dpd").shift(-1).over("loan_id"))
    assert cured.filter((pl.col("dpd") == 30) & (pl.col("nxt") == 0)).height > 0


def test_loan_terms_follow_the_economics(credit_portfolio: Portfolio) -> None:
    loans = credit_portfolio.loans
    payment = econ.monthly_payment(
        loans.get_column("amount").to_numpy(),
        loans.get_column("apr").to_numpy(),
        loans.get_column("term_months").to_numpy(),
        loans.get_column("promotion").to_numpy(),
    )
    np.testing.assert_allclose(loans.get_column("monthly_payment"), payment, atol=0.005 + 1e-9)
    fee = econ.origination_fee(
        loans.get_column("amount").to_numpy(),
        loans.get_column("term_months").to_numpy(),
        loans.get_column("promotion").to_numpy(),
    )
    np.testing.assert_allclose(loans.get_column("origination_fee"), fee)
    returning = loans.filter(pl.col("prior_loans") > 0)
    assert returning.height > 0 and (returning.get_column("months_on_book") >= 1).all()


# --- offers ------------------------------------------------------------------------------------
def test_offers_log_is_a_proper_bandit_log(credit_portfolio: Portfolio) -> None:
    offers = credit_portfolio.offers
    per = offers.group_by("impression_id").agg(
        shown=pl.col("shown").cast(pl.Int64).sum(),
        total=pl.col("propensity").sum(),
        k=pl.len(),
    )
    assert (per.get_column("shown") == 1).all()
    np.testing.assert_allclose(per.get_column("total"), 1.0, atol=1e-9)
    assert (per.get_column("k") == 8).all()
    assert offers.get_column("propensity").min() > 0
    shown = offers.filter(pl.col("shown") == 1)
    assert offers.filter(pl.col("shown") == 0).get_column("accepted").is_null().all()
    rate = shown.get_column("accepted").mean()
    assert isinstance(rate, float) and 0.05 <= rate <= 0.5


def test_logging_policy_is_the_documented_softmax(credit_portfolio: Portfolio) -> None:
    offers = credit_portfolio.offers
    temp = credit_portfolio.config.temperature
    expected = offers.with_columns(w=(pl.col("amount").log() / temp).exp()).with_columns(
        p=pl.col("w") / pl.col("w").sum().over("impression_id")
    )
    np.testing.assert_allclose(expected.get_column("p"), offers.get_column("propensity"), rtol=1e-9)


def test_offer_value_definition_holds(credit_portfolio: Portfolio) -> None:
    offers = credit_portfolio.offers

    def value(pd_col: str) -> np.ndarray:
        return econ.offer_value(
            offers.get_column("amount").to_numpy(),
            offers.get_column("term_months").to_numpy(),
            offers.get_column("apr").to_numpy(),
            offers.get_column("origination_fee").to_numpy(),
            offers.get_column(pd_col).to_numpy(),
            promotion=offers.get_column("promotion").to_numpy(),
            economics=credit_portfolio.config.economics,
        )

    logged = value("pd_at_offer")
    shown = offers.get_column("shown").to_numpy() == 1
    accepted = offers.get_column("accepted").fill_null(0).to_numpy() == 1
    got = offers.get_column("value").to_numpy()
    np.testing.assert_allclose(got[shown & accepted], logged[shown & accepted], rtol=1e-9)
    assert (got[shown & ~accepted] == 0).all()
    assert offers.get_column("value").is_null().to_numpy()[~shown].all()
    truth = offers.get_column("sim_p_accept").to_numpy() * value("sim_pd")
    np.testing.assert_allclose(offers.get_column("sim_ev"), truth, rtol=1e-9, atol=1e-9)


def test_offers_go_to_returning_customers_and_leave_room_to_rank(
    credit_portfolio: Portfolio,
) -> None:
    offers, loans = credit_portfolio.offers, credit_portfolio.loans
    first_loan = loans.group_by("customer_id").agg(first=pl.col("application_ts").min())
    joined = offers.join(first_loan, on="customer_id", how="left")
    assert (joined.get_column("first") < joined.get_column("ts")).all()
    assert (offers.get_column("prior_loans") >= 1).all()
    per = offers.group_by("impression_id").agg(
        logging=(pl.col("propensity") * pl.col("sim_ev")).sum(), best=pl.col("sim_ev").max()
    )
    logging, best = per.get_column("logging").mean(), per.get_column("best").mean()
    assert isinstance(logging, float) and isinstance(best, float)
    assert best > 2 * max(logging, 1.0)  # the oracle beats the logging policy by far


# --- validation catches broken tables ----------------------------------------------------------
def test_validators_name_the_broken_column(credit_portfolio: Portfolio) -> None:
    offers = credit_portfolio.offers
    all_shown = offers.with_columns(
        shown=pl.lit(1, pl.Int8),
        accepted=pl.lit(0, pl.Int8),
        value=pl.lit(0.0),
    )
    with pytest.raises(
        SchemaError, match="exactly one candidate per impression must have shown = 1: 1020 imp"
    ):
        validate_offers(all_shown)
    bad_prop = offers.with_columns(propensity=pl.col("propensity") * 0.5)
    with pytest.raises(SchemaError, match="propensity must sum to 1 per impression"):
        validate_offers(bad_prop)
    loans = credit_portfolio.loans
    with pytest.raises(SchemaError, match=r"term_months: 1 rows, e.g. 7 \(term_months must be"):
        validate_loans(
            loans.with_columns(
                term_months=pl.when(pl.int_range(pl.len()) == 0)
                .then(7)
                .otherwise(pl.col("term_months"))
            )
        )
    with pytest.raises(SchemaError, match=r"apr: \d+ rows.*a fraction in \[0, 1\]"):
        validate_loans(loans.with_columns(apr=pl.col("apr") * 100))
    with pytest.raises(SchemaError, match="loan_id must be 1-128 characters"):
        validate_loans(loans.with_columns(loan_id=pl.lit("bad id ") + pl.col("loan_id")))
    with pytest.raises(SchemaError, match="null while label_mature_at > observation_end"):
        validate_loans(
            loans.with_columns(default_12m=pl.col("sim_default_12m")),
            observation_end=credit_portfolio.observation_end,
        )
    with pytest.raises(SchemaError, match="missing columns: apr"):
        validate_loans(loans.drop("apr"))
    with pytest.raises(SchemaError, match="mistyped columns: amount is Int64"):
        validate_loans(loans.with_columns(pl.col("amount").cast(pl.Int64)))
    with pytest.raises(SchemaError, match=r"duplicate \(loan_id, mob\)"):
        perf = credit_portfolio.performance
        validate_performance(pl.concat([perf, perf.head(3)]))


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError, match="first day of a month"):
        LoanSimConfig(start=dt.date(2024, 3, 5))
    with pytest.raises(ValidationError, match="extra"):
        LoanSimConfig(vintages=12)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="before start"):
        LoanSimConfig(observation_end=dt.datetime(2020, 1, 1))
    naive = LoanSimConfig(observation_end=dt.datetime(2024, 6, 1))
    assert naive.as_of.tzinfo is dt.UTC


# --- IO ----------------------------------------------------------------------------------------
def test_write_read_round_trip(credit_portfolio: Portfolio, credit_portfolio_dir: Path) -> None:
    names = sorted(p.name for p in credit_portfolio_dir.iterdir())
    assert names == ["loans.parquet", "manifest.json", "offers.parquet", "performance.parquet"]
    manifest = json.loads((credit_portfolio_dir / "manifest.json").read_text())
    assert manifest["kind"] == "credit_portfolio" and manifest["schema_version"] == 1
    assert manifest["rows"]["loans"] == credit_portfolio.loans.height
    back = Portfolio.read(credit_portfolio_dir)
    assert back.config == credit_portfolio.config
    for name in ("loans", "performance", "offers"):
        assert getattr(back, name).equals(getattr(credit_portfolio, name)), name


def test_write_refuses_to_clobber_and_read_checks(tmp_path: Path) -> None:
    portfolio = simulate_portfolio(TINY)
    out = portfolio.write(tmp_path / "p")
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        portfolio.write(out)
    portfolio.write(out, overwrite=True)  # replaced in place
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not part of a dataset \(notes.txt\)"):
        portfolio.write(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "p"]  # no staging left
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["rows"]["offers"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match=r"offers.parquet: \d+ rows, manifest says"):
        Portfolio.read(out)
    with pytest.raises(FileNotFoundError, match="no credit portfolio"):
        Portfolio.read(tmp_path / "nowhere")
