"""The compelling-evidence matcher (Visa CE 3.0 rule) on constructed cases, near misses included."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from riskml.features.disputes.compelling import (
    CompellingError,
    CompellingRule,
    compelling_table,
    match_compelling,
)

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DISPUTED: dict[str, Any] = {
    "tx_id": "X0",
    "customer_id": "C1",
    "terminal_id": "T1",
    "ts": T0,
    "device_id": "D1",
    "ip_address": "24.1.2.3",
}


def _prior(
    tx_id: str,
    days: int,
    *,
    device: str | None = "D1",
    ip: str | None = "24.1.2.3",
    customer: str = "C1",
    terminal: str = "T1",
    fraud: int = 0,
    reported: dt.datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ts = T0 - dt.timedelta(days=days)
    return {
        "tx_id": tx_id,
        "customer_id": customer,
        "terminal_id": terminal,
        "ts": ts,
        "amount": 40.0,
        "device_id": device,
        "ip_address": ip,
        "is_fraud": fraud,
        "label_available_at": reported or ts,
        **extra,
    }


def _history(*rows: dict[str, Any]) -> pl.DataFrame:
    schema: dict[str, Any] = {
        "tx_id": pl.String,
        "customer_id": pl.String,
        "terminal_id": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        "amount": pl.Float64,
        "device_id": pl.String,
        "ip_address": pl.String,
        "is_fraud": pl.Int8,
        "label_available_at": pl.Datetime("us", "UTC"),
    }
    for row in rows:
        for key in row:
            schema.setdefault(key, pl.String)
    return pl.DataFrame(list(rows), schema=schema)


def test_two_priors_at_the_window_edges_sharing_device_and_ip_qualify() -> None:
    history = _history(_prior("P120", 120), _prior("P365", 365), _prior("P10", 10))
    result = match_compelling(DISPUTED, history)
    assert result.qualifies
    assert [t.tx_id for t in result.transactions] == ["P120", "P365"]  # youngest first
    assert [t.age_days for t in result.transactions] == [120, 365]
    assert all(t.shared == ["device_id", "ip_address"] for t in result.transactions)
    assert result.in_window == 2 and result.excluded == 0 and result.near_misses == 0
    assert "2 earlier undisputed transactions" in result.reasons[0]


def test_119_and_366_days_are_near_misses_by_age() -> None:
    history = _history(_prior("P119", 119), _prior("P366", 366), _prior("P200", 200))
    result = match_compelling(DISPUTED, history)
    assert not result.qualifies
    assert [t.tx_id for t in result.transactions] == ["P200"]
    assert result.in_window == 1  # 119 and 366 are outside the window, not in it
    assert "1 qualifying earlier transaction, 2 needed" in result.reasons


def test_ages_are_calendar_days_between_utc_dates() -> None:
    late = T0.replace(hour=0, minute=1)
    disputed = {**DISPUTED, "ts": late}
    # 23:59 on the day 120 calendar days earlier: under 120 x 24 hours, still 120 days
    p1 = _prior("PA", 120) | {"ts": late - dt.timedelta(days=120) + dt.timedelta(hours=23)}
    p2 = _prior("PB", 300)
    result = match_compelling(disputed, _history(p1, p2))
    assert result.qualifies and result.transactions[0].age_days == 120


@pytest.mark.parametrize(
    ("device", "ip"), [("D1", "99.9.9.9"), ("D9", "24.1.2.3"), ("D1", None), (None, "24.1.2.3")]
)
def test_one_shared_attribute_only_is_a_near_miss(device: str | None, ip: str | None) -> None:
    history = _history(
        _prior("P1", 150, device=device, ip=ip), _prior("P2", 250, device=device, ip=ip)
    )
    result = match_compelling(DISPUTED, history)
    assert not result.qualifies and result.count == 0
    assert result.near_misses == 2 and result.in_window == 2
    assert any("fewer than 2 elements" in r for r in result.reasons)
    # the looser rule (issue wording: "sharing device or IP") accepts them
    loose = match_compelling(DISPUTED, history, rule=CompellingRule(min_shared=1))
    assert loose.qualifies and loose.count == 2


def test_no_values_never_match() -> None:
    disputed = {**DISPUTED, "device_id": "unknown", "ip_address": ""}
    history = _history(
        _prior("P1", 150, device="unknown", ip=""), _prior("P2", 250, device="unknown", ip="")
    )
    result = match_compelling(disputed, history, rule=CompellingRule(min_shared=1))
    assert not result.qualifies and result.near_misses == 0
    assert any("carries no device id" in r for r in result.reasons)


def test_disputed_or_reported_priors_are_excluded() -> None:
    history = _history(_prior("P1", 150), _prior("P2", 250), _prior("P3", 300))
    by_id = match_compelling(DISPUTED, history, disputed_tx_ids={"P1", "P2"})
    assert not by_id.qualifies and by_id.excluded == 2 and by_id.count == 1
    assert any("disputed or reported as fraud" in r for r in by_id.reasons)

    dated = history.with_columns(
        pl.when(pl.col("tx_id") == "P1")
        .then(pl.lit(T0 - dt.timedelta(days=100)))
        .otherwise(None)
        .cast(pl.Datetime("us", "UTC"))
        .alias("disputed_at")
    )
    assert not match_compelling(DISPUTED, dated, disputed_tx_ids={"P2"}).qualifies
    # a dispute opened after the assessment is not known then
    as_of = T0 - dt.timedelta(days=110)
    assert match_compelling(DISPUTED, dated, as_of=as_of).qualifies


def test_a_fraud_report_counts_from_when_it_was_known() -> None:
    reported = T0 - dt.timedelta(days=50)
    history = _history(
        _prior("P1", 150, fraud=1, reported=reported), _prior("P2", 250), _prior("P3", 9)
    )
    assert not match_compelling(DISPUTED, history).qualifies  # everything known
    before = match_compelling(DISPUTED, history, as_of=reported - dt.timedelta(days=1))
    assert before.qualifies and before.excluded == 0
    after = match_compelling(DISPUTED, history, as_of=reported)
    assert not after.qualifies and after.excluded == 1


def test_other_merchants_and_other_cards_do_not_count() -> None:
    history = _history(
        _prior("P1", 150, terminal="T2"),
        _prior("P2", 250, terminal="T2"),
        _prior("P3", 200, customer="C2"),
        _prior("P4", 210, customer="C2"),
    )
    assert match_compelling(DISPUTED, history).in_window == 0
    anywhere = match_compelling(DISPUTED, history, rule=CompellingRule(same_merchant=False))
    assert anywhere.qualifies and [t.tx_id for t in anywhere.transactions] == ["P1", "P2"]


def test_shipping_address_and_account_id_count_only_with_an_identity_element() -> None:
    disputed = {**DISPUTED, "shipping_address": "1 Oak Avenue", "account_id": "acc-7"}
    no_identity = _history(
        _prior(
            "P1",
            150,
            device="D8",
            ip="9.9.9.9",
            shipping_address="1 Oak Avenue",
            account_id="acc-7",
        ),
        _prior(
            "P2",
            250,
            device="D8",
            ip="9.9.9.9",
            shipping_address="1 Oak Avenue",
            account_id="acc-7",
        ),
    )
    result = match_compelling(disputed, no_identity)
    assert not result.qualifies and result.near_misses == 2
    lenient = CompellingRule(require_identity=False)
    assert match_compelling(disputed, no_identity, rule=lenient).qualifies
    with_device = _history(
        _prior("P1", 150, ip="9.9.9.9", shipping_address="1 Oak Avenue"),
        _prior("P2", 250, ip="9.9.9.9", account_id="acc-7"),
    )
    ok = match_compelling(disputed, with_device)
    assert ok.qualifies
    assert [t.shared for t in ok.transactions] == [
        ["device_id", "shipping_address"],
        ["device_id", "account_id"],
    ]


def test_anchor_on_the_dispute_date() -> None:
    disputed = {**DISPUTED, "opened_at": T0 + dt.timedelta(days=30)}
    history = _history(_prior("P1", 100), _prior("P2", 340))  # 130 and 370 days before opening
    tx_anchor = match_compelling(disputed, history)
    assert [t.tx_id for t in tx_anchor.transactions] == ["P2"]
    dispute_anchor = match_compelling(disputed, history, rule=CompellingRule(anchor="dispute"))
    assert [t.tx_id for t in dispute_anchor.transactions] == ["P1"]
    assert dispute_anchor.transactions[0].age_days == 130


def test_the_batch_table_agrees_with_the_single_matcher() -> None:
    history = _history(
        _prior("P1", 150),
        _prior("P2", 250),
        _prior("P3", 119),
        _prior("Q1", 150, customer="C2", device="D5", ip="50.0.0.1"),
        _prior("Q2", 200, customer="C2", device="D5", ip="50.0.0.2"),
        {**_prior("X0", 0), "tx_id": "X0"},
        {**_prior("X1", 0, customer="C2", device="D5", ip="50.0.0.1")},
    )
    disputes = pl.DataFrame(
        {
            "dispute_id": ["DSP1", "DSP2"],
            "tx_id": ["X0", "X1"],
            "customer_id": ["C1", "C2"],
            "terminal_id": ["T1", "T1"],
            "tx_ts": [T0, T0],
            "opened_at": [T0 + dt.timedelta(days=20)] * 2,
        }
    )
    summary, results = compelling_table(disputes, history)
    assert summary.get_column("qualifies").to_list() == [True, False]
    assert summary.get_column("qualifying").to_list() == [2, 1]
    assert summary.get_column("near_misses").to_list() == [0, 1]
    for rec in disputes.iter_rows(named=True):
        tx = history.filter(pl.col("tx_id") == rec["tx_id"]).row(0, named=True)
        single = match_compelling(
            {**rec, "device_id": tx["device_id"], "ip_address": tx["ip_address"]},
            history,
            as_of=rec["opened_at"],
        )
        assert single.model_dump() == results[rec["dispute_id"]].model_dump()


def test_a_prior_disputed_in_the_same_set_is_excluded_by_the_table() -> None:
    history = _history(_prior("P1", 150), _prior("P2", 250), _prior("X0", 0))
    disputes = pl.DataFrame(
        {
            "dispute_id": ["DSP0", "DSP1"],
            "tx_id": ["P1", "X0"],
            "customer_id": ["C1", "C1"],
            "terminal_id": ["T1", "T1"],
            "tx_ts": [T0 - dt.timedelta(days=150), T0],
            "opened_at": [T0 - dt.timedelta(days=140), T0 + dt.timedelta(days=10)],
        }
    )
    _, results = compelling_table(disputes, history)
    assert not results["DSP1"].qualifies and results["DSP1"].excluded == 1


def test_without_history_nothing_qualifies() -> None:
    result = match_compelling(DISPUTED, None)
    assert not result.qualifies and result.reasons[0] == "no transaction history was given"


def test_bad_input_is_refused() -> None:
    with pytest.raises(CompellingError, match="terminal_id"):
        match_compelling({**DISPUTED, "terminal_id": None}, _history(_prior("P1", 150)))
    with pytest.raises(CompellingError, match="ts or tx_ts"):
        match_compelling({k: v for k, v in DISPUTED.items() if k != "ts"}, None)
    with pytest.raises(CompellingError, match="lacks columns"):
        match_compelling(DISPUTED, _history(_prior("P1", 150)).drop("terminal_id"))
    with pytest.raises(ValidationError, match="exceeds max_age_days"):
        CompellingRule(min_age_days=200, max_age_days=100)
    with pytest.raises(ValidationError):
        CompellingRule(min_shared=5)
    assert "120-365 days" in CompellingRule().describe()


def test_the_session_record_stands_in_for_a_missing_history_row() -> None:
    history = _history(_prior("P1", 150), _prior("P2", 250))  # the disputed X0 is not in it
    disputes = pl.DataFrame(
        {
            "dispute_id": ["DSP1"],
            "tx_id": ["X0"],
            "customer_id": ["C1"],
            "terminal_id": ["T1"],
            "tx_ts": [T0],
            "opened_at": [T0 + dt.timedelta(days=20)],
        }
    )
    _, without = compelling_table(disputes, history)
    assert not without["DSP1"].qualifies
    assert any("carries no device id" in r for r in without["DSP1"].reasons)
    fallback = {"DSP1": {"device_id": "D1", "ip_address": "24.1.2.3"}}
    _, with_log = compelling_table(disputes, history, fallback=fallback)
    assert with_log["DSP1"].qualifies and with_log["DSP1"].count == 2
