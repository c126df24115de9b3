"""Dispute simulator: chargebacks raised on the transaction simulator's transactions.

``simulate_disputes(config, out)`` simulates (or takes) a transactions dataset, picks the
disputed transactions, and writes a :class:`DisputeSet` under ``out``: dispute records
(:mod:`riskml.data.disputes.schema`), the ground truth, the merchants' evidence documents as real
PDFs (``documents/<dispute_id>/<doc_type>.pdf``, some scanned), each document's ground-truth
:class:`~riskml.data.disputes.evidence.Evidence`, and the disputed customers' transaction
history with session IP addresses. Deterministic by seed (the PDFs byte-identical too).

How the world works
-------------------
* **Which transactions.** ``fraud_share`` of the disputes are raised on fraud transactions
  (``true_fraud``; card-absent fraud three times as likely to be disputed as card-present);
  the others on genuine ones, by ``type_mix``: ``friendly_fraud`` (the cardholder bought and got
  it, yet claims fraud or non-receipt), ``not_received``, ``not_as_described``, ``duplicate``,
  ``credit_not_processed``, ``cancelled_subscription`` (digital merchants), ``authorisation``.
  Each type is drawn among the transactions it fits (physical goods shipped by e-commerce
  merchants, digital goods, in-person purchases...), larger amounts more often. Only
  transactions at least ``history_days`` after the start are disputed, so each has a history
  (the compelling-evidence rules look 120-365 days back).
* **The claim and its code.** The customer claims something (:data:`~.schema.CLAIMS`; a
  friendly fraudster claims ``fraud`` 70 % of the time, else ``not_received``); the issuer files
  it under a reason code of the card's network (Mastercard for ``mastercard_share`` of the
  customers): fraud card-absent -> Visa 10.4 (10.5 sometimes) / Mastercard 4837 or 4863,
  card-present -> 10.3 (10.1 for skimmed cards) / 4837 or 4870; the other claims per
  :data:`~.schema.CLAIM_CODES`. The customer's message is free text in the claim's words
  (several phrasings each, with or without the amount, the merchant and the date); ``vague_share``
  of them say nothing specific.
* **Facts.** What is true about the order: genuine card-absent orders come from one of the
  customer's devices and its usual IP address, AVS mostly ``match``, CVV ``match``, shipped to
  the billing address; a fraud order from the fraudster's fresh device and a new IP, AVS mostly
  ``no_match``/``partial``, often shipped elsewhere. Physical goods ship 0-3 days after the order
  with a carrier and tracking number and are delivered 1-6 days later, except a truly lost
  parcel (``not_found``/``in_transit``/``returned``).
* **Merit.** Whether the merchant is in the right: never for true fraud; always for friendly
  fraud; for non-receipt when the parcel was delivered; for a duplicate claim when the charges
  were two orders or the duplicate was already refunded; for credit not processed when the
  refund was issued; for a cancelled subscription when it was cancelled after the charge; for
  not-as-described 45 % of the time; for an authorisation claim when the charge was authorised.
* **Documents.** Which exist depends on the merchant's practices (drawn once per merchant:
  keeps session logs, records policy acceptance at checkout, ships with tracking, answers
  e-mails, scans paper) and the case: a delivered order has a receipt, a shipping and a
  delivery confirmation; a refunded one a refund receipt; the e-mail thread may show the
  customer acknowledging receipt (friendly fraud) or saying it never came. Each is rendered in
  a variant drawn from ``variants``; a merchant that scans paper makes ``scanned`` image-only
  PDFs (``scanned_share`` of the documents on average).
* **Outcome.** The win probability ``p_win`` of a representment rises with merit and with the
  strength of the documents for the claim (delivery proof for non-receipt, a known device and
  IP, AVS/CVV matches and acknowledgement for fraud claims, the refund for credit not processed,
  ...). The merchant represented (``won``/``lost``, drawn from ``p_win``) or refunded (more
  often when it had few documents or the amount was small). Delays: a refund 1-10 days, a
  representment 30-90 days (strong evidence resolves sooner; a lost case may go to
  pre-arbitration, +30 days). A case not resolved by ``as_of`` is ``pending``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskml import __version__
from riskml.data.disputes.documents import (
    N_VARIANTS,
    Address,
    Customer,
    DocumentContext,
    LineItem,
    Merchant,
    Session,
    render_document,
    scan_pdf,
)
from riskml.data.disputes.evidence import Evidence, merge
from riskml.data.disputes.schema import (
    CLAIM_CODES,
    DISPUTE_COLUMN_NAMES,
    DISPUTE_TYPES,
    dispute_schema,
    reason_family,
    validate_disputes,
)
from riskml.data.schema import COLUMN_NAMES
from riskml.data.simulator import SimulationConfig

#: Files of a dispute set directory.
DISPUTES_FILE = "disputes.parquet"
TRUTH_FILE = "truth.parquet"
DOCUMENTS_FILE = "documents.parquet"
HISTORY_FILE = "history.parquet"
MANIFEST_FILE = "manifest.json"
DOCUMENTS_DIR = "documents"

#: Genuine dispute types and their default shares among the genuine disputes.
DEFAULT_TYPE_MIX: dict[str, float] = {
    "friendly_fraud": 0.30,
    "not_received": 0.20,
    "not_as_described": 0.17,
    "duplicate": 0.08,
    "credit_not_processed": 0.11,
    "cancelled_subscription": 0.10,
    "authorisation": 0.04,
}

#: The template variants the default sets draw from: development variants 0-3 (the development
#: variants before 4-5 joined them), so the default sets, and the bundles trained on them, stay
#: what they were. Pass ``variants=``
#: :data:`~riskml.data.disputes.documents.DEVELOPMENT_VARIANTS` for all the development ones.
DEFAULT_VARIANTS: tuple[int, ...] = (0, 1, 2, 3)

_CARD_ABSENT = ("ecom", "moto")
_PHYSICAL_GOODS = ("retail", "electronics")
_DIGITAL = ("digital_goods", "entertainment")
_DAY_US = 86_400 * 1_000_000


class DisputeConfig(BaseModel):
    """Everything the dispute simulator needs; the same config gives the same dispute set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(11, ge=0)
    n_disputes: int = Field(400, ge=1, le=1_000_000)
    transactions: SimulationConfig = SimulationConfig(
        n_customers=600, n_terminals=300, days=400, seed=7
    )
    history_days: int = Field(
        130, ge=0, description="Only transactions at least this many days in are disputed."
    )
    fraud_share: float = Field(0.35, ge=0, le=1, description="Disputes on fraud transactions.")
    type_mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TYPE_MIX))
    mastercard_share: float = Field(0.4, ge=0, le=1)
    vague_share: float = Field(0.08, ge=0, le=1, description="Messages that say nothing specific.")
    scanned_share: float = Field(0.2, ge=0, le=1, description="Mean share of scanned documents.")
    variants: tuple[int, ...] = Field(DEFAULT_VARIANTS, min_length=1)
    as_of: dt.datetime | None = Field(
        None, description="Cases not resolved by then are pending (None: all resolved)."
    )

    @field_validator("type_mix")
    @classmethod
    def _known_types(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(value) - set(DISPUTE_TYPES[1:]))
        if bad:
            raise ValueError(
                f"unknown genuine dispute types {bad}; choose from {', '.join(DISPUTE_TYPES[1:])}"
            )
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("type_mix shares must be >= 0 and not all 0")
        return value

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [v for v in value if not 0 <= v < N_VARIANTS]
        if bad:
            raise ValueError(f"variants must be 0-{N_VARIANTS - 1}, got {bad}")
        return value

    @model_validator(mode="after")
    def _history_fits(self) -> DisputeConfig:
        if self.history_days >= self.transactions.days:
            raise ValueError(
                f"history_days ({self.history_days}) must be below transactions.days "
                f"({self.transactions.days})"
            )
        return self

    @classmethod
    def small(cls, **overrides: Any) -> DisputeConfig:
        """For tests: 60 disputes on 150 customers x 240 days (a few seconds)."""
        base: dict[str, Any] = {
            "n_disputes": 60,
            "transactions": SimulationConfig(n_customers=150, n_terminals=100, days=240, seed=5),
            "history_days": 130,
        }
        return cls(**{**base, **overrides})

    @classmethod
    def held_out(cls, **overrides: Any) -> DisputeConfig:
        """A held-out extraction corpus: held-out variants and other seeds."""
        from riskml.data.disputes.documents import HELD_OUT_VARIANTS

        base: dict[str, Any] = {
            "seed": 1011,
            "variants": HELD_OUT_VARIANTS,
            "transactions": SimulationConfig(n_customers=300, n_terminals=150, days=260, seed=97),
            "n_disputes": 150,
        }
        return cls(**{**base, **overrides})


# --- the result ----------------------------------------------------------------------------------

TRUTH_SCHEMA: dict[str, Any] = {
    "dispute_id": pl.String,
    "dispute_type": pl.String,
    "claim": pl.String,
    "merit": pl.Boolean,
    "evidence_strength": pl.Float64,
    "p_win": pl.Float64,
    "represented": pl.Boolean,
    "evidence": pl.String,
}
DOCUMENT_SCHEMA: dict[str, Any] = {
    "dispute_id": pl.String,
    "document": pl.String,
    "doc_type": pl.String,
    "variant": pl.Int8,
    "scanned": pl.Boolean,
    "pages": pl.Int16,
    "truth": pl.String,
}


@dataclass
class DisputeSet:
    """A simulated (or imported) dispute set.

    ``disputes``: the records (:data:`~.schema.DISPUTE_COLUMNS`). ``truth``: per dispute its
    ``dispute_type``, ``claim``, ``merit``, ``evidence_strength``, ``p_win`` (the win
    probability of a representment), ``represented`` and ``evidence`` (the merged ground truth
    of its documents, Evidence JSON). ``documents``: one row per document: ``document`` (path
    relative to ``root``), ``doc_type``, ``variant``, ``scanned``, ``pages``, ``truth`` (the
    Evidence JSON it shows). ``history``: every transaction of the disputed customers (the
    transaction schema) plus ``ip_address`` (card-absent rows; null otherwise)."""

    root: Path
    disputes: pl.DataFrame
    truth: pl.DataFrame
    documents: pl.DataFrame
    history: pl.DataFrame
    manifest: dict[str, Any]

    def document_path(self, document: str) -> Path:
        return self.root / document

    def document_truth(self, document: str) -> Evidence:
        """The ground truth of one document (by its ``document`` path or file name)."""
        rows = self.documents.filter(
            (pl.col("document") == document) | pl.col("document").str.ends_with("/" + document)
        )
        if rows.height != 1:
            raise KeyError(f"no single document {document!r} in the dispute set")
        return Evidence.model_validate_json(rows.item(0, "truth"))

    def case_documents(self, dispute_id: str) -> list[Path]:
        """The document files of one dispute."""
        docs = self.documents.filter(pl.col("dispute_id") == dispute_id).get_column("document")
        return [self.root / d for d in docs.to_list()]

    def case_truth(self, dispute_id: str) -> Evidence:
        """The merged ground truth of one dispute's documents."""
        rows = self.truth.filter(pl.col("dispute_id") == dispute_id)
        if rows.height != 1:
            raise KeyError(f"no dispute {dispute_id!r} in the dispute set")
        return Evidence.model_validate_json(rows.item(0, "evidence"))

    def write(self, out: Path) -> DisputeSet:
        """Copy the set (records, truth, documents, history, manifest) to ``out``; returns the
        copy. Writes to a temporary sibling and swaps it in, so ``out`` is never half-written."""
        out = Path(out)
        if out.resolve() == self.root.resolve():
            return self
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            self.write_tables(tmp)
            src_docs = self.root / DOCUMENTS_DIR
            if src_docs.is_dir():
                shutil.copytree(src_docs, tmp / DOCUMENTS_DIR)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return DisputeSet.read(out)

    def write_tables(self, out: Path) -> None:
        """Write the tables and the manifest (not the documents) under ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        self.disputes.write_parquet(out / DISPUTES_FILE)
        self.truth.write_parquet(out / TRUTH_FILE)
        self.documents.write_parquet(out / DOCUMENTS_FILE)
        self.history.write_parquet(out / HISTORY_FILE)
        (out / MANIFEST_FILE).write_text(
            json.dumps(self.manifest, indent=2, sort_keys=True, default=str) + "\n"
        )

    @classmethod
    def read(cls, root: Path) -> DisputeSet:
        """Read a dispute set written by :func:`simulate_disputes` or :meth:`write`; the
        records are checked with :func:`~.schema.validate_disputes`."""
        root = Path(root)
        if not (root / DISPUTES_FILE).is_file():
            raise FileNotFoundError(f"no dispute set at {root} (no {DISPUTES_FILE})")
        manifest = json.loads((root / MANIFEST_FILE).read_text())
        history_path = root / HISTORY_FILE
        return cls(
            root=root,
            disputes=validate_disputes(pl.read_parquet(root / DISPUTES_FILE)),
            truth=pl.read_parquet(root / TRUTH_FILE),
            documents=pl.read_parquet(root / DOCUMENTS_FILE),
            history=pl.read_parquet(history_path) if history_path.is_file() else pl.DataFrame(),
            manifest=manifest,
        )


# --- deterministic attributes --------------------------------------------------------------------


def _h(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (per-entity attributes independent of draw order)."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _u(*parts: object) -> float:
    """A stable uniform in [0, 1) from ``parts``."""
    return _h(*parts) / 2.0**64


def _choose(options: tuple[Any, ...] | list[Any], *parts: object) -> Any:
    return options[_h(*parts) % len(options)]


_FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Maria",
    "Wei",
    "Mei",
    "Ahmed",
    "Fatima",
    "Olu",
    "Amara",
    "Lukas",
    "Sofia",
    "Mateo",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Ava",
    "Ethan",
    "Mia",
    "Arjun",
    "Priya",
    "Kenji",
    "Yuki",
]
_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Patel",
    "Kim",
]
_STREETS = (
    "Maple Street",
    "Oak Avenue",
    "Pine Road",
    "Cedar Lane",
    "Elm Street",
    "Lakeview Drive",
    "Hillcrest Road",
    "Park Avenue",
    "Sunset Boulevard",
    "River Road",
    "Washington Street",
    "Church Street",
    "Highland Avenue",
    "Meadow Lane",
)
_CITIES = (
    ("Springfield", "IL", "627"),
    ("Portland", "OR", "972"),
    ("Austin", "TX", "787"),
    ("Columbus", "OH", "432"),
    ("Denver", "CO", "802"),
    ("Raleigh", "NC", "276"),
    ("Madison", "WI", "537"),
    ("Tucson", "AZ", "857"),
    ("Albany", "NY", "122"),
    ("Boise", "ID", "837"),
    ("Richmond", "VA", "232"),
    ("Omaha", "NE", "681"),
)
_MERCHANT_FIRST = [
    "Northwind",
    "Blue",
    "Harbor",
    "Summit",
    "Pixel",
    "Evergreen",
    "Golden",
    "Gate",
    "Redwood",
    "Silver",
    "Lake",
    "Urban",
    "Cedar",
    "Bright",
    "Path",
    "Atlas",
    "Riverside",
    "Copper",
    "Kite",
    "Maple",
    "Leaf",
    "Nimbus",
    "Lighthouse",
    "Orchard",
    "Peak",
]
_MERCHANT_NOUN: dict[str, tuple[str, ...]] = {
    "retail": ("Outfitters", "Goods", "Apparel", "Supply Co", "Store", "Boutique"),
    "electronics": ("Electronics", "Gadgets", "Tech", "Devices", "Audio"),
    "digital_goods": ("Games", "Software", "Apps", "Streaming", "Digital"),
    "entertainment": ("Tickets", "Media", "Entertainment", "Events", "Live"),
    "travel": ("Travel", "Trips", "Airways", "Stays", "Journeys"),
    "grocery": ("Market", "Grocers", "Foods"),
    "restaurant": ("Kitchen", "Bistro", "Grill", "Diner"),
    "fuel": ("Fuel", "Gas & Go", "Petroleum"),
    "pharmacy": ("Pharmacy", "Drugstore", "Health"),
    "cash": ("Cash Point", "ATM Services"),
}
_PRODUCTS: dict[str, tuple[str, ...]] = {
    "retail": ("Trail jacket", "Canvas sneakers", "Wool sweater", "Leather bag", "Rain boots"),
    "electronics": ("Wireless earbuds", "Smart watch", "Bluetooth speaker", "Tablet case"),
    "digital_goods": ("Premium plan (monthly)", "Game credits", "Software licence"),
    "entertainment": ("Streaming subscription", "Concert tickets", "Season pass"),
    "travel": ("Flight booking", "Hotel reservation", "Car rental"),
    "grocery": ("Groceries",),
    "restaurant": ("Dinner for two",),
    "fuel": ("Fuel",),
    "pharmacy": ("Pharmacy items",),
    "cash": ("Cash withdrawal",),
}
_CARRIERS = ("UPS", "FedEx", "USPS", "DHL")
_HOME_NETS = (24, 50, 67, 68, 71, 73, 76, 98, 99, 108, 174, 184)
_FRAUD_NETS = (5, 31, 45, 77, 91, 103, 146, 185, 193, 212)


def _ip(kind: str, *parts: object) -> str:
    nets = _HOME_NETS if kind == "home" else _FRAUD_NETS
    h = _h("ip", kind, *parts)
    return f"{nets[h % len(nets)]}.{(h >> 8) % 256}.{(h >> 16) % 256}.{1 + (h >> 24) % 254}"


def _address(*parts: object) -> Address:
    city, region, zip3 = _choose(_CITIES, "city", *parts)
    number = 1 + _h("no", *parts) % 9800
    return Address(
        f"{number} {_choose(_STREETS, 'street', *parts)}",
        city,
        region,
        f"{zip3}{_h('zip', *parts) % 100:02d}",
    )


@dataclass(frozen=True)
class _MerchantProfile:
    merchant: Merchant
    category: str
    order_style: int
    keeps_login: bool
    policy_at_checkout: bool
    ships_with_tracking: bool
    answers_email: bool
    scan_rate: float
    represent_propensity: float
    subscription: bool


def _merchant(seed: int, terminal: str, category: str, scanned_share: float) -> _MerchantProfile:
    first = _choose(_MERCHANT_FIRST, "m1", seed, terminal)
    noun = _choose(_MERCHANT_NOUN.get(category, ("Store",)), "m2", seed, terminal)
    name = f"{first} {noun}"
    slug = "".join(ch for ch in name.lower() if ch.isalnum())
    merchant = Merchant(
        name=name,
        website=f"www.{slug}.example",
        support_email=f"support@{slug}.example",
        phone=f"+1 555 {_h('mp', seed, terminal) % 10000:04d}",
        address=_address("m", seed, terminal),
    )
    u = lambda key: _u(key, seed, terminal)  # noqa: E731
    return _MerchantProfile(
        merchant=merchant,
        category=category,
        order_style=_h("os", seed, terminal) % 4,
        keeps_login=u("login") < 0.7,
        policy_at_checkout=u("policy") < 0.6,
        ships_with_tracking=u("track") < 0.85,
        answers_email=u("mail") < 0.75,
        scan_rate=min(1.0, 2.0 * scanned_share * u("scan")),
        represent_propensity=0.55 + 0.4 * u("rep"),
        subscription=category in _DIGITAL and u("sub") < 0.6,
    )


def _order_id(profile: _MerchantProfile, tx_id: str) -> str:
    n = _h("order", tx_id)
    initials = "".join(w[0] for w in profile.merchant.name.split()).upper()
    style = profile.order_style
    if style == 0:
        return f"{initials}-{100000 + n % 900000}"
    if style == 1:
        return f"{1000000 + n % 9000000}"
    if style == 2:
        return f"ORD-{2020 + n % 6}-{n % 100000:05d}"
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[(n >> (5 * i)) % 32] for i in range(8))


def _tracking(carrier: str, key: str) -> str:
    n = _h("track", key)
    digits = f"{n:020d}{_h('track2', key):020d}"
    if carrier == "UPS":
        alnum = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
        middle = "".join(alnum[(n >> (5 * i)) % len(alnum)] for i in range(6))
        return f"1Z{middle}{digits[:10]}"
    if carrier == "FedEx":
        return digits[:12]
    if carrier == "USPS":
        return "9400" + digits[:18]
    return digits[:10]  # DHL


def _luhn_pan(key: str) -> str:
    """A Luhn-valid 16-digit test card number (for the PAN a customer pastes into an e-mail)."""
    body = "4" + f"{_h('pan', key):020d}"[:14]
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    pan = body + str((10 - total % 10) % 10)
    return " ".join(pan[i : i + 4] for i in range(0, 16, 4))


# --- customer messages ---------------------------------------------------------------------------

_MESSAGES: dict[str, tuple[str, ...]] = {
    "fraud": (
        "I did not make this purchase of {amount} at {merchant}. My card must have been stolen.",
        "I don't recognise this charge from {merchant}. I never ordered anything from them.",
        "Someone used my card without my permission on {date}. Please reverse it.",
        "This transaction is fraudulent, I have never heard of {merchant}.",
        "Unauthorised charge of {amount}. I still have my card, I did not authorise this.",
        "There is a charge on my statement I didn't make. I think my card details were hacked.",
        "Not me. I did not place this order and did not give anyone my card.",
    ),
    "authorisation": (
        "The payment to {merchant} was declined at the time but the charge still went through.",
        "I was told the transaction was not approved, yet {amount} was taken from my account.",
        "The merchant charged my card after my card was reported lost and blocked.",
        "This charge was processed without a valid authorisation, the terminal said declined.",
    ),
    "duplicate": (
        "I was charged twice for the same order at {merchant}.",
        "There are two identical charges of {amount} on {date}. I only bought once.",
        "Duplicate charge: the same purchase appears twice on my statement.",
        "{merchant} billed me two times for one order. Please refund the extra charge.",
        "I paid for this already with another card but was charged again.",
    ),
    "incorrect_amount": (
        "The amount charged ({amount}) is different from what I agreed to pay.",
        "I was overcharged, the receipt showed a lower total.",
    ),
    "not_received": (
        "I ordered from {merchant} on {date} and never received the item.",
        "My order never arrived. Tracking has not updated in weeks.",
        "I paid {amount} but nothing was ever delivered to me.",
        "The package never showed up and the seller stopped answering my emails.",
        "Still waiting for my delivery from {merchant}, it has been over a month.",
        "I did not receive the merchandise I paid for.",
        "The service I paid for was never provided.",
    ),
    "not_as_described": (
        "The item I received from {merchant} is not what was advertised.",
        "The product arrived damaged and the merchant refuses to help.",
        "What I got is a cheap copy, not the product in the listing.",
        "The goods are defective and do not work. I want my {amount} back.",
        "Quality is nothing like the description on the website.",
        "The hotel was nothing like the photos and the room was dirty.",
    ),
    "credit_not_processed": (
        "I returned the item to {merchant} weeks ago and still have not received my refund.",
        "The merchant promised a refund of {amount} but it never came.",
        "I sent the product back with tracking, they confirmed it, but no credit yet.",
        "My refund was approved but it has not shown up on my card.",
        "I cancelled my order before it shipped and was told I would be credited. Nothing.",
    ),
    "cancelled_merchandise": (
        "I cancelled the order before it was shipped but was charged anyway.",
        "I cancelled this booking within the free cancellation period.",
    ),
    "cancelled_subscription": (
        "I cancelled my subscription with {merchant} but they keep charging me.",
        "This is a recurring charge I cancelled last month.",
        "I ended my membership and was still billed {amount} on {date}.",
        "I unsubscribed and never agreed to renew, yet I was charged again.",
        "Charged for another month after cancelling my plan.",
    ),
}
_VAGUE = (
    "Please look into this charge, something is not right.",
    "I want to dispute this transaction.",
    "I am not happy with this purchase and want my money back.",
    "Please investigate this payment to {merchant}.",
    "I have a problem with this charge and the merchant is not helping.",
)
_OPENERS = ("", "", "Hello. ", "Hi there. ", "To whom it may concern: ", "Dear Sir or Madam. ")
_CLOSERS = ("", "", " Thank you.", " Please help.", " I want a full refund.", " Thanks")
_COMPLAINTS = {
    "not_as_described": (
        "The item arrived damaged.",
        "It does not match the description on your website.",
        "The size is wrong and the colour is different.",
        "It stopped working after two days.",
    ),
    "duplicate": ("I can see two charges on my statement.",),
    "credit_not_processed": ("I sent the item back two weeks ago.",),
    "cancelled_subscription": ("Please stop charging my card.",),
    "not_received": ("Tracking shows no update.",),
}


def _message(claim: str, vague: bool, key: str, merchant: str, amount: str, date: str) -> str:
    options = _VAGUE if vague else _MESSAGES[claim]
    body = _choose(options, "msg", key).format(merchant=merchant, amount=amount, date=date)
    return (_choose(_OPENERS, "open", key) + body + _choose(_CLOSERS, "close", key)).strip()


# --- one case ------------------------------------------------------------------------------------


@dataclass
class _Case:
    dispute_id: str
    tx: dict[str, Any]
    dispute_type: str
    claim: str
    network: str
    reason_code: str
    merit: bool
    facts: Evidence
    docs: list[tuple[str, Evidence]]  # (doc_type, facts that document shows)
    context: DocumentContext
    profile: _MerchantProfile
    message: str


def _goods(tx: dict[str, Any]) -> str:
    if tx["channel"] not in _CARD_ABSENT:
        return "in_person"
    if tx["merchant_category"] in _PHYSICAL_GOODS:
        return "physical"
    if tx["merchant_category"] in _DIGITAL:
        return "digital"
    return "service"


def _eligible(dispute_type: str, df: pl.DataFrame) -> pl.Series:
    """Per genuine transaction: whether ``dispute_type`` fits it."""
    cnp = pl.col("channel").is_in(_CARD_ABSENT)
    physical = cnp & pl.col("merchant_category").is_in(_PHYSICAL_GOODS)
    digital = cnp & pl.col("merchant_category").is_in(_DIGITAL)
    not_cash = pl.col("channel") != "atm"
    in_store_goods = ~cnp & pl.col("merchant_category").is_in((*_PHYSICAL_GOODS, "travel"))
    rule = {
        "friendly_fraud": cnp,
        "not_received": physical | (cnp & (pl.col("merchant_category") == "travel")),
        "not_as_described": physical
        | digital
        | in_store_goods
        | (cnp & (pl.col("merchant_category") == "travel")),
        "duplicate": not_cash,
        "credit_not_processed": physical | in_store_goods,
        "cancelled_subscription": digital,
        "authorisation": not_cash,
    }[dispute_type]
    return df.select(rule.fill_null(False)).to_series()


def _pick_transactions(config: DisputeConfig, tx: pl.DataFrame) -> list[tuple[int, str]]:
    """(row index in ``tx``, dispute type) of the disputed transactions, without repeats."""
    rng = np.random.default_rng([config.seed, 1])
    first = tx.get_column("ts").min()
    if not isinstance(first, dt.datetime):  # no rows
        return []
    start = dt.datetime.combine(first.date(), dt.time(), dt.UTC)
    cutoff = start + dt.timedelta(days=config.history_days)
    late = tx.select(pl.col("ts") >= cutoff).to_series().to_numpy()
    amount = tx.get_column("amount").to_numpy()
    cnp = tx.select(pl.col("channel").is_in(_CARD_ABSENT)).to_series().to_numpy()
    fraud = tx.get_column("is_fraud").to_numpy() == 1
    amount_weight = np.sqrt(np.maximum(amount, 1.0))
    taken = np.zeros(tx.height, dtype=bool)
    picks: list[tuple[int, str]] = []

    def draw(mask: np.ndarray, weight: np.ndarray, n: int, label: str) -> None:
        pool = np.flatnonzero(mask & ~taken)
        if n <= 0 or pool.size == 0:
            return
        p = weight[pool] / weight[pool].sum()
        chosen = rng.choice(pool, size=min(n, pool.size), replace=False, p=p)
        taken[chosen] = True
        picks.extend((int(i), label) for i in np.sort(chosen))

    n_fraud = round(config.n_disputes * config.fraud_share)
    draw(late & fraud, amount_weight * np.where(cnp, 3.0, 1.0), n_fraud, "true_fraud")
    mix = {k: v for k, v in config.type_mix.items() if v > 0}
    shares = np.array(list(mix.values()), dtype=float)
    counts = _allocate(config.n_disputes - len(picks), shares)
    genuine = late & ~fraud
    for (name, _), count in zip(mix.items(), counts, strict=True):
        fits = _eligible(name, tx).to_numpy()
        draw(genuine & fits, amount_weight, int(count), name)
    return picks


def _allocate(n: int, shares: np.ndarray) -> np.ndarray:
    """``n`` split by ``shares`` in whole numbers (largest remainder): exact rates, no draw."""
    exact = n * shares / shares.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _reason_code(claim: str, network: str, tx: dict[str, Any], key: str) -> str:
    u = _u("code", key)
    if claim == "fraud":
        card_present = tx["channel"] not in _CARD_ABSENT
        if network == "visa":
            if card_present:
                return "10.1" if tx["fraud_scenario"] == "compromised_terminal" else "10.3"
            return "10.5" if u < 0.08 else "10.4"
        if card_present and tx["fraud_scenario"] == "compromised_terminal":
            return "4870"
        return "4863" if u < 0.3 else "4837"
    codes = CLAIM_CODES[claim][network]
    return codes[0] if u < 0.8 or len(codes) == 1 else codes[1 + int(u * 100) % (len(codes) - 1)]


def _bernoulli(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    p = np.array(list(options.values()), dtype=float)
    return str(names[int(rng.choice(len(names), p=p / p.sum()))])


def _build_case(
    config: DisputeConfig,
    index: int,
    tx: dict[str, Any],
    dispute_type: str,
    history: dict[str, list[dict[str, Any]]],
) -> _Case:
    seed = config.seed
    rng = np.random.default_rng([seed, 2, index])
    dispute_id = f"DSP{index:07d}"
    customer_id, terminal_id = tx["customer_id"], tx["terminal_id"]
    profile = _merchant(seed, terminal_id, tx["merchant_category"], config.scanned_share)
    goods = _goods(tx)
    fraud = dispute_type == "true_fraud"
    network = "mastercard" if _u("net", seed, customer_id) < config.mastercard_share else "visa"

    # the claim
    if dispute_type in ("true_fraud", "friendly_fraud"):
        claim = "fraud" if fraud or rng.random() < 0.7 or goods == "in_person" else "not_received"
    else:
        claim = dispute_type
    code = _reason_code(claim, network, tx, dispute_id)

    # the customer
    first = _choose(_FIRST, "first", seed, customer_id)
    last = _choose(_LAST, "last", seed, customer_id)
    billing = _address("c", seed, customer_id)
    fraud_address = fraud and goods == "physical" and rng.random() < 0.75
    shipping = _address("f", seed, tx["tx_id"]) if fraud_address else billing
    customer = Customer(
        name=f"{first} {last}",
        email=f"{first.lower()}.{last.lower()}{_h('em', seed, customer_id) % 100}@example.com",
        phone=f"+1 555 {_h('cp', seed, customer_id) % 10000:04d}",
        billing=billing,
        shipping=shipping,
        card_brand="Mastercard" if network == "mastercard" else "Visa",
        card_last4=f"{_h('l4', seed, customer_id) % 10000:04d}",
    )

    # facts
    tx_date = tx["ts"].date()
    amount = round(float(tx["amount"]), 2)
    f: dict[str, Any] = {
        "order_id": _order_id(profile, tx["tx_id"]),
        "merchant_name": profile.merchant.name,
        "amount": amount,
        "currency": tx["currency"],
        "transaction_date": tx_date,
    }
    card_absent = goods != "in_person"
    if card_absent:
        f["device_id"] = tx["device_id"]
        f["ip_address"] = tx["ip_address"]
        if fraud:
            f["avs_result"] = _pick(
                rng, {"no_match": 0.45, "partial": 0.2, "match": 0.2, "unavailable": 0.15}
            )
            f["cvv_result"] = _pick(rng, {"match": 0.6, "no_match": 0.25, "unavailable": 0.15})
        else:
            f["avs_result"] = _pick(rng, {"match": 0.88, "partial": 0.07, "unavailable": 0.05})
            f["cvv_result"] = _pick(rng, {"match": 0.95, "unavailable": 0.05})
    merit = False
    delivered = False
    if goods == "physical":
        carrier = _choose(_CARRIERS, "carrier", seed, terminal_id, int(rng.integers(3)))
        ship = tx_date + dt.timedelta(days=int(rng.integers(0, 4)))
        f |= {
            "shipping_date": ship,
            "carrier": carrier,
            "tracking_number": _tracking(carrier, tx["tx_id"]),
            "shipping_address_matches": shipping == billing,
        }
        lost = dispute_type == "not_received" and rng.random() < 0.45
        if lost:
            f["delivery_status"] = _pick(
                rng, {"not_found": 0.4, "in_transit": 0.3, "returned": 0.3}
            )
        else:
            delivered = True
            f["delivery_status"] = "delivered"
            f["delivery_date"] = ship + dt.timedelta(days=int(rng.integers(1, 7)))
    if profile.policy_at_checkout and card_absent:
        f["policy_accepted"] = bool(rng.random() < 0.97)

    complaint = ""
    correspondence: dict[str, Any] = {}
    refund_receipt = False
    if dispute_type == "true_fraud":
        merit = False
    elif dispute_type == "friendly_fraud":
        merit = True
        if goods != "physical" or delivered:
            correspondence["customer_acknowledged"] = True
    elif dispute_type == "not_received":
        merit = delivered or (goods != "physical" and rng.random() < 0.5)
        if not merit:
            correspondence["customer_acknowledged"] = False
        elif rng.random() < 0.3:
            correspondence["customer_acknowledged"] = True
        complaint = _choose(_COMPLAINTS["not_received"], "cpl", dispute_id) if not merit else ""
    elif dispute_type == "not_as_described":
        merit = bool(rng.random() < 0.45)
        correspondence["customer_acknowledged"] = True
        complaint = _choose(_COMPLAINTS["not_as_described"], "cpl", dispute_id)
        if merit and rng.random() < 0.4:
            correspondence["refund_issued"] = False
    elif dispute_type == "duplicate":
        real = rng.random() < 0.6
        refunded = real and rng.random() < 0.45
        merit = (not real) or refunded
        if refunded:
            refund_receipt = True
            f |= {
                "refund_issued": True,
                "refund_amount": amount,
                "refund_date": tx_date + dt.timedelta(days=int(rng.integers(2, 10))),
            }
        complaint = _choose(_COMPLAINTS["duplicate"], "cpl", dispute_id)
    elif dispute_type == "credit_not_processed":
        merit = bool(rng.random() < 0.5)
        if merit:
            refund_receipt = True
            part = amount if rng.random() < 0.75 else round(amount * 0.5, 2)
            f |= {
                "refund_issued": True,
                "refund_amount": part,
                "refund_date": tx_date + dt.timedelta(days=int(rng.integers(8, 30))),
            }
        else:
            correspondence["refund_issued"] = False
        complaint = _choose(_COMPLAINTS["credit_not_processed"], "cpl", dispute_id)
    elif dispute_type == "cancelled_subscription":
        merit = bool(rng.random() < 0.55)
        offset = int(rng.integers(1, 20))
        if merit:
            if rng.random() < 0.6:
                f["cancellation_date"] = tx_date + dt.timedelta(days=offset)
        else:
            f["cancellation_date"] = tx_date - dt.timedelta(days=offset)
        complaint = _choose(_COMPLAINTS["cancelled_subscription"], "cpl", dispute_id)
    elif dispute_type == "authorisation":
        merit = bool(rng.random() < 0.7)
        if not merit and card_absent:
            f["avs_result"] = "unavailable"
            f["cvv_result"] = "unavailable"
    if "refund_issued" in correspondence:
        f["refund_issued"] = correspondence["refund_issued"]
    if "customer_acknowledged" in correspondence:
        f["customer_acknowledged"] = correspondence["customer_acknowledged"]
    facts = Evidence(**f)

    # documents
    docs: list[tuple[str, Evidence]] = []
    subscription = profile.subscription or dispute_type == "cancelled_subscription"

    def add(doc_type: str, names: tuple[str, ...]) -> None:
        docs.append((doc_type, Evidence(**{k: f[k] for k in names if k in f})))

    base = ("order_id", "merchant_name", "transaction_date")
    if rng.random() < (0.92 if card_absent else 0.7):
        add("receipt", (*base, "amount", "currency"))
    if goods == "physical" and profile.ships_with_tracking:
        add(
            "shipping_confirmation",
            (*base, "shipping_date", "carrier", "tracking_number", "shipping_address_matches"),
        )
        if rng.random() < 0.85:
            add(
                "delivery_confirmation",
                (
                    "order_id",
                    "carrier",
                    "tracking_number",
                    "shipping_date",
                    "delivery_status",
                    "delivery_date",
                ),
            )
    if "policy_accepted" in f and rng.random() < (0.9 if subscription else 0.6):
        add("refund_policy", (*base, "policy_accepted", "cancellation_date"))
    if card_absent and profile.keeps_login:
        add(
            "login_record",
            (
                "order_id",
                "transaction_date",
                "amount",
                "currency",
                "ip_address",
                "device_id",
                "avs_result",
                "cvv_result",
            ),
        )
    p_mail = {
        "true_fraud": 0.08,
        "friendly_fraud": 0.55,
        "not_received": 0.65,
        "not_as_described": 0.8,
        "duplicate": 0.4,
        "credit_not_processed": 0.75,
        "cancelled_subscription": 0.65,
        "authorisation": 0.2,
    }[dispute_type]
    if profile.answers_email and rng.random() < p_mail:
        names: list[str] = ["order_id", "merchant_name", *correspondence]
        if "cancellation_date" in f and rng.random() < 0.8:
            names.append("cancellation_date")
        if f.get("refund_issued") is True:
            names.append("refund_issued")
            if rng.random() < 0.7:
                names += ["refund_amount", "refund_date", "currency"]
        add("correspondence", tuple(dict.fromkeys(names)))
    if refund_receipt and rng.random() < 0.85:
        add(
            "refund_receipt",
            (
                "order_id",
                "merchant_name",
                "refund_issued",
                "refund_amount",
                "refund_date",
                "currency",
            ),
        )

    product = _choose(_PRODUCTS.get(tx["merchant_category"], ("Order items",)), "p", dispute_id)
    n_items = 1 + int(rng.integers(0, 3)) if goods == "physical" else 1
    items: tuple[LineItem, ...] = ()
    if n_items > 1:
        extra = _choose(_PRODUCTS.get(tx["merchant_category"], ("Accessory",)), "p2", dispute_id)
        unit = round(amount * 0.15, 2)
        if unit > 0.5:
            items = (LineItem(extra, n_items - 1, unit), LineItem(product, 1, 0.0))
    sessions = tuple(
        Session(h["ts"], h["ip_address"], h["device_id"], "login")
        for h in history.get(customer_id, [])
        if h["ts"] < tx["ts"] and h["ip_address"] is not None
    )[-3:]
    context = DocumentContext(
        merchant=profile.merchant,
        customer=customer,
        items=items,
        product=product,
        complaint=complaint,
        sessions=sessions,
        pan=_luhn_pan(dispute_id) if rng.random() < 0.08 else None,
        subscription=subscription,
        order_date=tx_date,
        delivered_on=f.get("delivery_date"),
    )
    currency_text = f"{amount:,.2f} {tx['currency']}" if rng.random() < 0.5 else f"${amount:,.2f}"
    message = _message(
        claim,
        bool(rng.random() < config.vague_share),
        dispute_id,
        profile.merchant.name,
        currency_text,
        tx_date.strftime("%d %b %Y") if rng.random() < 0.5 else tx_date.isoformat(),
    )
    return _Case(
        dispute_id,
        tx,
        dispute_type,
        claim,
        network,
        code,
        merit,
        facts,
        docs,
        context,
        profile,
        message,
    )


def evidence_strength(claim: str, evidence: Evidence, *, known_device: bool) -> float:
    """How strongly documents with ``evidence`` answer a ``claim`` (about 0-4): the evidence a
    representment of that claim needs. ``known_device``: the order's device or IP was used by
    the customer before (the history proves it)."""
    e = evidence
    s = 0.0
    if claim == "fraud":
        s += 1.2 * known_device
        s += 0.6 * (e.avs_result == "match") - 0.6 * (e.avs_result == "no_match")
        s += 0.3 * (e.cvv_result == "match") - 0.4 * (e.cvv_result == "no_match")
        s += 0.6 * (e.delivery_status == "delivered" and e.shipping_address_matches is True)
        s -= 0.6 * (e.shipping_address_matches is False)
        s += 1.2 * (e.customer_acknowledged is True)
        s += 0.2 * (e.order_id is not None)
    elif claim == "not_received":
        s += 1.8 * (e.delivery_status == "delivered") + 0.4 * (e.delivery_date is not None)
        s -= 1.2 * (e.delivery_status in ("not_found", "returned", "in_transit"))
        s += 0.5 * (e.tracking_number is not None)
        s += 1.2 * (e.customer_acknowledged is True) - 1.0 * (e.customer_acknowledged is False)
        s += 0.4 * known_device
    elif claim == "not_as_described":
        s += 0.9 * (e.policy_accepted is True) + 0.5 * (e.order_id is not None)
        s += 0.4 * (e.delivery_status == "delivered") + 0.3 * (e.refund_issued is False)
    elif claim == "duplicate":
        s += 0.8 * (e.order_id is not None) + 2.0 * (e.refund_issued is True)
    elif claim == "credit_not_processed":
        s += 2.4 * (e.refund_issued is True) + 0.4 * (e.refund_date is not None)
        s -= 1.0 * (e.refund_issued is False)
        s += 0.5 * (e.policy_accepted is True)
    elif claim == "cancelled_subscription":
        s += 1.0 * (e.policy_accepted is True)
        if e.cancellation_date is not None and e.transaction_date is not None:
            s += 1.6 if e.cancellation_date > e.transaction_date else -1.6
    elif claim == "authorisation":
        s += 0.8 * (e.avs_result == "match") + 0.6 * (e.cvv_result == "match")
        s += 0.6 * (e.order_id is not None)
    return float(s)


def _outcome(
    config: DisputeConfig,
    index: int,
    case: _Case,
    strength: float,
    n_docs: int,
    opened: dt.datetime,
) -> tuple[float, bool, str, dt.datetime | None]:
    rng = np.random.default_rng([config.seed, 3, index])
    amount = float(case.facts.amount or 0.0)
    logit = (
        -1.9
        + 1.1 * case.merit
        + 0.6 * strength
        - 0.25 * np.log(max(amount, 1.0) / 50.0)  # issuers fight harder for large amounts
        - 0.2 * (case.network == "mastercard")
        + rng.normal(0.0, 0.7)  # the issuer's reviewer
    )
    p_win = float(1.0 / (1.0 + np.exp(-logit)))
    p_rep = case.profile.represent_propensity * min(1.0, 0.25 + 0.2 * n_docs)
    if amount < 15:
        p_rep *= 0.4
    represented = bool(n_docs > 0 and rng.random() < p_rep)
    if represented:
        won = bool(rng.random() < p_win)
        outcome = "won" if won else "lost"
        days = 30.0 + rng.gamma(4.0, 6.0) - (3.0 * max(strength, 0.0) if won else 0.0)
        if not won and rng.random() < 0.25:
            days += 30.0  # pre-arbitration
        days = max(days, 20.0)
    else:
        outcome = "refunded"
        days = 1.0 + rng.gamma(2.0, 2.0)
        days = min(days, 10.0)
    resolved: dt.datetime | None = opened + dt.timedelta(days=float(days))
    if config.as_of is not None and resolved is not None and resolved > _utc(config.as_of):
        outcome, resolved = "pending", None
    return p_win, represented, outcome, resolved


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _opened_at(
    config: DisputeConfig, index: int, tx: dict[str, Any], dispute_type: str
) -> dt.datetime:
    if dispute_type == "true_fraud":
        opened = tx["label_available_at"]
        assert isinstance(opened, dt.datetime)
        return opened
    rng = np.random.default_rng([config.seed, 4, index])
    median = {"credit_not_processed": 28.0, "cancelled_subscription": 20.0}.get(dispute_type, 14.0)
    days = float(np.clip(np.exp(np.log(median) + 0.6 * rng.standard_normal()), 1.0, 110.0))
    ts = tx["ts"]
    assert isinstance(ts, dt.datetime)
    return ts + dt.timedelta(days=days)


# --- history with IP addresses -------------------------------------------------------------------


def with_session_ips(tx: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``tx`` plus ``ip_address``: for card-absent rows the IP of the session (a genuine row:
    the customer's usual IP for that device; a fraud row: a fresh one), null otherwise."""
    cnp = tx.select(pl.col("channel").is_in(_CARD_ABSENT)).to_series().to_list()
    ips = [
        None if not c else (_ip("fraud", seed, t) if f else _ip("home", seed, cust, dev))
        for c, f, t, cust, dev in zip(
            cnp,
            tx.get_column("is_fraud").to_list(),
            tx.get_column("tx_id").to_list(),
            tx.get_column("customer_id").to_list(),
            tx.get_column("device_id").to_list(),
            strict=True,
        )
    ]
    return tx.with_columns(pl.Series("ip_address", ips, dtype=pl.String))


# --- the whole run -------------------------------------------------------------------------------


def simulate_disputes(
    config: DisputeConfig,
    out: Path,
    *,
    transactions: pl.DataFrame | None = None,
    timings: dict[str, float] | None = None,
) -> DisputeSet:
    """Simulate a dispute set under ``out`` (replacing what is there) and return it.

    ``transactions``: a transactions frame in the riskml schema to raise the disputes on
    (default: simulate ``config.transactions``). ``timings`` receives seconds per phase."""
    from riskml.data.io import read_transactions
    from riskml.data.schema import validate_transactions
    from riskml.data.simulator import simulate

    out = Path(out)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if transactions is None:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            simulate(config.transactions, Path(tmp))
            transactions = read_transactions(Path(tmp))
    else:
        transactions = validate_transactions(transactions)
    clock["transactions"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    picks = _pick_transactions(config, transactions)
    if not picks:
        raise ValueError(
            "no transaction can be disputed: the transactions have no rows "
            f"{config.history_days} days after their first day (history_days)"
        )
    customers = sorted({transactions.item(i, "customer_id") for i, _ in picks})
    history = with_session_ips(
        transactions.filter(pl.col("customer_id").is_in(customers)), config.seed
    )
    hist_rows: dict[str, list[dict[str, Any]]] = {}
    for row in history.filter(pl.col("ip_address").is_not_null()).iter_rows(named=True):
        hist_rows.setdefault(row["customer_id"], []).append(row)
    by_tx = {r["tx_id"]: r for r in history.iter_rows(named=True)}
    picks.sort(key=lambda p: (transactions.item(p[0], "ts"), p[0]))
    cases = [
        _build_case(config, i, by_tx[transactions.item(row, "tx_id")], kind, hist_rows)
        for i, (row, kind) in enumerate(picks)
    ]
    clock["cases"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    records: list[dict[str, Any]] = []
    truth_rows: list[dict[str, Any]] = []
    doc_rows: list[dict[str, Any]] = []
    scan_seconds = 0.0
    known_devices = _known_devices(cases, history)
    for i, case in enumerate(cases):
        rng = np.random.default_rng([config.seed, 5, i])
        shown: list[Evidence] = []
        for doc_type, facts in case.docs:
            variant = int(config.variants[int(rng.integers(len(config.variants)))])
            scanned = bool(rng.random() < case.profile.scan_rate)
            rel = f"{DOCUMENTS_DIR}/{case.dispute_id}/{doc_type}.pdf"
            path = out / rel
            rendered = render_document(doc_type, facts, case.context, path, variant=variant)
            doc_truth, pages = rendered.truth, rendered.pages
            if scanned:
                ts = time.perf_counter()
                clean = path.with_suffix(".clean.pdf")
                path.rename(clean)
                scan_pdf(clean, path, seed=_h("scan", config.seed, rel) % 2**32)
                clean.unlink()
                scan_seconds += time.perf_counter() - ts
            shown.append(doc_truth)
            doc_rows.append(
                {
                    "dispute_id": case.dispute_id,
                    "document": rel,
                    "doc_type": doc_type,
                    "variant": variant,
                    "scanned": scanned,
                    "pages": pages,
                    "truth": doc_truth.model_dump_json(exclude_none=True),
                }
            )
        evidence = merge(shown)
        known = case.tx["tx_id"] in known_devices
        strength = evidence_strength(case.claim, evidence, known_device=known)
        opened = _opened_at(config, i, case.tx, case.dispute_type)
        p_win, represented, outcome, resolved = _outcome(
            config, i, case, strength, len(case.docs), opened
        )
        records.append(
            {
                "dispute_id": case.dispute_id,
                "tx_id": case.tx["tx_id"],
                "customer_id": case.tx["customer_id"],
                "terminal_id": case.tx["terminal_id"],
                "merchant_name": case.profile.merchant.name,
                "tx_ts": case.tx["ts"],
                "opened_at": opened,
                "amount": round(float(case.tx["amount"]), 2),
                "currency": case.tx["currency"],
                "network": case.network,
                "reason_code": case.reason_code,
                "reason_family": reason_family(case.reason_code, case.network),
                "customer_message": case.message,
                "outcome": outcome,
                "resolved_at": resolved,
            }
        )
        truth_rows.append(
            {
                "dispute_id": case.dispute_id,
                "dispute_type": case.dispute_type,
                "claim": case.claim,
                "merit": case.merit,
                "evidence_strength": strength,
                "p_win": p_win,
                "represented": represented,
                "evidence": evidence.model_dump_json(exclude_none=True),
            }
        )
    clock["documents"] = time.perf_counter() - t2
    clock["scans"] = scan_seconds

    disputes = validate_disputes(
        pl.DataFrame(records, schema=dispute_schema()).select(DISPUTE_COLUMN_NAMES)
    )
    truth = pl.DataFrame(truth_rows, schema=TRUTH_SCHEMA)
    documents = pl.DataFrame(doc_rows, schema=DOCUMENT_SCHEMA)
    history = history.select(*COLUMN_NAMES, "ip_address")
    manifest = {
        "generator": "riskml.data.disputes.simulator",
        "riskml_version": __version__,
        "seed": config.seed,
        "params": config.model_dump(mode="json"),
        "disputes": disputes.height,
        "documents": documents.height,
        "scanned_documents": int(documents.get_column("scanned").sum()),
        "dispute_types": _counts(truth, "dispute_type"),
        "reason_families": _counts(disputes, "reason_family"),
        "outcomes": _counts(disputes, "outcome"),
        "doc_types": _counts(documents, "doc_type"),
        "history_rows": history.height,
    }
    result = DisputeSet(out, disputes, truth, documents, history, manifest)
    result.write_tables(out)
    clock["total"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(clock)
    return result


def _counts(df: pl.DataFrame, column: str) -> dict[str, int]:
    counts = df.group_by(column).len().sort(column)
    return {str(k): int(v) for k, v in counts.iter_rows()}


def _known_devices(cases: list[_Case], history: pl.DataFrame) -> set[str]:
    """The disputed card-absent transactions whose device or IP appears on the customer's
    earlier genuine card-absent transactions (what compelling evidence for a fraud claim
    rests on)."""
    disputed = pl.DataFrame(
        {
            "tx_id": [c.tx["tx_id"] for c in cases],
            "customer_id": [c.tx["customer_id"] for c in cases],
            "ts": [c.tx["ts"] for c in cases],
            "device_id": [c.tx["device_id"] for c in cases],
            "ip_address": [c.tx["ip_address"] for c in cases],
        },
        schema={
            "tx_id": pl.String,
            "customer_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "device_id": pl.String,
            "ip_address": pl.String,
        },
    ).filter(pl.col("ip_address").is_not_null())
    earlier = history.filter((pl.col("is_fraud") == 0) & pl.col("ip_address").is_not_null())
    hits = disputed.join(
        earlier.select("customer_id", "ts", "device_id", "ip_address"),
        on="customer_id",
        suffix="_h",
    ).filter(
        (pl.col("ts_h") < pl.col("ts"))
        & (
            (pl.col("device_id_h") == pl.col("device_id"))
            | (pl.col("ip_address_h") == pl.col("ip_address"))
        )
    )
    return set(hits.get_column("tx_id").to_list())
