"""The transaction schema: the one place that says what a transaction row is.

Every dataset riskml reads or writes (simulator output, imported data, feature inputs) has exactly
these columns, in this order, with these types. ``validate_transactions`` is the single check used
by the writer, the reader and the importer.

Label semantics (documented in README): ``is_fraud`` is the ground truth; ``label_available_at`` is
when the fraud label (chargeback / confirmed report) became known to the business. A legitimate
transaction has ``label_available_at == ts`` (it is treated as genuine from the moment it happens,
until a chargeback says otherwise). A model trained at time *t* may only use ``is_fraud == 1`` for
rows with ``label_available_at <= t``; every other row counts as genuine at *t*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # a polars dtype name, resolved lazily by ``polars_dtype``
    required: bool
    description: str
    default: Any = None  # default for optional columns absent from an import


#: Scenario value of a legitimate transaction.
LEGIT = "none"

#: Fraud scenarios the simulator generates (``fraud_scenario`` values besides ``LEGIT``).
FRAUD_SCENARIOS: tuple[str, ...] = (
    "high_amount",
    "compromised_terminal",
    "account_takeover",
    "card_testing",
    "fraud_ring",
    "behavioral_anomaly",
)

CHANNELS: tuple[str, ...] = ("pos", "contactless", "ecom", "moto", "atm")

UNKNOWN = "unknown"

COLUMNS: tuple[Column, ...] = (
    Column("tx_id", "String", True, "Unique transaction id."),
    Column("ts", "Datetime[us, UTC]", True, "Authorisation time, UTC."),
    Column("customer_id", "String", True, "Card / customer account id."),
    Column("terminal_id", "String", True, "Terminal / merchant id."),
    Column("device_id", "String", False, "Device fingerprint id.", UNKNOWN),
    Column("amount", "Float64", True, "Amount in `currency`, finite and >= 0."),
    Column("currency", "String", False, "ISO 4217 code.", "USD"),
    Column("merchant_category", "String", False, "Merchant category (MCC group).", UNKNOWN),
    Column("channel", "String", False, "pos | contactless | ecom | moto | atm.", UNKNOWN),
    Column("is_fraud", "Int8", False, "1 if the transaction was fraudulent, else 0.", 0),
    Column("fraud_scenario", "String", False, "Fraud scenario name, 'none' if legit.", LEGIT),
    Column(
        "label_available_at",
        "Datetime[us, UTC]",
        False,
        "When the fraud label became known (legit: = ts). Import default: ts + label delay.",
        None,
    ),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.required)
#: what a transaction carries when it happens (the columns before its label): an API request
TRANSACTION_COLUMNS: tuple[str, ...] = COLUMN_NAMES[: COLUMN_NAMES.index("is_fraud")]
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}


class SchemaError(ValueError):
    """A dataset does not match the transaction schema. The message says what and where."""


def polars_dtype(col: Column) -> pl.DataType:
    import polars as pl

    if col.dtype.startswith("Datetime"):
        return pl.Datetime("us", "UTC")
    return getattr(pl, col.dtype)()


def polars_schema() -> dict[str, pl.DataType]:
    """Column name -> polars dtype, in schema order."""
    return {c.name: polars_dtype(c) for c in COLUMNS}


def arrow_schema() -> Any:
    """The same schema as a ``pyarrow.Schema`` (for writers that do not go through polars)."""
    import pyarrow as pa

    def to_arrow(col: Column) -> pa.DataType:
        return {
            "String": pa.large_string(),
            "Float64": pa.float64(),
            "Int8": pa.int8(),
        }.get(col.dtype, pa.timestamp("us", tz="UTC"))

    return pa.schema([(c.name, to_arrow(c), not c.required) for c in COLUMNS])


def validate_transactions(df: pl.DataFrame, *, check_unique: bool = True) -> pl.DataFrame:
    """Check ``df`` against the schema; return it with columns in schema order.

    Raises :class:`SchemaError` naming the first problem found: missing/extra/mistyped columns,
    nulls in required columns, non-finite or negative amounts, ``is_fraud`` outside {0, 1},
    labels known before the transaction, duplicate ``tx_id``.
    """
    import polars as pl

    expected = polars_schema()
    missing = [n for n in COLUMN_NAMES if n not in df.columns]
    if missing:
        raise SchemaError(f"missing columns: {', '.join(missing)}")
    extra = [n for n in df.columns if n not in expected]
    if extra:
        raise SchemaError(f"unexpected columns: {', '.join(extra)}")
    wrong = [
        f"{n} is {df.schema[n]}, expected {dtype}"
        for n, dtype in expected.items()
        if df.schema[n] != dtype
    ]
    if wrong:
        raise SchemaError("mistyped columns: " + "; ".join(wrong))
    df = df.select(COLUMN_NAMES)
    nulls = {n: int(v) for n, v in df.null_count().row(0, named=True).items() if v}
    if nulls:
        raise SchemaError(f"null values: {nulls}")
    checks = df.select(
        bad_amount=(~pl.col("amount").is_finite() | (pl.col("amount") < 0)).sum(),
        bad_label=(~pl.col("is_fraud").is_in([0, 1])).sum(),
        early_label=(pl.col("label_available_at") < pl.col("ts")).sum(),
        dup=(pl.len() - pl.col("tx_id").n_unique()) if check_unique else pl.lit(0),
    ).row(0, named=True)
    problems = {
        "bad_amount": "amount must be finite and >= 0",
        "bad_label": "is_fraud must be 0 or 1",
        "early_label": "label_available_at must not be before ts",
        "dup": "duplicate tx_id",
    }
    for key, message in problems.items():
        if checks[key]:
            raise SchemaError(f"{message}: {checks[key]} rows")
    return df
