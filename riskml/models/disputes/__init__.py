"""riskml.models.disputes: the dispute outcome model, the decision policy and the evidence packet.

Modules (import them directly; nothing heavy is imported here):

- :mod:`.outcome`: ``OutcomeModel`` (XGBoost + order-keeping calibration, JSON/UBJSON files);
- :mod:`.policy`: requirements per reason code, ``DisputeEconomics``, ``decide``;
- :mod:`.packet`: the representment evidence packet (JSON + PDF).

:func:`assess_dispute` is the one call that scores a single dispute end to end (features ->
win probability -> requirements -> decision -> packet); serving and the CLI use it, so they
decide exactly as the backtest does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import datetime as dt

    import polars as pl

    from riskml.data.disputes.evidence import Evidence, ExtractionResult
    from riskml.features.disputes.compelling import CompellingResult, CompellingRule
    from riskml.models.disputes.outcome import OutcomeModel
    from riskml.models.disputes.packet import EvidencePacket
    from riskml.models.disputes.policy import DisputeDecision, PolicyConfig, RequirementReport

#: Columns a dispute mapping must carry for :func:`assess_dispute`.
ASSESS_REQUIRED = (
    "dispute_id",
    "tx_id",
    "customer_id",
    "terminal_id",
    "tx_ts",
    "opened_at",
    "amount",
    "reason_code",
)


@dataclass
class DisputeAssessment:
    """Everything decided about one dispute."""

    dispute_id: str
    p_win: float
    p_win_raw: float
    decision: DisputeDecision
    requirements: RequirementReport
    compelling: CompellingResult
    model_reasons: list[tuple[str, float]] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    packet: EvidencePacket | None = None

    @property
    def action(self) -> str:
        return self.decision.action

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN features become null)."""
        import math

        return {
            "dispute_id": self.dispute_id,
            "action": self.decision.action,
            "p_win": self.p_win,
            "p_win_raw": self.p_win_raw,
            "decision": self.decision.as_dict(),
            "compelling": self.compelling.model_dump(mode="json"),
            "model_reasons": [
                {"feature": name, "contribution": value} for name, value in self.model_reasons
            ],
            "features": {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.features.items()
            },
            "packet": self.packet.model_dump(mode="json") if self.packet is not None else None,
        }


def assess_dispute(
    dispute: Mapping[str, Any],
    evidence: ExtractionResult | Evidence,
    model: OutcomeModel,
    *,
    history: pl.DataFrame | None = None,
    prior_disputes: pl.DataFrame | None = None,
    policy: PolicyConfig | None = None,
    rule: CompellingRule | None = None,
    claim: str | None = None,
    packet: bool = True,
    generated_at: dt.datetime | None = None,
) -> DisputeAssessment:
    """Score and decide one dispute.

    ``dispute``: the record (:data:`ASSESS_REQUIRED` columns; ``network``, ``reason_family``,
    ``currency``, ``merchant_name``, ``customer_message`` optional). ``evidence``: the
    extractor's result (its confidences feed the policy and its provenance the packet) or bare
    evidence. ``history``: the customer's transactions (transaction schema plus
    ``ip_address``), for the compelling evidence and the customer features; ``prior_disputes``:
    the customer's earlier dispute records (for the earlier-disputes count and to exclude
    disputed transactions). ``claim`` overrides the claim the reason code implies. The packet
    is built unless the action is ``auto_refund`` or ``packet=False``."""
    import polars as pl

    from riskml.data.disputes.evidence import Evidence, ExtractionResult
    from riskml.data.disputes.schema import reason_family
    from riskml.features.disputes.features import build_features
    from riskml.models.disputes.packet import build_packet
    from riskml.models.disputes.policy import (
        PolicyConfig,
        check_requirements,
        decide,
        with_requirement_features,
    )

    if missing := [c for c in ASSESS_REQUIRED if dispute.get(c) is None]:
        raise ValueError(f"the dispute lacks {missing}")
    policy = policy or PolicyConfig()
    ev = evidence.evidence if isinstance(evidence, ExtractionResult) else evidence
    fields = evidence.fields if isinstance(evidence, ExtractionResult) else None
    dispute_id = str(dispute["dispute_id"])
    cols = ("dispute_id", "tx_id", "customer_id", "terminal_id", "tx_ts", "opened_at")
    schema: dict[str, Any] = {
        **dict.fromkeys(("dispute_id", "tx_id", "customer_id", "terminal_id"), pl.String),
        "tx_ts": pl.Datetime("us", "UTC"),
        "opened_at": pl.Datetime("us", "UTC"),
        "amount": pl.Float64,
        "reason_code": pl.String,
        "network": pl.String,
    }
    row = {c: dispute[c] for c in cols} | {
        "amount": float(dispute["amount"]),
        "reason_code": str(dispute["reason_code"]),
        "network": dispute.get("network"),
    }
    records = pl.DataFrame([row], schema=schema)
    evidences: dict[str, Evidence] = {dispute_id: ev}
    if prior_disputes is not None and prior_disputes.height:
        prior = prior_disputes.filter(
            (pl.col("dispute_id") != dispute_id) & (pl.col("opened_at") < row["opened_at"])
        )
        prior = prior.select(
            [
                pl.col(c).cast(t) if c in prior.columns else pl.lit(None, t).alias(c)
                for c, t in schema.items()
            ]
        )
        records = pl.concat([records, prior], how="vertical")
        evidences |= {i: Evidence() for i in prior.get_column("dispute_id").to_list()}
    feats = build_features(records, evidences, history, rule=rule)
    compelling = feats.compelling[dispute_id]
    network = dispute.get("network")
    report = check_requirements(
        str(dispute["reason_code"]),
        ev,
        network=network,
        claim=claim,
        compelling=compelling.qualifies if history is not None else None,
        fields=fields,
    )
    one = with_requirement_features(
        feats.frame.filter(pl.col("dispute_id") == dispute_id), [report]
    )
    p_raw = float(model.raw(one)[0])
    p_win = float(model.predict(one)[0])
    family = dispute.get("reason_family") or reason_family(str(dispute["reason_code"]), network)
    uncertain: list[str] = []
    support = model.metadata.get("family_support")
    if isinstance(support, dict) and policy.min_family_support:
        n = int(support.get(family, 0))
        if n < policy.min_family_support:
            uncertain.append(
                f"the model saw only {n} {family} disputes in training "
                f"(< {policy.min_family_support})"
            )
    if report.key == "fraud" and history is None:
        uncertain.append("no transaction history: compelling evidence could not be checked")
    decision = decide(
        float(dispute["amount"]),
        p_win,
        report,
        config=policy,
        model_uncertain="; ".join(uncertain) if uncertain else False,
    )
    # a feature with no value (no earlier transaction on the device: no age) is NaN, as the
    # booster saw it in training
    features = {
        k: math.nan if v is None else float(v)
        for k, v in one.drop("dispute_id").row(0, named=True).items()
    }
    pkt = None
    if packet and decision.action != "auto_refund":
        pkt = build_packet(dispute, evidence, decision, compelling, generated_at=generated_at)
    return DisputeAssessment(
        dispute_id=dispute_id,
        p_win=p_win,
        p_win_raw=p_raw,
        decision=decision,
        requirements=report,
        compelling=compelling,
        model_reasons=model.reasons(one, k=3)[0],
        features=features,
        packet=pkt,
    )


__all__ = ["ASSESS_REQUIRED", "DisputeAssessment", "assess_dispute"]
