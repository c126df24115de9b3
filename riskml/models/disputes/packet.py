"""The representment evidence packet: what the merchant files to answer a chargeback.

:func:`build_packet` gathers, for one dispute, the claim (reason code, family, title, the
customer's words), the decision (action, win probability, expected values, reasons), the
requirement checklist of the reason code with what meets each item, every evidence field with
its provenance (document, page, character span and the quoted text) and confidence, and the
compelling-evidence transactions from the history. :class:`EvidencePacket` is its JSON form
(pydantic, ``extra="forbid"``); :func:`render_packet_pdf` draws it as a PDF with reportlab
(deterministic: the same packet gives the same bytes); :func:`write_packet` writes both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict, Field

from riskml.data.disputes.evidence import (
    Evidence,
    ExtractedField,
    ExtractionResult,
    Provenance,
    field_names,
)
from riskml.data.disputes.schema import BY_CODE, NETWORKS
from riskml.features.disputes.compelling import CompellingResult, PriorTransaction
from riskml.models.disputes.policy import DisputeDecision

FORMAT = "riskml.dispute-packet/1"
JSON_FILE = "packet.json"
PDF_FILE = "packet.pdf"


class PacketField(BaseModel):
    """One evidence value with where it was read."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: str
    confidence: float | None = None
    provenance: list[Provenance] = Field(default_factory=list)


class PacketRequirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    description: str
    required: bool
    met: bool
    satisfied_by: list[str] = Field(default_factory=list)


class PacketCompelling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qualifies: bool
    rule: str
    reasons: list[str] = Field(default_factory=list)
    transactions: list[PriorTransaction] = Field(default_factory=list)


class PacketDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    action: str
    p_win: float
    expected_value: float
    ev_represent: float
    ev_refund: float
    ev_review: float
    reasons: list[str] = Field(default_factory=list)


class EvidencePacket(BaseModel):
    """A dispute's representment packet (JSON form)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: str = FORMAT
    generated_at: dt.datetime
    dispute_id: str
    tx_id: str
    merchant_name: str | None = None
    amount: float
    currency: str = "USD"
    network: str | None = None
    reason_code: str
    reason_family: str | None = None
    reason_title: str | None = None
    requirement_set: str | None = None
    customer_message: str = ""
    tx_ts: dt.datetime | None = None
    opened_at: dt.datetime | None = None
    decision: PacketDecision
    requirements: list[PacketRequirement] = Field(default_factory=list)
    evidence: list[PacketField] = Field(default_factory=list)
    compelling: PacketCompelling | None = None
    documents: list[str] = Field(default_factory=list)
    extractor: str | None = None
    warnings: list[str] = Field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _evidence_fields(
    evidence: Evidence, fields: Mapping[str, ExtractedField] | None
) -> list[PacketField]:
    out = []
    for name in field_names():
        value = getattr(evidence, name)
        if value is None:
            continue
        extracted = (fields or {}).get(name)
        out.append(
            PacketField(
                name=name,
                value=_text(value),
                confidence=extracted.confidence if extracted else None,
                provenance=list(extracted.provenance) if extracted else [],
            )
        )
    return out


def build_packet(
    dispute: Mapping[str, Any],
    evidence: ExtractionResult | Evidence,
    decision: DisputeDecision,
    compelling: CompellingResult | None = None,
    *,
    generated_at: dt.datetime | None = None,
) -> EvidencePacket:
    """The packet of one dispute: its record (a mapping with the dispute columns), its evidence
    (an extraction result, whose provenance and confidences are kept, or bare evidence), the
    policy's decision (with its requirement report) and the compelling-evidence result."""
    for key in ("dispute_id", "tx_id", "amount", "reason_code"):
        if dispute.get(key) is None:
            raise ValueError(f"the dispute record lacks {key!r}")
    if isinstance(evidence, ExtractionResult):
        ev, fields = evidence.evidence, evidence.fields
        documents, extractor, warnings = (
            list(evidence.documents),
            evidence.extractor,
            list(evidence.warnings),
        )
    else:
        ev, fields, documents, extractor, warnings = evidence, None, [], None, []
    code, network = str(dispute["reason_code"]), dispute.get("network")
    nets = [network] if network in NETWORKS else list(NETWORKS)
    rc = next((BY_CODE[(n, code)] for n in nets if (n, code) in BY_CODE), None)
    report = decision.requirements
    return EvidencePacket(
        generated_at=generated_at or dt.datetime.now(dt.UTC),
        dispute_id=str(dispute["dispute_id"]),
        tx_id=str(dispute["tx_id"]),
        merchant_name=dispute.get("merchant_name") or ev.merchant_name,
        amount=float(dispute["amount"]),
        currency=str(dispute.get("currency") or ev.currency or "USD"),
        network=rc.network if rc else network,
        reason_code=code,
        reason_family=rc.family if rc else dispute.get("reason_family"),
        reason_title=rc.title if rc else None,
        requirement_set=report.key if report else None,
        customer_message=str(dispute.get("customer_message") or ""),
        tx_ts=dispute.get("tx_ts"),
        opened_at=dispute.get("opened_at"),
        decision=PacketDecision(
            action=decision.action,
            p_win=decision.p_win,
            expected_value=decision.expected_value,
            ev_represent=decision.ev_represent,
            ev_refund=decision.ev_refund,
            ev_review=decision.ev_review,
            reasons=list(decision.reasons),
        ),
        requirements=[
            PacketRequirement(
                key=i.key,
                description=i.description,
                required=i.required,
                met=i.met,
                satisfied_by=list(i.satisfied_by),
            )
            for i in (report.items if report else [])
        ],
        evidence=_evidence_fields(ev, fields),
        compelling=(
            PacketCompelling(
                qualifies=compelling.qualifies,
                rule=compelling.rule.describe(),
                reasons=list(compelling.reasons),
                transactions=list(compelling.transactions),
            )
            if compelling is not None
            else None
        ),
        documents=[Path(d).name for d in documents],
        extractor=extractor,
        warnings=warnings,
    )


def render_packet_pdf(packet: EvidencePacket, path: Path | str) -> Path:
    """Draw the packet as a PDF at ``path`` (reportlab; invariant: same packet, same bytes)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    h1, h2 = styles["Heading1"], styles["Heading2"]

    def p(text: Any, style: Any = body) -> Paragraph:
        return Paragraph(escape(str(text)), style)

    def table(rows: list[list[Any]], widths: list[float]) -> Table:
        t = Table(rows, colWidths=widths, repeatRows=1)
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
                    ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                ]
            )
        )
        return t

    story: list[Any] = [
        p(f"Representment evidence packet: dispute {packet.dispute_id}", h1),
        p(
            f"Transaction {packet.tx_id}"
            + (f" at {packet.merchant_name}" if packet.merchant_name else "")
            + f", {packet.amount:,.2f} {packet.currency}"
            + (f", {packet.tx_ts:%Y-%m-%d %H:%M} UTC" if packet.tx_ts else "")
        ),
        p(
            f"Reason code {packet.reason_code} ({packet.network or 'unknown network'}): "
            f"{packet.reason_title or ''} [{packet.reason_family or ''}]"
        ),
        p(f"Customer's claim: \u201c{packet.customer_message}\u201d"),
        Spacer(1, 4 * mm),
        p("Decision", h2),
        p(
            f"{packet.decision.action} (win probability {packet.decision.p_win:.2f}; expected "
            f"value of representing {packet.decision.ev_represent:,.2f}, of refunding "
            f"{packet.decision.ev_refund:,.2f})"
        ),
        *[p(f"- {r}", small) for r in packet.decision.reasons],
    ]
    if packet.requirements:
        rows: list[list[Any]] = [
            [p("Requirement", small), p("Kind", small), p("Met", small), p("Met by", small)]
        ]
        for r in packet.requirements:
            rows.append(
                [
                    p(r.description, small),
                    p("required" if r.required else "supporting", small),
                    p("yes" if r.met else "NO", small),
                    p(", ".join(r.satisfied_by) or "-", small),
                ]
            )
        story += [
            p(f"Requirements ({packet.requirement_set})", h2),
            table(rows, [70 * mm, 22 * mm, 12 * mm, 66 * mm]),
        ]
    if packet.evidence:
        rows = [
            [
                p("Field", small),
                p("Value", small),
                p("Conf.", small),
                p("Source (document, page, span: quoted text)", small),
            ]
        ]
        for f in packet.evidence:
            sources = "; ".join(
                f"{s.document} p.{s.page} [{s.start}:{s.end}]: \u201c{s.text}\u201d"
                for s in f.provenance
            )
            rows.append(
                [
                    p(f.name, small),
                    p(f.value, small),
                    p("-" if f.confidence is None else f"{f.confidence:.2f}", small),
                    p(sources or "-", small),
                ]
            )
        story += [p("Evidence", h2), table(rows, [34 * mm, 34 * mm, 12 * mm, 90 * mm])]
    if packet.compelling is not None:
        c = packet.compelling
        story += [
            p("Compelling evidence from the transaction history", h2),
            p(f"{'Qualifies' if c.qualifies else 'Does not qualify'}. Rule: {c.rule}", small),
            *[p(f"- {r}", small) for r in c.reasons],
        ]
        if c.transactions:
            rows = [
                [
                    p(h, small)
                    for h in (
                        "Transaction",
                        "Time (UTC)",
                        "Days before",
                        "Amount",
                        "Device",
                        "IP",
                        "Shared",
                    )
                ]
            ]
            for t in c.transactions:
                rows.append(
                    [
                        p(t.tx_id, small),
                        p(f"{t.ts:%Y-%m-%d %H:%M}", small),
                        p(t.age_days, small),
                        p("-" if t.amount is None else f"{t.amount:,.2f}", small),
                        p(t.device_id or "-", small),
                        p(t.ip_address or "-", small),
                        p(", ".join(t.shared), small),
                    ]
                )
            story.append(
                table(rows, [24 * mm, 28 * mm, 16 * mm, 18 * mm, 26 * mm, 26 * mm, 32 * mm])
            )
    if packet.documents:
        story += [p("Documents", h2), p(", ".join(packet.documents), small)]
    story.append(
        p(f"Generated {packet.generated_at:%Y-%m-%d %H:%M} UTC by riskml ({packet.format}).", small)
    )
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"Evidence packet {packet.dispute_id}",
        invariant=1,
    )
    doc.build(story)
    return path


def write_packet(packet: EvidencePacket, directory: Path | str) -> tuple[Path, Path]:
    """Write ``packet.json`` and ``packet.pdf`` into ``directory``; return both paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_FILE
    json_path.write_text(packet.model_dump_json(indent=2) + "\n")
    return json_path, render_packet_pdf(packet, out / PDF_FILE)


__all__ = [
    "FORMAT",
    "EvidencePacket",
    "PacketCompelling",
    "PacketDecision",
    "PacketField",
    "PacketRequirement",
    "build_packet",
    "render_packet_pdf",
    "write_packet",
]
