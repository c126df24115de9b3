"""Decisioning: what a representment needs per reason code, and auto-refund / represent /
human review by expected value.

**Requirements** (:data:`REQUIREMENTS`). A dispute's requirement set is chosen by its *claim*:
the one claim its reason code stands for (Visa 13.1 -> ``not_received``; the fraud codes,
10.x / 4837 / 4863 / 4870 / 4871 -> ``fraud``), or for a code filed for several claims
(Mastercard 4853, 4834) or none (12.1 late presentment, ...) the reason family's generic set
(``consumer_dispute``, ``processing_error``, ``authorisation``). Each :class:`Requirement` is
met when any of its :class:`Check` s holds on the evidence (``present``, ``equals``, ``in``,
``after`` another date field) or on the compelling-evidence result (``compelling``);
``required`` ones must all be met for a complete representment, ``supporting`` ones strengthen
it. The table follows the networks' dispute-response guidance, simplified to the evidence
schema: e.g. a card-absent fraud claim is answered by proof that the cardholder took part
(Visa CE 3.0 history, or their acknowledgement in correspondence) plus the order record;
non-receipt by a delivery confirmation or the customer's acknowledgement.

**Economics** (:class:`DisputeEconomics`): the perspective is the **merchant's** (the side
whose disputes we automate: it answers chargebacks, and the money is its). Values are money
in the dispute's currency relative to *before the chargeback* (the merchant held the amount):

* ``ev_refund = -amount - chargeback_fee - refund_cost`` (accept: the amount stays with the
  cardholder);
* ``ev_represent = -chargeback_fee - representment_fee - represent_cost
  - (1 - p_win) * (amount + second_cycle_rate * second_cycle_fee)`` (win: the amount comes
  back; lose: it does not, and a share of lost cases go to pre-arbitration at a cost);
* a review costs ``review_cost`` and ends in the better of the two at the probability it
  reveals (below).

So ``ev_represent - ev_refund = (amount + x) * (p_win - p*)`` with ``x = second_cycle_rate *
second_cycle_fee`` and the break-even ``p* = (representment_fee + represent_cost -
refund_cost + x) / (amount + x)`` (:meth:`DisputeEconomics.break_even`). The chargeback fee is
charged either way (it moves both values equally, never the decision).

**Policy** (:func:`decide`): the action with the larger EV, unless a **human review** is
worth more than it costs. A review is valued as what learning the true win probability is
worth before choosing (:func:`value_of_review`, the expected value of perfect information):
the truth is taken to lie around the model's calibrated estimate as
``Beta(p k, (1 - p) k)``; the review pays when that value exceeds ``review_cost`` (and the
amount is at least ``min_review_amount``). It is large for *close calls* (an estimate near the
break-even) on large amounts, and grows when the estimate is *uncertain*: ``k`` is
``concentration`` normally and ``uncertain_concentration`` when a required item of the
evidence is missing, a required item rests on an extracted value less confident than
``min_field_confidence``, or the model is uncertain (its reason family had fewer than
``min_family_support`` training disputes, or the caller says so). The defaults, ``k = 5`` and
``2``, come from the simulator's backtest: the true win probabilities spread around the
calibrated estimates as a Beta of concentration 4-5. A review's EV is the better action at
the estimate plus that value, minus its cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.data.disputes.evidence import Evidence, ExtractedField, field_names
from riskml.data.disputes.schema import BY_CODE, NETWORKS, reason_family

Action = Literal["auto_refund", "represent", "human_review"]
ACTIONS: tuple[str, ...] = get_args(Action)
CheckOp = Literal["present", "equals", "in", "after", "compelling"]
#: The pseudo-field of a check on the compelling-evidence result.
COMPELLING = "compelling_evidence"


class PolicyError(ValueError):
    """Decision inputs are invalid."""


class Check(BaseModel):
    """One way to meet a requirement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    op: CheckOp = "present"
    value: Any = None  # equals: the value; in: a tuple of values; after: the other date field

    @model_validator(mode="after")
    def _known(self) -> Check:
        known = set(field_names()) | {COMPELLING}
        if self.field not in known:
            raise ValueError(f"unknown evidence field {self.field!r}")
        if (self.op == "compelling") != (self.field == COMPELLING):
            raise ValueError("the compelling check is op='compelling' on field compelling_evidence")
        if self.op == "after" and self.value not in field_names():
            raise ValueError(f"'after' compares with another evidence field, got {self.value!r}")
        return self

    def holds(self, evidence: Evidence, compelling: bool | None) -> bool:
        if self.op == "compelling":
            return bool(compelling)
        value = getattr(evidence, self.field)
        if value is None:
            return False
        if self.op == "present":
            return True
        if self.op == "equals":
            return bool(value == self.value)
        if self.op == "in":
            return value in tuple(self.value)
        other = getattr(evidence, str(self.value))
        return bool(other is not None and value > other)

    def describe(self) -> str:
        if self.op == "compelling":
            return "compelling evidence from the transaction history"
        if self.op == "present":
            return self.field
        if self.op == "after":
            return f"{self.field} after {self.value}"
        value = "/".join(map(str, self.value)) if self.op == "in" else self.value
        return f"{self.field} = {value}"


class Requirement(BaseModel):
    """An item a representment needs (``required``) or that strengthens it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    description: str
    any_of: tuple[Check, ...] = Field(min_length=1)
    required: bool = True


def _req(key: str, description: str, *checks: Check, required: bool = True) -> Requirement:
    return Requirement(key=key, description=description, any_of=checks, required=required)


def _c(name: str, op: CheckOp = "present", value: Any = None) -> Check:
    return Check(field=name, op=op, value=value)


_ORDER = _req("order_record", "The order record (order number)", _c("order_id"))

#: Requirement sets by claim (or reason family for codes that name no single claim).
REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    "fraud": (
        _ORDER,
        _req(
            "cardholder_participation",
            "Proof the cardholder took part: compelling evidence (earlier undisputed "
            "transactions sharing device / IP) or their acknowledgement in correspondence",
            _c(COMPELLING, "compelling"),
            _c("customer_acknowledged", "equals", True),
        ),
        _req(
            "verification",
            "AVS or CVV matched at authorisation",
            _c("avs_result", "equals", "match"),
            _c("cvv_result", "equals", "match"),
            required=False,
        ),
        _req(
            "delivery_to_billing",
            "Goods shipped to the cardholder's billing address",
            _c("shipping_address_matches", "equals", True),
            required=False,
        ),
        _req(
            "session_record",
            "The ordering session's IP address / device",
            _c("ip_address"),
            _c("device_id"),
            required=False,
        ),
    ),
    "authorisation": (
        _ORDER,
        _req(
            "authorisation_proof",
            "The charge was verified at authorisation (AVS or CVV match)",
            _c("avs_result", "equals", "match"),
            _c("cvv_result", "equals", "match"),
        ),
    ),
    "duplicate": (
        _req(
            "distinct_or_refunded",
            "The charges were separate orders, or the duplicate was refunded",
            _c("order_id"),
            _c("refund_issued", "equals", True),
        ),
        _req("receipt", "The receipt with the amount charged", _c("amount"), required=False),
        _req(
            "refund_record",
            "A refund of the duplicate",
            _c("refund_issued", "equals", True),
            required=False,
        ),
    ),
    "incorrect_amount": (
        _ORDER,
        _req("receipt", "The receipt with the amount the customer agreed", _c("amount")),
    ),
    "not_received": (
        _req(
            "proof_of_delivery",
            "Delivery confirmation, or the customer acknowledging receipt",
            _c("delivery_status", "equals", "delivered"),
            _c("customer_acknowledged", "equals", True),
        ),
        _req("tracking", "Carrier tracking number", _c("tracking_number"), required=False),
        _req(
            "delivery_address",
            "Delivered to the cardholder's address",
            _c("shipping_address_matches", "equals", True),
            required=False,
        ),
        _req("delivery_date", "Date of delivery", _c("delivery_date"), required=False),
    ),
    "not_as_described": (
        _ORDER,
        _req(
            "terms_accepted",
            "The customer accepted the refund / return policy at checkout",
            _c("policy_accepted", "equals", True),
        ),
        _req(
            "delivered",
            "The goods were delivered",
            _c("delivery_status", "equals", "delivered"),
            required=False,
        ),
    ),
    "credit_not_processed": (
        _req(
            "credit_issued",
            "The refund / credit was issued",
            _c("refund_issued", "equals", True),
        ),
        _req("credit_date", "Date of the refund", _c("refund_date"), required=False),
        _req("credit_amount", "Amount of the refund", _c("refund_amount"), required=False),
        _req(
            "terms_accepted",
            "Refund policy accepted at checkout",
            _c("policy_accepted", "equals", True),
            required=False,
        ),
    ),
    "cancelled_merchandise": (
        _req(
            "terms_accepted",
            "The cancellation policy accepted at checkout",
            _c("policy_accepted", "equals", True),
        ),
        _req(
            "cancellation_record",
            "When the order was cancelled",
            _c("cancellation_date"),
            required=False,
        ),
    ),
    "cancelled_subscription": (
        _req(
            "terms_accepted",
            "The subscription terms (cancellation policy) accepted at checkout",
            _c("policy_accepted", "equals", True),
        ),
        _req(
            "charged_before_cancellation",
            "The charge preceded the cancellation",
            _c("cancellation_date", "after", "transaction_date"),
        ),
    ),
    "processing_error": (
        _ORDER,
        _req("receipt", "The receipt with the amount charged", _c("amount"), required=False),
    ),
    "consumer_dispute": (
        _ORDER,
        _req(
            "fulfilment_or_terms",
            "Delivery, acknowledgement, a refund or accepted terms",
            _c("delivery_status", "equals", "delivered"),
            _c("customer_acknowledged", "equals", True),
            _c("refund_issued", "equals", True),
            _c("policy_accepted", "equals", True),
        ),
    ),
}


def requirement_key(reason_code: str, network: str | None = None, claim: str | None = None) -> str:
    """Which requirement set answers a dispute: ``claim`` when given (and known), else the
    code's single claim (fraud codes without listed claims -> ``fraud``), else its family's
    generic set. Raises :class:`PolicyError` for an unknown code or claim."""
    if claim is not None:
        if claim not in REQUIREMENTS:
            raise PolicyError(f"no requirements for claim {claim!r}")
        return claim
    try:
        family = reason_family(reason_code, network)
    except KeyError:
        raise PolicyError(f"unknown reason code {reason_code!r}") from None
    nets = [network] if network in NETWORKS else list(NETWORKS)
    rc = next(BY_CODE[(n, reason_code)] for n in nets if (n, reason_code) in BY_CODE)
    return rc.claims[0] if len(rc.claims) == 1 else family


@dataclass
class RequirementStatus:
    """One requirement on one dispute."""

    key: str
    description: str
    required: bool
    met: bool
    satisfied_by: list[str] = field(default_factory=list)
    confidence: float | None = None  # the least confident extracted field it rests on

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "description": self.description,
            "required": self.required,
            "met": self.met,
            "satisfied_by": list(self.satisfied_by),
            "confidence": self.confidence,
        }


@dataclass
class RequirementReport:
    """Which of a dispute's requirements its evidence meets."""

    key: str  # the requirement set (claim or family)
    items: list[RequirementStatus]
    compelling: bool | None = None

    @property
    def required(self) -> list[RequirementStatus]:
        return [i for i in self.items if i.required]

    @property
    def supporting(self) -> list[RequirementStatus]:
        return [i for i in self.items if not i.required]

    @property
    def complete(self) -> bool:
        """Every required item is met."""
        return all(i.met for i in self.required)

    @property
    def missing(self) -> list[str]:
        """The keys of the required items not met."""
        return [i.key for i in self.required if not i.met]

    @property
    def required_share(self) -> float:
        req = self.required
        return sum(i.met for i in req) / len(req) if req else 1.0

    @property
    def supporting_share(self) -> float:
        sup = self.supporting
        return sum(i.met for i in sup) / len(sup) if sup else 0.0

    @property
    def min_confidence(self) -> float | None:
        """The lowest confidence of an extracted field a met required item rests on."""
        values = [i.confidence for i in self.required if i.met and i.confidence is not None]
        return min(values) if values else None

    def rules_score(self) -> float:
        """The rules-only baseline's score in [0, 1]: met required items count 1, supporting
        ones 1/2, qualifying compelling evidence 1 more on a fraud claim (divided by the
        most there is to get)."""
        got = sum(i.met for i in self.required) + 0.5 * sum(i.met for i in self.supporting)
        most = len(self.required) + 0.5 * len(self.supporting)
        if self.key == "fraud":
            got += float(bool(self.compelling))
            most += 1.0
        return got / most if most else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "complete": self.complete,
            "missing": self.missing,
            "required_share": self.required_share,
            "supporting_share": self.supporting_share,
            "compelling": self.compelling,
            "items": [i.as_dict() for i in self.items],
        }


#: The requirement report as model features (appended to the feature matrix).
REQUIREMENT_FEATURES: tuple[str, ...] = (
    "req_required_share",
    "req_supporting_share",
    "req_complete",
    "req_rules_score",
)


def requirement_features(report: RequirementReport) -> dict[str, float]:
    """:data:`REQUIREMENT_FEATURES` of one report."""
    return {
        "req_required_share": report.required_share,
        "req_supporting_share": report.supporting_share,
        "req_complete": float(report.complete),
        "req_rules_score": report.rules_score(),
    }


def with_requirement_features(frame: Any, reports: list[RequirementReport]) -> Any:
    """A polars feature frame plus the :data:`REQUIREMENT_FEATURES` columns (row by row)."""
    import polars as pl

    if frame.height != len(reports):
        raise PolicyError(f"{len(reports)} requirement reports for {frame.height} rows")
    rows = [requirement_features(r) for r in reports]
    extra = pl.DataFrame(rows, schema=dict.fromkeys(REQUIREMENT_FEATURES, pl.Float64))
    return pl.concat(
        [frame.drop([c for c in REQUIREMENT_FEATURES if c in frame.columns]), extra],
        how="horizontal",
    )


def check_requirements(
    reason_code: str,
    evidence: Evidence,
    *,
    network: str | None = None,
    claim: str | None = None,
    compelling: bool | None = None,
    fields: Mapping[str, ExtractedField] | None = None,
) -> RequirementReport:
    """The requirement report of one dispute. ``compelling``: whether the history proves
    compelling evidence (None: not examined); ``fields``: the extractor's per-field
    confidences (absent: ground truth, confidence 1)."""
    key = requirement_key(reason_code, network, claim)
    items: list[RequirementStatus] = []
    for req in REQUIREMENTS[key]:
        by = [c for c in req.any_of if c.holds(evidence, compelling)]
        conf: float | None = None
        if by and fields is not None:
            # the item rests on its best-supported check: the most confident field that meets it
            confs = [
                1.0 if c.field == COMPELLING else fields[c.field].confidence
                for c in by
                if c.field == COMPELLING or c.field in fields
            ]
            conf = max(confs) if confs else None
        items.append(
            RequirementStatus(
                key=req.key,
                description=req.description,
                required=req.required,
                met=bool(by),
                satisfied_by=[c.describe() for c in by],
                confidence=conf,
            )
        )
    return RequirementReport(key=key, items=items, compelling=compelling)


# --- economics and the policy --------------------------------------------------------------------


class DisputeEconomics(BaseModel):
    """Money per dispute from the merchant's side (module docstring), in the dispute's currency.

    Defaults are round, typical figures for a card-not-present merchant: an acquirer
    chargeback fee, no separate representment fee, an automated packet's handling cost, an
    analyst's review, and a quarter of lost representments going to pre-arbitration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    perspective: Literal["merchant"] = "merchant"
    chargeback_fee: float = Field(15.0, ge=0, description="Acquirer fee on every chargeback.")
    representment_fee: float = Field(0.0, ge=0, description="Fee to file a representment.")
    represent_cost: float = Field(
        15.0, ge=0, description="Handling cost of an (automated) representment."
    )
    refund_cost: float = Field(2.0, ge=0, description="Handling cost of accepting.")
    review_cost: float = Field(15.0, ge=0, description="An analyst's review of one case.")
    second_cycle_rate: float = Field(
        0.25, ge=0, le=1, description="Share of lost representments that go to pre-arbitration."
    )
    second_cycle_fee: float = Field(
        100.0, ge=0, description="Cost of a pre-arbitration / arbitration cycle."
    )

    def ev_refund(self, amount: Any) -> np.ndarray:
        a = np.asarray(amount, dtype=np.float64)
        return -a - self.chargeback_fee - self.refund_cost

    def ev_represent(self, amount: Any, p_win: Any) -> np.ndarray:
        a = np.asarray(amount, dtype=np.float64)
        p = np.asarray(p_win, dtype=np.float64)
        loss = a + self.second_cycle_rate * self.second_cycle_fee
        return -self.chargeback_fee - self.representment_fee - self.represent_cost - (1 - p) * loss

    def ev_review(self, amount: Any, p_win: Any) -> np.ndarray:
        """An analyst who takes the better action at win probability ``p_win``."""
        best = np.maximum(self.ev_represent(amount, p_win), self.ev_refund(amount))
        return best - self.review_cost

    def break_even(self, amount: Any) -> np.ndarray:
        """The win probability above which representing beats refunding."""
        a = np.asarray(amount, dtype=np.float64)
        extra = self.second_cycle_rate * self.second_cycle_fee
        fixed = self.representment_fee + self.represent_cost - self.refund_cost
        return np.asarray((fixed + extra) / (a + extra))


def value_of_review(
    amount: float, p_win: float, concentration: float, economics: DisputeEconomics
) -> float:
    """What learning the true win probability is worth before choosing (the expected value of
    perfect information): with the truth ``p ~ Beta(p_win * k, (1 - p_win) * k)`` around the
    model's estimate (``k`` = ``concentration``), ``E[max(ev_represent(p), ev_refund)] -
    max(ev_represent(p_win), ev_refund)``. Large near the break-even, for large amounts and
    for wide (uncertain) estimates; 0 far from the break-even."""
    from scipy.stats import beta

    econ = economics
    slope = (
        amount + econ.second_cycle_rate * econ.second_cycle_fee
    )  # ev_rep - ev_ref = slope*(p-p*)
    star = float(econ.break_even(amount))
    p = float(np.clip(p_win, 1e-6, 1 - 1e-6))
    if star >= 1.0:
        return 0.0
    if star <= 0.0:
        return 0.0
    a, b = p * concentration, (1.0 - p) * concentration
    upside = p * float(beta.sf(star, a + 1.0, b)) - star * float(beta.sf(star, a, b))
    return float(max(slope * upside - max(slope * (p - star), 0.0), 0.0))


class PolicyConfig(BaseModel):
    """When the policy sends a dispute to a person instead of deciding it (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    economics: DisputeEconomics = Field(default_factory=DisputeEconomics)
    concentration: float = Field(
        5.0,
        gt=0,
        description="How sure a win probability is: the truth ~ Beta(p k, (1 - p) k), k this.",
    )
    uncertain_concentration: float = Field(
        2.0,
        gt=0,
        description="k when required evidence is missing or unsure, or the model is uncertain.",
    )
    min_field_confidence: float = Field(0.6, ge=0, le=1)
    min_family_support: int = Field(
        20, ge=0, description="Fewer training disputes of the reason family: model uncertain."
    )
    min_review_amount: float = Field(0.0, ge=0, description="Never review below this amount.")


@dataclass
class DisputeDecision:
    """The policy's answer for one dispute."""

    action: Action
    p_win: float
    ev_represent: float
    ev_refund: float
    ev_review: float
    reasons: list[str]
    requirements: RequirementReport | None = None
    review_value: float = 0.0

    @property
    def expected_value(self) -> float:
        """The EV of the chosen action (review: the better action at the model's win
        probability plus what the review is expected to reveal, minus its cost)."""
        return {
            "auto_refund": self.ev_refund,
            "represent": self.ev_represent,
            "human_review": self.ev_review,
        }[self.action]

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "p_win": self.p_win,
            "expected_value": self.expected_value,
            "ev_represent": self.ev_represent,
            "ev_refund": self.ev_refund,
            "ev_review": self.ev_review,
            "review_value": self.review_value,
            "reasons": list(self.reasons),
            "requirements": self.requirements.as_dict() if self.requirements else None,
        }


def decide(
    amount: float,
    p_win: float,
    requirements: RequirementReport | None = None,
    *,
    config: PolicyConfig | None = None,
    model_uncertain: bool | str = False,
) -> DisputeDecision:
    """auto_refund | represent | human_review for one dispute (module docstring).
    ``model_uncertain``: True or a sentence saying why the win probability is not to be
    trusted on this case."""
    config = config or PolicyConfig()
    if not (np.isfinite(amount) and amount > 0):
        raise PolicyError(f"amount must be finite and > 0, got {amount!r}")
    if not (np.isfinite(p_win) and 0.0 <= p_win <= 1.0):
        raise PolicyError(f"p_win must be a probability, got {p_win!r}")
    econ = config.economics
    ev_rep = float(econ.ev_represent(amount, p_win))
    ev_ref = float(econ.ev_refund(amount))
    best: Action = "represent" if ev_rep > ev_ref else "auto_refund"
    gap = ev_rep - ev_ref
    star = float(econ.break_even(amount))
    reasons = [
        f"p_win {p_win:.2f} (break-even {min(star, 1.0):.2f}): representing is worth "
        f"{ev_rep:.2f}, refunding {ev_ref:.2f} ({gap:+.2f} for representing)"
    ]
    doubts: list[str] = []
    if requirements is not None and not requirements.complete:
        doubts.append("required evidence is missing: " + ", ".join(requirements.missing))
    if requirements is not None:
        low = requirements.min_confidence
        if low is not None and low < config.min_field_confidence:
            doubts.append(f"required evidence rests on an extracted value of confidence {low:.2f}")
    if model_uncertain:
        doubts.append(
            model_uncertain if isinstance(model_uncertain, str) else "the model is uncertain"
        )
    k = config.uncertain_concentration if doubts else config.concentration
    voi = value_of_review(amount, p_win, k, econ)
    ev_rev = max(ev_rep, ev_ref) + voi - econ.review_cost
    if voi > econ.review_cost and amount >= config.min_review_amount:
        why = "; ".join(doubts) if doubts else "close call near the break-even"
        reasons.append(f"a review is worth {voi:.2f} (> its cost {econ.review_cost:.2f}): {why}")
        return DisputeDecision(
            "human_review", p_win, ev_rep, ev_ref, ev_rev, reasons, requirements, voi
        )
    if doubts:
        reasons.append(
            f"decided without review ({'; '.join(doubts)}): a review would be worth only "
            f"{voi:.2f} (cost {econ.review_cost:.2f})"
        )
    if requirements is not None and best == "represent" and requirements.complete:
        reasons.append("the evidence meets every required item of " + requirements.key)
    return DisputeDecision(best, p_win, ev_rep, ev_ref, ev_rev, reasons, requirements, voi)


def policy_values(
    actions: Any,
    amounts: Any,
    p_true: Any,
    economics: DisputeEconomics | None = None,
    *,
    review: Literal["oracle", "model"] = "oracle",
    p_model: Any = None,
) -> np.ndarray:
    """The realised-in-expectation value of each decision given the *true* win probabilities
    (``p_true``: the simulator's, or 0/1 observed outcomes). A review costs ``review_cost``
    and then takes the better action at ``p_true`` (``"oracle"``: the analyst sees the merits)
    or at ``p_model`` (``"model"``: the analyst adds nothing but cost)."""
    econ = economics or DisputeEconomics()
    acts = np.asarray(actions)
    a = np.asarray(amounts, dtype=np.float64)
    p = np.asarray(p_true, dtype=np.float64)
    if not (acts.shape == a.shape == p.shape):
        raise PolicyError("actions, amounts and probabilities must have the same length")
    if unknown := sorted(set(acts.tolist()) - set(ACTIONS)):
        raise PolicyError(f"unknown actions {unknown}")
    rep, ref = econ.ev_represent(a, p), econ.ev_refund(a)
    if review == "oracle":
        rev = np.maximum(rep, ref) - econ.review_cost
    else:
        if p_model is None:
            raise PolicyError("review='model' needs p_model")
        follow = econ.ev_represent(a, p_model) > ref
        rev = np.where(follow, rep, ref) - econ.review_cost
    return np.asarray(np.where(acts == "represent", rep, np.where(acts == "auto_refund", ref, rev)))


__all__ = [
    "ACTIONS",
    "REQUIREMENTS",
    "REQUIREMENT_FEATURES",
    "Action",
    "Check",
    "DisputeDecision",
    "DisputeEconomics",
    "PolicyConfig",
    "PolicyError",
    "Requirement",
    "RequirementReport",
    "RequirementStatus",
    "check_requirements",
    "decide",
    "policy_values",
    "requirement_features",
    "requirement_key",
    "value_of_review",
    "with_requirement_features",
]
