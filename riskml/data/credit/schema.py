"""The credit tables: loans, their monthly performance, and logged offer impressions.

One place says what each table's columns are, their polars dtypes and which may be null, and
one validator per table checks a frame against it (used by the simulator before it returns, by
:meth:`~riskml.data.credit.simulator.Portfolio.read`, and by the loan-tape importer on what it
accepts). A problem raises :class:`riskml.data.schema.SchemaError` naming the table, the column,
the rule, the number of rows and one offending value.

Conventions (shared with the transaction schema, :mod:`riskml.data.schema`):

* ids (``loan_id``, ``customer_id``, ``merchant_id``, ``impression_id``) follow the id value
  rule: 1-128 characters of ``A-Z a-z 0-9 _ . : -``;
* timestamps are ``Datetime("us", "UTC")``;
* columns prefixed ``sim_`` are simulator ground truth: optional, never model features.

Label semantics: ``default_12m`` is 1 when the loan reached 90+ days past due within its first 12
months on book. It is known (mature) at ``label_mature_at``: the date of that default when one
was observed, else ``application_ts`` + 12 months. At an observation date ``T`` the label is
null for every loan with ``label_mature_at > T`` (:func:`validate_loans` checks it when given
``observation_end``). In a simulated portfolio every mature label is set; an imported tape may
have none (unlabelled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from riskml.data.schema import ID_RULE, Column, SchemaError, polars_dtype

if TYPE_CHECKING:  # pragma: no cover
    import datetime as dt

    import polars as pl

#: Version of the three tables' layout, written into every manifest.
SCHEMA_VERSION: Final = 1

#: Loan terms offered (months).
TERMS: tuple[int, ...] = (3, 6, 12, 24)
Promotion = Literal["none", "zero_apr_promo", "fee_waiver", "first_payment_holiday"]
#: ``none`` plus the three promotions (see :mod:`riskml.data.credit.economics` for cash flows).
PROMOTIONS: tuple[str, ...] = get_args(Promotion)
NO_PROMOTION: Final = "none"
#: Merchant categories of a loan (or of the checkout context of an offer).
CATEGORIES: tuple[str, ...] = (
    "electronics",
    "fashion",
    "travel",
    "home",
    "health",
    "education",
)
#: ``performance.status`` values.
STATUSES: tuple[str, ...] = ("current", "delinquent", "default", "prepaid", "closed")
#: Days past due that make a default, and the months on book within which it counts.
DEFAULT_DPD: Final = 90
LABEL_MONTHS: Final = 12

#: Applicant attributes (numeric), as of the application (loans) or the impression (offers).
APPLICANT_NUMERIC: tuple[str, ...] = (
    "age",
    "income_monthly",
    "employment_years",
    "bureau_score",
    "inquiries_6m",
    "delinquencies_24m",
    "utilisation",
    "open_accounts",
    "months_on_book",
    "prior_loans",
    "prior_max_dpd",
    "debt_to_income",
)
#: Context of the application / impression: the merchant and its category.
APPLICANT_CATEGORICAL: tuple[str, ...] = ("merchant_id", "category")
APPLICANT_COLUMNS: tuple[str, ...] = APPLICANT_NUMERIC + APPLICANT_CATEGORICAL
#: The terms of a loan or of a candidate offer.
TERM_COLUMNS: tuple[str, ...] = (
    "amount",
    "term_months",
    "apr",
    "promotion",
    "origination_fee",
    "monthly_payment",
)
#: Direction in which risk must move with an attribute (+1: risk up as the value goes up). The
#: simulator's true PD obeys these (and is also non-decreasing in ``prior_max_dpd``).
MONOTONE_RISK: dict[str, int] = {
    "bureau_score": -1,
    "inquiries_6m": 1,
    "delinquencies_24m": 1,
    "utilisation": 1,
    "debt_to_income": 1,
}

_DT = "Datetime[us, UTC]"

_APPLICANT_DEFS: dict[str, tuple[str, str]] = {
    "age": ("Int64", "Age in years (18-120)."),
    "income_monthly": ("Float64", "Stated monthly income, >= 0."),
    "employment_years": ("Float64", "Years with the current employer, >= 0."),
    "bureau_score": ("Int64", "Credit bureau score, 300-850."),
    "inquiries_6m": ("Int64", "Hard credit inquiries in the last 6 months, >= 0."),
    "delinquencies_24m": ("Int64", "Delinquencies reported in the last 24 months, >= 0."),
    "utilisation": ("Float64", "Revolving balance / limit, >= 0 (simulator: 0-1.5)."),
    "open_accounts": ("Int64", "Open credit accounts, >= 0."),
    "months_on_book": ("Int64", "Months since the customer's first loan with us (0: new)."),
    "prior_loans": ("Int64", "Loans the customer had with us before this one."),
    "prior_max_dpd": ("Int64", "Worst days past due on those loans, as known at the time."),
    "debt_to_income": ("Float64", "Existing monthly debt payments / income (excl. this loan)."),
    "merchant_id": ("String", "Merchant of the purchase (id rule)."),
    "category": ("String", " | ".join(CATEGORIES) + "."),
}


def _applicant_columns() -> tuple[Column, ...]:
    return tuple(Column(n, d, False, text) for n, (d, text) in _APPLICANT_DEFS.items())


#: ``Column.required`` means "a loan tape must provide it"; the others are derived or defaulted
#: by the importer (``Column.default``) or null.
LOAN_COLUMNS: tuple[Column, ...] = (
    Column("loan_id", "String", True, "Unique loan id."),
    Column("customer_id", "String", True, "Customer id."),
    Column("application_ts", _DT, True, "Application (= origination) time, UTC."),
    Column("vintage", "String", False, "Origination month 'YYYY-MM' (UTC) of application_ts."),
    *_applicant_columns(),
    Column("amount", "Float64", True, "Principal, > 0."),
    Column("term_months", "Int64", True, "Term in months: " + ", ".join(map(str, TERMS)) + "."),
    Column("apr", "Float64", True, "Annual percentage rate as a fraction, 0-1."),
    Column("promotion", "String", False, " | ".join(PROMOTIONS) + ".", NO_PROMOTION),
    Column("origination_fee", "Float64", False, "Fee charged at origination, >= 0.", 0.0),
    Column("monthly_payment", "Float64", False, "Level monthly payment (economics), > 0."),
    Column("default_12m", "Int8", False, "1: 90+ DPD within 12 months on book; null: immature."),
    Column("default_mob", "Int64", False, "Month on book of that default (1-12), else null."),
    Column("prepaid_mob", "Int64", False, "Month on book of a full prepayment, else null."),
    Column("label_mature_at", _DT, False, "When default_12m is known (see module doc)."),
)
LOAN_SIM_COLUMNS: tuple[Column, ...] = (
    Column("sim_pd", "Float64", False, "Simulator: the true 12-month PD of the loan."),
    Column("sim_default_12m", "Int8", False, "Simulator: the outcome, mature or not."),
)

PERFORMANCE_COLUMNS: tuple[Column, ...] = (
    Column("loan_id", "String", True, "Loan id (in loans)."),
    Column("mob", "Int64", True, "Month on book, 1 = the origination month."),
    Column("as_of", _DT, True, "Snapshot time: the month's last second, UTC."),
    Column("dpd", "Int64", True, "Days past due at the snapshot (30-day steps), >= 0."),
    Column("balance", "Float64", True, "Outstanding principal after this month, >= 0."),
    Column("paid", "Float64", True, "Paid during this month, >= 0."),
    Column("status", "String", True, " | ".join(STATUSES) + "."),
)

OFFER_COLUMNS: tuple[Column, ...] = (
    Column("impression_id", "String", True, "Impression id (one per customer visit)."),
    Column("customer_id", "String", True, "Customer id (a returning customer)."),
    Column("ts", _DT, True, "Impression time, UTC."),
    Column("candidate", "Int64", True, "Candidate index 0..K-1 within the impression."),
    *(c for c in LOAN_COLUMNS if c.name in TERM_COLUMNS),
    *_applicant_columns(),
    Column("pd_at_offer", "Float64", True, "PD the logging system used for this candidate."),
    Column("shown", "Int8", True, "1 for the one candidate shown, else 0."),
    Column("propensity", "Float64", True, "Logging policy's P(show this candidate), (0, 1]."),
    Column("accepted", "Int8", False, "Shown candidate: 1 accepted / 0 not; others null."),
    Column("value", "Float64", False, "Shown: accepted x offer_value(pd_at_offer); others null."),
)
OFFER_SIM_COLUMNS: tuple[Column, ...] = (
    Column("sim_pd", "Float64", False, "Simulator: the true PD had this candidate been booked."),
    Column("sim_p_accept", "Float64", False, "Simulator: true P(accept | shown)."),
    Column("sim_ev", "Float64", False, "Simulator: sim_p_accept x offer_value(sim_pd)."),
)

LOAN_NOT_NULL: frozenset[str] = frozenset(
    {
        "loan_id",
        "customer_id",
        "application_ts",
        "vintage",
        "amount",
        "term_months",
        "apr",
        "promotion",
        "origination_fee",
        "monthly_payment",
        "label_mature_at",
        "sim_pd",
        "sim_default_12m",
    }
)
OFFER_NOT_NULL: frozenset[str] = frozenset(
    c.name for c in OFFER_COLUMNS + OFFER_SIM_COLUMNS if c.name not in APPLICANT_COLUMNS
) - {"accepted", "value"}

LOAN_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LOAN_COLUMNS)
PERFORMANCE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in PERFORMANCE_COLUMNS)
OFFER_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in OFFER_COLUMNS)

#: Integer ranges of the applicant attributes (inclusive; None: unbounded).
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "age": (18, 120),
    "bureau_score": (300, 850),
    "inquiries_6m": (0, None),
    "delinquencies_24m": (0, None),
    "open_accounts": (0, None),
    "months_on_book": (0, None),
    "prior_loans": (0, None),
    "prior_max_dpd": (0, None),
}
_FLOAT_MIN_ZERO: tuple[str, ...] = (
    "income_monthly",
    "employment_years",
    "utilisation",
    "debt_to_income",
)
#: Tolerance of "propensities sum to 1 per impression".
PROPENSITY_TOL: Final = 1e-6


def loans_schema(*, sim: bool = False) -> dict[str, pl.DataType]:
    """Column -> polars dtype of ``loans`` (with the ``sim_`` columns when ``sim``)."""
    cols = LOAN_COLUMNS + (LOAN_SIM_COLUMNS if sim else ())
    return {c.name: polars_dtype(c) for c in cols}


def performance_schema() -> dict[str, pl.DataType]:
    return {c.name: polars_dtype(c) for c in PERFORMANCE_COLUMNS}


def offers_schema(*, sim: bool = False) -> dict[str, pl.DataType]:
    cols = OFFER_COLUMNS + (OFFER_SIM_COLUMNS if sim else ())
    return {c.name: polars_dtype(c) for c in cols}


# --- checks ------------------------------------------------------------------------------------
def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _columns(
    df: pl.DataFrame, table: str, core: tuple[Column, ...], sim: tuple[Column, ...]
) -> pl.DataFrame:
    """Missing / unexpected / mistyped columns; returns ``df`` in schema order."""
    expected = {c.name: polars_dtype(c) for c in core + sim}
    missing = [c.name for c in core if c.name not in df.columns]
    if missing:
        raise SchemaError(f"{table}: missing columns: {', '.join(missing)}")
    extra = [n for n in df.columns if n not in expected]
    if extra:
        raise SchemaError(f"{table}: unexpected columns: {', '.join(extra)}")
    wrong = [
        f"{n} is {df.schema[n]}, expected {expected[n]}"
        for n in df.columns
        if df.schema[n] != expected[n]
    ]
    if wrong:
        raise SchemaError(f"{table}: mistyped columns: " + "; ".join(wrong))
    return df.select([n for n in expected if n in df.columns])


def _nulls(df: pl.DataFrame, table: str, not_null: frozenset[str] | set[str]) -> None:
    counts = df.select([c for c in df.columns if c in not_null]).null_count()
    nulls = {n: int(v) for n, v in counts.row(0, named=True).items() if v} if counts.width else {}
    if nulls:
        raise SchemaError(f"{table}: null values in columns that must not be null: {nulls}")


def _ids(df: pl.DataFrame, columns: tuple[str, ...]) -> list[str]:
    out = []
    for col in columns:
        if col not in df.columns or ID_RULE.column_ok(df.get_column(col)):
            continue
        bad = df.select(ID_RULE.invalid(col).fill_null(False)).to_series()
        value = df.get_column(col).filter(bad)[0]
        out.append(
            f"{col}: {int(bad.sum())} rows, e.g. {_shorten(value)} "
            f"({col} must be {ID_RULE.description})"
        )
    return out


def _rules(df: pl.DataFrame, rules: list[tuple[str, pl.Expr, str]]) -> list[str]:
    """Each rule: (column, expression True on a bad row, what the column must be)."""
    rules = [r for r in rules if r[0] in df.columns]
    if not rules or df.is_empty():
        return []
    counts = df.select(
        [expr.fill_null(False).sum().alias(str(i)) for i, (_, expr, _) in enumerate(rules)]
    ).row(0)
    out = []
    for (col, expr, text), count in zip(rules, counts, strict=True):
        if count:
            value = df.filter(expr.fill_null(False)).get_column(col)[0]
            out.append(f"{col}: {count} rows, e.g. {_shorten(value)} ({col} must be {text})")
    return out


def _raise(table: str, problems: list[str]) -> None:
    if problems:
        raise SchemaError(f"{table}: values that break the schema's rules: " + "; ".join(problems))


def _nonfinite_or(col: str, bad: pl.Expr) -> pl.Expr:
    import polars as pl

    return ~pl.col(col).is_finite() | bad


def term_rules() -> list[tuple[str, pl.Expr, str]]:
    """Rules on the term columns (loans and offers alike)."""
    import polars as pl

    return [
        ("amount", _nonfinite_or("amount", pl.col("amount") <= 0), "finite and > 0"),
        (
            "term_months",
            ~pl.col("term_months").is_in(list(TERMS)),
            "one of " + ", ".join(map(str, TERMS)),
        ),
        (
            "apr",
            _nonfinite_or("apr", (pl.col("apr") < 0) | (pl.col("apr") > 1)),
            "a fraction in [0, 1]",
        ),
        (
            "promotion",
            ~pl.col("promotion").is_in(list(PROMOTIONS)),
            "one of " + ", ".join(PROMOTIONS),
        ),
        (
            "origination_fee",
            _nonfinite_or("origination_fee", pl.col("origination_fee") < 0),
            "finite and >= 0",
        ),
        (
            "monthly_payment",
            _nonfinite_or("monthly_payment", pl.col("monthly_payment") <= 0),
            "finite and > 0",
        ),
    ]


def applicant_rules() -> list[tuple[str, pl.Expr, str]]:
    """Rules on the applicant attributes (null is allowed: a tape may lack them)."""
    import polars as pl

    rules: list[tuple[str, pl.Expr, str]] = []
    for col, (lo, hi) in _INT_RANGES.items():
        bad = pl.col(col) < lo
        if hi is not None:
            bad = bad | (pl.col(col) > hi)
        rules.append((col, bad, f">= {lo}" if hi is None else f"in {lo}-{hi}"))
    for col in _FLOAT_MIN_ZERO:
        rules.append((col, _nonfinite_or(col, pl.col(col) < 0), "finite and >= 0"))
    rules.append(
        ("category", ~pl.col("category").is_in(list(CATEGORIES)), "one of " + ", ".join(CATEGORIES))
    )
    return rules


def validate_loans(df: pl.DataFrame, *, observation_end: dt.datetime | None = None) -> pl.DataFrame:
    """Check ``df`` against the loans schema; return it with columns in schema order.

    Checks columns and dtypes (the ``sim_`` columns are optional), nulls where none are allowed,
    ids, terms (amount > 0, term in :data:`TERMS`, apr in [0, 1], known promotion, fee >= 0,
    payment > 0), applicant attribute ranges, ``vintage`` = the month of ``application_ts``,
    label consistency (``default_12m`` 0/1; a ``default_mob`` only on a default, in 1-12;
    ``label_mature_at`` from ``application_ts`` to ``application_ts`` + 12 months), unique
    ``loan_id``. With ``observation_end``: no label before it matures (``default_12m`` is null
    wherever ``label_mature_at > observation_end``; a mature label may still be null in an
    unlabelled tape).
    """
    import polars as pl

    table = "loans"
    df = _columns(df, table, LOAN_COLUMNS, LOAN_SIM_COLUMNS)
    _nulls(df, table, LOAN_NOT_NULL)
    problems = _ids(df, ("loan_id", "customer_id", "merchant_id"))
    twelve = pl.col("application_ts").dt.offset_by(f"{LABEL_MONTHS}mo")
    rules = [
        *term_rules(),
        *applicant_rules(),
        (
            "vintage",
            pl.col("vintage") != pl.col("application_ts").dt.strftime("%Y-%m"),
            "the UTC month of application_ts as YYYY-MM",
        ),
        ("default_12m", ~pl.col("default_12m").is_in([0, 1]), "0, 1 or null"),
        (
            "default_mob",
            (pl.col("default_mob") < 1)
            | (pl.col("default_mob") > LABEL_MONTHS)
            | (pl.col("default_mob").is_not_null() & (pl.col("default_12m") != 1).fill_null(True)),
            f"null, or 1-{LABEL_MONTHS} on a loan with default_12m = 1",
        ),
        ("prepaid_mob", pl.col("prepaid_mob") < 1, ">= 1 or null"),
        (
            "label_mature_at",
            (pl.col("label_mature_at") < pl.col("application_ts"))
            | (pl.col("label_mature_at") > twelve),
            f"between application_ts and application_ts + {LABEL_MONTHS} months",
        ),
        ("sim_pd", ~pl.col("sim_pd").is_between(0.0, 1.0), "a probability in [0, 1]"),
        ("sim_default_12m", ~pl.col("sim_default_12m").is_in([0, 1]), "0 or 1"),
    ]
    if observation_end is not None:
        end = pl.lit(observation_end).cast(pl.Datetime("us", "UTC"))
        rules.append(
            (
                "default_12m",
                pl.col("default_12m").is_not_null() & (pl.col("label_mature_at") > end),
                f"null while label_mature_at > observation_end ({observation_end})",
            )
        )
    problems += _rules(df, rules)
    _raise(table, problems)
    dup = df.height - df.get_column("loan_id").n_unique()
    if dup:
        raise SchemaError(f"{table}: duplicate loan_id: {dup} rows")
    return df


def validate_performance(df: pl.DataFrame) -> pl.DataFrame:
    """Check ``df`` against the performance schema (no nulls, ids, mob >= 1, dpd >= 0, balance and
    paid finite and >= 0, known status, unique (loan_id, mob)); return it in schema order."""
    import polars as pl

    table = "performance"
    df = _columns(df, table, PERFORMANCE_COLUMNS, ())
    _nulls(df, table, frozenset(PERFORMANCE_COLUMN_NAMES))
    problems = _ids(df, ("loan_id",))
    problems += _rules(
        df,
        [
            ("mob", pl.col("mob") < 1, ">= 1"),
            ("dpd", pl.col("dpd") < 0, ">= 0"),
            ("balance", _nonfinite_or("balance", pl.col("balance") < 0), "finite and >= 0"),
            ("paid", _nonfinite_or("paid", pl.col("paid") < 0), "finite and >= 0"),
            ("status", ~pl.col("status").is_in(list(STATUSES)), "one of " + ", ".join(STATUSES)),
        ],
    )
    _raise(table, problems)
    dup = df.height - df.select(pl.struct("loan_id", "mob").n_unique()).item()
    if dup:
        raise SchemaError(f"{table}: duplicate (loan_id, mob): {dup} rows")
    return df


def validate_offers(df: pl.DataFrame) -> pl.DataFrame:
    """Check ``df`` against the offers schema; return it with columns in schema order.

    Besides columns, nulls, ids, terms and attribute ranges: ``candidate`` >= 0 and unique per
    impression, one ``customer_id`` and ``ts`` per impression, ``pd_at_offer`` in [0, 1],
    ``shown`` 0/1 with exactly one shown candidate per impression, ``propensity`` in (0, 1]
    summing to 1 per impression (within :data:`PROPENSITY_TOL`), ``accepted`` 0/1 on the shown
    candidate and null elsewhere, ``value`` set (finite) on the shown candidate, 0 when not
    accepted, null elsewhere.
    """
    import polars as pl

    table = "offers"
    df = _columns(df, table, OFFER_COLUMNS, OFFER_SIM_COLUMNS)
    _nulls(df, table, OFFER_NOT_NULL)
    problems = _ids(df, ("impression_id", "customer_id", "merchant_id"))
    shown = pl.col("shown") == 1
    problems += _rules(
        df,
        [
            *term_rules(),
            *applicant_rules(),
            ("candidate", pl.col("candidate") < 0, ">= 0"),
            ("pd_at_offer", ~pl.col("pd_at_offer").is_between(0.0, 1.0), "in [0, 1]"),
            ("shown", ~pl.col("shown").is_in([0, 1]), "0 or 1"),
            (
                "propensity",
                ~pl.col("propensity").is_finite()
                | (pl.col("propensity") <= 0)
                | (pl.col("propensity") > 1),
                "in (0, 1]",
            ),
            (
                "accepted",
                pl.when(shown)
                .then(~pl.col("accepted").is_in([0, 1]).fill_null(False))
                .otherwise(pl.col("accepted").is_not_null()),
                "0/1 on the shown candidate and null on the others",
            ),
            (
                "value",
                pl.when(shown)
                .then(
                    ~pl.col("value").is_finite().fill_null(False)
                    | ((pl.col("accepted") == 0) & (pl.col("value") != 0)).fill_null(False)
                )
                .otherwise(pl.col("value").is_not_null()),
                "finite on the shown candidate (0 when not accepted) and null on the others",
            ),
            ("sim_pd", ~pl.col("sim_pd").is_between(0.0, 1.0), "in [0, 1]"),
            ("sim_p_accept", ~pl.col("sim_p_accept").is_between(0.0, 1.0), "in [0, 1]"),
            ("sim_ev", ~pl.col("sim_ev").is_finite(), "finite"),
        ],
    )
    _raise(table, problems)
    if df.is_empty():
        return df
    per = df.group_by("impression_id").agg(
        n=pl.len(),
        candidates=pl.col("candidate").n_unique(),
        customers=pl.col("customer_id").n_unique(),
        times=pl.col("ts").n_unique(),
        shown=pl.col("shown").cast(pl.Int64).sum(),
        total=pl.col("propensity").sum(),
    )
    checks = [
        (pl.col("candidates") != pl.col("n"), "candidate must be unique within an impression"),
        (pl.col("customers") != 1, "an impression has one customer_id"),
        (pl.col("times") != 1, "an impression has one ts"),
        (pl.col("shown") != 1, "exactly one candidate per impression must have shown = 1"),
        (
            (pl.col("total") - 1.0).abs() > PROPENSITY_TOL,
            f"propensity must sum to 1 per impression (within {PROPENSITY_TOL:g})",
        ),
    ]
    for expr, text in checks:
        bad = per.filter(expr)
        if bad.height:
            first = bad.sort("impression_id").row(0, named=True)
            raise SchemaError(
                f"{table}: {text}: {bad.height} impressions, e.g. {first['impression_id']!r} "
                f"({first['n']} candidates, {first['shown']} shown, "
                f"propensities summing to {first['total']:.6g})"
            )
    return df


def validate_portfolio(
    loans: pl.DataFrame,
    performance: pl.DataFrame,
    offers: pl.DataFrame,
    observation_end: dt.datetime,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Each table's own checks, then the links between them: every ``performance.loan_id`` is a
    loan, no snapshot after ``observation_end``, offers go to customers who have a loan (returning
    customers), labels mature per ``observation_end``."""
    import polars as pl

    loans = validate_loans(loans, observation_end=observation_end)
    performance = validate_performance(performance)
    offers = validate_offers(offers)
    orphans = performance.join(loans.select("loan_id"), on="loan_id", how="anti")
    if orphans.height:
        raise SchemaError(
            f"performance: {orphans.height} rows whose loan_id is not in loans, "
            f"e.g. {orphans.get_column('loan_id')[0]!r}"
        )
    end = pl.lit(observation_end).cast(pl.Datetime("us", "UTC"))
    late = performance.filter(pl.col("as_of") > end).height
    if late:
        raise SchemaError(f"performance: as_of after observation_end ({observation_end}): {late}")
    strangers = offers.join(loans.select("customer_id").unique(), on="customer_id", how="anti")
    if strangers.height:
        raise SchemaError(
            f"offers: {strangers.height} rows for customers without a loan, "
            f"e.g. {strangers.get_column('customer_id')[0]!r}"
        )
    return loans, performance, offers
