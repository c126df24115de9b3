"""Import external transactions (CSV / Parquet) into the riskml schema.

The importer maps source columns onto :data:`riskml.data.schema.COLUMNS`, parses and checks every
row, and splits the input into *accepted* rows (schema-exact) and *quarantined* rows (original
values as strings plus a ``reason``). Nothing is dropped silently: ``rows_in == accepted +
quarantined`` always holds and is recorded in the dataset manifest.

Two kinds of problems:

* **File-level** (the mapping names a column the source lacks, a required column is missing after
  mapping, a column has a type that cannot become its schema type, an unreadable file or a bad
  mapping file): :class:`ImportSchemaError`, a :class:`~riskml.data.schema.SchemaError`, raised
  before anything is written. Its message names the column(s).
* **Row-level**: the row goes to the quarantine with one or more reason codes, ``;``-joined, in
  the order of :data:`REASONS`.

Rules, in one place:

* Source columns named like a schema column are used as-is unless the mapping maps that schema
  column to another source column.
* Optional columns absent from the source, or null/empty in a row, take their defaults:
  ``device_id``/``merchant_category``/``channel`` ``"unknown"``, ``currency`` ``"USD"``
  (overridable through ``ImportMapping.defaults``). ``is_fraud`` absent: derived from
  ``fraud_scenario`` when that is mapped (fraud unless empty or ``"none"``), else 0.
  ``fraud_scenario`` null: ``"none"`` for genuine rows, ``"unlabelled"`` for fraud rows.
  ``label_available_at`` absent or null: ``ts`` for genuine rows, ``ts + label_delay_days`` for
  fraud rows (default :data:`DEFAULT_LABEL_DELAY_DAYS`).
* Timestamps: ``ts_format`` (a chrono/strftime format, or ``epoch_s``/``epoch_ms``/``epoch_us``)
  or, without one, ISO 8601 with ``T`` or space, optional fraction, optional ``Z``/offset, or a
  bare date. Naive timestamps are in ``timezone`` (default UTC); everything is stored in UTC.
* Values follow the schema's value rules (:data:`riskml.data.schema.VALUE_RULES`, shared with
  the decision API and the event stream): ids 1-128 characters of ``A-Z a-z 0-9 _ . : -``,
  ``currency`` three upper-case letters, ``merchant_category`` 1-64 characters of the id
  characters and space, ``channel`` one of ``pos contactless ecom moto atm unknown``. A non-blank
  value that breaks its rule quarantines the row as ``bad_<column>`` (never rewritten: no
  trimming, no case folding); a default that breaks it is a bad mapping.
* Duplicate ``tx_id``: among rows that pass every other check, the first occurrence in source
  order (files sorted by path, then row order) is accepted; later ones are quarantined as
  ``duplicate_tx_id``. A row that fails another check does not claim its ``tx_id``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from riskml.data.schema import (
    BY_NAME,
    COLUMN_NAMES,
    LEGIT,
    REQUIRED_COLUMNS,
    VALUE_RULES,
    SchemaError,
    is_valid_value,
    rule_message,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

#: Days between a fraud transaction and its label when the source has no ``label_available_at``.
DEFAULT_LABEL_DELAY_DAYS = 7.0
#: ``fraud_scenario`` of a fraud row whose source gives no scenario.
UNLABELLED_FRAUD = "unlabelled"
#: Quarantine file, next to ``manifest.json`` in the output dataset.
QUARANTINE_FILE = "quarantine.parquet"
#: Files ``riskml data summary`` writes into a dataset; an overwrite drops them (they are stale).
DERIVED_FILES = ("summary.json", "daily.png")
#: Plausible ``ts`` window of an import: from this instant to now + :data:`DEFAULT_MAX_TS_AHEAD`.
DEFAULT_MIN_TS = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
DEFAULT_MAX_TS_AHEAD = dt.timedelta(days=1)
#: Extra columns of a quarantine frame (besides the source columns, as strings).
QUARANTINE_COLUMNS = ("reason", "source_file", "source_row")

#: Row-level reason codes, in the order they appear in ``reason``.
REASONS: dict[str, str] = {
    "missing_tx_id": "tx_id is null or empty",
    "bad_tx_id": rule_message("tx_id"),
    "missing_customer_id": "customer_id is null or empty",
    "bad_customer_id": rule_message("customer_id"),
    "missing_terminal_id": "terminal_id is null or empty",
    "bad_terminal_id": rule_message("terminal_id"),
    "missing_ts": "ts is null or empty",
    "bad_ts": "ts cannot be parsed (or does not exist in the source time zone)",
    "missing_amount": "amount is null or empty",
    "bad_amount": "amount is not a number",
    "nonfinite_amount": "amount is NaN or infinite",
    "negative_amount": "amount is negative",
    "missing_is_fraud": "is_fraud is null or empty",
    "bad_is_fraud": "is_fraud is not 0/1 (or true/false)",
    "bad_device_id": rule_message("device_id"),
    "bad_currency": rule_message("currency"),
    "bad_merchant_category": rule_message("merchant_category"),
    "bad_channel": rule_message("channel"),
    "bad_label_available_at": "label_available_at cannot be parsed",
    "label_before_ts": "label_available_at is before ts",
    "duplicate_tx_id": "tx_id already seen in an earlier accepted row",
}

SOURCE_SUFFIXES = (".csv", ".parquet", ".pq")
EPOCH_UNITS = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1}
#: Formats tried in order when no ``ts_format`` is given; each row takes the first that parses.
DEFAULT_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_STRING_TARGETS = (
    "tx_id",
    "customer_id",
    "terminal_id",
    "device_id",
    "currency",
    "merchant_category",
    "channel",
    "fraud_scenario",
)
_DEFAULTABLE = (
    "device_id",
    "currency",
    "merchant_category",
    "channel",
    "is_fraud",
    "fraud_scenario",
)
_TRUE = ("1", "true", "t", "yes", "y")
_FALSE = ("0", "false", "f", "no", "n")


class ImportSchemaError(SchemaError):
    """A file-level import problem; ``columns`` names the schema/source columns involved."""

    def __init__(self, message: str, columns: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.columns = columns


class SourceMapping(BaseModel):
    """What every importer's mapping file holds (YAML): ``columns`` maps a schema column (one of
    :attr:`TARGETS`) to a source column, ``ts_format`` and ``timezone`` say how to read its
    timestamps. The transaction, loan-tape and dispute mappings add their own fields."""

    model_config = ConfigDict(extra="forbid")

    #: the columns a mapping may name, and what a message calls them
    TARGETS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = "schema"

    columns: dict[str, str] = Field(default_factory=dict)
    ts_format: str | None = None
    timezone: str = "UTC"

    @field_validator("columns")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(cls.TARGETS))
        if unknown:
            raise ValueError(
                f"unknown {cls.KIND} columns {unknown}; {cls.KIND} columns are {list(cls.TARGETS)}"
            )
        empty = sorted(k for k, v in value.items() if not str(v).strip())
        if empty:
            raise ValueError(f"empty source column name for {empty}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @classmethod
    def from_yaml(cls, path: Path) -> Self:
        """Load a mapping file; any problem is an :class:`ImportSchemaError` naming the file."""
        import yaml

        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ImportSchemaError(f"cannot read mapping file {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ImportSchemaError(f"mapping file {path} must be a YAML mapping, got {raw!r}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            message = pydantic_message(exc)
            raise ImportSchemaError(f"invalid mapping file {path}: {message}") from exc


class ImportMapping(SourceMapping):
    """How an external file maps onto the schema (YAML: ``riskml import --mapping FILE``).

    ``columns`` maps schema column -> source column. The other fields are optional and
    overridden by the corresponding CLI options.
    """

    TARGETS: ClassVar[tuple[str, ...]] = COLUMN_NAMES

    label_delay_days: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    defaults: dict[str, str | int] = Field(default_factory=dict)

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        unknown = sorted(set(value) - set(_DEFAULTABLE))
        if unknown:
            raise ValueError(f"no default can be set for {unknown}; allowed: {list(_DEFAULTABLE)}")
        if "is_fraud" in value and str(value["is_fraud"]) not in ("0", "1"):
            raise ValueError("defaults.is_fraud must be 0 or 1")
        blank = sorted(k for k, v in value.items() if k != "is_fraud" and not str(v).strip())
        if blank:
            raise ValueError(f"empty default for {blank}")
        broken = [
            f"defaults.{k} {v!r}: {rule_message(k)}"
            for k, v in value.items()
            if k in VALUE_RULES and not is_valid_value(k, str(v))
        ]
        if broken:
            raise ValueError("; ".join(broken))
        return value

    def with_overrides(
        self,
        *,
        columns: dict[str, str] | None = None,
        ts_format: str | None = None,
        label_delay_days: float | None = None,
        timezone: str | None = None,
        defaults: dict[str, str | int] | None = None,
    ) -> ImportMapping:
        """A copy with CLI options applied on top (``None`` keeps the file's value)."""
        data = self.model_dump()
        data["columns"] = {**self.columns, **(columns or {})}
        data["defaults"] = {**self.defaults, **(defaults or {})}
        for key, value in (
            ("ts_format", ts_format),
            ("label_delay_days", label_delay_days),
            ("timezone", timezone),
        ):
            if value is not None:
                data[key] = value
        try:
            return ImportMapping.model_validate(data)
        except ValidationError as exc:
            raise ImportSchemaError(f"invalid import options: {pydantic_message(exc)}") from exc


def parse_map_options(items: list[str]) -> dict[str, str]:
    """``["amount=amt", ...]`` (the ``--map`` option) -> ``{"amount": "amt"}``."""
    out: dict[str, str] = {}
    for item in items:
        target, sep, source = item.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise ImportSchemaError(f"--map expects schema_column=source_column, got {item!r}")
        out[target.strip()] = source.strip()
    return out


class ImportResult(BaseModel):
    """What :func:`import_transactions` did."""

    model_config = ConfigDict(extra="forbid")

    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    days: int
    fraud_rows: int
    out: Path
    manifest_path: Path
    quarantine_path: Path
    files: list[Path]
    mapping: dict[str, str]


@dataclass
class LoadedImport:
    """In-memory result of :func:`load`: accepted + quarantined frames and what produced them."""

    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    rows_in: int
    reasons: dict[str, int]
    mapping: dict[str, str]
    defaulted: list[str]
    files: list[Path] = field(default_factory=list)


# --- reading -----------------------------------------------------------------------------------
def source_files(src: Path) -> list[Path]:
    """The CSV/Parquet files of ``src`` (a file, or a directory searched recursively)."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"no such file or directory: {src}")
    if src.is_file():
        if src.suffix.lower() not in SOURCE_SUFFIXES:
            raise ImportSchemaError(
                f"{src}: unsupported file type {src.suffix!r}; expected one of {SOURCE_SUFFIXES}"
            )
        return [src]
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)
    if not files:
        raise ImportSchemaError(f"{src}: no {'/'.join(SOURCE_SUFFIXES)} files in this directory")
    return files


def read_file(path: Path) -> pl.DataFrame:
    import polars as pl

    try:
        if path.suffix.lower() == ".csv":
            # Everything as strings: nothing is lost before parsing, and the quarantine keeps
            # the original text.
            df = pl.read_csv(path, infer_schema=False, raise_if_empty=True)
        else:
            df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for unreadable input
        raise ImportSchemaError(f"cannot read {path}: {exc}") from exc
    clash = [c for c in QUARANTINE_COLUMNS if c in df.columns]
    if clash:
        raise ImportSchemaError(
            f"{path}: source columns {clash} clash with the quarantine's own columns; "
            "rename them in the source",
            tuple(clash),
        )
    return df.with_columns(
        source_file=pl.lit(str(path)), source_row=pl.int_range(pl.len(), dtype=pl.Int64)
    )


def read_sources(files: list[Path]) -> pl.DataFrame:
    import polars as pl

    frames = [read_file(p) for p in files]
    if len(frames) == 1:
        return frames[0]
    names = [set(f.columns) for f in frames]
    union = set().union(*names)
    for path, cols in zip(files, names, strict=True):
        if cols != union:
            missing = sorted(union - cols)
            raise ImportSchemaError(
                f"{path}: lacks columns {missing} that other files in the source have; "
                "every file of a directory import must have the same columns",
                tuple(missing),
            )
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except Exception as exc:
        raise ImportSchemaError(
            f"files in the source have incompatible column types: {exc}"
        ) from exc


# --- file-level checks ---------------------------------------------------------------------------
def resolve_mapping(source_columns: list[str], mapping: ImportMapping) -> dict[str, str]:
    """Schema column -> source column actually used. Raises on names the source lacks."""
    cols = [c for c in source_columns if c not in QUARANTINE_COLUMNS]
    absent = {t: s for t, s in mapping.columns.items() if s not in cols}
    if absent:
        listed = ", ".join(f"{t} <- {s!r}" for t, s in sorted(absent.items()))
        raise ImportSchemaError(
            f"mapping names source columns not in the file: {listed} "
            f"(source columns: {', '.join(cols)})",
            tuple(sorted(absent.values())),
        )
    resolved = {t: s for t, s in mapping.columns.items()}
    for name in COLUMN_NAMES:
        if name not in resolved and name in cols:
            resolved[name] = name
    missing = [c for c in REQUIRED_COLUMNS if c not in resolved]
    if missing:
        raise ImportSchemaError(
            f"missing required columns after mapping: {', '.join(missing)} "
            f"(source columns: {', '.join(cols)}); map them with --map "
            f"{missing[0]}=<source column> or a mapping file",
            tuple(missing),
        )
    return {name: resolved[name] for name in COLUMN_NAMES if name in resolved}


def dtype_kind(dtype: pl.DataType) -> str:
    import polars as pl

    if dtype == pl.Null:
        return "null"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    return "other"


def _check_types(df: pl.DataFrame, resolved: dict[str, str], ts_format: str | None) -> None:
    epoch = ts_format in EPOCH_UNITS
    allowed: dict[str, set[str]] = {name: {"null", "string", "int"} for name in _STRING_TARGETS}
    allowed["amount"] = {"null", "string", "int", "float"}
    allowed["is_fraud"] = {"null", "string", "int", "float", "bool"}
    for ts_col in ("ts", "label_available_at"):
        allowed[ts_col] = {"null", "string", "datetime", "date"} | (
            {"int", "float"} if epoch else set()
        )
    bad: list[str] = []
    targets: list[str] = []
    for target, source in resolved.items():
        kind = dtype_kind(df.schema[source])
        if kind not in allowed[target]:
            hint = ""
            if target in ("ts", "label_available_at") and kind in ("int", "float"):
                hint = " (numeric timestamps need --ts-format epoch_s|epoch_ms|epoch_us)"
            targets.append(target)
            bad.append(
                f"{target} <- {source!r} has type {df.schema[source]}, which cannot become "
                f"{BY_NAME[target].dtype}{hint}"
            )
    if bad:
        raise ImportSchemaError("columns of an impossible type: " + "; ".join(bad), tuple(targets))


# --- row-level parsing ---------------------------------------------------------------------------
def is_blank(s: pl.Series) -> pl.Series:
    """True where a value is null or (for strings) empty/whitespace."""
    import polars as pl

    if s.dtype == pl.String:
        return s.is_null() | (s.str.strip_chars().str.len_bytes() == 0)
    return s.is_null()


def const_series(value: Any, n: int, dtype: Any, name: str = "") -> pl.Series:
    import polars as pl

    return pl.select(pl.repeat(value, n, dtype=dtype)).to_series().alias(name)


def as_string(s: pl.Series) -> pl.Series:
    import polars as pl

    return s if s.dtype == pl.String else s.cast(pl.String)


def parse_datetime(s: pl.Series, ts_format: str | None, timezone: str) -> pl.Series:
    """Any accepted source series -> ``Datetime[us, UTC]``; null where it does not parse."""
    import polars as pl

    out_dtype = pl.Datetime("us", "UTC")
    kind = dtype_kind(s.dtype)
    if kind == "null":
        return const_series(None, len(s), out_dtype, s.name)
    if kind in ("datetime", "date"):
        s = s.cast(pl.Datetime("us")) if kind == "date" else s.dt.cast_time_unit("us")
        return _to_utc(s, timezone)
    if ts_format in EPOCH_UNITS:
        num = s.str.strip_chars().cast(pl.Float64, strict=False) if kind == "string" else s
        micros = num.cast(pl.Float64) * EPOCH_UNITS[ts_format]
        micros = micros.set(~micros.is_finite().fill_null(False), None)
        micros = micros.round(0).cast(pl.Int64, strict=False)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC").alias(s.name)
    text = s.str.strip_chars()
    result = const_series(None, len(s), out_dtype, s.name)
    for fmt in (ts_format,) if ts_format else _sniff_formats(text):
        todo = (result.is_null() & text.is_not_null()).arg_true()
        if len(todo) == 0:
            break
        try:
            parsed = text.gather(todo).str.strptime(pl.Datetime("us"), fmt, strict=False)
        except Exception as exc:
            raise ImportSchemaError(f"invalid ts_format {fmt!r}: {exc}") from exc
        result = result.scatter(todo, _to_utc(parsed, timezone))
    return result


def _sniff_formats(text: pl.Series, sample: int = 1000) -> list[str]:
    """:data:`DEFAULT_TS_FORMATS`, those parsing most of a sample first (they are exclusive, so
    the order changes speed only: most rows parse in the first pass)."""
    import polars as pl

    head = text.drop_nulls().head(sample)
    hits = {
        fmt: int(head.str.strptime(pl.Datetime("us"), fmt, strict=False).is_not_null().sum())
        for fmt in DEFAULT_TS_FORMATS
    }
    return sorted(DEFAULT_TS_FORMATS, key=lambda fmt: -hits[fmt])


def _to_utc(s: pl.Series, timezone: str) -> pl.Series:
    import polars as pl

    assert isinstance(s.dtype, pl.Datetime)
    if s.dtype.time_zone is None:
        s = s.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return s.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def breaks_rule(s: pl.Series) -> pl.Series:
    """True where a (string) value breaks its column's value rule; False where it is null."""
    import polars as pl

    rule = VALUE_RULES[s.name]
    if rule.column_ok(s):  # the cheap whole-column check first: most columns are clean
        return const_series(False, len(s), pl.Boolean, s.name)
    return s.to_frame().select(rule.invalid(s.name).fill_null(False)).to_series()


def parse_flag(s: pl.Series) -> pl.Series:
    """Source ``is_fraud`` -> Int8 0/1, null where not a recognised 0/1 value."""
    import polars as pl

    kind = dtype_kind(s.dtype)
    if kind == "null":
        return const_series(None, len(s), pl.Int8, s.name)
    if kind == "bool":
        return s.cast(pl.Int8)
    if kind == "string":
        low = s.str.strip_chars().str.to_lowercase()
        num = low.cast(pl.Float64, strict=False)
        out = (
            pl.select(
                pl.when(low.is_in(_TRUE) | (num == 1.0))
                .then(pl.lit(1, pl.Int8))
                .when(low.is_in(_FALSE) | (num == 0.0))
                .then(pl.lit(0, pl.Int8))
                .otherwise(None)
            )
            .to_series()
            .alias(s.name)
        )
        return out
    num = s.cast(pl.Float64)
    return num.set(~num.is_in([0.0, 1.0]).fill_null(False), None).cast(pl.Int8)


def parse_number(s: pl.Series) -> pl.Series:
    import polars as pl

    if dtype_kind(s.dtype) == "string":
        return s.str.strip_chars().cast(pl.Float64, strict=False)
    return s.cast(pl.Float64)


def quarantine_frame(
    raw: pl.DataFrame, source_cols: list[str], mask: pl.Series, reason: pl.Series
) -> pl.DataFrame:
    import polars as pl

    def as_text(name: str) -> pl.Expr:
        dtype = raw.schema[name]
        if dtype.is_nested():
            return pl.struct(pl.col(name)).struct.json_encode().alias(name)
        if dtype == pl.Binary:
            return pl.col(name).bin.encode("hex").alias(name)
        return pl.col(name).cast(pl.String)

    return (
        raw.with_columns(reason=reason)
        .filter(mask)
        .select(
            *(as_text(c) for c in source_cols),
            pl.col("reason"),
            pl.col("source_file").cast(pl.String),
            pl.col("source_row").cast(pl.Int64),
        )
    )


def load(
    src: Path | pl.DataFrame,
    mapping: ImportMapping | None = None,
    *,
    label_delay_days: float | None = None,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> LoadedImport:
    """Read, map, parse and check ``src``; split it into accepted and quarantined rows.

    ``src`` is a CSV/Parquet file, a directory of them, or an in-memory frame. Raises
    :class:`ImportSchemaError` for file-level problems. ``label_delay_days`` overrides the
    mapping's value (default :data:`DEFAULT_LABEL_DELAY_DAYS`). With ``ts_window`` (UTC
    ``(min, max)``), a parsed ``ts`` outside it is a file-level error naming the source column,
    the first offending raw value and the number of rows outside.
    """
    import polars as pl

    from riskml.data.schema import validate_transactions

    mapping = mapping or ImportMapping()
    delay = label_delay_days if label_delay_days is not None else mapping.label_delay_days
    delay = DEFAULT_LABEL_DELAY_DAYS if delay is None else float(delay)
    if not math.isfinite(delay) or delay < 0:
        raise ImportSchemaError(f"label_delay_days must be finite and >= 0, got {delay}")

    if isinstance(src, pl.DataFrame):
        files: list[Path] = []
        raw = src.with_columns(
            source_file=pl.lit("<frame>"), source_row=pl.int_range(pl.len(), dtype=pl.Int64)
        )
    else:
        files = source_files(Path(src))
        raw = read_sources(files)
    source_cols = [c for c in raw.columns if c not in QUARANTINE_COLUMNS]
    resolved = resolve_mapping(source_cols, mapping)
    _check_types(raw, resolved, mapping.ts_format)
    n = raw.height

    def src_col(target: str) -> pl.Series:
        return raw.get_column(resolved[target]).alias(target)

    problems: dict[str, pl.Series] = {}
    parsed: dict[str, pl.Series] = {}
    false = const_series(False, n, pl.Boolean)

    for name in ("tx_id", "customer_id", "terminal_id"):
        col = src_col(name)
        problems[f"missing_{name}"] = is_blank(col)
        parsed[name] = as_string(col)
        problems[f"bad_{name}"] = ~problems[f"missing_{name}"] & breaks_rule(parsed[name])

    ts_raw = src_col("ts")
    ts = parse_datetime(ts_raw, mapping.ts_format, mapping.timezone)
    problems["missing_ts"] = is_blank(ts_raw)
    problems["bad_ts"] = ~problems["missing_ts"] & ts.is_null()
    parsed["ts"] = ts
    if ts_window is not None:
        check_ts_window(ts_raw, ts, resolved["ts"], raw, ts_window)

    amount_raw = src_col("amount")
    amount = parse_number(amount_raw)
    problems["missing_amount"] = is_blank(amount_raw)
    problems["bad_amount"] = ~problems["missing_amount"] & amount.is_null()
    problems["nonfinite_amount"] = (~amount.is_finite()).fill_null(False)
    problems["negative_amount"] = (amount < 0).fill_null(False)
    parsed["amount"] = amount

    defaults = {c: BY_NAME[c].default for c in _DEFAULTABLE}
    defaults.update(mapping.defaults)
    defaults["fraud_scenario"] = mapping.defaults.get("fraud_scenario", UNLABELLED_FRAUD)
    defaulted: list[str] = []

    if "is_fraud" in resolved:
        fraud_raw = src_col("is_fraud")
        fraud = parse_flag(fraud_raw)
        problems["missing_is_fraud"] = is_blank(fraud_raw)
        problems["bad_is_fraud"] = ~problems["missing_is_fraud"] & fraud.is_null()
    elif "fraud_scenario" in resolved:
        scen = as_string(src_col("fraud_scenario")).str.strip_chars()
        fraud = (~(is_blank(scen) | (scen == LEGIT).fill_null(False))).cast(pl.Int8)
        problems["missing_is_fraud"] = problems["bad_is_fraud"] = false
    else:
        defaulted.append("is_fraud")
        fraud = const_series(int(defaults["is_fraud"]), n, pl.Int8)
        problems["missing_is_fraud"] = problems["bad_is_fraud"] = false
    parsed["is_fraud"] = fraud.alias("is_fraud")
    is_fraud = (fraud == 1).fill_null(False)

    for name in ("device_id", "currency", "merchant_category", "channel", "fraud_scenario"):
        if name in resolved:
            col = as_string(src_col(name))
            blank = is_blank(col)
        else:
            defaulted.append(name)
            col = const_series(None, n, pl.String, name)
            blank = ~false
        if name == "fraud_scenario":
            fill = pl.select(
                pl.when(pl.lit(is_fraud)).then(pl.lit(str(defaults[name]))).otherwise(pl.lit(LEGIT))
            ).to_series()
        else:
            fill = const_series(str(defaults[name]), n, pl.String)
        parsed[name] = col.set(blank, None).fill_null(fill) if n else col
        if name in VALUE_RULES:
            problems[f"bad_{name}"] = breaks_rule(parsed[name])

    delay_us = round(delay * 86_400 * 1_000_000)
    label_default = pl.select(
        pl.when(pl.lit(is_fraud))
        .then(pl.lit(ts) + pl.duration(microseconds=delay_us))
        .otherwise(pl.lit(ts))
    ).to_series()
    if "label_available_at" in resolved:
        label_raw = src_col("label_available_at")
        label = parse_datetime(label_raw, mapping.ts_format, mapping.timezone)
        label_blank = is_blank(label_raw)
        problems["bad_label_available_at"] = ~label_blank & label.is_null()
        label = label.fill_null(label_default) if n else label
    else:
        defaulted.append("label_available_at")
        label = label_default
        problems["bad_label_available_at"] = false
    parsed["label_available_at"] = label.alias("label_available_at")
    problems["label_before_ts"] = (label < ts).fill_null(False)

    other_bad = pl.select(pl.any_horizontal(list(problems.values()))).to_series() if n else false
    tx = parsed["tx_id"]
    valid = ~other_bad
    first = pl.select(pl.when(pl.lit(valid)).then(pl.lit(tx)).is_first_distinct()).to_series()
    problems["duplicate_tx_id"] = valid & ~first
    assert list(problems) == list(REASONS), "reason order drifted from REASONS"

    reason_exprs = [pl.when(pl.lit(m)).then(pl.lit(code)) for code, m in problems.items()]
    reason = (
        pl.select(pl.concat_str(reason_exprs, separator=";", ignore_nulls=True)).to_series()
        if n
        else pl.Series("reason", [], dtype=pl.String)
    ).alias("reason")
    bad = reason.is_not_null() & (reason.str.len_bytes() > 0)
    bad = bad.fill_null(False)

    accepted = pl.DataFrame([parsed[c].alias(c) for c in COLUMN_NAMES]).filter(~bad)
    if not accepted.get_column("ts").is_sorted():
        accepted = accepted.sort("ts", maintain_order=True)
    accepted = validate_transactions(accepted)
    quarantined = quarantine_frame(raw, source_cols, bad, reason)
    if accepted.height + quarantined.height != n:  # the invariant, checked at run time too
        raise AssertionError(f"row accounting broke: {n} != {accepted.height}+{quarantined.height}")
    counts = {code: int(m.sum()) for code, m in problems.items() if n}
    return LoadedImport(
        accepted=accepted,
        quarantined=quarantined,
        rows_in=n,
        reasons={k: v for k, v in counts.items() if v},
        mapping=resolved,
        defaulted=defaulted,
        files=files,
    )


def load_external(
    src: Path | pl.DataFrame,
    mapping: ImportMapping | None = None,
    label_delay_days: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(accepted, quarantined)`` frames for an external source, in memory, writing nothing.

    ``accepted`` is schema-exact and sorted by ``ts``; ``quarantined`` has the source columns as
    strings plus ``reason``, ``source_file`` and ``source_row``.
    """
    loaded = load(src, mapping, label_delay_days=label_delay_days)
    return loaded.accepted, loaded.quarantined


def default_ts_window(now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(DEFAULT_MIN_TS, now + DEFAULT_MAX_TS_AHEAD)``: the plausible ``ts`` range by default."""
    now = now or dt.datetime.now(dt.UTC)
    return DEFAULT_MIN_TS, now + DEFAULT_MAX_TS_AHEAD


def parse_ts_bound(text: str, option: str) -> dt.datetime:
    """``--min-ts``/``--max-ts`` value (ISO date or datetime; naive is UTC) -> aware UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ImportSchemaError(
            f"{option} expects an ISO date or datetime (e.g. 2020-01-01), got {text!r}"
        ) from exc
    return _utc(value)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def check_ts_window(
    ts_raw: pl.Series,
    ts: pl.Series,
    source: str,
    raw: pl.DataFrame,
    window: tuple[dt.datetime, dt.datetime],
    target: str = "ts",
) -> None:
    """Raise :class:`ImportSchemaError` when any parsed timestamp of column ``target`` lies
    outside ``window`` (every importer's plausibility check: transactions, loans, disputes)."""
    lo, hi = window
    outside = ((ts < lo) | (ts > hi)).fill_null(False)
    count = int(outside.sum())
    if not count:
        return
    first = int(outside.arg_true()[0])
    value = ts_raw[first]
    where = f"{raw.get_column('source_file')[first]} row {raw.get_column('source_row')[first]}"
    raise ImportSchemaError(
        f"{target} <- {source!r}: {count} of {len(ts)} rows outside the plausible window "
        f"{lo.isoformat()} .. {hi.isoformat()}; first raw value {str(value)!r} ({where}); "
        "check --ts-format (epoch_s/epoch_ms/epoch_us) or widen with --min-ts/--max-ts",
        (target,),
    )


def _dataset_entries(out: Path) -> list[Path]:
    """What of a dataset is at ``out``; raises if ``out`` holds anything a swap would lose."""
    from riskml.data.io import MANIFEST, TX_DIR

    if not out.exists():
        return []
    if not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    dataset = [p for p in (out / MANIFEST, out / TX_DIR, out / QUARANTINE_FILE) if p.exists()]
    allowed = {MANIFEST, TX_DIR, QUARANTINE_FILE, *DERIVED_FILES} if dataset else set()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed)
    if foreign:
        raise FileExistsError(
            f"--out {out} holds files that are not part of a riskml dataset "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "import into a new or empty directory"
        )
    return dataset


def _write_dataset(
    root: Path, loaded: LoadedImport, manifest: dict[str, Any], progress: Any
) -> int:
    """Write days, quarantine and manifest under ``root``; return the number of days."""
    import polars as pl

    from riskml.data.io import TX_DIR, write_day, write_manifest

    (root / TX_DIR).mkdir()
    acc = loaded.accepted
    day_col = "__day"
    days = (
        acc.with_columns(pl.col("ts").dt.date().alias(day_col)).partition_by(
            day_col, as_dict=True, maintain_order=True
        )
        if acc.height
        else {}
    )
    for (day,), frame in sorted(days.items()):
        write_day(root, day, frame.drop(day_col), validate=False)
        if progress is not None:
            progress(1)
    loaded.quarantined.write_parquet(root / QUARANTINE_FILE, compression="zstd")
    manifest["days"] = len(days)
    write_manifest(root, manifest)
    return len(days)


def verify_dataset(
    root: Path, *, rows: int, quarantined: int, window: tuple[dt.datetime, dt.datetime]
) -> None:
    """Read back a freshly written dataset: schema, row counts, ``ts`` window, manifest.

    Raises :class:`ImportSchemaError` naming what does not match.
    """
    import polars as pl

    from riskml.data.io import TX_DIR, read_manifest, read_transactions

    try:
        manifest = read_manifest(root)
        if manifest.get("rows") != rows:
            raise ImportSchemaError(f"manifest says {manifest.get('rows')} rows, wrote {rows}")
        if rows:
            df = read_transactions(root, validate=True)
            if df.height != rows:
                raise ImportSchemaError(f"read back {df.height} rows, wrote {rows}")
            lo, hi = window
            ts = df.get_column("ts")
            if int(((ts < lo) | (ts > hi)).sum()):
                raise ImportSchemaError("written ts outside the plausible window")
        elif (root / TX_DIR).exists() and any((root / TX_DIR).iterdir()):
            raise ImportSchemaError("wrote day files for an empty import")
        q = pl.read_parquet(root / QUARANTINE_FILE)
        if q.height != quarantined:
            raise ImportSchemaError(f"quarantine has {q.height} rows, wrote {quarantined}")
    except SchemaError as exc:
        raise ImportSchemaError(f"written dataset failed verification: {exc}") from exc


@contextlib.contextmanager
def staged_dataset(target: Path, purpose: str = "importing") -> Iterator[Path]:
    """A staging directory beside ``target``: fill it in the ``with`` block; on a normal exit it
    becomes ``target`` (:func:`swap_into_place`), on any failure ``target`` is left as it was.
    The staging directory never outlives the block."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{purpose}-", dir=target.parent))
    try:
        yield staging
        swap_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def swap_into_place(new: Path, out: Path) -> None:
    """Make ``new`` (a sibling of ``out``) the dataset at ``out``, with renames only.

    ``out`` absent or empty: one rename. Otherwise: ``out`` is renamed aside, ``new`` renamed
    into place (on failure the aside rename is rolled back), then the aside copy is removed.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        new.replace(out)
        return
    aside = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
    out.replace(aside)
    try:
        new.replace(out)
    except BaseException:
        aside.replace(out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def import_transactions(
    src: Path,
    out: Path,
    mapping: ImportMapping | None = None,
    *,
    label_delay_days: float | None = None,
    overwrite: bool = False,
    progress: Any = None,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> ImportResult:
    """Import ``src`` into a riskml dataset at ``out`` (one Parquet file per UTC day).

    Writes ``out/transactions/YYYY-MM-DD.parquet``, ``out/quarantine.parquet`` (always, possibly
    empty) and ``out/manifest.json`` (source, mapping, counts). Refuses to write into an existing
    dataset unless ``overwrite``, and into a directory holding anything else at all.

    Atomic: the dataset is written into a temporary sibling directory of ``out``, read back and
    verified (:func:`verify_dataset`), then renamed into place (see :func:`swap_into_place`).
    Any failure (file-level problem, ``ts`` outside ``ts_window`` — default
    :func:`default_ts_window` —, I/O error) raises, removes the temporary directory and leaves
    whatever was at ``out`` untouched. ``progress`` is an optional callable ``advance(n)`` called
    once per day written.
    """
    from riskml import __version__

    src, out = Path(src), Path(out)
    mapping = mapping or ImportMapping()
    window = ts_window or default_ts_window()
    if window[0] > window[1]:
        raise ImportSchemaError(
            f"empty ts window: min {window[0].isoformat()} is after max {window[1].isoformat()}"
        )
    target = out.resolve()
    existing = _dataset_entries(target)
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds a dataset ({', '.join(p.name for p in existing)}); "
            "pass --overwrite to replace it"
        )
    if target == src.resolve() or (src.is_dir() and src.resolve() in target.parents):
        raise ImportSchemaError(f"--out {out} must not be the source or lie inside it")
    loaded = load(src, mapping, label_delay_days=label_delay_days, ts_window=window)

    acc = loaded.accepted
    fraud_rows = int(acc.get_column("is_fraud").sum()) if acc.height else 0
    delay = label_delay_days if label_delay_days is not None else mapping.label_delay_days
    manifest: dict[str, Any] = {
        "kind": "import",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "riskml_version": __version__,
        "source": {"path": str(src.resolve()), "files": [str(p) for p in loaded.files]},
        "mapping": loaded.mapping,
        "defaulted_columns": loaded.defaulted,
        "defaults": mapping.defaults,
        "ts_format": mapping.ts_format,
        "timezone": mapping.timezone,
        "ts_window": [window[0].isoformat(), window[1].isoformat()],
        "label_delay_days": DEFAULT_LABEL_DELAY_DAYS if delay is None else float(delay),
        "duplicate_rule": "first accepted occurrence of a tx_id in source order wins",
        "counts": {
            "rows_in": loaded.rows_in,
            "accepted": acc.height,
            "quarantined": loaded.quarantined.height,
            "reasons": loaded.reasons,
        },
        "rows": acc.height,
        "start": acc.get_column("ts").min() if acc.height else None,
        "end": acc.get_column("ts").max() if acc.height else None,
        "fraud_rows": fraud_rows,
        "fraud_rate": fraud_rows / acc.height if acc.height else None,
        "quarantine": QUARANTINE_FILE,
    }

    with staged_dataset(target) as staging:
        days = _write_dataset(staging, loaded, manifest, progress)
        verify_dataset(
            staging, rows=acc.height, quarantined=loaded.quarantined.height, window=window
        )
    return ImportResult(
        rows_in=loaded.rows_in,
        accepted=acc.height,
        quarantined=loaded.quarantined.height,
        reasons=loaded.reasons,
        days=days,
        fraud_rows=fraud_rows,
        out=out,
        manifest_path=out / "manifest.json",
        quarantine_path=out / QUARANTINE_FILE,
        files=loaded.files,
        mapping=loaded.mapping,
    )


def pydantic_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}" for e in exc.errors()
    )
