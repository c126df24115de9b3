"""The outcome model's feature matrix: one row per dispute, every value known when it opened.

:func:`build_features` turns dispute records, each dispute's :class:`Evidence` (ground truth
or extracted) and the disputed customers' transaction history into a frame with ``dispute_id``
and the columns :data:`FEATURE_NAMES` (all Float64; NaN = unknown, which XGBoost treats as
missing). The groups:

* **evidence** (``ev_*``): each boolean as 1/0 (NaN: not found), each enumeration one-hot
  (all 0: not found), presence flags of identifiers, day gaps from the order (shipping,
  delivery, refund, cancellation: a cancellation *after* the charge is positive), refund share
  of the amount, whether the documents' amount, IP and device agree with the disputed
  transaction, and how many fields the documents hold;
* **dispute** (``dsp_*``): amount, days from the transaction to the dispute, network, reason
  family and the claim the reason code stands for (one-hot; ambiguous codes set none);
* **transaction** (``tx_*``): card-absent, physical / digital goods (from the history's row of
  the disputed transaction);
* **customer** (``cust_*``), from the history strictly before the disputed transaction and the
  disputes opened before this one: tenure, transactions in the last 365 days, earlier disputes,
  fraud reports known by ``opened_at``, earlier undisputed transactions on the same device / the
  same IP address (any merchant), days since the device was first seen;
* **compelling evidence** (``ce_*``): :mod:`riskml.features.disputes.compelling` as of
  ``opened_at``: qualifies, qualifying transactions, near misses, transactions in the window
  (the disputed transaction's device and IP from the history, else from the evidence's
  session record).

No feature looks at ``outcome``, ``resolved_at`` or anything after ``opened_at``. Without a
history the customer, transaction and compelling features are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskml.data.disputes.evidence import AVS_RESULTS, CVV_RESULTS, DELIVERY_STATUSES, Evidence
from riskml.data.disputes.schema import BY_CODE, CLAIMS, NETWORKS, REASON_FAMILIES
from riskml.features.disputes.compelling import (
    CompellingResult,
    CompellingRule,
    compelling_table,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

_CARD_ABSENT = ("ecom", "moto")
_PHYSICAL = ("retail", "electronics")
_DIGITAL = ("digital_goods", "entertainment")
_BOOLS = ("shipping_address_matches", "customer_acknowledged", "refund_issued", "policy_accepted")
_PRESENT = ("order_id", "carrier", "tracking_number", "merchant_name", "delivery_date")

EVIDENCE_FEATURES: tuple[str, ...] = (
    "ev_n_fields",
    *(f"ev_{b}" for b in _BOOLS),
    *(f"ev_has_{p}" for p in _PRESENT),
    *(f"ev_delivery_{s}" for s in DELIVERY_STATUSES),
    *(f"ev_avs_{s}" for s in AVS_RESULTS),
    *(f"ev_cvv_{s}" for s in CVV_RESULTS),
    "ev_ship_days",
    "ev_delivery_days",
    "ev_refund_days",
    "ev_cancel_after_charge_days",
    "ev_refund_share",
    "ev_amount_matches",
    "ev_ip_matches_tx",
    "ev_device_matches_tx",
)
DISPUTE_FEATURES: tuple[str, ...] = (
    "dsp_amount",
    "dsp_log_amount",
    "dsp_days_to_dispute",
    "dsp_mastercard",
    *(f"dsp_family_{f}" for f in REASON_FAMILIES),
    *(f"dsp_claim_{c}" for c in CLAIMS),
)
TRANSACTION_FEATURES: tuple[str, ...] = ("tx_card_absent", "tx_physical_goods", "tx_digital_goods")
CUSTOMER_FEATURES: tuple[str, ...] = (
    "cust_tenure_days",
    "cust_tx_365d",
    "cust_prior_disputes",
    "cust_prior_fraud_reports",
    "cust_prior_same_device",
    "cust_prior_same_ip",
    "cust_device_age_days",
)
COMPELLING_FEATURES: tuple[str, ...] = (
    "ce_qualifies",
    "ce_qualifying",
    "ce_near_misses",
    "ce_in_window",
)
#: The model's feature contract, in order.
FEATURE_NAMES: tuple[str, ...] = (
    *EVIDENCE_FEATURES,
    *DISPUTE_FEATURES,
    *TRANSACTION_FEATURES,
    *CUSTOMER_FEATURES,
    *COMPELLING_FEATURES,
)
NAN = float("nan")


class DisputeFeatureError(ValueError):
    """The inputs of the feature matrix are inconsistent."""


def code_claim(reason_code: str, network: str | None = None) -> str | None:
    """The claim a reason code stands for when it stands for exactly one (Visa 10.x codes
    without listed claims are fraud), else None."""
    nets = [network] if network in NETWORKS else list(NETWORKS)
    for net in nets:
        rc = BY_CODE.get((str(net), reason_code))
        if rc is None:
            continue
        if len(rc.claims) == 1:
            return rc.claims[0]
        if not rc.claims and rc.family == "fraud":
            return "fraud"
        return None
    return None


def _flag(value: bool | None) -> float:
    return NAN if value is None else float(bool(value))


def _days(later: Any, earlier: Any) -> float:
    return NAN if later is None or earlier is None else float((later - earlier).days)


def evidence_features(
    evidence: Evidence,
    *,
    amount: float | None = None,
    tx_date: Any = None,
    device_id: str | None = None,
    ip_address: str | None = None,
) -> dict[str, float]:
    """The ``ev_*`` features of one dispute's evidence. ``amount``, ``tx_date``, ``device_id``
    and ``ip_address`` are the disputed transaction's (from the record and the history), for
    the agreement checks; the order date falls back to the documents' transaction date."""
    from riskml.data.disputes.evidence import normalise, values_match

    e = evidence
    out: dict[str, float] = {"ev_n_fields": float(len(e.present()))}
    for b in _BOOLS:
        out[f"ev_{b}"] = _flag(getattr(e, b))
    for p in _PRESENT:
        out[f"ev_has_{p}"] = float(getattr(e, p) is not None)
    for s in DELIVERY_STATUSES:
        out[f"ev_delivery_{s}"] = float(e.delivery_status == s)
    for s in AVS_RESULTS:
        out[f"ev_avs_{s}"] = float(e.avs_result == s)
    for s in CVV_RESULTS:
        out[f"ev_cvv_{s}"] = float(e.cvv_result == s)
    order = e.transaction_date or tx_date
    out["ev_ship_days"] = _days(e.shipping_date, order)
    out["ev_delivery_days"] = _days(e.delivery_date, order)
    out["ev_refund_days"] = _days(e.refund_date, order)
    out["ev_cancel_after_charge_days"] = _days(e.cancellation_date, order)
    base = amount if amount is not None else e.amount
    out["ev_refund_share"] = (
        float(e.refund_amount) / float(base)
        if e.refund_amount is not None and base is not None and base > 0
        else NAN
    )
    out["ev_amount_matches"] = (
        NAN
        if e.amount is None or amount is None
        else float(values_match("amount", e.amount, amount))
    )
    out["ev_ip_matches_tx"] = (
        NAN
        if e.ip_address is None or not ip_address
        else float(normalise("ip_address", e.ip_address) == normalise("ip_address", ip_address))
    )
    out["ev_device_matches_tx"] = (
        NAN
        if e.device_id is None or not device_id or device_id.lower() == "unknown"
        else float(normalise("device_id", e.device_id) == normalise("device_id", device_id))
    )
    return out


def _dispute_features(record: Mapping[str, Any]) -> dict[str, float]:
    amount = float(record["amount"])
    code, network = str(record["reason_code"]), record.get("network")
    family = record.get("reason_family")
    if family is None:
        from riskml.data.disputes.schema import reason_family

        family = reason_family(code, network)
    claim = code_claim(code, network)
    out = {
        "dsp_amount": amount,
        "dsp_log_amount": math.log1p(max(amount, 0.0)),
        "dsp_days_to_dispute": (record["opened_at"] - record["tx_ts"]).total_seconds() / 86_400,
        "dsp_mastercard": float(network == "mastercard"),
    }
    out |= {f"dsp_family_{f}": float(family == f) for f in REASON_FAMILIES}
    out |= {f"dsp_claim_{c}": float(claim == c) for c in CLAIMS}
    return out


@dataclass
class DisputeFeatures:
    """The feature frame (``dispute_id`` + :data:`FEATURE_NAMES`, in the records' order) and
    each dispute's compelling-evidence result."""

    frame: pl.DataFrame
    compelling: dict[str, CompellingResult] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(FEATURE_NAMES)

    def matrix(self) -> Any:
        """The float32 matrix in :data:`FEATURE_NAMES` order."""
        import numpy as np

        return np.ascontiguousarray(self.frame.select(FEATURE_NAMES).to_numpy(), dtype=np.float32)


def _customer_features(disputes: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """``cust_*`` and ``tx_*`` per dispute from the history (strictly before the disputed
    transaction; reports and disputes known by ``opened_at``)."""
    import polars as pl

    h = history
    if "ip_address" not in h.columns:
        h = h.with_columns(pl.lit(None, dtype=pl.String).alias("ip_address"))
    if "label_available_at" not in h.columns:
        h = h.with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("label_available_at"))
    for col, dtype in (
        ("is_fraud", pl.Int8),
        ("channel", pl.String),
        ("merchant_category", pl.String),
        ("device_id", pl.String),
    ):
        if col not in h.columns:
            h = h.with_columns(pl.lit(None, dtype=dtype).alias(col))
    first_dispute = disputes.group_by("tx_id").agg(pl.col("opened_at").min().alias("h_disputed_at"))
    h = h.join(first_dispute, on="tx_id", how="left")
    valid_dev = pl.col("device_id").is_not_null() & (
        pl.col("device_id").str.to_lowercase() != "unknown"
    )
    h = h.select(
        "customer_id",
        pl.col("tx_id").alias("h_tx_id"),
        pl.col("ts").alias("h_ts"),
        pl.when(valid_dev).then(pl.col("device_id")).otherwise(None).alias("h_device"),
        pl.col("ip_address").alias("h_ip"),
        pl.col("is_fraud").fill_null(0).alias("h_fraud"),
        pl.col("label_available_at").alias("h_reported_at"),
        "h_disputed_at",
    )
    tx = history.select(
        "tx_id",
        *[
            c
            for c in ("channel", "merchant_category", "device_id", "ip_address")
            if c in history.columns
        ],
    ).unique("tx_id", keep="first")
    d = disputes.select("dispute_id", "tx_id", "customer_id", "tx_ts", "opened_at").join(
        tx, on="tx_id", how="left"
    )
    for col in ("channel", "merchant_category", "device_id", "ip_address"):
        if col not in d.columns:
            d = d.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    d = d.with_columns(
        pl.when(
            pl.col("device_id").is_not_null()
            & (pl.col("device_id").str.to_lowercase() != "unknown")
        )
        .then(pl.col("device_id"))
        .otherwise(None)
        .alias("device_id")
    )
    pairs = (
        d.select("dispute_id", "customer_id", "tx_ts", "opened_at", "device_id", "ip_address")
        .join(h, on="customer_id", how="inner")
        .filter(pl.col("h_ts") < pl.col("tx_ts"))
    )
    reported = (pl.col("h_fraud") == 1) & (
        pl.col("h_reported_at").is_null() | (pl.col("h_reported_at") <= pl.col("opened_at"))
    )
    disputed = pl.col("h_disputed_at").is_not_null() & (
        pl.col("h_disputed_at") < pl.col("opened_at")
    )
    clean = ~reported & ~disputed
    same_dev = (pl.col("h_device") == pl.col("device_id")).fill_null(False)
    same_ip = (pl.col("h_ip") == pl.col("ip_address")).fill_null(False)
    agg = pairs.group_by("dispute_id").agg(
        ((pl.col("tx_ts") - pl.col("h_ts").min()).dt.total_seconds() / 86_400)
        .first()
        .alias("cust_tenure_days"),
        (pl.col("h_ts") >= pl.col("tx_ts") - pl.duration(days=365)).sum().alias("cust_tx_365d"),
        reported.sum().alias("cust_prior_fraud_reports"),
        (clean & same_dev).sum().alias("cust_prior_same_device"),
        (clean & same_ip).sum().alias("cust_prior_same_ip"),
        ((pl.col("tx_ts") - pl.col("h_ts").filter(same_dev).min()).dt.total_seconds() / 86_400)
        .first()
        .alias("cust_device_age_days"),
    )
    prior = (
        disputes.select("dispute_id", "customer_id", "opened_at")
        .join(
            disputes.select("customer_id", pl.col("opened_at").alias("o_opened")), on="customer_id"
        )
        .group_by("dispute_id")
        .agg((pl.col("o_opened") < pl.col("opened_at")).sum().alias("cust_prior_disputes"))
    )
    out = (
        d.select("dispute_id", "channel", "merchant_category")
        .join(agg, on="dispute_id", how="left")
        .join(prior, on="dispute_id", how="left")
    )
    known = pl.col("channel").is_not_null()
    out = out.with_columns(
        pl.when(known)
        .then(pl.col("channel").is_in(_CARD_ABSENT).cast(pl.Float64))
        .alias("tx_card_absent"),
        pl.when(known)
        .then(pl.col("merchant_category").is_in(_PHYSICAL).cast(pl.Float64))
        .alias("tx_physical_goods"),
        pl.when(known)
        .then(pl.col("merchant_category").is_in(_DIGITAL).cast(pl.Float64))
        .alias("tx_digital_goods"),
        *[
            pl.col(c).cast(pl.Float64).fill_null(0.0)
            for c in (
                "cust_tx_365d",
                "cust_prior_fraud_reports",
                "cust_prior_same_device",
                "cust_prior_same_ip",
                "cust_prior_disputes",
            )
        ],
        pl.col("cust_tenure_days").cast(pl.Float64).fill_null(0.0),
        pl.col("cust_device_age_days").cast(pl.Float64),
    )
    return out.select("dispute_id", *TRANSACTION_FEATURES, *CUSTOMER_FEATURES)


def build_features(
    disputes: pl.DataFrame,
    evidence: Mapping[str, Evidence] | Sequence[Evidence],
    history: pl.DataFrame | None = None,
    *,
    rule: CompellingRule | None = None,
) -> DisputeFeatures:
    """The feature matrix of ``disputes`` (records in :data:`~riskml.data.disputes.schema.
    DISPUTE_COLUMNS` form; ``network`` and ``reason_family`` may be absent), with each
    dispute's ``evidence`` (by ``dispute_id``, or a sequence in the records' order) and the
    customers' ``history`` (transaction schema plus ``ip_address``; None: the history-based
    features are NaN and no compelling evidence is found)."""
    import polars as pl

    rule = rule or CompellingRule()
    need = (
        "dispute_id",
        "tx_id",
        "customer_id",
        "terminal_id",
        "tx_ts",
        "opened_at",
        "amount",
        "reason_code",
    )
    if missing := [c for c in need if c not in disputes.columns]:
        raise DisputeFeatureError(f"dispute records lack columns {missing}")
    ids = disputes.get_column("dispute_id").to_list()
    if len(set(ids)) != len(ids):
        raise DisputeFeatureError("dispute_id values are not unique")
    if isinstance(evidence, Mapping):
        if missing_ev := [i for i in ids if i not in evidence]:
            raise DisputeFeatureError(
                f"no evidence for {len(missing_ev)} disputes, e.g. {missing_ev[0]!r}"
            )
        evs = [evidence[i] for i in ids]
    else:
        evs = list(evidence)
        if len(evs) != len(ids):
            raise DisputeFeatureError(f"{len(evs)} evidence objects for {len(ids)} disputes")
    has_history = history is not None and history.height > 0
    tx_attrs: dict[str, dict[str, Any]] = {}
    if has_history:
        assert history is not None
        cols = [c for c in ("device_id", "ip_address") if c in history.columns]
        sub = history.filter(pl.col("tx_id").is_in(disputes.get_column("tx_id").to_list()))
        tx_attrs = {r["tx_id"]: r for r in sub.select("tx_id", *cols).iter_rows(named=True)}
    rows: list[dict[str, Any]] = []
    for record, ev in zip(disputes.iter_rows(named=True), evs, strict=True):
        attrs = tx_attrs.get(record["tx_id"], {})
        row: dict[str, Any] = {"dispute_id": record["dispute_id"]}
        row |= evidence_features(
            ev,
            amount=float(record["amount"]),
            tx_date=record["tx_ts"].date(),
            device_id=attrs.get("device_id"),
            ip_address=attrs.get("ip_address"),
        )
        row |= _dispute_features(record)
        rows.append(row)
    frame = pl.DataFrame(
        rows,
        schema={
            "dispute_id": pl.String,
            **dict.fromkeys((*EVIDENCE_FEATURES, *DISPUTE_FEATURES), pl.Float64),
        },
    )
    if has_history:
        assert history is not None
        hist = _customer_features(disputes, history)
        fallback = {
            i: {"device_id": ev.device_id, "ip_address": ev.ip_address}
            for i, ev in zip(ids, evs, strict=True)
        }
        summary, compelling = compelling_table(disputes, history, rule, fallback=fallback)
        ce = summary.select(
            "dispute_id",
            pl.col("qualifies").cast(pl.Float64).alias("ce_qualifies"),
            pl.col("qualifying").cast(pl.Float64).alias("ce_qualifying"),
            pl.col("near_misses").cast(pl.Float64).alias("ce_near_misses"),
            pl.col("in_window").cast(pl.Float64).alias("ce_in_window"),
        )
        frame = frame.join(hist, on="dispute_id", how="left").join(ce, on="dispute_id", how="left")
    else:
        _, compelling = compelling_table(disputes, None, rule)
        frame = frame.with_columns(
            [
                pl.lit(NAN, dtype=pl.Float64).alias(c)
                for c in (*TRANSACTION_FEATURES, *CUSTOMER_FEATURES, *COMPELLING_FEATURES)
            ]
        )
    order = pl.DataFrame({"dispute_id": ids, "_order": range(len(ids))})
    frame = (
        frame.join(order, on="dispute_id", how="left")
        .sort("_order")
        .select("dispute_id", *[pl.col(c).cast(pl.Float64) for c in FEATURE_NAMES])
    )
    return DisputeFeatures(frame=frame, compelling=compelling)


__all__ = [
    "COMPELLING_FEATURES",
    "CUSTOMER_FEATURES",
    "DISPUTE_FEATURES",
    "EVIDENCE_FEATURES",
    "FEATURE_NAMES",
    "TRANSACTION_FEATURES",
    "DisputeFeatureError",
    "DisputeFeatures",
    "build_features",
    "code_claim",
    "evidence_features",
]
