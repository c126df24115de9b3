"""The representment evidence packet: JSON contents, PDF text, determinism."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pypdf
import pytest

from riskml.data.disputes.evidence import Evidence, ExtractedField, ExtractionResult, Provenance
from riskml.features.disputes.compelling import CompellingResult, match_compelling
from riskml.models.disputes.packet import (
    FORMAT,
    EvidencePacket,
    build_packet,
    render_packet_pdf,
    write_packet,
)
from riskml.models.disputes.policy import DisputeDecision, check_requirements, decide

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
GENERATED = dt.datetime(2025, 7, 1, 9, 30, tzinfo=dt.UTC)
DISPUTE: dict[str, Any] = {
    "dispute_id": "DSP0000042",
    "tx_id": "X0",
    "customer_id": "C1",
    "terminal_id": "T1",
    "merchant_name": "Harbor Gadgets",
    "tx_ts": T0,
    "opened_at": T0 + dt.timedelta(days=20),
    "amount": 249.99,
    "currency": "USD",
    "network": "visa",
    "reason_code": "10.4",
    "reason_family": "fraud",
    "customer_message": "I did not make this purchase & never ordered <anything>.",
}


def _compelling() -> CompellingResult:
    rows = [
        {
            "tx_id": tx,
            "customer_id": "C1",
            "terminal_id": "T1",
            "ts": T0 - dt.timedelta(days=days),
            "amount": 30.0,
            "device_id": "D1",
            "ip_address": "24.1.2.3",
        }
        for tx, days in (("P150", 150), ("P300", 300))
    ]
    disputed = {**DISPUTE, "ts": T0, "device_id": "D1", "ip_address": "24.1.2.3"}
    return match_compelling(disputed, pl.DataFrame(rows))


def _extraction() -> ExtractionResult:
    receipt = Provenance(document="receipt.pdf", page=1, start=10, end=24, text="Order # HG-123456")
    login = Provenance(document="login_record.pdf", page=1, start=40, end=58, text="IP 24.1.2.3")
    return ExtractionResult(
        evidence=Evidence(order_id="HG-123456", ip_address="24.1.2.3", avs_result="match"),
        fields={
            "order_id": ExtractedField(value="HG-123456", confidence=0.97, provenance=[receipt]),
            "ip_address": ExtractedField(value="24.1.2.3", confidence=0.9, provenance=[login]),
            "avs_result": ExtractedField(value="match", confidence=0.8, provenance=[login]),
        },
        extractor="rules",
        documents=["/cases/DSP0000042/receipt.pdf", "/cases/DSP0000042/login_record.pdf"],
        warnings=["merchant_name: not found"],
    )


def _decision(compelling: CompellingResult) -> DisputeDecision:
    ev = _extraction()
    report = check_requirements(
        "10.4", ev.evidence, compelling=compelling.qualifies, fields=ev.fields
    )
    return decide(249.99, 0.62, report)


@pytest.fixture(scope="module")
def packet() -> EvidencePacket:
    compelling = _compelling()
    assert compelling.qualifies
    return build_packet(
        DISPUTE, _extraction(), _decision(compelling), compelling, generated_at=GENERATED
    )


def test_packet_contents(packet: EvidencePacket) -> None:
    assert packet.format == FORMAT and packet.dispute_id == "DSP0000042"
    assert packet.reason_title == "Other fraud: card-absent environment"
    assert packet.requirement_set == "fraud"
    assert packet.decision.action == "represent"
    assert packet.decision.expected_value == packet.decision.ev_represent
    reqs = {r.key: r for r in packet.requirements}
    assert reqs["cardholder_participation"].met and reqs["order_record"].met
    assert reqs["cardholder_participation"].satisfied_by == [
        "compelling evidence from the transaction history"
    ]
    assert not reqs["delivery_to_billing"].met and not reqs["delivery_to_billing"].required
    fields = {f.name: f for f in packet.evidence}
    assert list(fields) == ["order_id", "avs_result", "ip_address"]  # schema order
    assert fields["order_id"].provenance[0].text == "Order # HG-123456"
    assert fields["order_id"].confidence == 0.97
    assert packet.compelling is not None and packet.compelling.qualifies
    assert [t.tx_id for t in packet.compelling.transactions] == ["P150", "P300"]
    assert "120-365 days" in packet.compelling.rule
    assert packet.documents == ["receipt.pdf", "login_record.pdf"]
    assert packet.warnings == ["merchant_name: not found"]


def test_packet_files(packet: EvidencePacket, tmp_path: Path) -> None:
    json_path, pdf_path = write_packet(packet, tmp_path / "out")
    assert json_path.name == "packet.json" and pdf_path.name == "packet.pdf"
    loaded = EvidencePacket.model_validate_json(json_path.read_text())
    assert loaded == packet
    assert json.loads(json_path.read_text())["compelling"]["transactions"][0]["shared"] == [
        "device_id",
        "ip_address",
    ]
    reader = pypdf.PdfReader(pdf_path)
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages)
    for needle in (
        "DSP0000042",
        "Reason code 10.4",
        "Order # HG-123456",  # a quoted provenance span
        "receipt.pdf p.1 [10:24]",
        "P150",
        "P300",
        "<anything>",  # the customer's words, escaped for the PDF and shown as written
        "Qualifies. Rule: At least 2 earlier undisputed transactions",
    ):
        assert needle in text, needle
    again = render_packet_pdf(packet, tmp_path / "again.pdf")
    assert again.read_bytes() == pdf_path.read_bytes()  # deterministic


def test_packet_from_bare_evidence(tmp_path: Path) -> None:
    ev = Evidence(order_id="A-1", delivery_status="delivered")
    dispute = {**DISPUTE, "reason_code": "13.1", "reason_family": "consumer_dispute"}
    decision = decide(80.0, 0.7, check_requirements("13.1", ev))
    p = build_packet(dispute, ev, decision, None, generated_at=GENERATED)
    assert p.compelling is None and p.extractor is None
    assert all(f.provenance == [] and f.confidence is None for f in p.evidence)
    assert p.requirement_set == "not_received"
    _, pdf = write_packet(p, tmp_path)
    assert pypdf.PdfReader(pdf).pages
    with pytest.raises(ValueError, match="reason_code"):
        build_packet({**dispute, "reason_code": None}, ev, decision)
