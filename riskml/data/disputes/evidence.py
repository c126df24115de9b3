"""The evidence schema: what a merchant's documents prove about a disputed transaction.

:class:`Evidence` is the contract between the document renderer (its ground truth), the
extractors (rules and LLM: their output, and the LLM's structured-output JSON schema) and the
dispute models (their features). Every field is optional: ``None`` means *not found* (the
documents do not say), never *false*.

:func:`compare` is the one scoring rule for extraction, so precision, recall and F1 are computed
the same way in tests, ``riskml disputes evaluate`` and the benchmarks:

* per field, truth ``None`` and prediction ``None``: nothing is counted;
* truth ``None``, prediction set: one false positive (a value the documents do not hold);
* truth set, prediction ``None``: one false negative (a value missed);
* both set and equal after normalisation: one true positive;
* both set and different: one false positive *and* one false negative (a wrong value is a
  value claimed that is not there and a value there that was missed).

Normalisation (:func:`normalise`): identifiers (order id, tracking number, device id) compare
case-insensitively without whitespace or a leading ``#``; free text (merchant name, carrier)
case-insensitively on letters and digits only, with carrier aliases (``"United Parcel Service"``
is ``"ups"``); currencies upper-case; IP addresses in their canonical form; amounts equal within
:data:`AMOUNT_TOLERANCE`; dates, enumerations and booleans exactly.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Amounts (``amount``, ``refund_amount``) match when they differ by at most this much.
AMOUNT_TOLERANCE = 0.005

DeliveryStatus = Literal["delivered", "in_transit", "returned", "not_found"]
AvsResult = Literal["match", "partial", "no_match", "unavailable"]
CvvResult = Literal["match", "no_match", "unavailable"]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
AVS_RESULTS: tuple[str, ...] = get_args(AvsResult)
CVV_RESULTS: tuple[str, ...] = get_args(CvvResult)

#: Carriers the simulator ships with (the field itself accepts any name).
CARRIERS: tuple[str, ...] = ("UPS", "FedEx", "USPS", "DHL", "Royal Mail", "Canada Post")
#: Other spellings of a carrier -> its normalised name (see :func:`normalise`).
CARRIER_ALIASES: dict[str, str] = {
    "unitedparcelservice": "ups",
    "federalexpress": "fedex",
    "unitedstatespostalservice": "usps",
    "uspostalservice": "usps",
    "dhlexpress": "dhl",
}

_TEXT = 200  # longest free-text value
_ID = 128  # longest identifier


class Evidence(BaseModel):
    """What the merchant's documents show about one disputed transaction (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    order_id: str | None = Field(
        None, max_length=_ID, description="The merchant's order / reference number."
    )
    merchant_name: str | None = Field(
        None, max_length=_TEXT, description="The merchant's trading name on the documents."
    )
    amount: float | None = Field(
        None, ge=0, description="Amount charged for the order, in `currency` (not the refund)."
    )
    currency: str | None = Field(
        None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of `amount`, e.g. USD."
    )
    transaction_date: dt.date | None = Field(
        None, description="Date of the purchase / charge (the order date)."
    )
    shipping_date: dt.date | None = Field(None, description="Date the goods were shipped.")
    carrier: str | None = Field(
        None, max_length=_TEXT, description="Shipping carrier, e.g. UPS, FedEx, USPS, DHL."
    )
    tracking_number: str | None = Field(
        None, max_length=_ID, description="The carrier's tracking number of the shipment."
    )
    delivery_status: DeliveryStatus | None = Field(
        None,
        description="Last carrier status: delivered | in_transit | returned | not_found.",
    )
    delivery_date: dt.date | None = Field(None, description="Date the carrier recorded delivery.")
    shipping_address_matches: bool | None = Field(
        None,
        description="Whether the delivery address is the cardholder's billing address.",
    )
    avs_result: AvsResult | None = Field(
        None,
        description="Address verification result at authorisation: "
        "match | partial | no_match | unavailable.",
    )
    cvv_result: CvvResult | None = Field(
        None, description="Card security code check: match | no_match | unavailable."
    )
    ip_address: str | None = Field(
        None, max_length=64, description="IP address the order was placed from (IPv4/IPv6)."
    )
    device_id: str | None = Field(
        None, max_length=_ID, description="Device fingerprint id of the ordering session."
    )
    customer_acknowledged: bool | None = Field(
        None,
        description="True when the customer confirmed receipt or use of the goods/service in "
        "correspondence; False when the correspondence shows they say it never arrived.",
    )
    refund_issued: bool | None = Field(
        None, description="Whether the merchant issued a refund or credit for the order."
    )
    refund_amount: float | None = Field(None, ge=0, description="Amount refunded, in `currency`.")
    refund_date: dt.date | None = Field(None, description="Date the refund was processed.")
    policy_accepted: bool | None = Field(
        None,
        description="Whether the customer accepted the refund/cancellation policy at checkout.",
    )
    cancellation_date: dt.date | None = Field(
        None, description="Date the customer cancelled the order or subscription."
    )

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "order_id",
        "merchant_name",
        "carrier",
        "tracking_number",
        "ip_address",
        "device_id",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def present(self) -> dict[str, Any]:
        """The fields that are set, as a dict (name -> value)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


#: Normalisation kind of each field (see :func:`normalise`).
FIELD_KINDS: dict[str, str] = {
    "order_id": "id",
    "merchant_name": "text",
    "amount": "amount",
    "currency": "currency",
    "transaction_date": "date",
    "shipping_date": "date",
    "carrier": "carrier",
    "tracking_number": "id",
    "delivery_status": "exact",
    "delivery_date": "date",
    "shipping_address_matches": "exact",
    "avs_result": "exact",
    "cvv_result": "exact",
    "ip_address": "ip",
    "device_id": "id",
    "customer_acknowledged": "exact",
    "refund_issued": "exact",
    "refund_amount": "amount",
    "refund_date": "date",
    "policy_accepted": "exact",
    "cancellation_date": "date",
}


def field_names() -> tuple[str, ...]:
    """Evidence's field names, in schema order."""
    return tuple(Evidence.model_fields)


class Provenance(BaseModel):
    """Where a value was read: ``text[start:end]`` of page ``page`` (1-based) of ``document``.

    ``start``/``end`` are character offsets into that page's extracted text (the PDF text layer
    or the OCR text), ``end`` exclusive; ``text`` is the span itself, so a reviewer sees it
    without re-extracting the page."""

    model_config = ConfigDict(extra="forbid")

    document: str = Field(min_length=1, description="Document name (file name in the case).")
    page: int = Field(ge=1, description="1-based page number.")
    start: int = Field(ge=0, description="Start character offset in the page text.")
    end: int = Field(ge=0, description="End character offset (exclusive).")
    text: str = Field(description="The page text between start and end.")

    @field_validator("end")
    @classmethod
    def _ordered(cls, value: int, info: Any) -> int:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"end ({value}) is before start ({start})")
        return value


FieldValue = bool | float | dt.date | str


class ExtractedField(BaseModel):
    """One extracted value with its confidence (0-1) and where it came from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    value: FieldValue | None
    confidence: float = Field(ge=0.0, le=1.0)
    provenance: list[Provenance] = Field(default_factory=list)


class ExtractionResult(BaseModel):
    """An extractor's answer for one case (one dispute's documents).

    ``fields`` holds, for every field the extractor set in ``evidence``, its confidence and
    provenance (keys are :func:`field_names`). ``tokens_in``/``tokens_out``/``latency_ms`` are
    the accounting of the LLM path (0 for the rules)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    evidence: Evidence
    fields: dict[str, ExtractedField] = Field(default_factory=dict)
    extractor: str = Field(min_length=1)
    documents: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    latency_ms: float = Field(0.0, ge=0.0)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, ExtractedField]) -> dict[str, ExtractedField]:
        unknown = sorted(set(value) - set(FIELD_KINDS))
        if unknown:
            raise ValueError(f"unknown evidence fields: {', '.join(unknown)}")
        return value


# --- normalisation and scoring -------------------------------------------------------------------


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def normalise(name: str, value: Any) -> Any:
    """``value`` of field ``name`` in the form :func:`compare` compares (``None`` stays None).

    Amounts are returned as floats (the tolerance is applied by :func:`values_match`)."""
    if value is None:
        return None
    kind = FIELD_KINDS[name]
    if kind == "id":
        return re.sub(r"\s+", "", _fold(str(value))).lstrip("#")
    if kind in ("text", "carrier"):
        folded = re.sub(r"[^0-9a-z]+", "", _fold(str(value)))
        return CARRIER_ALIASES.get(folded, folded) if kind == "carrier" else folded
    if kind == "currency":
        return str(value).strip().upper()
    if kind == "ip":
        try:
            return ipaddress.ip_address(str(value).strip()).compressed
        except ValueError:
            return str(value).strip().casefold()
    if kind == "amount":
        return float(value)
    return value


def values_match(name: str, predicted: Any, truth: Any) -> bool:
    """Whether two set values of field ``name`` are the same after normalisation."""
    p, t = normalise(name, predicted), normalise(name, truth)
    if FIELD_KINDS[name] == "amount":
        return bool(abs(p - t) <= AMOUNT_TOLERANCE + 1e-9)
    return bool(p == t)


@dataclass
class FieldCounts:
    """True positives, false positives and false negatives of one field (or of all)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: FieldCounts) -> FieldCounts:
        return FieldCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when nothing was predicted (no false claims)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); 1.0 when there was nothing to find and nothing claimed."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    def as_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def compare(predicted: Evidence, truth: Evidence) -> dict[str, FieldCounts]:
    """Per field (every :func:`field_names` entry): the TP/FP/FN of ``predicted`` against
    ``truth`` under the rules in the module docstring."""
    out: dict[str, FieldCounts] = {}
    for name in field_names():
        p, t = getattr(predicted, name), getattr(truth, name)
        if p is None and t is None:
            out[name] = FieldCounts()
        elif t is None:
            out[name] = FieldCounts(fp=1)
        elif p is None:
            out[name] = FieldCounts(fn=1)
        elif values_match(name, p, t):
            out[name] = FieldCounts(tp=1)
        else:
            out[name] = FieldCounts(fp=1, fn=1)
    return out


@dataclass
class ExtractionScores:
    """Counts summed over many (predicted, truth) pairs: per field and over all fields."""

    per_field: dict[str, FieldCounts]
    pairs: int

    @property
    def total(self) -> FieldCounts:
        """All fields pooled: its ``f1`` is the micro-averaged F1 (``extraction_f1_*``)."""
        out = FieldCounts()
        for counts in self.per_field.values():
            out = out + counts
        return out

    @property
    def micro_f1(self) -> float:
        return self.total.f1

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the fields that had something to find or something claimed."""
        seen = [c.f1 for c in self.per_field.values() if c.tp + c.fp + c.fn]
        return sum(seen) / len(seen) if seen else 1.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``micro`` (pooled counts, P/R/F1), ``macro_f1``, ``pairs``, ``fields``."""
        return {
            "pairs": self.pairs,
            "micro": self.total.as_dict(),
            "macro_f1": self.macro_f1,
            "fields": {name: c.as_dict() for name, c in self.per_field.items()},
        }


def score(pairs: Iterable[tuple[Evidence, Evidence]]) -> ExtractionScores:
    """Sum :func:`compare` over ``(predicted, truth)`` pairs (one per document or per case)."""
    per_field = {name: FieldCounts() for name in field_names()}
    n = 0
    for predicted, truth in pairs:
        n += 1
        for name, counts in compare(predicted, truth).items():
            per_field[name] = per_field[name] + counts
    return ExtractionScores(per_field=per_field, pairs=n)


def merge(evidences: Iterable[Evidence]) -> Evidence:
    """One case's evidence from its documents': per field, the first value set wins (the
    documents of a simulated case never disagree; a real case's conflicts are the extractor's
    to report)."""
    merged: dict[str, Any] = {}
    for evidence in evidences:
        for name, value in evidence.present().items():
            merged.setdefault(name, value)
    return Evidence(**merged)
