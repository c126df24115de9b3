"""One contract for ids, channels, currencies and merchant categories: the importer (quarantine
with a ``bad_<column>`` reason), a dataset read (:class:`SchemaError`), the decision API's request
model and the event stream's transaction all take their rules from ``riskml.data.schema`` and
agree on every value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from riskml.data.importer import REASONS, ImportMapping, ImportSchemaError, load
from riskml.data.io import TX_DIR, read_transactions
from riskml.data.schema import (
    ACCEPTED_CHANNELS,
    CHANNELS,
    UNKNOWN,
    VALUE_RULES,
    SchemaError,
    is_valid_value,
    polars_schema,
    validate_transactions,
    value_rule_violations,
)
from riskml.streaming.events import Transaction
from serving.schemas import TransactionRequest
from tests.support.value_cases import BAD, GOOD, case_id, cases, request

TS = dt.datetime(2024, 3, 4, 10, tzinfo=dt.UTC)


def schema_row(**fields: Any) -> pl.DataFrame:
    """One schema-exact row (a valid transaction), with ``fields`` overriding."""
    row = {
        "tx_id": "tx-1",
        "ts": TS,
        "customer_id": "c1",
        "terminal_id": "t1",
        "device_id": "d1",
        "amount": 12.5,
        "currency": "USD",
        "merchant_category": "grocery",
        "channel": "pos",
        "is_fraud": 0,
        "fraud_scenario": "none",
        "label_available_at": TS,
        **fields,
    }
    return pl.DataFrame([row], schema=polars_schema())


def import_row(column: str, value: str) -> tuple[int, list[str]]:
    """Import one external row whose ``column`` is ``value``: (accepted rows, reasons)."""
    source = pl.DataFrame([{**request(), "is_fraud": "0", column: value}])
    loaded = load(source)
    return loaded.accepted.height, loaded.quarantined.get_column("reason").to_list()


def write_raw_dataset(root: Path, frame: pl.DataFrame) -> Path:
    """A dataset file written straight to Parquet (no write-time check: a foreign writer)."""
    (root / TX_DIR).mkdir(parents=True)
    frame.write_parquet(root / TX_DIR / "2024-03-04.parquet")
    return root


def api_accepts(column: str, value: str) -> bool:
    try:
        TransactionRequest.model_validate(request(**{column: value}))
    except ValidationError as exc:
        assert all(e["loc"] == (column,) for e in exc.errors()), exc.errors()
        return False
    return True


def event_accepts(column: str, value: str) -> bool:
    try:
        Transaction.model_validate(request(**{column: value}))
    except ValidationError:
        return False
    return True


def dataset_accepts(column: str, value: str) -> bool:
    try:
        validate_transactions(schema_row(**{column: value}))
    except SchemaError as exc:
        assert column in str(exc)
        return False
    return True


@pytest.mark.parametrize(("column", "value"), cases(BAD), ids=case_id)
def test_a_bad_value_is_refused_by_importer_api_and_dataset_read(
    tmp_path: Path, column: str, value: str
) -> None:
    accepted, reasons = import_row(column, value)
    assert accepted == 0 and reasons == [f"bad_{column}"]
    assert column in REASONS[f"bad_{column}"]  # the reason text names the column and its rule

    with pytest.raises(ValidationError) as api_err:
        TransactionRequest.model_validate(request(**{column: value}))
    assert [e["loc"] for e in api_err.value.errors()] == [(column,)]
    assert not event_accepts(column, value)

    root = write_raw_dataset(tmp_path / "ds", schema_row(**{column: value}))
    with pytest.raises(SchemaError) as read_err:
        read_transactions(root)
    message = str(read_err.value)
    assert str(root) in message and f"{column}: 1 rows" in message
    assert repr(value[:60])[1:-1] in message  # an example bad value, shortened if long
    assert VALUE_RULES[column].description in message
    # the writer refuses it too
    with pytest.raises(SchemaError, match=column):
        validate_transactions(schema_row(**{column: value}))


@pytest.mark.parametrize(("column", "value"), cases(GOOD), ids=case_id)
def test_a_good_value_is_accepted_by_importer_api_and_dataset_read(
    tmp_path: Path, column: str, value: str
) -> None:
    accepted, reasons = import_row(column, value)
    assert (accepted, reasons) == (1, [])
    assert api_accepts(column, value) and event_accepts(column, value)
    root = write_raw_dataset(tmp_path / "ds", schema_row(**{column: value}))
    assert read_transactions(root).get_column(column).to_list() == [value]
    assert is_valid_value(column, value)


_CHARS = [*"aZ09_.:-", " ", "/", "é", "\n", "\t", "#", "A", "z", "U", "S", "D"]
_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(_CHARS), min_size=1, max_size=8),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "Z", "é", " "]), st.integers(60, 135)),
    st.text(min_size=1, max_size=6),  # any unicode
)


@st.composite
def column_and_value(draw: st.DrawFn) -> tuple[str, str]:
    column = draw(st.sampled_from(sorted(VALUE_RULES)))
    good = GOOD[column]
    value = draw(st.one_of(st.sampled_from(good), st.sampled_from(BAD[column]), _TEXT))
    return column, value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=column_and_value())
def test_property_every_layer_gives_the_same_verdict(case: tuple[str, str]) -> None:
    column, value = case
    if not value.strip():  # blank: the importer reads it as absent (missing id / default)
        return
    accepted, reasons = import_row(column, value)
    verdicts = {
        "importer": accepted == 1,
        "api": api_accepts(column, value),
        "event": event_accepts(column, value),
        "dataset": dataset_accepts(column, value),
        "scalar": is_valid_value(column, value),
    }
    assert len(set(verdicts.values())) == 1, (column, value, verdicts)
    assert reasons == ([] if verdicts["importer"] else [f"bad_{column}"])


@settings(max_examples=200, deadline=None)
@given(
    column=st.sampled_from(sorted(VALUE_RULES)),
    values=st.lists(st.one_of(st.none(), _TEXT, st.sampled_from([*ACCEPTED_CHANNELS, "USD"]))),
)
def test_property_the_fast_column_check_equals_the_per_row_rule(
    column: str, values: list[str | None]
) -> None:
    rule = VALUE_RULES[column]
    s = pl.Series(column, values, dtype=pl.String)
    per_row = s.to_frame().select(rule.invalid(column).fill_null(False)).to_series()
    assert rule.column_ok(s) == (not per_row.any())
    found = value_rule_violations(s.to_frame())
    assert (column in found) == per_row.any()
    if per_row.any():
        assert found[column] == (int(per_row.sum()), s.filter(per_row)[0])


def test_simulator_output_passes_the_read_validation(tmp_path: Path) -> None:
    from riskml.data.simulator import SimulationConfig, simulate

    simulate(SimulationConfig(n_customers=60, n_terminals=40, days=3, seed=5), tmp_path / "sim")
    df = read_transactions(tmp_path / "sim")  # validates by default
    assert df.height > 0 and value_rule_violations(df) == {}
    assert set(df.get_column("channel").unique()) <= set(CHANNELS)


def test_a_mapping_default_that_breaks_a_rule_is_refused() -> None:
    for column, value in (("currency", "usd"), ("channel", "pigeon"), ("device_id", "d 1")):
        with pytest.raises(ValidationError, match=f"defaults.{column} '{value}': {column} must"):
            ImportMapping(defaults={column: value})
    with pytest.raises(ImportSchemaError, match="currency must be an ISO 4217 code"):
        ImportMapping().with_overrides(defaults={"currency": "US"})
    assert ImportMapping(defaults={"currency": "EUR", "channel": "ecom"}).defaults


def test_missing_optional_values_take_defaults_that_follow_the_rules() -> None:
    source = pl.DataFrame([{**request(), "is_fraud": "0"}]).drop(
        "device_id", "currency", "merchant_category", "channel"
    )
    accepted = load(source).accepted
    assert accepted.select("device_id", "currency", "merchant_category", "channel").row(0) == (
        UNKNOWN,
        "USD",
        UNKNOWN,
        UNKNOWN,
    )
    assert UNKNOWN in ACCEPTED_CHANNELS


def test_the_feature_channel_codes_are_the_schema_channels() -> None:
    from riskml.features.definitions import CHANNEL_CODES, UNKNOWN_DEVICE

    assert CHANNEL_CODES == CHANNELS and UNKNOWN_DEVICE == UNKNOWN
