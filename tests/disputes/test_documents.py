"""Evidence schema and scoring rules, and the PDF documents rendered from it."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pypdf
import pytest
from pydantic import ValidationError

from riskml.data.disputes.documents import (
    DEVELOPMENT_VARIANTS,
    DOC_FIELDS,
    DOC_TYPES,
    HELD_OUT_VARIANTS,
    LABELS,
    N_VARIANTS,
    PHRASE_SETS,
    PHRASES,
    STYLES,
    VALUE_WORDS,
    Address,
    Customer,
    DocumentContext,
    LineItem,
    Merchant,
    Session,
    format_amount,
    format_date,
    format_value,
    render_document,
    scan_pdf,
)
from riskml.data.disputes.evidence import (
    AMOUNT_TOLERANCE,
    Evidence,
    ExtractedField,
    ExtractionResult,
    FieldCounts,
    Provenance,
    compare,
    field_names,
    merge,
    score,
)

# --- evidence and scoring ------------------------------------------------------------------------


def test_field_names_are_the_schema_and_reject_unknown_fields() -> None:
    names = field_names()
    assert 15 <= len(names) <= 22
    assert names[0] == "order_id" and "customer_acknowledged" in names
    with pytest.raises(ValidationError, match="extra"):
        Evidence(order_number="1")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Evidence(delivery_status="lost")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Evidence(amount=-1.0)
    assert Evidence(currency=" usd ").currency == "USD"
    assert Evidence(order_id="  ").order_id is None


def test_compare_counts_tp_fp_fn_per_field() -> None:
    truth = Evidence(
        order_id="NW-1001",
        amount=12.5,
        currency="USD",
        transaction_date=dt.date(2024, 3, 5),
        carrier="UPS",
        ip_address="10.0.0.1",
    )
    predicted = Evidence(
        order_id="#nw-1001",  # same id: case and a leading '#' do not matter
        amount=12.505,  # within the tolerance
        currency="usd",
        carrier="United Parcel Service",  # an alias
        ip_address="10.0.0.2",  # wrong: FP and FN
        device_id="D1",  # not in the truth: FP
    )  # transaction_date missed: FN
    counts = compare(predicted, truth)
    assert set(counts) == set(field_names())
    assert counts["order_id"] == FieldCounts(tp=1)
    assert counts["amount"] == FieldCounts(tp=1)
    assert counts["currency"] == FieldCounts(tp=1)
    assert counts["carrier"] == FieldCounts(tp=1)
    assert counts["ip_address"] == FieldCounts(fp=1, fn=1)
    assert counts["device_id"] == FieldCounts(fp=1)
    assert counts["transaction_date"] == FieldCounts(fn=1)
    assert counts["refund_date"] == FieldCounts()
    total = score([(predicted, truth)]).total
    assert (total.tp, total.fp, total.fn) == (4, 2, 2)
    assert total.f1 == pytest.approx(8 / 12)


def test_amount_tolerance_edge() -> None:
    truth = Evidence(amount=100.0)
    assert compare(Evidence(amount=100.0 + AMOUNT_TOLERANCE), truth)["amount"].tp == 1
    assert compare(Evidence(amount=100.006), truth)["amount"] == FieldCounts(fp=1, fn=1)


def test_score_micro_and_macro_and_empty() -> None:
    truth = Evidence(order_id="A1", amount=5.0)
    perfect = score([(truth, truth), (truth, truth)])
    assert perfect.pairs == 2 and perfect.micro_f1 == 1.0 and perfect.macro_f1 == 1.0
    assert perfect.per_field["order_id"].tp == 2
    nothing = score([(Evidence(), truth)])
    assert nothing.micro_f1 == 0.0 and nothing.total.fn == 2
    out = perfect.as_dict()
    assert out["micro"]["f1"] == 1.0 and out["fields"]["amount"]["tp"] == 2


def test_merge_first_value_wins_and_extraction_models_validate() -> None:
    merged = merge([Evidence(order_id="A1"), Evidence(order_id="B2", amount=3.0)])
    assert merged == Evidence(order_id="A1", amount=3.0)
    span = Provenance(document="receipt.pdf", page=1, start=3, end=9, text="A1")
    field = ExtractedField(value="A1", confidence=0.9, provenance=[span])
    result = ExtractionResult(evidence=merged, fields={"order_id": field}, extractor="rules")
    assert result.tokens_in == 0 and result.fields["order_id"].provenance[0].page == 1
    with pytest.raises(ValidationError, match="unknown evidence fields: order_no"):
        ExtractionResult(evidence=merged, fields={"order_no": field}, extractor="rules")
    with pytest.raises(ValidationError, match="before start"):
        Provenance(document="r.pdf", page=1, start=9, end=3, text="")
    with pytest.raises(ValidationError):
        ExtractedField(value="A1", confidence=1.5)


# --- rendering -----------------------------------------------------------------------------------

FACTS = Evidence(
    order_id="NW-104233",
    merchant_name="Northwind Outfitters",
    amount=1234.5,
    currency="USD",
    transaction_date=dt.date(2024, 3, 5),
    shipping_date=dt.date(2024, 3, 6),
    carrier="UPS",
    tracking_number="1Z999AA10123456784",
    delivery_status="delivered",
    delivery_date=dt.date(2024, 3, 9),
    shipping_address_matches=False,
    avs_result="partial",
    cvv_result="match",
    ip_address="203.0.113.7",
    device_id="D00001234",
    customer_acknowledged=True,
    refund_issued=True,
    refund_amount=50.0,
    refund_date=dt.date(2024, 3, 20),
    policy_accepted=True,
    cancellation_date=dt.date(2024, 3, 15),
)
HOME = Address("12 Elm Street", "Springfield", "IL", "62704")
CONTEXT = DocumentContext(
    merchant=Merchant(
        "Northwind Outfitters",
        "www.northwind.example",
        "support@northwind.example",
        "+1 555 0100",
        HOME,
    ),
    customer=Customer(
        "Jane Doe",
        "jane.doe@example.com",
        "+1 555 0199",
        HOME,
        Address("9 Oak Ave", "Portland", "OR", "97201"),
    ),
    items=(LineItem("Trail jacket", 2, 300.0), LineItem("Boots", 1, 0.0)),
    sessions=(Session(dt.datetime(2023, 11, 2, 14, 3), "198.51.100.4", "D00000999"),),
    subscription=True,
    order_date=dt.date(2024, 3, 5),
    delivered_on=dt.date(2024, 3, 9),
)
#: Fields written as free prose in the e-mail thread (not as a label and value).
_PROSE = {("correspondence", "customer_acknowledged"), ("correspondence", "refund_issued")}


def _text(path: Path) -> str:
    pages = pypdf.PdfReader(str(path)).pages
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


@pytest.mark.parametrize("doc_type", DOC_TYPES)
def test_every_variant_renders_a_pdf_showing_its_truth(doc_type: str, tmp_path: Path) -> None:
    for variant in range(N_VARIANTS):
        doc = render_document(
            doc_type, FACTS, CONTEXT, tmp_path / f"{variant}.pdf", variant=variant
        )
        assert doc.pages >= 1 and doc.doc_type == doc_type and not doc.scanned
        text = _text(doc.path)
        shown = doc.truth.present()
        assert shown, f"{doc_type} v{variant} shows nothing"
        assert set(shown) <= set(DOC_FIELDS[doc_type])
        for name, value in shown.items():
            if (doc_type, name) in _PROSE or name == "currency":
                continue
            expected = " ".join(format_value(name, value, variant, "USD").split())
            assert expected.casefold() in text.casefold(), (
                f"{doc_type} v{variant}: {name}={expected!r} not in the text"
            )


def test_truth_is_what_the_layout_shows(tmp_path: Path) -> None:
    # this carrier layout quotes no order reference and no pick-up event
    plain = render_document("delivery_confirmation", FACTS, CONTEXT, tmp_path / "a.pdf", variant=2)
    assert plain.truth.order_id is None and plain.truth.shipping_date is None
    assert "NW-104233" not in _text(plain.path)
    # this one has the travel history, so the ship date is on the page
    history = render_document(
        "delivery_confirmation", FACTS, CONTEXT, tmp_path / "b.pdf", variant=1
    )
    assert history.truth.shipping_date == FACTS.shipping_date
    # held-out carriers: one lists the travel history but quotes no reference, one the reverse
    no_ref = render_document("delivery_confirmation", FACTS, CONTEXT, tmp_path / "e.pdf", variant=6)
    assert no_ref.truth.order_id is None and no_ref.truth.shipping_date == FACTS.shipping_date
    assert "NW-104233" not in _text(no_ref.path)
    no_events = render_document(
        "delivery_confirmation", FACTS, CONTEXT, tmp_path / "f.pdf", variant=7
    )
    assert no_events.truth.order_id == "NW-104233" and no_events.truth.shipping_date is None
    assert format_date(dt.date(2024, 3, 6), 7) not in _text(no_events.path)  # the ship date
    # a fact the type cannot show is never in its truth
    receipt = render_document("receipt", FACTS, CONTEXT, tmp_path / "c.pdf", variant=0)
    assert receipt.truth.ip_address is None and "203.0.113.7" not in _text(receipt.path)
    # facts that are not set are not shown; the letterhead's merchant name is on every page
    bare = render_document("login_record", Evidence(order_id="Q1"), CONTEXT, tmp_path / "d.pdf")
    assert bare.truth == Evidence(order_id="Q1", merchant_name=CONTEXT.merchant.name)
    assert CONTEXT.merchant.name in _text(bare.path)


def test_receipt_total_matches_the_amount(tmp_path: Path) -> None:
    doc = render_document("receipt", FACTS, CONTEXT, tmp_path / "r.pdf", variant=0)
    text = _text(doc.path)
    assert "Total: $1,234.50" in text
    assert "Trail jacket" in text and "Jane Doe" in text and "ending in 4242" in text


def test_correspondence_wording_carries_the_facts(tmp_path: Path) -> None:
    ctx = DocumentContext(
        merchant=CONTEXT.merchant,
        customer=CONTEXT.customer,
        complaint="The jacket is the wrong size.",
        pan="4111 1111 1111 1111",
        order_date=dt.date(2024, 3, 5),
    )
    facts = Evidence(order_id="NW-1", customer_acknowledged=False, refund_issued=False)
    doc = render_document("correspondence", facts, ctx, tmp_path / "c.pdf", variant=0)
    text = _text(doc.path)
    assert "Re: Order NW-1" in text and "wrong size" in text and "4111 1111 1111 1111" in text
    assert any(p in text for p in ("never", "not arrived", "Nothing was delivered"))
    assert "refund" in text.lower()
    assert doc.truth.customer_acknowledged is False and doc.truth.refund_issued is False


def test_variants_use_their_own_formats() -> None:
    day = dt.date(2024, 3, 5)
    dates = [format_date(day, v) for v in range(N_VARIANTS)]
    assert dates[:4] == ["2024-03-05", "05 Mar 2024", "03/05/2024", "Mar 05, 2024"]
    assert len(set(dates)) == N_VARIANTS
    amounts = [format_amount(1234.5, "USD", v) for v in range(N_VARIANTS)]
    assert amounts[0] == "$1,234.50" and amounts[1] == "USD 1234.50"
    assert len(set(amounts)) == N_VARIANTS
    assert format_amount(9.0, "EUR", 0) == "€9.00"
    # day and month without a leading zero; dots or spaces between thousands
    assert format_date(dt.date(2024, 3, 5), 6) == "5.3.2024"
    assert format_date(dt.date(2024, 11, 25), 6) == "25.11.2024"
    assert format_date(dt.date(2024, 11, 25), 7) == "2024/11/25"
    assert format_amount(1234567.891, "EUR", 6) == "1.234.567,89 EUR"
    assert format_amount(0.5, "USD", 6) == "0,50 USD"
    assert format_amount(1234567.891, "EUR", 7) == "EUR 1 234 567.89"


def test_held_out_variants_use_labels_and_formats_no_development_variant_uses() -> None:
    assert set(DEVELOPMENT_VARIANTS) | set(HELD_OUT_VARIANTS) == set(range(N_VARIANTS))
    assert not set(DEVELOPMENT_VARIANTS) & set(HELD_OUT_VARIANTS)

    def norm(label: str) -> str:
        return label.casefold().strip(" :#.")

    for name, labels in LABELS.items():
        dev = {norm(labels[v]) for v in DEVELOPMENT_VARIANTS}
        for v in HELD_OUT_VARIANTS:
            assert norm(labels[v]) not in dev, f"{name}: held-out label {labels[v]!r}"
    for name, words in VALUE_WORDS.items():
        for value, options in words.items():
            dev = {norm(options[v]) for v in DEVELOPMENT_VARIANTS}
            for v in HELD_OUT_VARIANTS:
                assert norm(options[v]) not in dev, f"{name}={value}: {options[v]!r}"
    dev_formats = {STYLES[v].date_format for v in DEVELOPMENT_VARIANTS}
    assert all(STYLES[v].date_format not in dev_formats for v in HELD_OUT_VARIANTS)
    dev_amounts = {STYLES[v].amount_format for v in DEVELOPMENT_VARIANTS}
    assert all(STYLES[v].amount_format not in dev_amounts for v in HELD_OUT_VARIANTS)
    # the e-mail wording: the held-out variants draw from phrase sets no development one uses
    assert len(PHRASE_SETS) == N_VARIANTS
    dev_sets = {PHRASE_SETS[v] for v in DEVELOPMENT_VARIANTS}
    for kind, sets in PHRASES.items():
        dev_phrases = {p for i in dev_sets for p in sets[i]}
        for v in HELD_OUT_VARIANTS:
            assert PHRASE_SETS[v] not in dev_sets
            assert sets[PHRASE_SETS[v]] and not set(sets[PHRASE_SETS[v]]) & dev_phrases, kind


def test_held_out_labels_differ_from_every_development_label_for_the_field() -> None:
    """By design: not even case, punctuation or spacing makes a held-out label one that a
    development variant uses for the same field (a rule written on those must generalise)."""

    def words(label: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", label.casefold()))

    assert all(len(labels) == N_VARIANTS for labels in LABELS.values())
    assert len(STYLES) == len(PHRASE_SETS) == N_VARIANTS
    for name, labels in LABELS.items():
        dev = {words(labels[v]): v for v in DEVELOPMENT_VARIANTS}
        for v in HELD_OUT_VARIANTS:
            assert words(labels[v]) not in dev, (name, v, labels[v], dev.get(words(labels[v])))
    for name, values in VALUE_WORDS.items():
        for value, options in values.items():
            assert len(options) == N_VARIANTS, (name, value)


def test_rendering_is_deterministic_and_checks_its_arguments(tmp_path: Path) -> None:
    a = render_document("receipt", FACTS, CONTEXT, tmp_path / "a.pdf", variant=3)
    b = render_document("receipt", FACTS, CONTEXT, tmp_path / "b.pdf", variant=3)
    assert a.path.read_bytes() == b.path.read_bytes()  # the path does not leak into the bytes
    c = render_document("receipt", FACTS, CONTEXT, tmp_path / "c.pdf", variant=2)
    assert c.path.read_bytes() != a.path.read_bytes()
    with pytest.raises(ValueError, match="unknown document type 'invoice'"):
        render_document("invoice", FACTS, CONTEXT, tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="variant must be 0-31"):
        render_document("receipt", FACTS, CONTEXT, tmp_path / "x.pdf", variant=N_VARIANTS)


# --- scans ---------------------------------------------------------------------------------------


def test_scan_is_an_image_only_pdf(tmp_path: Path) -> None:
    clean = render_document("login_record", FACTS, CONTEXT, tmp_path / "clean.pdf", variant=1)
    assert "203.0.113.7" in _text(clean.path)
    pages = scan_pdf(clean.path, tmp_path / "scan.pdf", seed=3)
    reader = pypdf.PdfReader(str(tmp_path / "scan.pdf"))
    assert pages == len(reader.pages) == clean.pages
    assert all((p.extract_text() or "").strip() == "" for p in reader.pages)
    assert "/Font" not in str(reader.pages[0].get("/Resources", {}))
    scan_pdf(clean.path, tmp_path / "again.pdf", seed=3)
    assert (tmp_path / "again.pdf").read_bytes() == (tmp_path / "scan.pdf").read_bytes()
    scan_pdf(clean.path, tmp_path / "other.pdf", seed=4)
    assert (tmp_path / "other.pdf").read_bytes() != (tmp_path / "scan.pdf").read_bytes()


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_a_scan_stays_legible_to_ocr(tmp_path: Path) -> None:
    import pypdfium2 as pdfium
    import pytesseract

    clean = render_document("login_record", FACTS, CONTEXT, tmp_path / "clean.pdf", variant=0)
    scan_pdf(clean.path, tmp_path / "scan.pdf", seed=1)
    pdf = pdfium.PdfDocument(str(tmp_path / "scan.pdf"))
    try:
        image = pdf[0].render(scale=200 / 72).to_pil()
    finally:
        pdf.close()
    top = image.crop((0, 0, image.width, image.height * 2 // 5))  # the checkout session block
    text = pytesseract.image_to_string(top, config="--psm 6")
    assert "NW-104233" in text and "203.0.113.7" in text
