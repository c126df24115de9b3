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
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, get_args

from pydantic import Field

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

UNKNOWN: Final = "unknown"

# --- value rules ---------------------------------------------------------------------------------
# The one contract for ids, channels, currencies and merchant categories, shared by the importer
# (it quarantines a row that breaks a rule, with a ``bad_<column>`` reason), every dataset read
# and write (:func:`validate_transactions` raises :class:`SchemaError`), and the decision API and
# event stream (they import the pydantic types below; FastAPI answers 422). A pattern rule is an
# ASCII character class and length bounds; everything else is derived from it: the pydantic
# ``Field`` (``^[class]+$`` plus ``min_length``/``max_length``), the per-row polars expression
# (:meth:`ValueRule.invalid`) and the whole-column fast check (:meth:`ValueRule.column_ok`).
# pydantic-core and polars both use Rust's ``regex`` crate, so the pattern means the same to
# both (``$`` is the end of the text, never before a trailing newline).

#: tx_id, customer_id, terminal_id, device_id: 1-128 characters of ``A-Z a-z 0-9 _ . : -``.
ID_CHARS = r"A-Za-z0-9_.:\-"
ID_MIN_LENGTH = 1
ID_MAX_LENGTH = 128
ID_PATTERN = rf"^[{ID_CHARS}]+$"
#: merchant_category: 1-64 characters of ``A-Z a-z 0-9 _ . : -`` and space.
CATEGORY_CHARS = r"A-Za-z0-9_.:\- "
CATEGORY_MAX_LENGTH = 64
CATEGORY_PATTERN = rf"^[{CATEGORY_CHARS}]+$"
#: currency: an ISO 4217 alphabetic code, three upper-case ASCII letters ("USD", "EUR"). The
#: repo keeps no list of the codes in force: the rule is their form.
CURRENCY_CHARS = "A-Z"
CURRENCY_LENGTH = 3
CURRENCY_PATTERN = rf"^[{CURRENCY_CHARS}]+$"

#: Every ``channel`` value a transaction may carry: the simulator's channels plus ``"unknown"``
#: (what the importer fills in, and the API's default, when a source does not say).
Channel = Literal["pos", "contactless", "ecom", "moto", "atm", "unknown"]
ACCEPTED_CHANNELS: tuple[str, ...] = get_args(Channel)
#: The known channels (what the simulator generates): every accepted one but ``"unknown"``.
CHANNELS: tuple[str, ...] = tuple(c for c in ACCEPTED_CHANNELS if c != UNKNOWN)


#: Rows joined at a time by :meth:`ValueRule.column_ok` (a few tens of MB of text).
_JOIN_ROWS = 2_000_000


@dataclass(frozen=True)
class ValueRule:
    """What a string column's values must be: ``min_length``-``max_length`` characters of the
    ASCII character class ``chars`` (a regex class body), or one of ``values``."""

    name: str
    description: str
    chars: str = ""
    min_length: int = 1
    max_length: int | None = None
    values: tuple[str, ...] = ()

    @property
    def pattern(self) -> str:
        """The anchored regex of the character class (lengths are checked apart)."""
        return f"^[{self.chars}]+$"

    @cached_property
    def allowed_bytes(self) -> bytes:
        """The bytes ``chars`` admits (ASCII only: the class is ASCII by construction)."""
        import re

        return bytes(b for b in range(128) if re.fullmatch(f"[{self.chars}]", chr(b)))

    def field(self) -> Any:
        """The pydantic ``Field`` of the rule (strict: a number is not a string)."""
        return Field(
            strict=True,
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=self.pattern,
        )

    def invalid(self, column: str) -> pl.Expr:
        """Per row: True where ``column`` breaks the rule (null where it is null: nulls are the
        null check's business). One regex / equality pass, no Python per row."""
        import polars as pl

        col = pl.col(column)
        if self.values:
            return ~pl.any_horizontal([col == v for v in self.values])
        # the class is ASCII, so wherever the pattern matches, a byte count is a character count
        length = col.str.len_bytes()
        bad = ~col.str.contains(self.pattern) | (length < self.min_length)
        if self.max_length is not None:
            bad = bad | (length > self.max_length)
        return bad

    def column_ok(self, s: pl.Series) -> bool:
        """Whether every non-null value of ``s`` follows the rule: the same answer as
        ``not s.select(invalid).any()``, about 3x cheaper on a valid column (the values joined
        once and their bytes checked against :attr:`allowed_bytes` in C, instead of one regex
        call per row). Exact: the class is ASCII, so a non-ASCII character is a bad byte."""
        import polars as pl

        if self.values:
            frame = s.to_frame("v")
            return not frame.select(self.invalid("v").any()).item()
        values = s.drop_nulls()
        if values.is_empty():
            return True
        length = pl.first().str.len_bytes()
        shortest, longest = values.to_frame().select(length.min(), length.max().alias("m")).row(0)
        if shortest < self.min_length or (
            self.max_length is not None and longest > self.max_length
        ):
            return False
        for start in range(0, values.len(), _JOIN_ROWS):  # bounded memory on huge columns
            chunk = values.slice(start, _JOIN_ROWS).str.join("").cast(pl.Binary).item()
            if chunk.translate(None, self.allowed_bytes):
                return False
        return True


ID_RULE = ValueRule(
    "id",
    f"{ID_MIN_LENGTH}-{ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : -",
    chars=ID_CHARS,
    min_length=ID_MIN_LENGTH,
    max_length=ID_MAX_LENGTH,
)
CATEGORY_RULE = ValueRule(
    "merchant_category",
    f"1-{CATEGORY_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : - and space",
    chars=CATEGORY_CHARS,
    max_length=CATEGORY_MAX_LENGTH,
)
CURRENCY_RULE = ValueRule(
    "currency",
    "an ISO 4217 code: three upper-case letters A-Z",
    chars=CURRENCY_CHARS,
    min_length=CURRENCY_LENGTH,
    max_length=CURRENCY_LENGTH,
)
CHANNEL_RULE = ValueRule(
    "channel", f"one of {', '.join(ACCEPTED_CHANNELS)}", values=ACCEPTED_CHANNELS
)
#: Column -> the rule its values follow. (The schema's other string column, ``fraud_scenario``,
#: is a label the simulator or the importer writes, not an input.)
VALUE_RULES: dict[str, ValueRule] = {
    "tx_id": ID_RULE,
    "customer_id": ID_RULE,
    "terminal_id": ID_RULE,
    "device_id": ID_RULE,
    "currency": CURRENCY_RULE,
    "merchant_category": CATEGORY_RULE,
    "channel": CHANNEL_RULE,
}

#: The pydantic types of the same rules, for request and event models.
EntityId = Annotated[str, ID_RULE.field()]
MerchantCategory = Annotated[str, CATEGORY_RULE.field()]
Currency = Annotated[str, CURRENCY_RULE.field()]


def rule_message(column: str) -> str:
    """``"<column> must be <rule>"``: how a broken value rule is worded everywhere."""
    return f"{column} must be {VALUE_RULES[column].description}"


def is_valid_value(column: str, value: str) -> bool:
    """One value against its column's rule (the per-row polars expression on one row)."""
    import polars as pl

    frame = pl.DataFrame({column: [value]}, schema={column: pl.String})
    return not frame.select(VALUE_RULES[column].invalid(column)).item()


def _shorten(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


def value_rule_violations(df: pl.DataFrame) -> dict[str, tuple[int, str]]:
    """Column -> (rows that break its value rule, the first such value), for each String rule
    column of ``df`` that holds one; empty when every value follows its rule. Nulls are not
    counted (the null check reports them). Cheap on valid data (:meth:`ValueRule.column_ok`);
    the per-row expression runs only on a column known to hold a bad value."""
    import polars as pl

    out: dict[str, tuple[int, str]] = {}
    for col, rule in VALUE_RULES.items():
        if col not in df.columns or df.schema[col] != pl.String:
            continue
        if rule.column_ok(df.get_column(col)):
            continue
        bad = df.select(rule.invalid(col).fill_null(False)).to_series()
        out[col] = (int(bad.sum()), str(df.get_column(col).filter(bad)[0]))
    return out


COLUMNS: tuple[Column, ...] = (
    Column("tx_id", "String", True, "Unique transaction id."),
    Column("ts", "Datetime[us, UTC]", True, "Authorisation time, UTC."),
    Column("customer_id", "String", True, "Card / customer account id."),
    Column("terminal_id", "String", True, "Terminal / merchant id."),
    Column("device_id", "String", False, "Device fingerprint id.", UNKNOWN),
    Column("amount", "Float64", True, "Amount in `currency`, finite and >= 0."),
    Column("currency", "String", False, "ISO 4217 code.", "USD"),
    Column("merchant_category", "String", False, "Merchant category (MCC group).", UNKNOWN),
    Column("channel", "String", False, " | ".join(ACCEPTED_CHANNELS) + ".", UNKNOWN),
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
    nulls, values that break :data:`VALUE_RULES` (ids, currency, merchant category, channel: the
    message names the column, the rule and a bad value), non-finite or negative amounts,
    ``is_fraud`` outside {0, 1}, labels known before the transaction, duplicate ``tx_id``.
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
    broken = value_rule_violations(df)
    if broken:
        raise SchemaError(
            "values that break the schema's rules: "
            + "; ".join(
                f"{col}: {count} rows, e.g. {_shorten(value)!r} ({rule_message(col)})"
                for col, (count, value) in broken.items()
            )
        )
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
