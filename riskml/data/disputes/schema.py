"""The dispute record schema and the card-network reason-code catalogue.

A *dispute record* is one chargeback / dispute raised against one transaction: who, what, when,
the network's reason code, the customer's message and, once known, the outcome. Its columns are
:data:`DISPUTE_COLUMNS`; :func:`validate_disputes` is the one check the simulator's writer, the
reader and the importer use. Ids and currency follow the transaction schema's value rules
(:data:`riskml.data.schema.VALUE_RULES`), so a dispute's ``tx_id`` is a valid transaction id.

Outcome semantics: ``won`` (the merchant represented and the issuer reversed the chargeback),
``lost`` (represented and the chargeback stood), ``refunded`` (the merchant accepted the
dispute and refunded without representing), ``pending`` (not resolved yet: ``resolved_at`` is
null). The outcome becomes known at ``resolved_at``; a model trained at time *t* may use only the
outcomes with ``resolved_at <= t``. Delay in days: :func:`outcome_delay_days`.

Reason codes (:data:`REASON_CODES`): Visa's four families (10.x fraud, 11.x authorisation, 12.x
processing errors, 13.x consumer disputes) and the main Mastercard codes, each with its family
and the customer *claims* it is used for. :data:`CLAIM_CODES` maps a claim to the codes an issuer
files it under, per network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from riskml.data.schema import Column, SchemaError, rule_message, value_rule_violations

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

Network = Literal["visa", "mastercard"]
NETWORKS: tuple[str, ...] = get_args(Network)

ReasonFamily = Literal["fraud", "authorisation", "processing_error", "consumer_dispute"]
REASON_FAMILIES: tuple[str, ...] = get_args(ReasonFamily)

#: What the customer (through the issuer) claims.
Claim = Literal[
    "fraud",
    "authorisation",
    "duplicate",
    "incorrect_amount",
    "not_received",
    "not_as_described",
    "credit_not_processed",
    "cancelled_merchandise",
    "cancelled_subscription",
]
CLAIMS: tuple[str, ...] = get_args(Claim)

#: What really happened (simulator ground truth): a real fraud, or a genuine transaction
#: disputed for one of these reasons (``friendly_fraud``: the cardholder made the purchase and
#: got the goods, yet claims fraud or non-receipt).
DisputeType = Literal[
    "true_fraud",
    "friendly_fraud",
    "not_received",
    "not_as_described",
    "duplicate",
    "credit_not_processed",
    "cancelled_subscription",
    "authorisation",
]
DISPUTE_TYPES: tuple[str, ...] = get_args(DisputeType)

Outcome = Literal["won", "lost", "refunded", "pending"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
#: Outcomes of a resolved dispute (``resolved_at`` set).
RESOLVED_OUTCOMES: tuple[str, ...] = ("won", "lost", "refunded")

UNKNOWN: Final = "unknown"


@dataclass(frozen=True)
class ReasonCode:
    """One network reason code: its family, title and the claims it is filed for."""

    network: str
    code: str
    family: str
    title: str
    claims: tuple[str, ...] = ()


def _visa(code: str, family: str, title: str, *claims: str) -> ReasonCode:
    return ReasonCode("visa", code, family, title, claims)


def _mc(code: str, family: str, title: str, *claims: str) -> ReasonCode:
    return ReasonCode("mastercard", code, family, title, claims)


#: The catalogue, Visa then Mastercard.
REASON_CODES: tuple[ReasonCode, ...] = (
    _visa("10.1", "fraud", "EMV liability shift counterfeit fraud"),
    _visa("10.2", "fraud", "EMV liability shift non-counterfeit fraud"),
    _visa("10.3", "fraud", "Other fraud: card-present environment", "fraud"),
    _visa("10.4", "fraud", "Other fraud: card-absent environment", "fraud"),
    _visa("10.5", "fraud", "Visa fraud monitoring program", "fraud"),
    _visa("11.1", "authorisation", "Card recovery bulletin"),
    _visa("11.2", "authorisation", "Declined authorisation", "authorisation"),
    _visa("11.3", "authorisation", "No authorisation", "authorisation"),
    _visa("12.1", "processing_error", "Late presentment"),
    _visa("12.2", "processing_error", "Incorrect transaction code"),
    _visa("12.3", "processing_error", "Incorrect currency"),
    _visa("12.4", "processing_error", "Incorrect account number"),
    _visa("12.5", "processing_error", "Incorrect amount", "incorrect_amount"),
    _visa("12.6.1", "processing_error", "Duplicate processing", "duplicate"),
    _visa("12.6.2", "processing_error", "Paid by other means", "duplicate"),
    _visa("12.7", "processing_error", "Invalid data"),
    _visa("13.1", "consumer_dispute", "Merchandise/services not received", "not_received"),
    _visa("13.2", "consumer_dispute", "Cancelled recurring transaction", "cancelled_subscription"),
    _visa(
        "13.3",
        "consumer_dispute",
        "Not as described or defective merchandise/services",
        "not_as_described",
    ),
    _visa("13.4", "consumer_dispute", "Counterfeit merchandise", "not_as_described"),
    _visa("13.5", "consumer_dispute", "Misrepresentation", "not_as_described"),
    _visa("13.6", "consumer_dispute", "Credit not processed", "credit_not_processed"),
    _visa("13.7", "consumer_dispute", "Cancelled merchandise/services", "cancelled_merchandise"),
    _visa("13.8", "consumer_dispute", "Original credit transaction not accepted"),
    _visa("13.9", "consumer_dispute", "Non-receipt of cash or load transaction value"),
    _mc("4837", "fraud", "No cardholder authorisation", "fraud"),
    _mc("4863", "fraud", "Cardholder does not recognise: potential fraud", "fraud"),
    _mc("4870", "fraud", "Chip liability shift"),
    _mc("4871", "fraud", "Chip/PIN liability shift"),
    _mc("4808", "authorisation", "Authorisation-related chargeback", "authorisation"),
    _mc("4834", "processing_error", "Point-of-interaction error", "duplicate", "incorrect_amount"),
    _mc("4831", "processing_error", "Transaction amount differs", "incorrect_amount"),
    _mc("4842", "processing_error", "Late presentment"),
    _mc(
        "4853",
        "consumer_dispute",
        "Cardholder dispute",
        "not_as_described",
        "credit_not_processed",
        "cancelled_merchandise",
        "not_received",
    ),
    _mc("4855", "consumer_dispute", "Goods or services not provided", "not_received"),
    _mc(
        "4841",
        "consumer_dispute",
        "Cancelled recurring or digital goods transactions",
        "cancelled_subscription",
    ),
    _mc("4860", "consumer_dispute", "Credit not processed (legacy)", "credit_not_processed"),
)

#: (network, code) -> :class:`ReasonCode`.
BY_CODE: dict[tuple[str, str], ReasonCode] = {(r.network, r.code): r for r in REASON_CODES}


def _claim_codes() -> dict[str, dict[str, tuple[str, ...]]]:
    out: dict[str, dict[str, tuple[str, ...]]] = {c: {n: () for n in NETWORKS} for c in CLAIMS}
    for r in REASON_CODES:
        for claim in r.claims:
            out[claim][r.network] = (*out[claim][r.network], r.code)
    return out


#: claim -> network -> the codes it is filed under, most usual first.
CLAIM_CODES: dict[str, dict[str, tuple[str, ...]]] = _claim_codes()


def reason_family(code: str, network: str | None = None) -> str:
    """The family of a reason code (``network`` disambiguates; codes do not collide across
    the two networks, so it may be omitted). Raises ``KeyError`` for an unknown code."""
    if network in NETWORKS:
        return BY_CODE[(str(network), code)].family
    for net in NETWORKS:
        if (net, code) in BY_CODE:
            return BY_CODE[(net, code)].family
    raise KeyError(f"unknown reason code {code!r}")


def code_network(code: str) -> str:
    """The network a code belongs to (Visa codes have a dot, Mastercard's are 48xx)."""
    for net in NETWORKS:
        if (net, code) in BY_CODE:
            return net
    raise KeyError(f"unknown reason code {code!r}")


# --- the dispute record ---------------------------------------------------------------------------

DISPUTE_COLUMNS: tuple[Column, ...] = (
    Column("dispute_id", "String", True, "Unique dispute / chargeback case id."),
    Column("tx_id", "String", True, "The disputed transaction's id."),
    Column("customer_id", "String", True, "Card / customer account id."),
    Column("terminal_id", "String", True, "Merchant (terminal) id."),
    Column("merchant_name", "String", False, "Merchant trading name.", UNKNOWN),
    Column("tx_ts", "Datetime[us, UTC]", True, "Time of the disputed transaction, UTC."),
    Column("opened_at", "Datetime[us, UTC]", True, "When the dispute was raised, UTC."),
    Column("amount", "Float64", True, "Disputed amount in `currency`, finite and > 0."),
    Column("currency", "String", False, "ISO 4217 code.", "USD"),
    Column("network", "String", False, "visa | mastercard (derived from the code).", None),
    Column("reason_code", "String", True, "Network reason code, e.g. 10.4, 13.1, 4837."),
    Column("reason_family", "String", False, " | ".join(REASON_FAMILIES) + ".", None),
    Column("customer_message", "String", False, "The customer's own words (free text).", ""),
    Column("outcome", "String", False, " | ".join(OUTCOMES) + ".", "pending"),
    Column(
        "resolved_at",
        "Datetime[us, UTC]",
        False,
        "When the outcome became known, UTC; null while pending.",
        None,
    ),
)
DISPUTE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in DISPUTE_COLUMNS)
DISPUTE_REQUIRED: tuple[str, ...] = tuple(c.name for c in DISPUTE_COLUMNS if c.required)
DISPUTE_BY_NAME: dict[str, Column] = {c.name: c for c in DISPUTE_COLUMNS}
#: A dispute id follows the same rule as every other id (``VALUE_RULES["tx_id"]``).
ID_COLUMNS: tuple[str, ...] = ("dispute_id", "tx_id", "customer_id", "terminal_id")


def dispute_schema() -> dict[str, pl.DataType]:
    """Column name -> polars dtype, in schema order."""
    from riskml.data.schema import polars_dtype

    return {c.name: polars_dtype(c) for c in DISPUTE_COLUMNS}


def outcome_delay_days(df: pl.DataFrame) -> pl.Series:
    """Days from ``opened_at`` to ``resolved_at`` (null while pending)."""
    import polars as pl

    return df.select(
        ((pl.col("resolved_at") - pl.col("opened_at")).dt.total_seconds() / 86_400.0).alias(
            "outcome_delay_days"
        )
    ).to_series()


def validate_disputes(df: pl.DataFrame) -> pl.DataFrame:
    """Check ``df`` against the dispute schema; return it with columns in schema order.

    Raises :class:`~riskml.data.schema.SchemaError` naming the first problem: missing, extra or
    mistyped columns; nulls (``resolved_at`` may be null only while ``pending``); ids or currency
    that break the value rules; amounts not finite and > 0; unknown reason codes, networks or
    families, or a family / network that disagrees with the code; an unknown outcome; a
    dispute opened before its transaction or resolved before it was opened; duplicate
    ``dispute_id``.
    """
    import polars as pl

    expected = dispute_schema()
    missing = [n for n in DISPUTE_COLUMN_NAMES if n not in df.columns]
    if missing:
        raise SchemaError(f"missing dispute columns: {', '.join(missing)}")
    extra = [n for n in df.columns if n not in expected]
    if extra:
        raise SchemaError(f"unexpected dispute columns: {', '.join(extra)}")
    wrong = [
        f"{n} is {df.schema[n]}, expected {t}" for n, t in expected.items() if df.schema[n] != t
    ]
    if wrong:
        raise SchemaError("mistyped dispute columns: " + "; ".join(wrong))
    df = df.select(DISPUTE_COLUMN_NAMES)
    nulls = {
        n: int(v) for n, v in df.null_count().row(0, named=True).items() if v and n != "resolved_at"
    }
    if nulls:
        raise SchemaError(f"null values: {nulls}")
    for col in ID_COLUMNS:
        broken = value_rule_violations(df.select(pl.col(col).alias("tx_id")))
        if broken:
            count, value = broken["tx_id"]
            raise SchemaError(
                f"{col}: {count} rows break the id rule, e.g. {value!r} "
                f"({rule_message('tx_id').replace('tx_id', col)})"
            )
    broken_currency = value_rule_violations(df.select("currency"))
    if broken_currency:
        count, value = broken_currency["currency"]
        raise SchemaError(f"currency: {count} rows, e.g. {value!r} ({rule_message('currency')})")
    codes = pl.DataFrame(
        {
            "network": [r.network for r in REASON_CODES],
            "reason_code": [r.code for r in REASON_CODES],
            "_family": [r.family for r in REASON_CODES],
        }
    )
    joined = df.select("network", "reason_code", "reason_family").join(
        codes, on=["network", "reason_code"], how="left"
    )
    unknown_code = joined.filter(pl.col("_family").is_null())
    if unknown_code.height:
        net, code = unknown_code.row(0)[:2]
        raise SchemaError(
            f"unknown reason code for its network: {unknown_code.height} rows, e.g. "
            f"{net!r} {code!r}"
        )
    checks = df.select(
        bad_amount=(~pl.col("amount").is_finite() | (pl.col("amount") <= 0)).sum(),
        bad_family=(joined.get_column("reason_family") != joined.get_column("_family")).sum(),
        bad_outcome=(~pl.col("outcome").is_in(OUTCOMES)).sum(),
        unresolved=((pl.col("outcome") != "pending") & pl.col("resolved_at").is_null()).sum(),
        pending_resolved=(
            (pl.col("outcome") == "pending") & pl.col("resolved_at").is_not_null()
        ).sum(),
        early_open=(pl.col("opened_at") < pl.col("tx_ts")).sum(),
        early_resolve=(pl.col("resolved_at") < pl.col("opened_at")).sum(),
        dup=pl.len() - pl.col("dispute_id").n_unique(),
    ).row(0, named=True)
    problems = {
        "bad_amount": "amount must be finite and > 0",
        "bad_family": "reason_family disagrees with the reason code's family",
        "bad_outcome": f"outcome must be one of {', '.join(OUTCOMES)}",
        "unresolved": "resolved_at is null but the outcome is not pending",
        "pending_resolved": "resolved_at is set but the outcome is pending",
        "early_open": "opened_at must not be before tx_ts",
        "early_resolve": "resolved_at must not be before opened_at",
        "dup": "duplicate dispute_id",
    }
    for key, message in problems.items():
        if checks[key]:
            raise SchemaError(f"{message}: {checks[key]} rows")
    return df
