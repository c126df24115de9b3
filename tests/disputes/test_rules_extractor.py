"""The rules extractor: value parsers, OCR noise, provenance, confidence, and precision/recall/F1
on the held-out corpus (template variants and seeds the rules were not written on)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from riskml.data.disputes.documents import DEVELOPMENT_VARIANTS
from riskml.data.disputes.evidence import Evidence, ExtractionResult, merge, score
from riskml.data.disputes.simulator import DisputeSet
from riskml.features.disputes.extract import (
    AVS,
    CVV,
    DELIVERY_STATUS,
    REFUND_STATUS,
    YES_NO,
    Extractor,
    RulesExtractor,
    clean_id,
    enum,
    evaluate_extractor,
    fix_id,
    parse_amount,
    parse_date,
    parse_ip,
)
from riskml.features.disputes.extractors import extract_documents
from riskml.features.disputes.text import DocumentText, OcrWord, PageText, extract_text


def _doc(text: str, name: str = "doc.pdf", *, ocr: float | None = None) -> DocumentText:
    if ocr is None:
        return DocumentText(name=name, pages=(PageText(number=1, text=text, source="text_layer"),))
    words = tuple(
        OcrWord(text=w, start=s, end=s + len(w), left=0, top=0, width=1, height=1, confidence=ocr)
        for w, s in _words(text)
    )
    page = PageText(number=1, text=text, source="ocr", ocr_confidence=ocr, words=words)
    return DocumentText(name=name, pages=(page,))


def _words(text: str) -> list[tuple[str, int]]:
    import re

    return [(m.group(), m.start()) for m in re.finditer(r"\S+", text)]


# --- parsers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234.50", (1234.5, "USD")),
        ("USD 1234.50", (1234.5, "USD")),
        ("1.234,50 EUR", (1234.5, "EUR")),
        ("1 234,50 €", (1234.5, "EUR")),
        ("£45", (45.0, "GBP")),
        ("C$ 12.00", (12.0, "CAD")),
        ("99,99", (99.99, None)),
        ("$l,2O4.5O", (1204.5, "USD")),  # OCR: l->1, O->0
        ("EUR1234.50", (1234.5, "EUR")),
        ("US$ 45", (45.0, "USD")),
        ("$125.49 USD", (125.49, "USD")),
        ("CHF 1'234.50", (1234.5, "CHF")),
        ("U$S 190,59", (190.59, "USD")),  # Argentina's dollar sign (not "$" and an OCR'd 5)
        ("INR 1,04,577.39", (104577.39, "INR")),  # lakhs: grouped in twos above the thousands
    ],
)
def test_parse_amount(text: str, expected: tuple[float, str | None]) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-14",
        "2025/03/14",
        "03/14/2025",
        "14/03/2025",
        "14.03.2025",
        "March 14, 2025",
        "Mar 14 2025",
        "14 March 2025",
        "14th Mar 2025",
        "14-Mar-2025",
        "Friday, 14 March 2025",
        "2O25-O3-l4",
        "l4 Mar 2O25",
        "14/03/25",
        "March 14th, 2025",
        "14th of March, 2025",
        "2025 Mar 14",
        "Mar-14-2025",
        "14Mar2025",
        "2025. 3. 14.",  # year first, a dot and a space (Korean, Hungarian)
        "2025. 03. 14",
    ],
)
def test_parse_date(text: str) -> None:
    assert parse_date(text) == dt.date(2025, 3, 14)


def test_parse_date_ambiguity_and_nonsense() -> None:
    assert parse_date("03/04/2025") == dt.date(2025, 3, 4)  # month first by default (US)
    assert parse_date("03/04/2025", dayfirst=True) == dt.date(2025, 4, 3)
    assert parse_date("2025-02-30") is None
    assert parse_date("soon") is None


def test_ids_and_ips_with_ocr_noise() -> None:
    assert parse_ip("192.l68.1O.5") == "192.168.10.5"
    assert parse_ip("2001:DB8:0::1") == "2001:db8::1"
    assert parse_ip("10.0.0") is None
    assert fix_id("D9O845O73") == "D90845073"
    assert fix_id("DO0000120") == "D00000120"
    assert fix_id("ORD-2O24-77O88") == "ORD-2024-77088"
    assert fix_id("1ZCA5VPCXL") == "1ZCA5VPCXL"  # mixed letters and digits: left alone
    assert clean_id("#ORD-2024~77088.") == "ORD-2024-77088"
    assert clean_id("No. 4471") == "4471"


# --- behaviour on constructed documents ----------------------------------------------------------

LOGIN = """Acme Outdoor
www.acme.example  ·  support@acme.example
Checkout session
Order ID: ORD-2024-55120  |  Transaction date: May 17, 2024
Grand total: €358.17  |  IP address: 203.0.113.45
Device ID: D00012345
AVS response: Partial match  |  CVV response: Not checked
Earlier sessions on this account
Time (UTC)          IP              Device        Event
2024-01-01 10:00    10.0.0.9        D99999999     login
"""


def test_constructed_login_record() -> None:
    result = RulesExtractor().extract([_doc(LOGIN, "login.pdf")])
    ev = result.evidence
    assert ev.present() == {
        "order_id": "ORD-2024-55120",
        "merchant_name": "Acme Outdoor",
        "amount": 358.17,
        "currency": "EUR",
        "transaction_date": dt.date(2024, 5, 17),
        "ip_address": "203.0.113.45",  # not the earlier session's
        "device_id": "D00012345",
        "avs_result": "partial",
        "cvv_result": "unavailable",
    }
    for name, item in result.fields.items():
        assert item.value == getattr(ev, name)
        for prov in item.provenance:
            assert prov.document == "login.pdf" and prov.page == 1
            assert LOGIN[prov.start : prov.end] == prov.text
    assert result.fields["ip_address"].provenance[0].text == "203.0.113.45"
    assert result.extractor == "rules" and result.warnings == []


def test_prose_and_letters_only_order_ids() -> None:
    thread = """From: Jane Doe <jane@example.com>
Subject: Re: Order ZGZNMVKK
I never received my order. I cancelled my subscription on 20 Sep 2024.

From: Acme Support <support@acme.example>
Subject: Re: Order ZGZNMVKK
Dear Jane, a refund of $12.50 was processed on 09/24/2024.
The Acme team
"""
    ev = RulesExtractor().extract([_doc(thread)]).evidence
    assert ev.order_id == "ZGZNMVKK"
    assert ev.customer_acknowledged is False
    assert ev.cancellation_date == dt.date(2024, 9, 20)
    assert (ev.refund_issued, ev.refund_amount, ev.refund_date) == (
        True,
        12.5,
        dt.date(2024, 9, 24),
    )
    assert ev.merchant_name == "Acme"
    # the merchant's words are not the customer's acknowledgement
    happy = thread.replace("I never received my order.", "Thanks, I got the item.")
    assert RulesExtractor().extract([_doc(happy)]).evidence.customer_acknowledged is True


def test_header_row_table() -> None:
    text = (
        "Shipment\n"
        "Carrier      Tracking number       Ship date\n"
        "FedEx        794612345678          2024-06-01\n"
    )
    ev = RulesExtractor().extract([_doc(text)]).evidence
    assert (ev.carrier, ev.tracking_number, ev.shipping_date) == (
        "FedEx",
        "794612345678",
        dt.date(2024, 6, 1),
    )


def test_ocr_noise_in_labels_and_values() -> None:
    text = (
        "Order 1D: ORD-2O24~77O88\nDate of purchase  O1 Jun 2024\nDevice  DO0000120\n"
        "Tracking number  IZ8ZGM5U182563467O\nCvvv2  MATCH\n"
    )
    ev = RulesExtractor().extract([_doc(text, ocr=0.9)]).evidence
    assert ev.order_id == "ORD-2024-77088"
    assert ev.transaction_date == dt.date(2024, 6, 1)
    assert ev.device_id == "D00000120"
    assert ev.tracking_number == "1Z8ZGM5U1825634670"
    assert ev.cvv_result == "match"


def test_confidence_agreement_ocr_and_conflict() -> None:
    line = "Order number: ORD-1001\n"
    one = RulesExtractor().extract([_doc(line, "a.pdf")]).fields["order_id"]
    two = RulesExtractor().extract([_doc(line, "a.pdf"), _doc(line, "b.pdf")]).fields["order_id"]
    scan = RulesExtractor().extract([_doc(line, "a.pdf", ocr=0.6)]).fields["order_id"]
    assert one.confidence == pytest.approx(0.95)
    assert two.confidence > one.confidence and len(two.provenance) == 2
    assert scan.confidence == pytest.approx(0.95 * 0.6)
    mixed = RulesExtractor().extract(
        [_doc(line, "a.pdf"), _doc(line, "b.pdf"), _doc("Order number: ORD-2002\n", "c.pdf")]
    )
    assert mixed.evidence.order_id == "ORD-1001"  # two documents outvote one
    assert mixed.fields["order_id"].confidence < two.confidence
    assert any("order_id: documents disagree" in w for w in mixed.warnings)


def test_library_call_and_protocol(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Tracking No. 1Z999AA10123456784\n")
    result = extract_documents([note], extractor="rules")
    assert result.extractor == "rules" and result.documents == ["note.txt"]
    assert result.evidence.tracking_number == "1Z999AA10123456784"
    assert extract_documents([note]).extractor == "layout"  # the default
    assert isinstance(RulesExtractor(), Extractor)
    with pytest.raises(ValueError, match="unknown extractor 'magic'"):
        extract_documents([note], extractor="magic")  # type: ignore[arg-type]

    class Fixed:
        name = "fixed"

        def extract(self, documents: Any) -> ExtractionResult:
            return ExtractionResult(evidence=Evidence(order_id="X-1"), extractor=self.name)

    assert extract_documents([note], extractor=Fixed()).evidence.order_id == "X-1"


# --- labels, formats and layouts no rule lists (vendors the rules have not seen) --------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Purchase no. ORD-2020-46550", "ORD-2020-46550"),
        ("Booking ref: 7B2V5DBE", "7B2V5DBE"),
        ("Confirmation #  3283868", "3283868"),
        ("Invoice number - INV-2024-0042", "INV-2024-0042"),
        ("No. of order: 55120", "55120"),
        ("Your reference ........ ZGZNMVKK", "ZGZNMVKK"),
        ("Sales order: KLEYKKBN", "KLEYKKBN"),
        ("RESERVATION CODE   Q7-88121", "Q7-88121"),
    ],
)
def test_order_id_under_labels_no_rule_lists(line: str, expected: str) -> None:
    ev = RulesExtractor().extract([_doc(f"Checkout session\n{line}\n")]).evidence
    assert ev.order_id == expected


@pytest.mark.parametrize(
    "line",
    [
        "Date of purchase 2024-05-21",
        "Purchase amount 12.00 USD",
        "Order placed: 21-May-2024",
        "Tracking ref. 1ZSDRJBP0472810747",
        "Device ref: D00000186",
        "Customer reference: CU-99812",
        "Order status: Shipped",
    ],
)
def test_no_order_id_where_the_page_shows_none(line: str) -> None:
    assert RulesExtractor().extract([_doc(line + "\n")]).evidence.order_id is None


def test_day_first_dates_and_comma_decimal_amounts() -> None:
    dotted = "Order placed: 03.04.2024\nTotal amount: 1.234,50 EUR\n"
    ev = RulesExtractor().extract([_doc(dotted)]).evidence
    assert (ev.transaction_date, ev.amount, ev.currency) == (dt.date(2024, 4, 3), 1234.5, "EUR")
    # a date that reads only one way (21/04) says the document puts the day first
    slashes = "Order date: 03/04/2024\nDispatch date: 21/04/2024\n"
    ev = RulesExtractor().extract([_doc(slashes)]).evidence
    assert (ev.transaction_date, ev.shipping_date) == (dt.date(2024, 4, 3), dt.date(2024, 4, 21))
    # none does: the reading that keeps an order and its dispatch days apart, not months
    short = "Order time: 09/08/24\nHanded to carrier: 11/08/24\n"
    ev = RulesExtractor().extract([_doc(short)]).evidence
    assert (ev.transaction_date, ev.shipping_date) == (dt.date(2024, 8, 9), dt.date(2024, 8, 11))
    # and without any cue a US page stays month first
    assert parse_date("03/04/2024") == dt.date(2024, 3, 4)
    # a currency named in the label only, "US $", an airline's date
    fare = "Fare total (USD): 1,234.50\nPAYMENT DATE   05MAR24\nAMOUNT PAID    US $45.00\n"
    ev = RulesExtractor().extract([_doc(fare)]).evidence
    assert (ev.currency, ev.transaction_date) == ("USD", dt.date(2024, 3, 5))
    assert parse_amount("US $45.00") == (45.0, "USD")


def test_timestamps_short_years_and_the_currency_as_the_last_date_hint() -> None:
    stamped = "Order date: 2024-03-05T14:22:10Z\nDispatched: 06-Mar-24\n"
    ev = RulesExtractor().extract([_doc(stamped)]).evidence
    assert (ev.transaction_date, ev.shipping_date) == (dt.date(2024, 3, 5), dt.date(2024, 3, 6))
    # 05/03/24 reads both ways and nothing else on the page settles it: pounds say day first
    british = "Invoice date 05/03/24\nTotal fare  £123.40\n"
    ev = RulesExtractor().extract([_doc(british)]).evidence
    assert (ev.transaction_date, ev.amount, ev.currency) == (dt.date(2024, 3, 5), 123.4, "GBP")
    dollars = "Invoice date 05/03/24\nTotal fare  $123.40\n"
    assert RulesExtractor().extract([_doc(dollars)]).evidence.transaction_date == dt.date(
        2024, 5, 3
    )
    # dollars with a decimal comma: a locale that writes the day first (a Greek shop's "$")
    greek = "Order date: 2/6/2024\nFinal amount: 150,92 $\n"
    ev = RulesExtractor().extract([_doc(greek)]).evidence
    assert (ev.transaction_date, ev.amount, ev.currency) == (dt.date(2024, 6, 2), 150.92, "USD")
    mixed = "Order date: 2/6/2024\nShipping 4,99 $\nTotal $150.92\n"  # both: no hint
    assert RulesExtractor().extract([_doc(mixed)]).evidence.transaction_date == dt.date(2024, 2, 6)


def test_keyed_pairs_read_labels_by_their_words() -> None:
    login = (
        "Acme Outdoor\n"
        "www.acmeoutdoor.example  ·  support@acmeoutdoor.example\n"
        "Checkout session\n"
        " Confirmation #          AC-77120\n"
        " Booking date            Tuesday 21 May 2024\n"
        " Amount paid             € 1 234,50\n"
        " IP used                 76.209.234.96\n"
        " Device hash             D00000077\n"
        "Authorisation\n"
        "AVS check: Postcode only (Z)\n"
        "CVC2 result: Pass\n"
    )
    assert RulesExtractor().extract([_doc(login)]).evidence.present() == {
        "order_id": "AC-77120",
        "merchant_name": "Acme Outdoor",
        "transaction_date": dt.date(2024, 5, 21),
        "amount": 1234.5,
        "currency": "EUR",
        "ip_address": "76.209.234.96",
        "device_id": "D00000077",
        "avs_result": "partial",
        "cvv_result": "match",
    }
    carrier = (
        "DHL\nDelivery record\n"
        "Consignment no.\n0816239902\n"
        "Shipment state - Sent back to sender\n"
        "Estimated delivery: 2024-06-25\n"
    )
    ev = RulesExtractor().extract([_doc(carrier)]).evidence
    assert ev.present() == {
        "carrier": "DHL",
        "tracking_number": "0816239902",
        "delivery_status": "returned",  # and no delivery date: an estimate is not one
    }


def test_a_carrier_page_names_the_carrier_not_the_merchant() -> None:
    page = (
        "SwiftParcel Express\n"
        "www.swiftparcel.example  ·  help@swiftparcel.example  ·  +1 555 0100\n"
        "Track & trace report\n"
        "Tracking code: SP1234567890\n"
        "Status: Delivered\n"
        "Delivered on: 2024-06-20\n"
        "Signed by: DOE\n"
    )
    ev = RulesExtractor().extract([_doc(page)]).evidence
    assert ev.merchant_name is None
    assert (ev.carrier, ev.tracking_number, ev.delivery_date) == (
        "SwiftParcel Express",
        "SP1234567890",
        dt.date(2024, 6, 20),
    )
    # a price under a carrier's label is no carrier's name
    totals = (
        "ORDER REF.:        ORDER PLACED ON:\nORD-2023-30045     20/5/2024\n"
        "                  Products 137,39 $\n"
        "                  Courier shipping 4,99 $\n"
        "                  VAT 8,54 $\n"
        "                  Final amount: 150,92 $\n"
    )
    ev = RulesExtractor().extract([_doc(totals)]).evidence
    assert (ev.carrier, ev.amount) == (None, 150.92)
    # a merchant's page: the title above the letterhead is skipped, the domain confirms it
    invoice = "INVOICE\nBlue Boutique\nwww.blueboutique.example  ·  +1 555 0675\nOrder # 4471\n"
    assert RulesExtractor().extract([_doc(invoice)]).evidence.merchant_name == "Blue Boutique"


def test_refunds_are_what_the_merchant_says() -> None:
    thread = """From: Jane Doe <jane@example.com>
Subject: Re: Order 5512
Has the refund of $12.50 been sent? My card was charged on 09/20/2024.

From: Lake Outfitters Customer Care <support@lake.example>
Subject: Re: Order 5512
Dear Jane, we credited USD 24.65 back to your card on 21-Aug-2024.
The Lake Outfitters team
"""
    ev = RulesExtractor().extract([_doc(thread)]).evidence
    assert (ev.refund_issued, ev.refund_amount, ev.refund_date, ev.currency) == (
        True,
        24.65,
        dt.date(2024, 8, 21),
        "USD",
    )
    assert ev.merchant_name == "Lake Outfitters"
    question = thread.split("\n\n")[0] + "\n"
    asked = RulesExtractor().extract([_doc(question)]).evidence
    assert asked.refund_amount is None and asked.refund_issued is None
    assert asked.refund_date is None


def test_tax_inclusive_totals_and_the_words_around_them() -> None:
    """A total "including tax" is the total; a net amount, a tax line or a refunded amount is
    not; an invoice address is the billing one; a credit note issued is a refund."""
    invoice = (
        "Net amount        82,10 EUR\n"
        "Sales tax         15,60 EUR\n"
        "Total (inclusive of VAT)   97,70 EUR\n"
        "Ship-to address matches invoice address: yes\n"
    )
    ev = RulesExtractor().extract([_doc(invoice)]).evidence
    assert (ev.amount, ev.currency, ev.shipping_address_matches) == (97.7, "EUR", True)
    note = "Credit memo state: credit memo issued\nCredited amount:\nUSD 12.00\n"
    ev = RulesExtractor().extract([_doc(note)]).evidence
    assert (ev.refund_issued, ev.refund_amount, ev.amount) == (True, 12.0, None)
    checks = "Address verification: street and zip confirmed\nCVV2 check: unverified\n"
    ev = RulesExtractor().extract([_doc(checks)]).evidence
    assert (ev.avs_result, ev.cvv_result) == ("match", "unavailable")
    failed = "Address verification: address unconfirmed\nCVV2 check: incorrect\n"
    ev = RulesExtractor().extract([_doc(failed)]).evidence
    assert (ev.avs_result, ev.cvv_result) == ("no_match", "no_match")
    history = "Tracking events\n2024-06-03   Package received from shipper   Reno\n"
    assert RulesExtractor().extract([_doc(history)]).evidence.shipping_date == dt.date(2024, 6, 3)


@pytest.mark.parametrize(
    ("said", "acknowledged"),
    [
        ("Up to now I have got nothing from you.", False),
        ("The shipment is still missing.", False),
        ("Parcel picked up at the locker, everything is there.", True),
    ],
)
def test_what_the_customer_says_about_the_goods(said: str, acknowledged: bool) -> None:
    thread = f"From: Jane Doe <jane@example.com>\nSubject: Re: Order 5512\n{said}\nJane\n"
    assert RulesExtractor().extract([_doc(thread)]).evidence.customer_acknowledged is acknowledged


def test_a_refusal_in_other_words() -> None:
    thread = (
        "From: Lake Outfitters Support <support@lake.example>\nSubject: Re: Order 5512\n"
        "Dear Jane, a refund is not possible for this order.\nThe Lake Outfitters team\n"
    )
    assert RulesExtractor().extract([_doc(thread)]).evidence.refund_issued is False


@pytest.mark.parametrize(
    ("table", "cell", "expected"),
    [
        (DELIVERY_STATUS, "Left at front door", "delivered"),
        (DELIVERY_STATUS, "Collected by customer from pickup point", "delivered"),
        (DELIVERY_STATUS, "Handed over to recipient", "delivered"),
        (DELIVERY_STATUS, "With delivery courier", "in_transit"),
        (DELIVERY_STATUS, "Left the sorting centre", "in_transit"),
        (AVS, "Postcode matches, address does not", "partial"),
        (AVS, "Issuer does not participate", "unavailable"),
        (AVS, "Unable to verify", "unavailable"),
        (CVV, "Not applicable", "unavailable"),
        (YES_NO, "✗", False),
        (YES_NO, "Consent given", True),
        (REFUND_STATUS, "Refund declined", False),
        (REFUND_STATUS, "Failed", False),
        (REFUND_STATUS, "Full refund", True),
        (REFUND_STATUS, "Transferred back to the card", True),
        (AVS, "Positive: street and zip correct", "match"),
        (AVS, "Negative", "no_match"),
        (AVS, "Zip code: no match, street: matches", "partial"),
        (AVS, "Not possible, no answer from the bank", "unavailable"),
        (CVV, "Negative - code wrong", "no_match"),
        (CVV, "Positive", "match"),
        (YES_NO, "Checkbox selected by shopper", True),
    ],
)
def test_value_words_vendors_use(table: Any, cell: str, expected: Any) -> None:
    assert enum(table)(cell, None) == expected  # type: ignore[arg-type]


def test_one_row_tables_subjects_and_ids_beside_words() -> None:
    """A one-row table whose headers name a status by its event ("Last scan") and a date by
    its hand-over; an id alone under its label though it has eight digits (not a phone); an
    order named in an e-mail's subject only; a hyphen and a word after an id not read into it."""
    carrier = (
        "Parcel tracking\n"
        "Tracking no.            Last scan               Proof of delivery date\n"
        "JD0140021               Delivery complete       2 June 2024\n"
        "Device session ID\nD00000553\n"
        "Card code response: Fail\n"
        "Ship-to vs. billing address\nAddresses differ\n"
    )
    ev = RulesExtractor().extract([_doc(carrier)]).evidence
    assert (ev.tracking_number, ev.delivery_status, ev.delivery_date) == (
        "JD0140021",
        "delivered",
        dt.date(2024, 6, 2),
    )
    assert (ev.device_id, ev.cvv_result, ev.shipping_address_matches) == (
        "D00000553",
        "no_match",
        False,
    )
    mail = "From: Jane Doe <jane@example.com>\nSubject: {}\nHello, any news?\nJane\n"
    for subject, order in (
        ("Re: Question about transaction 58812-B", "58812-B"),
        ("RE: Invoice 3880468 - your reply", "3880468"),
    ):
        assert RulesExtractor().extract([_doc(mail.format(subject))]).evidence.order_id == order


def test_totals_before_tax_columns_and_names_with_label_words() -> None:
    """A total "ex GST" is not the total; a header among others takes its value from its own
    column; a merchant whose name ends in "Store" is not a "Store:" label; a code and a
    symbol together ("USD $29.58") or a code in parentheses are one amount."""
    invoice = (
        "Item              Qty    Total (ex GST)\n"
        "Desk lamp         1      USD $27.91\n"
        "Sub-total (ex GST) USD $27.91\n"
        "Total (inc. GST) USD $29.58\n"
    )
    ev = RulesExtractor().extract([_doc(invoice)]).evidence
    assert (ev.amount, ev.currency) == (29.58, "USD")
    checks = (
        "Address verification              Card code response\n"
        "Pass - street and postal code     Unchecked\n"
        "Payment\n"
        "ORDER TOTAL:   $137.41 (USD)\n"
    )
    ev = RulesExtractor().extract([_doc(checks)]).evidence
    assert (ev.avs_result, ev.cvv_result, ev.amount) == ("match", "unavailable", 137.41)
    mail = (
        "From: Leaf Store Support <support@leafstore.example>\nSubject: Re: Order 5512\n"
        "Hi, we are looking into this.\nLeaf Store Support\n"
    )
    assert RulesExtractor().extract([_doc(mail)]).evidence.merchant_name == "Leaf Store"


def test_label_value_pairs_side_by_side() -> None:
    """A grid of ``Label: value`` pairs, two a line: each pair is read, including dates with
    their weekday in parentheses, and a value's own words are not split off as a label."""
    grid = (
        " Booking No.:        K-77120             Booked:        4 Mar 2025 (Tue)\n"
        " Amount Due:         EUR 1.234,50        Client IP:     81.2.69.142\n"
        " AVS:    Y                CVV2 Result:   Not performed (P)\n"
        "Basket\n"
        "Items Total  EUR 1.100,00\n"
    )
    assert RulesExtractor().extract([_doc(grid)]).evidence.present() == {
        "order_id": "K-77120",
        "transaction_date": dt.date(2025, 3, 4),
        "amount": 1234.5,
        "currency": "EUR",
        "ip_address": "81.2.69.142",
        "avs_result": "match",
        "cvv_result": "unavailable",
    }


def test_printouts_with_dot_leaders_and_abbreviations() -> None:
    """An order system's printout: capitals, dot leaders between label and value, NBR/DLVRY/
    SHPMT abbreviations, 05JUN2024 dates, currencies written out; spans stay the page's."""
    page = (
        "INVOICE NBR . . . . . . . . :  A-55120\n"
        "INVOICE DATE  . . . . . . . :  03JUN2024\n"
        "SHPMT RELEASED TO CARRIER ..:  04JUN2024\n"
        "DLVRY DATE........ 06JUN2024\n"
        "MDSE TOTAL 90.00 US DOLLARS\n"
        "AMOUNT BILLED . . . . . . . :  97.20 US DOLLARS\n"
        "CVV RESP CD . . . . . . . . :  CVV OK\n"
    )
    result = RulesExtractor().extract([_doc(page)])
    assert result.evidence.present() == {
        "order_id": "A-55120",
        "transaction_date": dt.date(2024, 6, 3),
        "shipping_date": dt.date(2024, 6, 4),
        "delivery_date": dt.date(2024, 6, 6),
        "amount": 97.2,
        "currency": "USD",
        "cvv_result": "match",
    }
    assert result.fields["order_id"].provenance[0].text == "A-55120"


def test_business_forms_and_values_that_name_the_billing_side() -> None:
    """A form's boxes (a row of headers over a row of values) are read by column, a header
    beside a header is not its value; an SO number is the order; a delivery address "same as
    invoice address" says the two match; a card-code "doesn't match" is no match."""
    form = (
        " SO Number              SO Date              Invoice Total\n"
        " 6988842                2024-May-15          $137.41 US\n"
        "\n"
        " Ship Via               PRO / Tracking No.\n"
        " UPS                    1ZYN5NDC0236623914\n"
        "Ship-to party\n"
        "Delivery address:   Differs from invoice address\n"
        "CVD result: 2 Doesn't match\n"
    )
    assert RulesExtractor().extract([_doc(form)]).evidence.present() == {
        "order_id": "6988842",
        "transaction_date": dt.date(2024, 5, 15),
        "amount": 137.41,
        "currency": "USD",
        "carrier": "UPS",
        "tracking_number": "1ZYN5NDC0236623914",
        "shipping_address_matches": False,
        "cvv_result": "no_match",
    }


def test_grids_of_header_rows_over_value_rows() -> None:
    """Label rows over value rows, stacked (a grid, not a list): every pair is read, unknown
    prefixes on a label ("Web order ref.", "Source IP at checkout") included; a tracking
    result, a date of hand-over, general terms accepted, a reimbursement and its value date
    on its page; a signature is no carrier; a log's lines stay a list."""
    grid = (
        "Lumen Bikes\n"
        "www.lumenbikes.example  |  +44 20 7946 0000\n"
        "Payment risk check\n"
        "Web order ref.                    Source IP at checkout\n"
        "K-5521907                         203.0.113.77\n"
        "Date of purchase                  Hardware ID\n"
        "03.02.2025                        HW-88120\n"
        "Address verification              Card security code\n"
        "Positive - street correct         Negative\n"
        "General terms accepted during registration: Checkbox ticked\n"
    )
    assert RulesExtractor().extract([_doc(grid)]).evidence.present() == {
        "order_id": "K-5521907",
        "merchant_name": "Lumen Bikes",
        "ip_address": "203.0.113.77",
        "transaction_date": dt.date(2025, 2, 3),
        "device_id": "HW-88120",
        "avs_result": "match",
        "cvv_result": "no_match",
        "policy_accepted": True,
    }
    tracking = (
        "Parcel number                     Date of handover\n"
        "CP4471902318                      7 March 2025\n"
        "Delivery result\n"
        "Handed over to the addressee\n"
        "Delivered with photo signature. Signed: OKAFOR\n"
    )
    ev = RulesExtractor().extract([_doc(tracking)]).evidence
    assert (ev.tracking_number, ev.delivery_date, ev.delivery_status, ev.carrier) == (
        "CP4471902318",
        dt.date(2025, 3, 7),
        "delivered",
        None,
    )
    refund = (
        "Reimbursement advice\n"
        "Order reference                   Amount reimbursed\n"
        "K-5521907                         EUR 61.20\n"
        "Reimbursement                     Value date\n"
        "Executed                          12.03.2025\n"
    )
    ev = RulesExtractor().extract([_doc(refund)]).evidence
    assert (ev.refund_amount, ev.refund_issued, ev.refund_date, ev.amount) == (
        61.2,
        True,
        dt.date(2025, 3, 12),
        None,
    )
    log = (
        "Device               Browser\n"
        "Pixel phone          Chrome\n"
        "Work laptop          Firefox\n"
        "Home tablet          Safari\n"
    )
    assert RulesExtractor().extract([_doc(log)]).evidence.device_id is None


def test_values_above_their_captions_and_labels_with_a_gloss() -> None:
    """An app's tiles (each value above its caption, a row of them or a lone one set apart);
    a column of lone lines still reads down; a label glossed in a second language after a
    slash; dates with a French or a bilingual month; a points line is no order number."""
    tiles = (
        "Sakura Mall\n"
        "sakuramall.example  |  +81 3 5555 0000\n"
        " Hinode Tea House\n"
        " Seller store\n"
        "Hinode Tea House  ·  tea@hinode.example\n"
        " HT-440012                     2025/1/7 (Tue)                US$48.20\n"
        " Purchase code                 Purchased                     Billed total\n"
        " 198.51.100.23                 TX-77341\n"
        " Connecting IP                 Handset ID\n"
        "Points added for this order: 48 pt\n"
    )
    assert RulesExtractor().extract([_doc(tiles)]).evidence.present() == {
        "order_id": "HT-440012",
        "merchant_name": "Hinode Tea House",
        "transaction_date": dt.date(2025, 1, 7),
        "amount": 48.2,
        "currency": "USD",
        "ip_address": "198.51.100.23",
        "device_id": "TX-77341",
    }
    column = (
        "Shipment record\nSHIPMENT REF.\n88120455\nDELIVERED ON\n2025/02/03\nPURCHASE NO.\n4410\n"
    )
    ev = RulesExtractor().extract([_doc(column)]).evidence
    assert (ev.delivery_date, ev.transaction_date) == (dt.date(2025, 2, 3), None)
    glossed = (
        "Reçu / Receipt\n"
        "Date of sale / Date de vente        3 févr. 2025\n"
        "Sub-total / Sous-total 40,00 $ CA\n"
        "Grand total / Total général 46,00 $ CA\n"
        "Ordered / Commandé : JUL/JUIL 04 2024\n"
    )
    ev = RulesExtractor().extract([_doc(glossed)]).evidence
    assert (ev.amount, ev.currency, ev.transaction_date) == (46.0, "CAD", dt.date(2025, 2, 3))
    assert parse_date("14 juillet 2024") == dt.date(2024, 7, 14)
    assert parse_date("1er mars 2025") == dt.date(2025, 3, 1)
    assert parse_date("04 JUN/JUIN 2024") == dt.date(2024, 6, 4)


def test_letters_with_dash_lines_and_dates_spaced_after_the_dots() -> None:
    """A business letter's information block and dash lines; dates as ``7. 3. 2025``; an order
    "of" a date; dispatched "by us"; a transport company; an address check by the issuer; a
    credit booked back and the money returned on a date; a code "wrong"."""
    letter = (
        "                                   Your purchase of    07.03.2025\n"
        "Shipping advice\n"
        "   -  Dispatched by the shop on:        8. 3. 2025\n"
        "   -  Transport partner:                 GLS\n"
        "   -  Address verification by the issuing bank:  Confirmed\n"
        "   -  Card security code:                Code wrong\n"
    )
    ev = RulesExtractor().extract([_doc(letter)]).evidence
    assert (ev.transaction_date, ev.shipping_date, ev.carrier) == (
        dt.date(2025, 3, 7),
        dt.date(2025, 3, 8),
        "GLS",
    )
    assert (ev.avs_result, ev.cvv_result) == ("match", "no_match")
    credit = (
        "Credit advice\n"
        "Paid back on:       12. 3. 2025\n"
        "Credited sum:       EUR 19,90\n"
        "Return of funds:    Amount refunded\n"
    )
    ev = RulesExtractor().extract([_doc(credit)]).evidence
    assert (ev.refund_date, ev.refund_amount, ev.refund_issued, ev.amount) == (
        dt.date(2025, 3, 12),
        19.9,
        True,
        None,
    )


def test_refunds_refused_and_made_in_other_words() -> None:
    ex = RulesExtractor()
    said = "From: Shop Support <help@shop.example>\nSubject: Order 88120\n{}\n"
    refused = ex.extract([_doc(said.format("Sorry, we are not issuing a refund here."))])
    assert refused.evidence.refund_issued is False
    made = ex.extract([_doc(said.format("On 9 April 2025 a full refund of $12.00 was made."))])
    assert (made.evidence.refund_issued, made.evidence.refund_date) == (
        True,
        dt.date(2025, 4, 9),
    )
    back = ex.extract([_doc("Your money back\nSent back on: 11 April 2025\nRefund: Done\n")])
    assert (back.evidence.refund_date, back.evidence.shipping_date) == (dt.date(2025, 4, 11), None)


def test_amounts_with_a_conversion_and_year_first_dotted_dates() -> None:
    """A total with its conversion in parentheses is the first amount ("(INR" is no currency
    of it); "2024. 5. 11." is a date wherever it stands; "Total Invoice Value", "Outbound
    date", "POD Date", "Airway Bill No.", "Tracking invoice no." and "Dispatched through" are
    labels; a refund's "Refundable Amount" and "Credited On" too."""
    ex = RulesExtractor()
    invoice = ex.extract(
        [
            _doc(
                "Tax Invoice\n"
                " Buyer's Order No.      ORD-2024-11873\n"
                " Taxable Value          USD 1,182.94 (INR 98,243.17)\n"
                " Total Invoice Value    USD 1,259.21 (INR 1,04,577.39)\n"
                " Date of order (IST)    2024. 5. 20.\n"
            )
        ]
    ).evidence
    assert (invoice.amount, invoice.currency, invoice.order_id, invoice.transaction_date) == (
        1259.21,
        "USD",
        "ORD-2024-11873",
        dt.date(2024, 5, 20),
    )
    shipped = ex.extract(
        [
            _doc(
                "Release notice\n"
                "  Outbound date           2024. 6. 14.\n"
                "  Dispatched through      DHL\n"
                "  Airway Bill No.         0333216018\n"
            )
        ]
    ).evidence
    assert (shipped.shipping_date, shipped.carrier, shipped.tracking_number) == (
        dt.date(2024, 6, 14),
        "DHL",
        "0333216018",
    )
    delivered = ex.extract(
        [_doc("Parcel enquiry\n  Tracking invoice no.   158039283331\n  POD Date   24-Jun-24\n")]
    ).evidence
    assert (delivered.tracking_number, delivered.delivery_date, delivered.order_id) == (
        "158039283331",
        dt.date(2024, 6, 24),
        None,  # the waybill's "invoice no." is no order's
    )
    refund = ex.extract(
        [
            _doc(
                "Credit memo\n"
                " Refund Initiated       Yes, credited to source\n"
                " Refundable Amount      EUR 86.37 (INR 7,173.03)\n"
                " Refund Credited On     14 June 2024\n"
            )
        ]
    ).evidence
    assert (refund.refund_issued, refund.refund_amount, refund.currency, refund.refund_date) == (
        True,
        86.37,
        "EUR",
        dt.date(2024, 6, 14),
    )


def test_header_blocks_beside_an_address_and_signatures() -> None:
    """Labelled columns over their values right of the issuer's address are read by column
    (but a log's header over its rows is not one record); "for ACME" over "Authorised
    Signatory" names the merchant, a footer's "Company:" too, and "Challan No." is no name;
    "Recipient same as orderer" compares the addresses."""
    ex = RulesExtractor()
    head = (
        " Kestrel Traders                              Voucher No.             Dated\n"
        "                                              KT/DC/2024-25/1003      29-May-24\n"
        " 7184 Church Street, Tucson, AZ 85739         Buyer's Order No.       Order Date\n"
        " GSTIN/UIN: 19QMUCC3829P1ZZ                   ORD-2024-19190          28-May-24\n"
        " E-Mail: accounts@kestrel.example             Date of Despatch        Dispatched through\n"
        " Phone: +1 555 3601                           29-May-24               Blue Dart\n"
        "                                              Destination\n"
        "                                              Tucson, US\n"
        "  Recipient same as orderer     Same as orderer\n"
        "                                    for KESTREL TRADERS\n\n\n"
        "                                    Authorised Signatory\n"
    )
    got = ex.extract([_doc(head)]).evidence
    assert (got.order_id, got.transaction_date, got.shipping_date, got.carrier) == (
        "ORD-2024-19190",
        dt.date(2024, 5, 28),
        dt.date(2024, 5, 29),
        "Blue Dart",
    )
    assert (got.merchant_name, got.shipping_address_matches) == ("Kestrel Traders", True)
    log = (
        "Previous sign-ins\n"
        "Signed in (UTC)        IP                  Device          Action\n"
        "2024/05/23 12:07       24.212.13.110       D00000299       login\n"
        "2024/05/26 15:15       24.212.13.111       D00000298       login\n"
    )
    seen = ex.extract([_doc(log)]).evidence
    assert (seen.delivery_date, seen.ip_address, seen.device_id) == (None, None, None)
    footer = "Thank you for shopping with us.\nCompany: Moss & Fern  ·  CEO Kim Ji-won\n"
    assert ex.extract([_doc(footer)]).evidence.merchant_name == "Moss & Fern"
    carrier = "Logistics company: FedEx\n"
    assert ex.extract([_doc(carrier)]).evidence.merchant_name is None


# --- the held-out corpus -------------------------------------------------------------------------


def _clean_rows(ds: DisputeSet) -> list[dict[str, Any]]:
    return [r for r in ds.documents.iter_rows(named=True) if not r["scanned"]]


def _scores(ds: DisputeSet, ex: Any = None) -> tuple[Any, Any]:
    """Per-document and per-case scores of ``ex`` (the rules) on the set's clean documents."""
    ex = ex or RulesExtractor()
    rows = _clean_rows(ds)
    texts = {r["document"]: extract_text(ds.root / r["document"]) for r in rows}
    per_doc = evaluate_extractor(
        ex, [([texts[r["document"]]], Evidence.model_validate_json(r["truth"])) for r in rows]
    )
    cases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cases[r["dispute_id"]].append(r)
    per_case = score(
        (
            ex.extract([texts[r["document"]] for r in rs]).evidence,
            merge(Evidence.model_validate_json(r["truth"]) for r in rs),
        )
        for rs in cases.values()
    )
    return per_doc, per_case


def test_held_out_clean_f1(held_out_dispute_set: DisputeSet) -> None:
    """Held-out template variants 30-31 (a Mexican pottery workshop's export web shop with CFDI
    invoices; a Philippine rattan-furniture exporter's BIR-registered documents: written blind
    to the rules and to the layout model, never used to write or train them) and seeds.
    Measured on this 40-dispute corpus (December 2026, after the round that tuned the rules on
    28-29 and trained the model on 0-29): the rules per document F1 0.783 (precision 0.913), per
    case 0.862 (0.964); the layout extractor 0.960 (0.986) / 0.954 (0.989). On a 150-dispute
    corpus: rules 0.770, layout 0.958 (with the code before the round, measured before anything
    changed: 0.768 / 0.937).
    The earlier blind pairs, per document, each measured before the rules were tuned on it: 8-9
    0.902, 10-11 0.905, 12-13 0.901, 14-15 0.756, 16-17 0.866, 18-19 0.925, 20-21 0.635 (app
    tiles, each value above its caption, 0.399), 22-23 0.872, 24-25 0.647, 26-27 0.811, 28-29
    0.689; the layout extractor on 24-25 0.821, 26-27 0.911 and 28-29 0.762 blind. A layout of
    another kind costs the rules recall first, then precision. The bounds sit just under what
    was measured blind: a change that costs generality fails them."""
    from riskml.features.disputes.layout import LayoutExtractor

    variants = set(held_out_dispute_set.documents["variant"].to_list())
    assert variants.isdisjoint(DEVELOPMENT_VARIANTS)
    rules_doc, rules_case = _scores(held_out_dispute_set)
    figures = (rules_doc.as_dict()["micro"], rules_case.as_dict()["micro"])
    assert rules_doc.pairs >= 60
    assert rules_doc.micro_f1 >= 0.76, figures
    assert rules_case.micro_f1 >= 0.84, figures
    assert rules_case.total.precision >= 0.94, figures  # what the rules claim is right
    layout_doc, layout_case = _scores(held_out_dispute_set, LayoutExtractor())
    figures = (layout_doc.as_dict()["micro"], layout_case.as_dict()["micro"])
    assert layout_doc.micro_f1 >= 0.94, figures
    assert layout_case.micro_f1 >= 0.93, figures
    assert layout_doc.total.precision >= 0.96, figures
    assert layout_doc.micro_f1 >= rules_doc.micro_f1 + 0.15, figures
    for name in ("amount", "currency", "merchant_name", "carrier", "ip_address", "device_id"):
        counts = layout_doc.per_field[name]
        assert counts.f1 >= 0.95, (name, counts)
    assert layout_doc.per_field["tracking_number"].f1 >= 0.9, layout_doc.per_field


def test_development_clean_f1(dispute_set: DisputeSet) -> None:
    per_doc, per_case = _scores(dispute_set)
    assert per_case.micro_f1 >= 0.98
    assert per_doc.total.recall >= 0.98
