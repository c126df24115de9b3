"""riskml import: column mapping, defaults, parsing, quarantine, file-level errors, CLI."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from riskml.cli import app
from riskml.data.importer import (
    DEFAULT_LABEL_DELAY_DAYS,
    QUARANTINE_FILE,
    REASONS,
    UNLABELLED_FRAUD,
    ImportMapping,
    ImportSchemaError,
    import_transactions,
    load_external,
)
from riskml.data.io import read_manifest, read_transactions, transaction_files
from riskml.data.schema import COLUMN_NAMES, SchemaError, polars_schema, validate_transactions

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
# schema column -> external name used by the round-trip tests
RENAME = {c: f"SRC_{c.upper()}" for c in COLUMN_NAMES}
REQUIRED_ONLY = ["tx_id", "ts", "customer_id", "terminal_id", "amount"]


def schema_frame() -> pl.DataFrame:
    """Eight schema-exact rows over three UTC days, with fraud, label delays and odd floats."""
    ts = [T0 + dt.timedelta(hours=7 * i, microseconds=i) for i in range(8)]
    fraud = [0, 1, 0, 0, 1, 0, 0, 1]
    delays = [dt.timedelta(days=2.5), dt.timedelta(days=1, seconds=3), dt.timedelta(days=30)]
    label: list[dt.datetime] = []
    for t, f in zip(ts, fraud, strict=True):
        label.append(t + delays[len(label) % 3] if f else t)
    return pl.DataFrame(
        {
            "tx_id": [f"tx-{i:03d}" for i in range(8)],
            "ts": ts,
            "customer_id": ["c1", "c2", "c1", "c3", "c2", "c1", "c4", "c3"],
            "terminal_id": ["m1", "m1", "m2", "m3", "m2", "m1", "m4", "m4"],
            "device_id": ["d1", "unknown", "d2", "d1", "d3", "d1", "unknown", "d9"],
            "amount": [0.1 + 0.2, 1e-7, 123456.789, 0.0, 19.99, 5.0, 1e15, 42.4242424242],
            "currency": ["USD", "EUR", "USD", "GBP", "USD", "USD", "USD", "EUR"],
            "merchant_category": [
                "grocery",
                "travel",
                "fuel",
                "grocery",
                "digital",
                "fuel",
                "grocery",
                "travel",
            ],
            "channel": ["pos", "ecom", "contactless", "atm", "ecom", "pos", "moto", "ecom"],
            "is_fraud": fraud,
            "fraud_scenario": [
                "none",
                "card_testing",
                "none",
                "none",
                "fraud_ring",
                "none",
                "none",
                "account_takeover",
            ],
            "label_available_at": label,
        },
        schema=polars_schema(),
    )


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(COLUMN_NAMES).sort(["ts", "tx_id"])


def write_source(df: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


def write_mapping(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


# --- round trips ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_simulated_rename_import_is_identical(tmp_path: Path, fmt: str) -> None:
    from riskml.data import simulator as sim

    sim.simulate(
        sim.SimulationConfig(n_customers=50, n_terminals=50, days=3, seed=1), tmp_path / "sim"
    )
    original = read_transactions(tmp_path / "sim")
    assert original.height > 0 and original["is_fraud"].sum() > 0
    src = write_source(original.rename(RENAME), tmp_path / f"external.{fmt}")
    mapping = ImportMapping.from_yaml(write_mapping(tmp_path / "m.yaml", columns=RENAME))

    result = import_transactions(src, tmp_path / "imported", mapping)

    assert (result.rows_in, result.accepted, result.quarantined) == (
        original.height,
        original.height,
        0,
    )
    imported = read_transactions(tmp_path / "imported")
    assert_frame_equal(canonical(imported), canonical(original), check_dtypes=True)
    assert len(transaction_files(tmp_path / "imported")) == len(transaction_files(tmp_path / "sim"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_hand_built_rename_import_is_identical(tmp_path: Path, fmt: str) -> None:
    original = schema_frame()
    src = write_source(original.rename(RENAME), tmp_path / f"ext.{fmt}")
    result = import_transactions(src, tmp_path / "out", ImportMapping(columns=RENAME))

    imported = read_transactions(tmp_path / "out", validate=True)
    assert_frame_equal(canonical(imported), canonical(original), check_dtypes=True)
    assert result.days == 3 and result.fraud_rows == 3
    files = [p.name for p in transaction_files(tmp_path / "out")]
    assert files == ["2024-03-01.parquet", "2024-03-02.parquet", "2024-03-03.parquet"]
    manifest = read_manifest(tmp_path / "out")
    assert manifest["counts"] == {"rows_in": 8, "accepted": 8, "quarantined": 0, "reasons": {}}
    assert manifest["mapping"] == RENAME
    assert manifest["kind"] == "import"
    assert pl.read_parquet(tmp_path / "out" / QUARANTINE_FILE).height == 0


def test_directory_of_mixed_files_is_one_source_in_path_order(tmp_path: Path) -> None:
    original = schema_frame().rename(RENAME)
    write_source(original.head(3), tmp_path / "src" / "a.csv")
    write_source(original.slice(3, 3), tmp_path / "src" / "b" / "part.parquet")
    write_source(original.tail(2), tmp_path / "src" / "c.csv")
    (tmp_path / "src" / "README.txt").write_text("ignored")
    # a later file repeating tx-000 is a duplicate of the first file's row
    write_source(original.head(1), tmp_path / "src" / "d.csv")

    acc, quar = load_external(tmp_path / "src", ImportMapping(columns=RENAME))

    assert_frame_equal(canonical(acc), canonical(schema_frame()))
    assert quar["reason"].to_list() == ["duplicate_tx_id"]
    assert quar["source_file"].to_list() == [str(tmp_path / "src" / "d.csv")]
    assert quar["SRC_TX_ID"].to_list() == ["tx-000"]


# --- defaults and parsing -------------------------------------------------------------------------
def test_absent_optional_columns_get_documented_defaults(tmp_path: Path) -> None:
    df = schema_frame().select(REQUIRED_ONLY)
    src = write_source(
        df.with_columns(fraud=pl.Series([0, 1, 0, 0, 1, 0, 0, 1])), tmp_path / "x.csv"
    )
    mapping = ImportMapping(columns={"is_fraud": "fraud"}, defaults={"currency": "EUR"})

    acc, quar = load_external(src, mapping, label_delay_days=2.5)

    assert quar.height == 0
    acc = acc.sort("tx_id")
    assert set(acc["device_id"]) == {"unknown"}
    assert set(acc["merchant_category"]) == {"unknown"} and set(acc["channel"]) == {"unknown"}
    assert set(acc["currency"]) == {"EUR"}
    fraud = acc.filter(pl.col("is_fraud") == 1)
    legit = acc.filter(pl.col("is_fraud") == 0)
    assert set(fraud["fraud_scenario"]) == {UNLABELLED_FRAUD}
    assert set(legit["fraud_scenario"]) == {"none"}
    assert (legit["label_available_at"] == legit["ts"]).all()
    assert ((fraud["label_available_at"] - fraud["ts"]) == dt.timedelta(days=2.5)).all()
    assert_frame_equal(acc.select(REQUIRED_ONLY), df.sort("tx_id"))


def test_minimal_file_defaults_to_genuine_and_default_delay(tmp_path: Path) -> None:
    src = write_source(schema_frame().select(REQUIRED_ONLY), tmp_path / "x.parquet")
    acc, _ = load_external(src)
    assert set(acc["is_fraud"]) == {0} and set(acc["fraud_scenario"]) == {"none"}
    assert set(acc["currency"]) == {"USD"}
    assert (acc["label_available_at"] == acc["ts"]).all()
    assert DEFAULT_LABEL_DELAY_DAYS == 7.0


def test_is_fraud_derived_from_scenario_and_null_optionals_filled(tmp_path: Path) -> None:
    df = (
        schema_frame()
        .select(REQUIRED_ONLY)
        .head(4)
        .with_columns(
            fraud_scenario=pl.Series(["none", "card_testing", None, ""]),
            channel=pl.Series(["pos", None, "", "ecom"]),
        )
    )
    acc, _ = load_external(write_source(df, tmp_path / "x.parquet"), label_delay_days=1)
    acc = acc.sort("tx_id")
    assert acc["is_fraud"].to_list() == [0, 1, 0, 0]
    assert acc["fraud_scenario"].to_list() == ["none", "card_testing", "none", "none"]
    assert acc["channel"].to_list() == ["pos", "unknown", "unknown", "ecom"]
    assert acc["label_available_at"][1] - acc["ts"][1] == dt.timedelta(days=1)


def test_timestamp_formats_time_zones_and_epochs(tmp_path: Path) -> None:
    def one(ts_values: list[Any], **mapping: Any) -> list[dt.datetime | None]:
        n = len(ts_values)
        df = pl.DataFrame(
            {
                "tx_id": [f"t{i}" for i in range(n)],
                "ts": ts_values,
                "customer_id": ["c"] * n,
                "terminal_id": ["m"] * n,
                "amount": [1.0] * n,
            }
        )
        path = write_source(df, tmp_path / f"ts{len(list(tmp_path.iterdir()))}.parquet")
        acc, _ = load_external(path, ImportMapping(**mapping))
        got = dict(zip(acc["tx_id"], acc["ts"], strict=True))
        return [got.get(f"t{i}") for i in range(n)]

    utc = dt.datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    iso = [
        "2024-07-01T10:00:00Z",
        "2024-07-01 10:00:00",
        "2024-07-01T12:00:00.000+02:00",
        "2024-07-01T10:00",
        " 2024-07-01 10:00:00.000000 ",
        "2024-07-01",
    ]
    assert one(iso)[:5] == [utc] * 5
    assert one(iso)[5] == dt.datetime(2024, 7, 1, tzinfo=UTC)
    # naive values are local time in `timezone` (CEST = UTC+2 in July); aware ones keep offset
    assert one(["2024-07-01 12:00:00", "2024-07-01T10:00:00Z"], timezone="Europe/Berlin") == [
        utc,
        utc,
    ]
    assert one(["01/07/2024 10:00"], ts_format="%d/%m/%Y %H:%M") == [utc]
    assert one(["1719828000000"], ts_format="epoch_ms") == [utc]
    assert one([1719828000], ts_format="epoch_s") == [utc]
    assert one([dt.datetime(2024, 7, 1, 12, 0)], timezone="Europe/Berlin") == [utc]
    assert one([dt.date(2024, 7, 1)]) == [dt.datetime(2024, 7, 1, tzinfo=UTC)]
    # a local time that does not exist (DST gap) is a bad timestamp, not a guess
    assert one(["2024-03-31 02:30:00"], timezone="Europe/Berlin") == [None]


# --- row-level quarantine (hand-written cases) ----------------------------------------------------
def test_each_row_problem_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    rows = [  # tx_id, ts, customer, terminal, amount, is_fraud, label, expected reason
        ("ok1", "2024-01-01T00:00:00Z", "c", "m", "1.5", "0", "", ""),
        ("", "2024-01-01T00:00:00Z", "c", "m", "1", "0", "", "missing_tx_id"),
        ("r2", "2024-01-01T00:00:00Z", "", "m", "1", "0", "", "missing_customer_id"),
        ("r3", "2024-01-01T00:00:00Z", "c", "", "1", "0", "", "missing_terminal_id"),
        ("r4", "", "c", "m", "1", "0", "", "missing_ts"),
        ("r5", "yesterday", "c", "m", "1", "0", "", "bad_ts"),
        ("r6", "2024-01-01T00:00:00Z", "c", "m", "", "0", "", "missing_amount"),
        ("r7", "2024-01-01T00:00:00Z", "c", "m", "12,50", "0", "", "bad_amount"),
        ("r8", "2024-01-01T00:00:00Z", "c", "m", "NaN", "0", "", "nonfinite_amount"),
        ("r9", "2024-01-01T00:00:00Z", "c", "m", "-2", "0", "", "negative_amount"),
        (
            "r10",
            "2024-01-01T00:00:00Z",
            "c",
            "m",
            "-inf",
            "0",
            "",
            "nonfinite_amount;negative_amount",
        ),
        ("r11", "2024-01-01T00:00:00Z", "c", "m", "1", "", "", "missing_is_fraud"),
        ("r12", "2024-01-01T00:00:00Z", "c", "m", "1", "2", "", "bad_is_fraud"),
        ("r13", "2024-01-01T00:00:00Z", "c", "m", "1", "1", "soon", "bad_label_available_at"),
        (
            "r14",
            "2024-01-02T00:00:00Z",
            "c",
            "m",
            "1",
            "1",
            "2024-01-01T00:00:00Z",
            "label_before_ts",
        ),
        ("ok1", "2024-01-03T00:00:00Z", "c", "m", "3", "0", "", "duplicate_tx_id"),
        ("ok2", "2024-01-03T00:00:00Z", "c", "m", "1e3", "TRUE", "2024-01-04 00:00", ""),
        ("r17", "", "", "m", "x", "0", "", "missing_customer_id;missing_ts;bad_amount"),
    ]
    names = ["id", "when", "cust", "term", "amt", "fraud", "label"]
    df = pl.DataFrame([list(r[:7]) for r in rows], schema=names, orient="row")
    src = write_source(df, tmp_path / "rows.csv")
    mapping = ImportMapping(
        columns={
            "tx_id": "id",
            "ts": "when",
            "customer_id": "cust",
            "terminal_id": "term",
            "amount": "amt",
            "is_fraud": "fraud",
            "label_available_at": "label",
        }
    )
    result = import_transactions(src, tmp_path / "out", mapping)

    expected = {i: r[7] for i, r in enumerate(rows) if r[7]}
    quar = pl.read_parquet(result.quarantine_path)
    assert dict(zip(quar["source_row"], quar["reason"], strict=True)) == expected
    assert set(quar.columns) == {*names, "reason", "source_file", "source_row"}
    assert quar.filter(pl.col("source_row") == 7)["amt"].to_list() == ["12,50"]  # original text
    assert result.rows_in == len(rows) == result.accepted + result.quarantined
    assert result.accepted == 2
    assert set(result.reasons) <= set(REASONS)
    assert result.reasons["nonfinite_amount"] == 2 and result.reasons["bad_amount"] == 2
    acc = read_transactions(tmp_path / "out").sort("tx_id")
    assert acc["tx_id"].to_list() == ["ok1", "ok2"]
    assert acc["amount"].to_list() == [1.5, 1000.0]
    assert acc["label_available_at"][1] == dt.datetime(2024, 1, 4, tzinfo=UTC)
    counts = read_manifest(tmp_path / "out")["counts"]
    assert counts["rows_in"] == 18 and counts["accepted"] == 2 and counts["quarantined"] == 16


# --- row-level quarantine (property-based) --------------------------------------------------------
TS_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S+00:00")
BAD_TS = ("", "garbage", "2024-13-01T00:00:00", "2024-02-30 10:00:00", "1/2/2024")
BAD_AMOUNT = {  # text -> reasons
    "": ["missing_amount"],
    "abc": ["bad_amount"],
    "1.2.3": ["bad_amount"],
    "nan": ["nonfinite_amount"],
    "inf": ["nonfinite_amount"],
    "-inf": ["nonfinite_amount", "negative_amount"],
}


@st.composite
def source_row(draw: st.DrawFn) -> dict[str, Any]:
    tx = draw(st.sampled_from([*(f"t{i}" for i in range(12)), ""]))
    reasons: list[str] = [] if tx else ["missing_tx_id"]
    if draw(st.booleans()) or draw(st.booleans()):
        moment = draw(st.datetimes(dt.datetime(2023, 12, 30), dt.datetime(2024, 1, 5)))
        fmt = draw(st.sampled_from(TS_FORMATS))
        if "%f" not in fmt:
            moment = moment.replace(microsecond=0)
        ts_text, ts_value = moment.strftime(fmt), moment.replace(tzinfo=UTC)
    else:
        ts_text, ts_value = draw(st.sampled_from(BAD_TS)), None
        reasons.append("missing_ts" if ts_text == "" else "bad_ts")
    if draw(st.booleans()) or draw(st.booleans()):
        amount = draw(st.floats(0, 1e9, allow_nan=False, allow_infinity=False))
        amount_text = draw(st.sampled_from([repr(amount), f"{amount:.17g}", f" {amount!r}"]))
    elif draw(st.booleans()):
        amount = draw(st.floats(max_value=-1e-9, allow_infinity=False, allow_nan=False))
        amount_text = repr(amount)
        reasons.append("negative_amount")
    else:
        amount_text = draw(st.sampled_from(sorted(BAD_AMOUNT)))
        amount = None
        reasons += BAD_AMOUNT[amount_text]
    fraud_text = draw(st.sampled_from(["0", "1", "0", "1", "true", "2", "-1", "x", ""]))
    fraud = {"0": 0, "1": 1, "true": 1}.get(fraud_text)
    if fraud_text == "":
        reasons.append("missing_is_fraud")
    elif fraud is None:
        reasons.append("bad_is_fraud")
    order = list(REASONS)
    return {
        "text": {
            "TXN": tx,
            "WHEN": ts_text,
            "AMT": amount_text,
            "FRAUD": fraud_text,
            "CARD": draw(st.sampled_from(["c1", "c2"])),
            "SHOP": "m1",
        },
        "tx_id": tx,
        "ts": ts_value,
        "amount": amount,
        "is_fraud": fraud,
        "reasons": sorted(reasons, key=order.index),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(source_row(), min_size=1, max_size=30), fmt=st.sampled_from(["csv", "pq"]))
def test_property_rows_in_equals_accepted_plus_quarantined(
    rows: list[dict[str, Any]], fmt: str
) -> None:
    # expected duplicates: the first row without other problems claims its tx_id
    claimed: set[str] = set()
    for row in rows:
        if not row["reasons"]:
            if row["tx_id"] in claimed:
                row["reasons"] = ["duplicate_tx_id"]
            claimed.add(row["tx_id"])
    df = pl.DataFrame([r["text"] for r in rows], schema={k: pl.String for k in rows[0]["text"]})
    mapping = ImportMapping(
        columns={
            "tx_id": "TXN",
            "ts": "WHEN",
            "amount": "AMT",
            "is_fraud": "FRAUD",
            "customer_id": "CARD",
            "terminal_id": "SHOP",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"src.{'csv' if fmt == 'csv' else 'parquet'}"
        write_source(df, path)
        acc, quar = load_external(path, mapping, label_delay_days=3)

    assert acc.height + quar.height == len(rows)
    expected_bad = {i: ";".join(r["reasons"]) for i, r in enumerate(rows) if r["reasons"]}
    assert dict(zip(quar["source_row"], quar["reason"], strict=True)) == expected_bad
    for i, text in zip(
        quar["source_row"], quar.select("TXN", "WHEN", "AMT", "FRAUD").rows(), strict=True
    ):
        want = rows[i]["text"]
        # original text is kept (an empty CSV cell reads back as null)
        assert [t or "" for t in text] == [want[k] for k in ("TXN", "WHEN", "AMT", "FRAUD")]
    validate_transactions(acc)
    good = {r["tx_id"]: r for r in rows if not r["reasons"]}
    assert sorted(acc["tx_id"]) == sorted(good)
    for got in acc.iter_rows(named=True):
        want = good[got["tx_id"]]
        assert (got["ts"], got["amount"], got["is_fraud"]) == (
            want["ts"],
            want["amount"],
            want["is_fraud"],
        )
        delay = dt.timedelta(days=3) if want["is_fraud"] else dt.timedelta(0)
        assert got["label_available_at"] == want["ts"] + delay
    assert acc["ts"].is_sorted()


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d", None]),
            st.one_of(st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 9)), st.none()),
            st.one_of(st.floats(0, 1e12), st.none(), st.floats()),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_property_typed_parquet_source(data: list[tuple[Any, Any, Any]]) -> None:
    data = [*data, *data[:2]]  # always some repeated tx_ids (duplicates when the rows are valid)
    df = pl.DataFrame(
        data, schema={"id": pl.String, "t": pl.Datetime("ms"), "amt": pl.Float64}, orient="row"
    ).with_columns(cust=pl.lit("c"), term=pl.lit(7))
    mapping = ImportMapping(
        columns={
            "tx_id": "id",
            "ts": "t",
            "amount": "amt",
            "customer_id": "cust",
            "terminal_id": "term",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        acc, quar = load_external(write_source(df, Path(tmp) / "x.parquet"), mapping)
    assert acc.height + quar.height == len(data)
    seen: set[str] = set()
    expected: dict[int, str] = {}
    for i, (tx, t, amt) in enumerate(df.select("id", "t", "amt").rows()):
        reasons = []
        if tx is None:
            reasons.append("missing_tx_id")
        if t is None:
            reasons.append("missing_ts")
        if amt is None:
            reasons.append("missing_amount")
        elif amt != amt or amt in (float("inf"), float("-inf")):
            reasons.append("nonfinite_amount")
        if amt is not None and amt < 0:
            reasons.append("negative_amount")
        if not reasons and tx in seen:
            reasons.append("duplicate_tx_id")
        if not reasons:
            seen.add(tx)
        if reasons:
            expected[i] = ";".join(reasons)
    assert dict(zip(quar["source_row"], quar["reason"], strict=True)) == expected
    assert sorted(acc["tx_id"]) == sorted(seen)
    assert set(acc["terminal_id"]) <= {"7"}


# --- file-level errors ----------------------------------------------------------------------------
@pytest.fixture
def ext_csv(tmp_path: Path) -> Path:
    return write_source(schema_frame().rename(RENAME), tmp_path / "ext.csv")


def test_missing_required_columns_after_mapping_names_them(ext_csv: Path, tmp_path: Path) -> None:
    mapping = ImportMapping(columns={"tx_id": "SRC_TX_ID", "ts": "SRC_TS"})
    with pytest.raises(
        ImportSchemaError,
        match="missing required columns after mapping: customer_id, terminal_id, amount",
    ) as err:
        import_transactions(ext_csv, tmp_path / "out", mapping)
    assert err.value.columns == ("customer_id", "terminal_id", "amount")
    assert isinstance(err.value, SchemaError)
    assert not (tmp_path / "out").exists()


def test_mapping_naming_absent_source_column(ext_csv: Path, tmp_path: Path) -> None:
    mapping = ImportMapping(columns={**RENAME, "amount": "AMOUNT_EUR"})
    with pytest.raises(ImportSchemaError, match=r"not in the file: amount <- 'AMOUNT_EUR'"):
        import_transactions(ext_csv, tmp_path / "out", mapping)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("amount", [True] * 8, r"amount <- 'SRC_AMOUNT' has type Boolean.*Float64"),
        ("ts", list(range(8)), r"ts <- 'SRC_TS' has type Int64.*epoch_s"),
        ("customer_id", [[1]] * 8, r"customer_id <- 'SRC_CUSTOMER_ID' has type List"),
        ("is_fraud", [dt.date(2024, 1, 1)] * 8, r"is_fraud <- 'SRC_IS_FRAUD' has type Date"),
    ],
)
def test_impossible_column_types(
    tmp_path: Path, column: str, values: list[Any], message: str
) -> None:
    df = schema_frame().with_columns(pl.Series(column, values)).rename(RENAME)
    src = write_source(df, tmp_path / "typed.parquet")
    with pytest.raises(ImportSchemaError, match=message) as err:
        import_transactions(src, tmp_path / "out", ImportMapping(columns=RENAME))
    assert err.value.columns == (column,)
    assert not (tmp_path / "out").exists()


def test_bad_mapping_files_and_options(tmp_path: Path) -> None:
    with pytest.raises(ImportSchemaError, match=r"invalid mapping file .*colums.*Extra inputs"):
        ImportMapping.from_yaml(write_mapping(tmp_path / "a.yaml", colums={"ts": "t"}))
    with pytest.raises(ImportSchemaError, match=r"unknown schema columns \['timestamp'\]"):
        ImportMapping.from_yaml(write_mapping(tmp_path / "b.yaml", columns={"timestamp": "t"}))
    with pytest.raises(ImportSchemaError, match="unknown time zone 'Mars/Olympus'"):
        ImportMapping.from_yaml(write_mapping(tmp_path / "c.yaml", timezone="Mars/Olympus"))
    with pytest.raises(ImportSchemaError, match="label_delay_days"):
        ImportMapping().with_overrides(label_delay_days=-1)
    with pytest.raises(ImportSchemaError, match=r"no default can be set for \['tx_id'\]"):
        ImportMapping.from_yaml(write_mapping(tmp_path / "d.yaml", defaults={"tx_id": "x"}))
    (tmp_path / "e.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ImportSchemaError, match="must be a YAML mapping"):
        ImportMapping.from_yaml(tmp_path / "e.yaml")


def test_unreadable_or_unsupported_sources(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ImportSchemaError, match=r"unsupported file type '\.json'"):
        load_external(tmp_path / "x.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportSchemaError, match=r"no \.csv/\.parquet/\.pq files"):
        load_external(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_external(tmp_path / "nope.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ImportSchemaError, match=r"cannot read .*broken\.parquet"):
        load_external(tmp_path / "broken.parquet")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ImportSchemaError, match=r"cannot read .*blank\.csv"):
        load_external(tmp_path / "blank.csv")


def test_directory_files_must_share_columns(tmp_path: Path) -> None:
    df = schema_frame()
    write_source(df, tmp_path / "src" / "a.csv")
    write_source(df.drop("device_id"), tmp_path / "src" / "b.csv")
    with pytest.raises(ImportSchemaError, match=r"b.csv: lacks columns \['device_id'\]"):
        load_external(tmp_path / "src")


def test_existing_dataset_needs_overwrite(ext_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    mapping = ImportMapping(columns=RENAME)
    import_transactions(ext_csv, out, mapping)
    with pytest.raises(FileExistsError, match="--overwrite"):
        import_transactions(ext_csv, out, mapping)
    smaller = write_source(schema_frame().head(2).rename(RENAME), tmp_path / "small.csv")
    result = import_transactions(smaller, out, mapping, overwrite=True)
    assert result.accepted == 2 and read_transactions(out).height == 2
    with pytest.raises(ImportSchemaError, match="must not be the source or lie inside it"):
        import_transactions(tmp_path, tmp_path / "inside", mapping)


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_import_ok_with_mapping_file_and_map_options(ext_csv: Path, tmp_path: Path) -> None:
    cols = dict(RENAME)
    amount_src = cols.pop("amount")
    mapping_file = write_mapping(tmp_path / "m.yaml", columns=cols, label_delay_days=3)
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(ext_csv),
            "--out",
            str(out),
            "--mapping",
            str(mapping_file),
            "--map",
            f"amount={amount_src}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "8" in result.output
    assert_frame_equal(canonical(read_transactions(out)), canonical(schema_frame()))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == 8 and manifest["label_delay_days"] == 3


def test_cli_import_quarantine_counts_and_default_currency(tmp_path: Path) -> None:
    df = (
        schema_frame()
        .select(REQUIRED_ONLY)
        .with_columns(amount=pl.Series(["1", "2", "-3", "nan", "5", "6", "7", "8"]))
    )
    src = write_source(df, tmp_path / "x.csv")
    result = CliRunner().invoke(
        app, ["import", str(src), "-o", str(tmp_path / "ds"), "--default-currency", "EUR"]
    )
    assert result.exit_code == 0, result.output
    assert "negative_amount" in result.output and "nonfinite_amount" in result.output
    counts = read_manifest(tmp_path / "ds")["counts"]
    assert (counts["rows_in"], counts["accepted"], counts["quarantined"]) == (8, 6, 2)
    assert set(read_transactions(tmp_path / "ds")["currency"]) == {"EUR"}


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        (["--map", "tx_id=NOPE"], "NOPE"),
        (["--map", "tx_id"], "--map expects schema_column=source_column"),
        (["--timezone", "Nowhere/City"], "unknown time zone"),
        (["--mapping", "/does/not/exist.yaml"], "cannot read mapping file"),
    ],
)
def test_cli_import_file_level_errors_exit_2(
    ext_csv: Path, tmp_path: Path, extra_args: list[str], message: str
) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["import", str(ext_csv), "--out", str(out), *extra_args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_cli_import_missing_columns_exit_2(ext_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import", str(ext_csv), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert "missing required columns after mapping: tx_id, ts, customer_id" in result.output
    assert not (tmp_path / "ds").exists()


def test_header_only_file_imports_zero_rows(tmp_path: Path) -> None:
    src = tmp_path / "empty.csv"
    src.write_text(",".join(REQUIRED_ONLY) + "\n")
    result = import_transactions(src, tmp_path / "out")
    assert (result.rows_in, result.accepted, result.quarantined, result.days) == (0, 0, 0, 0)
    assert read_manifest(tmp_path / "out")["counts"]["rows_in"] == 0
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        transaction_files(tmp_path / "out")  # not the quarantine file by mistake
