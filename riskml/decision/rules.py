"""The rules rung: amount and velocity limits that need no model.

Used when the feature store or the tabular model cannot answer in time. Velocity comes from the
fetched feature (``RulesConfig.velocity_feature``) when available, else from the replica-local
counter (:class:`riskml.decision.velocity.VelocityTracker`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from riskml.decision.config import Decision, RulesConfig

_RANK: dict[str, int] = {"approve": 0, "review": 1, "decline": 2}


@dataclass(frozen=True)
class Reason:
    """One reason code. Model reasons carry the feature and its contribution (log-odds)."""

    code: str
    feature: str | None = None
    value: float | None = None
    contribution: float | None = None


@dataclass(frozen=True)
class RuleOutcome:
    decision: Decision
    reasons: list[Reason] = field(default_factory=list)


def apply_rules(amount: float, velocity: float | None, cfg: RulesConfig) -> RuleOutcome:
    """Decide from the amount and (when known) the customer's recent transaction count."""
    decision: Decision = "approve"
    reasons: list[Reason] = []

    def bump(to: Decision, reason: Reason) -> None:
        nonlocal decision
        reasons.append(reason)
        if _RANK[to] > _RANK[decision]:
            decision = to

    if amount >= cfg.amount_decline:
        bump("decline", Reason("amount_over_decline_limit", "amount", amount))
    elif amount >= cfg.amount_review:
        bump("review", Reason("amount_over_review_limit", "amount", amount))
    if velocity is not None:
        if velocity >= cfg.velocity_decline:
            bump("decline", Reason("velocity_over_decline_limit", cfg.velocity_feature, velocity))
        elif velocity >= cfg.velocity_review:
            bump("review", Reason("velocity_over_review_limit", cfg.velocity_feature, velocity))
    else:
        reasons.append(Reason("velocity_unknown"))
    return RuleOutcome(decision, reasons)
