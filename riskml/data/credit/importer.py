"""Import real loan tapes (CSV / Parquet) into the loans schema.

The same shape as the transaction importer (:mod:`riskml.data.importer`), whose machinery it
reuses (source discovery and reading, timestamp parsing, the quarantine frame, the plausibility
window, the atomic swap): source columns are mapped onto
:data:`~riskml.data.credit.schema.LOAN_COLUMNS`, every row is parsed and checked, and the input
splits into *accepted* rows (schema-exact) and *quarantined* rows (original values as strings plus
``reason``, ``source_file``, ``source_row``). ``rows_in == accepted + quarantined`` always holds
and is recorded in the manifest.

* **File-level** problems (a mapped column the source lacks, a required column missing, a column
  of an impossible type, an unreadable file, ``application_ts`` outside the plausibility window,
  APRs that look like percentages under ``apr_unit: fraction``): :class:`ImportSchemaError`
  naming the column(s), raised before anything is written.
* **Row-level** problems quarantine the row with ``;``-joined reason codes in the order of
  :data:`REASONS`.

Rules:

* Required: ``loan_id``, ``customer_id``, ``application_ts``, ``amount``, ``term_months``,
  ``apr``. Applicant attributes, ``merchant_id`` and ``category`` are optional (null when absent
  or blank). ``promotion`` defaults to ``none``, ``origination_fee`` to 0 (both overridable in
  ``defaults``); ``monthly_payment`` absent or blank is computed with
  :func:`riskml.data.credit.economics.monthly_payment`; ``vintage`` is derived.
* ``apr`` is a fraction in [0, 1] (``apr_unit: percent`` divides by 100). Terms must be one of
  :data:`~riskml.data.credit.schema.TERMS`.
* Outcome: ``default_12m`` (0/1, true/false) when mapped; else derived from ``max_dpd_12m``
  (worst days past due in the first 12 months) as ``>= 90``; else the tape is unlabelled (null).
  ``default_mob`` (1-12) only on a default. Both given and disagreeing: ``label_conflict``.
* Label maturity against the tape's ``as_of`` date (a required argument: when the extract was
  taken): ``label_mature_at`` = ``application_ts`` + 12 months, or for a default the earliest of
  that, ``application_ts`` + ``default_mob`` months and ``as_of``. A label with
  ``label_mature_at > as_of`` is set to null (a 0 is not final before 12 months on book); a row
  whose ``application_ts`` is after ``as_of`` is quarantined (``after_as_of``).
* Duplicate ``loan_id``: the first accepted occurrence in source order wins; later ones are
  quarantined (``duplicate_loan_id``). A row that fails another check does not claim its id.

Output (:func:`import_loans`): ``<out>/loans.parquet``, ``<out>/quarantine.parquet`` and
``<out>/manifest.json``, written beside ``out``, read back and verified, then swapped into place:
a failure leaves what was at ``out`` untouched.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskml.data.credit.schema import (
    APPLICANT_NUMERIC,
    CATEGORIES,
    DEFAULT_DPD,
    LABEL_MONTHS,
    LOAN_COLUMN_NAMES,
    LOAN_COLUMNS,
    NO_PROMOTION,
    PROMOTIONS,
    SCHEMA_VERSION,
    TERMS,
    validate_loans,
)
from riskml.data.importer import (
    QUARANTINE_COLUMNS,
    QUARANTINE_FILE,
    ImportSchemaError,
    LoadedImport,
    SourceMapping,
    as_string,
    check_ts_window,
    const_series,
    default_ts_window,
    dtype_kind,
    is_blank,
    parse_datetime,
    parse_flag,
    parse_number,
    quarantine_frame,
    read_sources,
    source_files,
    staged_dataset,
)
from riskml.data.schema import ID_RULE, SchemaError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

MANIFEST_KIND = "loan_import"
#: Source-only column: worst days past due in the first 12 months (derives ``default_12m``).
MAX_DPD_COLUMN = "max_dpd_12m"
REQUIRED: tuple[str, ...] = tuple(c.name for c in LOAN_COLUMNS if c.required)
#: Loan columns derived by the importer (never mapped).
DERIVED: tuple[str, ...] = ("vintage", "label_mature_at")
#: What ``LoanImportMapping.columns`` may map (schema column -> source column).
MAPPABLE: tuple[str, ...] = (
    *(n for n in LOAN_COLUMN_NAMES if n not in DERIVED),
    MAX_DPD_COLUMN,
)
_ID_COLUMNS = ("loan_id", "customer_id")
_OPTIONAL_IDS = ("merchant_id",)
_INT_ATTRS = {
    "age": (18, 120),
    "bureau_score": (300, 850),
    "inquiries_6m": (0, None),
    "delinquencies_24m": (0, None),
    "open_accounts": (0, None),
    "months_on_book": (0, None),
    "prior_loans": (0, None),
    "prior_max_dpd": (0, None),
}
_DEFAULTABLE = ("promotion", "origination_fee", "category")


def _reasons() -> dict[str, str]:
    reasons: dict[str, str] = {}
    for col in _ID_COLUMNS:
        reasons[f"missing_{col}"] = f"{col} is null or empty"
        reasons[f"bad_{col}"] = f"{col} must be {ID_RULE.description}"
    reasons |= {
        "missing_application_ts": "application_ts is null or empty",
        "bad_application_ts": "application_ts cannot be parsed (or does not exist in the zone)",
        "after_as_of": "application_ts is after the tape's as-of date",
        "missing_amount": "amount is null or empty",
        "bad_amount": "amount is not a finite number",
        "nonpositive_amount": "amount is not > 0",
        "missing_term_months": "term_months is null or empty",
        "bad_term_months": "term_months is not one of " + ", ".join(map(str, TERMS)),
        "missing_apr": "apr is null or empty",
        "bad_apr": "apr is not a number in [0, 1] (as a fraction; see apr_unit)",
        "bad_promotion": "promotion is not one of " + ", ".join(PROMOTIONS),
        "bad_origination_fee": "origination_fee is not a finite number >= 0",
        "bad_monthly_payment": "monthly_payment is not a finite number > 0",
    }
    for col in APPLICANT_NUMERIC:
        if col in _INT_ATTRS:
            lo, hi = _INT_ATTRS[col]
            rng = f">= {lo}" if hi is None else f"in {lo}-{hi}"
            reasons[f"bad_{col}"] = f"{col} is not a whole number {rng}"
        else:
            reasons[f"bad_{col}"] = f"{col} is not a finite number >= 0"
    reasons |= {
        "bad_merchant_id": f"merchant_id must be {ID_RULE.description}",
        "bad_category": "category is not one of " + ", ".join(CATEGORIES),
        "bad_default_12m": "default_12m is not 0/1 (or true/false)",
        "bad_max_dpd_12m": "max_dpd_12m is not a whole number >= 0",
        "bad_default_mob": f"default_mob is not a whole number 1-{LABEL_MONTHS}",
        "bad_prepaid_mob": "prepaid_mob is not a whole number >= 1",
        "label_conflict": "default_12m disagrees with max_dpd_12m, or default_mob on a non-default",
        "default_after_as_of": "default_mob puts the default after the tape's as-of date",
        "duplicate_loan_id": "loan_id already seen in an earlier accepted row",
    }
    return reasons


#: Row-level reason codes, in the order they appear in ``reason``.
REASONS: dict[str, str] = _reasons()


class LoanImportMapping(SourceMapping):
    """How a loan tape maps onto the loans schema (YAML, like the transaction mapping)."""

    TARGETS: ClassVar[tuple[str, ...]] = tuple(MAPPABLE)
    KIND: ClassVar[str] = "loan"

    apr_unit: Literal["fraction", "percent"] = "fraction"
    defaults: dict[str, str | float] = Field(default_factory=dict)

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        unknown = sorted(set(value) - set(_DEFAULTABLE))
        if unknown:
            raise ValueError(f"no default can be set for {unknown}; allowed: {list(_DEFAULTABLE)}")
        if "promotion" in value and value["promotion"] not in PROMOTIONS:
            raise ValueError(f"defaults.promotion must be one of {list(PROMOTIONS)}")
        if "category" in value and value["category"] not in CATEGORIES:
            raise ValueError(f"defaults.category must be one of {list(CATEGORIES)}")
        if "origination_fee" in value:
            fee = value["origination_fee"]
            if isinstance(fee, str) or not fee >= 0 or fee == float("inf"):
                raise ValueError("defaults.origination_fee must be a finite number >= 0")
        return value


class LoanImportResult(BaseModel):
    """What :func:`import_loans` did."""

    model_config = ConfigDict(extra="forbid")

    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    labelled: int
    immature: int
    defaults: int
    out: Path
    loans_path: Path
    manifest_path: Path
    quarantine_path: Path
    files: list[Path]
    mapping: dict[str, str]


# --- file-level checks ---------------------------------------------------------------------------
def resolve_loan_mapping(source_columns: list[str], mapping: LoanImportMapping) -> dict[str, str]:
    """Loan column -> source column actually used (same rules as the transaction importer:
    same-named source columns are used unless mapped elsewhere). Raises on names the source
    lacks and on required columns missing after mapping."""
    cols = [c for c in source_columns if c not in QUARANTINE_COLUMNS]
    absent = {t: s for t, s in mapping.columns.items() if s not in cols}
    if absent:
        listed = ", ".join(f"{t} <- {s!r}" for t, s in sorted(absent.items()))
        raise ImportSchemaError(
            f"mapping names source columns not in the file: {listed} "
            f"(source columns: {', '.join(cols)})",
            tuple(sorted(absent.values())),
        )
    resolved = dict(mapping.columns)
    for name in MAPPABLE:
        if name not in resolved and name in cols:
            resolved[name] = name
    missing = [c for c in REQUIRED if c not in resolved]
    if missing:
        raise ImportSchemaError(
            f"missing required loan columns after mapping: {', '.join(missing)} "
            f"(source columns: {', '.join(cols)}); map them with "
            f"{missing[0]}=<source column> in the mapping",
            tuple(missing),
        )
    return {name: resolved[name] for name in MAPPABLE if name in resolved}


def _check_types(df: pl.DataFrame, resolved: dict[str, str], ts_format: str | None) -> None:
    from riskml.data.importer import EPOCH_UNITS

    text = {"null", "string", "int"}
    number = {"null", "string", "int", "float"}
    allowed: dict[str, set[str]] = {
        name: text for name in (*_ID_COLUMNS, *_OPTIONAL_IDS, "promotion", "category")
    }
    allowed["application_ts"] = {"null", "string", "datetime", "date"} | (
        {"int", "float"} if ts_format in EPOCH_UNITS else set()
    )
    allowed["default_12m"] = number | {"bool"}
    bad: list[str] = []
    for target, source in resolved.items():
        kind = dtype_kind(df.schema[source])
        if kind not in allowed.get(target, number):
            hint = ""
            if target == "application_ts" and kind in ("int", "float"):
                hint = " (numeric timestamps need ts_format epoch_s|epoch_ms|epoch_us)"
            bad.append(f"{target} <- {source!r} has type {df.schema[source]}{hint}")
    if bad:
        targets = tuple(b.split(" <- ")[0] for b in bad)
        raise ImportSchemaError("columns of an impossible type: " + "; ".join(bad), targets)


def _utc(value: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- row-level parsing ---------------------------------------------------------------------------
def _whole(num: pl.Series) -> pl.Series:
    """Float series -> Int64 where the value is a finite whole number, else null."""
    import polars as pl

    ok = num.is_finite().fill_null(False) & (num == num.round(0)).fill_null(False)
    return num.set(~ok, None).cast(pl.Int64, strict=False)


def load_loans(
    src: Path | pl.DataFrame,
    mapping: LoanImportMapping | None = None,
    *,
    as_of: dt.datetime | dt.date,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> LoadedImport:
    """Read, map, parse and check a loan tape; split it into accepted and quarantined rows.

    ``src`` is a CSV/Parquet file, a directory of them, or an in-memory frame; ``as_of`` is when
    the tape was extracted (label maturity). With ``ts_window`` (UTC ``(min, max)``), an
    ``application_ts`` outside it is a file-level error. Writes nothing.
    """
    import polars as pl

    from riskml.data.credit import economics

    mapping = mapping or LoanImportMapping()
    as_of = _utc(as_of)
    if isinstance(src, pl.DataFrame):
        files: list[Path] = []
        raw = src.with_columns(
            source_file=pl.lit("<frame>"), source_row=pl.int_range(pl.len(), dtype=pl.Int64)
        )
    else:
        files = source_files(Path(src))
        raw = read_sources(files)
    source_cols = [c for c in raw.columns if c not in QUARANTINE_COLUMNS]
    resolved = resolve_loan_mapping(source_cols, mapping)
    _check_types(raw, resolved, mapping.ts_format)
    n = raw.height
    false = const_series(False, n, pl.Boolean)
    null_f = const_series(None, n, pl.Float64)

    def src_col(target: str) -> pl.Series:
        return raw.get_column(resolved[target]).alias(target)

    problems: dict[str, pl.Series] = {code: false for code in REASONS}
    parsed: dict[str, pl.Series] = {}

    def id_rule(col: pl.Series) -> pl.Series:
        if ID_RULE.column_ok(col):
            return false
        return col.to_frame().select(ID_RULE.invalid(col.name).fill_null(False)).to_series()

    for name in _ID_COLUMNS:
        col = as_string(src_col(name))
        problems[f"missing_{name}"] = is_blank(col)
        problems[f"bad_{name}"] = ~problems[f"missing_{name}"] & id_rule(col)
        parsed[name] = col

    ts_raw = src_col("application_ts")
    ts = parse_datetime(ts_raw, mapping.ts_format, mapping.timezone)
    problems["missing_application_ts"] = is_blank(ts_raw)
    problems["bad_application_ts"] = ~problems["missing_application_ts"] & ts.is_null()
    if ts_window is not None:
        check_ts_window(ts_raw, ts, resolved["application_ts"], raw, ts_window, "application_ts")
    problems["after_as_of"] = (ts > as_of).fill_null(False)
    parsed["application_ts"] = ts

    def number(name: str) -> tuple[pl.Series, pl.Series]:
        """(parsed Float64, blank mask) of a mapped column; all null when not mapped."""
        if name not in resolved:
            return null_f.alias(name), ~false
        col = src_col(name)
        return parse_number(col).alias(name), is_blank(col)

    amount, blank = number("amount")
    problems["missing_amount"] = blank
    problems["bad_amount"] = ~blank & ~amount.is_finite().fill_null(False)
    problems["nonpositive_amount"] = (amount <= 0).fill_null(False)
    parsed["amount"] = amount

    term_num, blank = number("term_months")
    term = _whole(term_num)
    problems["missing_term_months"] = blank
    problems["bad_term_months"] = ~blank & ~term.is_in(list(TERMS)).fill_null(False)
    parsed["term_months"] = term

    apr, blank = number("apr")
    if mapping.apr_unit == "percent":
        apr = apr / 100.0
    else:
        finite = apr.filter(apr.is_finite().fill_null(False))
        above = finite.filter(finite > 1)
        if 2 * above.len() > finite.len():  # most of them: a unit problem, not bad rows
            raise ImportSchemaError(
                f"apr <- {resolved['apr']!r}: {above.len()} of {finite.len()} values are above 1 "
                f"(e.g. {above[0]}): they look like percentages; set "
                "apr_unit: percent in the mapping",
                ("apr",),
            )
    problems["missing_apr"] = blank
    problems["bad_apr"] = ~blank & ~apr.is_between(0.0, 1.0).fill_null(False)
    parsed["apr"] = apr

    defaults: dict[str, Any] = {"promotion": NO_PROMOTION, "origination_fee": 0.0}
    defaults.update(mapping.defaults)
    defaulted: list[str] = []

    if "promotion" in resolved:
        promo = as_string(src_col("promotion"))
        promo = promo.set(is_blank(promo), None).fill_null(str(defaults["promotion"]))
    else:
        defaulted.append("promotion")
        promo = const_series(str(defaults["promotion"]), n, pl.String, "promotion")
    problems["bad_promotion"] = ~promo.is_in(list(PROMOTIONS)).fill_null(False)
    parsed["promotion"] = promo

    fee, blank = number("origination_fee")
    if "origination_fee" not in resolved:
        defaulted.append("origination_fee")
    fee = fee.set(blank, None).fill_null(float(defaults["origination_fee"]))
    problems["bad_origination_fee"] = ~(fee.is_finite() & (fee >= 0)).fill_null(False)
    parsed["origination_fee"] = fee

    payment, blank = number("monthly_payment")
    problems["bad_monthly_payment"] = ~blank & ~(payment.is_finite() & (payment > 0)).fill_null(
        False
    )
    parsed["payment_in"] = payment.set(blank, None)

    for name in APPLICANT_NUMERIC:
        value, blank = number(name)
        if name in _INT_ATTRS:
            lo, hi = _INT_ATTRS[name]
            whole = _whole(value)
            ok = (whole >= lo) & ((whole <= hi) if hi is not None else True)
            problems[f"bad_{name}"] = ~blank & ~ok.fill_null(False)
            parsed[name] = whole.set(blank, None)
        else:
            ok = value.is_finite() & (value >= 0)
            problems[f"bad_{name}"] = ~blank & ~ok.fill_null(False)
            parsed[name] = value.set(blank, None)

    for name in ("merchant_id", "category"):
        if name in resolved:
            col = as_string(src_col(name))
            blank = is_blank(col)
            col = col.set(blank, None)
        else:
            blank = ~false
            col = const_series(None, n, pl.String, name)
        if name == "category" and "category" in defaults:
            col = col.fill_null(str(defaults["category"]))
        bad = id_rule(col) if name == "merchant_id" else ~col.is_in(list(CATEGORIES))
        problems[f"bad_{name}"] = bad.fill_null(False)
        parsed[name] = col

    # outcome
    flag: pl.Series | None = None
    if "default_12m" in resolved:
        raw_flag = src_col("default_12m")
        flag = parse_flag(raw_flag).alias("default_12m")
        problems["bad_default_12m"] = ~is_blank(raw_flag) & flag.is_null()
    derived: pl.Series | None = None
    if MAX_DPD_COLUMN in resolved:
        dpd_num, blank = number(MAX_DPD_COLUMN)
        dpd = _whole(dpd_num)
        problems["bad_max_dpd_12m"] = ~blank & ~(dpd >= 0).fill_null(False)
        derived = (dpd >= DEFAULT_DPD).cast(pl.Int8)
    if flag is not None and derived is not None:
        problems["label_conflict"] = (flag != derived).fill_null(False)
    label = flag if flag is not None else derived
    if label is None:
        label = const_series(None, n, pl.Int8, "default_12m")
    mob_num, blank = number("default_mob")
    default_mob = _whole(mob_num)
    problems["bad_default_mob"] = ~blank & ~default_mob.is_between(1, LABEL_MONTHS).fill_null(False)
    problems["label_conflict"] = problems["label_conflict"] | (
        default_mob.is_not_null() & (label != 1).fill_null(True)
    )
    seen = pl.DataFrame([ts.alias("application_ts"), default_mob.alias("default_mob")]).select(
        (_default_date() > as_of).fill_null(False)
    )
    problems["default_after_as_of"] = seen.to_series() if n else false
    prepaid_num, blank = number("prepaid_mob")
    prepaid_mob = _whole(prepaid_num)
    problems["bad_prepaid_mob"] = ~blank & ~(prepaid_mob >= 1).fill_null(False)

    assert list(problems) == list(REASONS), "reason order drifted from REASONS"
    other_bad = pl.select(pl.any_horizontal(list(problems.values()))).to_series() if n else false
    valid = ~other_bad
    first = pl.select(
        pl.when(pl.lit(valid)).then(pl.lit(parsed["loan_id"])).is_first_distinct()
    ).to_series()
    problems["duplicate_loan_id"] = valid & ~first
    reason_exprs = [pl.when(pl.lit(m)).then(pl.lit(code)) for code, m in problems.items()]
    reason = (
        pl.select(pl.concat_str(reason_exprs, separator=";", ignore_nulls=True)).to_series()
        if n
        else pl.Series("reason", [], dtype=pl.String)
    ).alias("reason")
    bad = (reason.is_not_null() & (reason.str.len_bytes() > 0)).fill_null(False)

    frame = pl.DataFrame(
        {
            **{k: v.alias(k) for k, v in parsed.items()},
            "default_12m": label.cast(pl.Int8).alias("default_12m"),
            "default_mob": default_mob.alias("default_mob"),
            "prepaid_mob": prepaid_mob.alias("prepaid_mob"),
        }
    ).filter(~bad)
    accepted = _derive(frame, as_of, economics)
    accepted = validate_loans(accepted, observation_end=as_of)
    quarantined = quarantine_frame(raw, source_cols, bad, reason)
    if accepted.height + quarantined.height != n:  # the invariant, checked at run time too
        raise AssertionError(f"row accounting broke: {n} != {accepted.height}+{quarantined.height}")
    counts = {code: int(m.sum()) for code, m in problems.items()} if n else {}
    if "monthly_payment" not in resolved:
        defaulted.append("monthly_payment")
    return LoadedImport(
        accepted=accepted,
        quarantined=quarantined,
        rows_in=n,
        reasons={k: v for k, v in counts.items() if v},
        mapping=resolved,
        defaulted=defaulted,
        files=files,
    )


def _default_date() -> pl.Expr:
    """When a default at ``default_mob`` is seen: the last second of month on book
    ``default_mob`` (mob 1 = the application's calendar month), as in the simulator."""
    import polars as pl

    month = pl.col("application_ts").dt.truncate("1mo")
    return month.dt.offset_by(pl.format("{}mo", pl.col("default_mob"))) - pl.duration(seconds=1)


def _derive(frame: pl.DataFrame, as_of: dt.datetime, economics: Any) -> pl.DataFrame:
    """Vintage, monthly payment (given or computed), label maturity, in schema column order."""
    import polars as pl

    payment = frame.get_column("payment_in")
    if frame.height:
        computed = economics.monthly_payment(
            frame.get_column("amount").to_numpy(),
            frame.get_column("apr").to_numpy(),
            frame.get_column("term_months").to_numpy(),
            frame.get_column("promotion").to_numpy(),
        )
        payment = payment.fill_null(pl.Series(computed).round(2))
    end = pl.lit(as_of).cast(pl.Datetime("us", "UTC"))
    twelve = pl.col("application_ts").dt.offset_by(f"{LABEL_MONTHS}mo")
    at_default = pl.min_horizontal(twelve, _default_date(), end)
    mature_at = pl.when(pl.col("default_12m") == 1).then(at_default).otherwise(twelve)
    return (
        frame.with_columns(
            monthly_payment=payment,
            vintage=pl.col("application_ts").dt.strftime("%Y-%m"),
            label_mature_at=mature_at,
        )
        .with_columns(
            default_12m=pl.when(pl.col("label_mature_at") <= end).then(pl.col("default_12m"))
        )
        .select(LOAN_COLUMN_NAMES)
        .sort("application_ts", maintain_order=True)
    )


# --- writing -------------------------------------------------------------------------------------
def verify_loan_dataset(root: Path, *, rows: int, quarantined: int, as_of: dt.datetime) -> None:
    """Read back a freshly written loan dataset (schema, counts, labels vs ``as_of``)."""
    import polars as pl

    from riskml.data.credit.simulator import LOANS_FILE, MANIFEST

    try:
        manifest = json.loads((root / MANIFEST).read_text())
        if manifest.get("rows") != rows:
            raise ImportSchemaError(f"manifest says {manifest.get('rows')} rows, wrote {rows}")
        loans = validate_loans(pl.read_parquet(root / LOANS_FILE), observation_end=as_of)
        if loans.height != rows:
            raise ImportSchemaError(f"read back {loans.height} rows, wrote {rows}")
        q = pl.read_parquet(root / QUARANTINE_FILE)
        if q.height != quarantined:
            raise ImportSchemaError(f"quarantine has {q.height} rows, wrote {quarantined}")
    except (SchemaError, OSError, json.JSONDecodeError) as exc:
        raise ImportSchemaError(f"written dataset failed verification: {exc}") from exc


def import_loans(
    src: Path,
    out: Path,
    mapping: LoanImportMapping | None = None,
    *,
    as_of: dt.datetime | dt.date,
    overwrite: bool = False,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> LoanImportResult:
    """Import the loan tape ``src`` into a loan dataset at ``out`` (see the module doc).

    Refuses to replace an existing dataset unless ``overwrite``, and to write into a directory
    holding anything else. ``ts_window`` defaults to
    :func:`riskml.data.importer.default_ts_window` (1990 to tomorrow).
    """
    from riskml import __version__
    from riskml.data.credit.simulator import LOANS_FILE, MANIFEST, _check_target

    src, out = Path(src), Path(out)
    mapping = mapping or LoanImportMapping()
    as_of = _utc(as_of)
    window = ts_window or default_ts_window()
    if window[0] > window[1]:
        raise ImportSchemaError(
            f"empty ts window: min {window[0].isoformat()} is after max {window[1].isoformat()}"
        )
    target = out.resolve()
    _check_target(target, (MANIFEST, LOANS_FILE, QUARANTINE_FILE), overwrite=overwrite)
    if target == src.resolve() or (src.is_dir() and src.resolve() in target.parents):
        raise ImportSchemaError(f"out {out} must not be the source or lie inside it")
    loaded = load_loans(src, mapping, as_of=as_of, ts_window=window)

    acc = loaded.accepted
    label = acc.get_column("default_12m")
    labelled = int(label.is_not_null().sum())
    defaults = int((label == 1).sum())
    immature = acc.height - labelled
    manifest: dict[str, Any] = {
        "kind": MANIFEST_KIND,
        "schema_version": SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "riskml_version": __version__,
        "source": {"path": str(src.resolve()), "files": [str(p) for p in loaded.files]},
        "mapping": loaded.mapping,
        "defaulted_columns": loaded.defaulted,
        "defaults": mapping.defaults,
        "ts_format": mapping.ts_format,
        "timezone": mapping.timezone,
        "apr_unit": mapping.apr_unit,
        "ts_window": [window[0].isoformat(), window[1].isoformat()],
        "as_of": as_of.isoformat(),
        "observation_end": as_of.isoformat(),
        "duplicate_rule": "first accepted occurrence of a loan_id in source order wins",
        "counts": {
            "rows_in": loaded.rows_in,
            "accepted": acc.height,
            "quarantined": loaded.quarantined.height,
            "reasons": loaded.reasons,
        },
        "rows": acc.height,
        "labels": {"labelled": labelled, "immature": immature, "defaults": defaults},
        "default_rate": defaults / labelled if labelled else None,
        "start": acc.get_column("application_ts").min() if acc.height else None,
        "end": acc.get_column("application_ts").max() if acc.height else None,
        "quarantine": QUARANTINE_FILE,
    }
    with staged_dataset(target) as staging:
        acc.write_parquet(staging / LOANS_FILE, compression="zstd", statistics=True)
        loaded.quarantined.write_parquet(staging / QUARANTINE_FILE, compression="zstd")
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
        (staging / MANIFEST).write_text(text)
        verify_loan_dataset(
            staging, rows=acc.height, quarantined=loaded.quarantined.height, as_of=as_of
        )
    return LoanImportResult(
        rows_in=loaded.rows_in,
        accepted=acc.height,
        quarantined=loaded.quarantined.height,
        reasons=loaded.reasons,
        labelled=labelled,
        immature=immature,
        defaults=defaults,
        out=out,
        loans_path=out / LOANS_FILE,
        manifest_path=out / MANIFEST,
        quarantine_path=out / QUARANTINE_FILE,
        files=loaded.files,
        mapping=loaded.mapping,
    )


def read_loans(path: Path | str, *, validate: bool = True) -> pl.DataFrame:
    """The ``loans`` table of a loan dataset (from :func:`import_loans`) or a portfolio
    (:meth:`~riskml.data.credit.simulator.Portfolio.write`), or a single Parquet file; checked
    with :func:`~riskml.data.credit.schema.validate_loans` (labels against the manifest's
    ``observation_end`` when there is one)."""
    import polars as pl

    from riskml.data.credit.simulator import LOANS_FILE, MANIFEST

    path = Path(path)
    file = path if path.is_file() else path / LOANS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no loans table at {path} (expected {LOANS_FILE})")
    end: dt.datetime | None = None
    manifest_path = file.parent / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("observation_end"):
            end = dt.datetime.fromisoformat(manifest["observation_end"])
    try:
        df = pl.read_parquet(file)
    except Exception as exc:  # polars raises several types on unreadable files
        raise SchemaError(f"{file}: cannot read ({exc})") from exc
    if not validate:
        return df
    try:
        return validate_loans(df, observation_end=end)
    except SchemaError as exc:
        raise SchemaError(f"{file}: {exc}") from exc
