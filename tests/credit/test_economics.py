"""Unit economics against hand-computed textbook figures."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from riskml.data.credit import economics as econ
from riskml.data.credit.schema import PROMOTIONS, TERMS


def test_annuity_payment_textbook_figures() -> None:
    # 1,000 over 12 months at 12 % APR: r = 1 %, P = 1000 * 0.01 * 1.01^12 / (1.01^12 - 1)
    assert econ.annuity_payment(1000, 0.12, 12)[0] == pytest.approx(88.8488, abs=1e-4)
    # 10,000 over 60 months at 6 %: 193.33 (the usual car-loan example)
    assert econ.annuity_payment(10_000, 0.06, 60)[0] == pytest.approx(193.328, abs=1e-3)
    # zero APR: amount / term
    assert econ.annuity_payment(1200, 0.0, 12)[0] == pytest.approx(100.0)


def test_schedule_of_a_plain_annuity() -> None:
    s = econ.amortisation_schedule(1000, 0.12, 12)
    assert s.length.tolist() == [12]
    assert s.interest[0, 0] == pytest.approx(10.0)  # 1 % of 1,000
    assert s.principal[0, 0] == pytest.approx(88.8488 - 10.0, abs=1e-4)
    assert s.total_interest[0] == pytest.approx(12 * 88.8488 - 1000, abs=2e-3)  # 66.19
    assert s.principal.sum() == pytest.approx(1000.0, abs=1e-9)
    assert s.closing_balance[0, -1] == 0.0
    # each month: opening + interest - payment = closing
    np.testing.assert_allclose(
        s.opening_balance + s.interest - s.payment, s.closing_balance, atol=1e-9
    )


@pytest.mark.parametrize("promotion", PROMOTIONS)
def test_principal_sums_to_the_amount_for_every_term_and_promotion(promotion: str) -> None:
    amounts = np.array([150.0, 999.0, 2500.0, 7300.0])
    for term in TERMS:
        s = econ.amortisation_schedule(amounts, 0.29, term, promotion)
        np.testing.assert_allclose(s.principal.sum(axis=1), amounts, rtol=0, atol=1e-8)
        assert (s.closing_balance[np.arange(4), s.length - 1] == 0).all()


def test_zero_apr_pays_amount_over_term_with_no_interest() -> None:
    s = econ.amortisation_schedule(900, 0.0, 6)
    np.testing.assert_allclose(s.payment[0], 150.0)
    assert s.total_interest[0] == 0.0


def test_zero_apr_promo_has_no_interest_for_three_months() -> None:
    s = econ.amortisation_schedule(1000, 0.12, 12, "zero_apr_promo")
    assert (s.interest[0, :3] == 0).all() and (s.interest[0, 3:] > 0).all()
    # P solves 1000 = 3P + P * a(9, 1 %):  P = 1000 / (3 + (1 - 1.01^-9) / 0.01) = 86.46
    a9 = (1 - 1.01**-9) / 0.01
    assert s.level_payment[0] == pytest.approx(1000 / (3 + a9), abs=1e-9)
    assert s.total_interest[0] < econ.amortisation_schedule(1000, 0.12, 12).total_interest[0]


def test_first_payment_holiday_defers_one_payment_and_capitalises_interest() -> None:
    s = econ.amortisation_schedule(1000, 0.12, 12, "first_payment_holiday")
    assert s.length.tolist() == [13]
    assert s.payment[0, 0] == 0.0 and (s.payment[0, 1:] > 0).all()
    assert s.closing_balance[0, 0] == pytest.approx(1010.0)  # a month's interest added
    # then an ordinary annuity on 1,010
    assert s.level_payment[0] == pytest.approx(1010 * 88.8488 / 1000, abs=1e-3)


def test_origination_fee_schedule_cap_and_waiver() -> None:
    fee = econ.origination_fee([1000, 1000, 1000, 10_000, 1000], [3, 6, 12, 24, 12])
    np.testing.assert_allclose(fee, [0.0, 10.0, 20.0, 150.0, 20.0])  # 3 %, capped at 150
    assert econ.origination_fee(1000, 12, "fee_waiver")[0] == 0.0


def test_margin_expected_loss_and_value_hand_computed() -> None:
    # 1,000 / 12 months / 12 %, fee 20, cost of funds 5 %, servicing 1 a month, PD 5 %, LGD 85 %
    parts = econ.value_breakdown(1000, 12, 0.12, 20.0, 0.05)
    interest = 12 * 88.84878868 - 1000  # 66.185
    # sum of opening balances = interest / monthly rate, so funding = interest * (5 % / 12 %)
    funding = interest / 0.01 * 0.05 / 12
    ead = interest / 0.01 / 12  # mean opening balance over the 12 months: 551.55
    assert parts.interest_income[0] == pytest.approx(interest, abs=1e-6)
    assert parts.fee_income[0] == 20.0
    assert parts.funding_cost[0] == pytest.approx(funding, abs=1e-6)
    assert parts.servicing_cost[0] == 12.0
    assert parts.margin[0] == pytest.approx(interest + 20 - funding - 12, abs=1e-6)  # 46.61
    assert parts.ead[0] == pytest.approx(ead, abs=1e-6)
    assert parts.expected_loss[0] == pytest.approx(0.05 * 0.85 * ead, abs=1e-6)  # 23.44
    value = econ.offer_value(1000, 12, 0.12, 20.0, 0.05)[0]
    assert value == pytest.approx(parts.margin[0] - 0.05 * 0.85 * ead, abs=1e-6)  # 23.17
    assert econ.margin(1000, 12, 0.12, 20.0)[0] == pytest.approx(parts.margin[0])
    assert econ.exposure_at_default(1000, 12, 0.12)[0] == pytest.approx(ead)
    assert econ.expected_loss(0.1, 0.5, 200.0)[0] == pytest.approx(10.0)


def test_ead_of_a_short_loan_averages_its_own_months() -> None:
    # 3 months at 0 %: balances 900, 600, 300 -> 600
    assert econ.exposure_at_default(900, 3, 0.0)[0] == pytest.approx(600.0)


def test_fee_waiver_removes_the_fee_income() -> None:
    plain = econ.value_breakdown(1000, 12, 0.2, 20.0, 0.05)
    waived = econ.value_breakdown(1000, 12, 0.2, 20.0, 0.05, promotion="fee_waiver")
    assert waived.fee_income[0] == 0.0
    assert plain.value[0] - waived.value[0] == pytest.approx(20.0)


def test_promotions_change_the_value() -> None:
    values = {p: econ.offer_value(2000, 12, 0.24, 40.0, 0.04, promotion=p)[0] for p in PROMOTIONS}
    assert values["zero_apr_promo"] < values["none"]  # three months without interest
    assert values["fee_waiver"] == pytest.approx(values["none"] - 40.0)
    assert values["first_payment_holiday"] != values["none"]


def test_value_decreases_strictly_in_pd() -> None:
    pd = np.linspace(0.0, 1.0, 21)
    value = econ.offer_value(1500, 6, 0.25, 15.0, pd)
    assert (np.diff(value) < 0).all()
    assert econ.offer_value(1500, 6, 0.25, 15.0, 0.0)[0] == pytest.approx(value[0])


def test_vectorised_equals_elementwise() -> None:
    rng = np.random.default_rng(0)
    n = 50
    amount = rng.uniform(100, 5000, n).round(2)
    term = rng.choice(TERMS, n)
    apr = rng.uniform(0, 0.36, n)
    fee = rng.uniform(0, 50, n)
    pd = rng.uniform(0, 0.3, n)
    promo = rng.choice(PROMOTIONS, n)
    together = econ.offer_value(amount, term, apr, fee, pd, promotion=promo)
    alone = [
        econ.offer_value(amount[i], term[i], apr[i], fee[i], pd[i], promotion=promo[i])[0]
        for i in range(n)
    ]
    np.testing.assert_allclose(together, alone, rtol=1e-12)
    np.testing.assert_allclose(
        econ.monthly_payment(amount, apr, term), econ.annuity_payment(amount, apr, term)
    )


def test_overrides_and_config() -> None:
    base = econ.offer_value(1000, 12, 0.12, 20.0, 0.1)[0]
    assert econ.offer_value(1000, 12, 0.12, 20.0, 0.1, lgd=0.0)[0] > base
    assert econ.offer_value(1000, 12, 0.12, 20.0, 0.1, cost_of_funds=0.0)[0] > base
    cheap = econ.Economics(servicing_cost_monthly=0.0)
    assert econ.offer_value(1000, 12, 0.12, 20.0, 0.1, economics=cheap)[0] == pytest.approx(
        base + 12.0
    )
    with pytest.raises(ValidationError, match="extra"):
        econ.Economics(lgd=0.5, recovery=0.2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="lacks terms"):
        econ.Economics(fee_rate_by_term={3: 0.0})
    with pytest.raises(ValidationError):
        econ.offer_value(1000, 12, 0.12, 20.0, 0.1, lgd=1.5)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown promotion\(s\) \['bogus'\]"):
        econ.offer_value(1000, 12, 0.1, 0.0, 0.1, promotion="bogus")
    with pytest.raises(ValueError, match="amount must be > 0"):
        econ.amortisation_schedule(-5, 0.1, 12)
    with pytest.raises(ValueError, match=r"apr must be a fraction in \[0, 1\]"):
        econ.amortisation_schedule(100, 12.0, 12)
    with pytest.raises(ValueError, match="term_months must be positive whole"):
        econ.annuity_payment(100, 0.1, 2.5)
    with pytest.raises(ValueError, match="different lengths"):
        econ.offer_value([100, 200], 12, [0.1, 0.2, 0.3], 0.0, 0.1)
    with pytest.raises(ValueError, match="pd must be in"):
        econ.offer_value(100, 12, 0.1, 0.0, 1.2)
    with pytest.raises(ValueError, match="amount must be finite"):
        econ.offer_value(float("nan"), 12, 0.1, 0.0, 0.1)
    with pytest.raises(ValueError, match=r"no fee rate for term\(s\) \[36\]"):
        econ.origination_fee(100, 36)
