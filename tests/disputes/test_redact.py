"""PII redaction: what is found, what is left alone, and the reversible placeholders."""

from __future__ import annotations

import pytest

from riskml.features.disputes.redact import Redactor, luhn_valid, redact

LETTER = """Dear Jane,
Card 4111 1111 1111 1111 (and 4111-1111-1111-1112, not Luhn). Email jane.doe+x@example.co.uk
Phone: +1 (415) 555-0132, or 415.555.0199, tel 4155550100. UK +44 20 7946 0958
IP 192.168.10.5. IPv6 2001:db8::8a2e:370:7334 at 10:30:00 on 2025-03-14 (03/14/2025)
Tracking 9400 1000 0000 0000 0000 00, 1Z999AA10123456784, 794612345678; order ORD-2025-12345
Amount $1,234.50 (EUR 1.234,50)
Device ID: D00012345
Ship to: 1200 Market Street, Apt 4B, San Francisco, CA 94103
Regards,
Jane Doe
SIGNED BY: DOE
"""


@pytest.fixture
def redacted() -> tuple[str, Redactor]:
    return redact(LETTER, names=["Jane Doe"])


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111a11111111111")


@pytest.mark.parametrize(
    "secret",
    [
        "4111 1111 1111 1111",
        "jane.doe+x@example.co.uk",
        "+1 (415) 555-0132",
        "415.555.0199",
        "4155550100",
        "+44 20 7946 0958",
        "192.168.10.5",
        "2001:db8::8a2e:370:7334",
        "D00012345",
        "1200 Market Street, Apt 4B, San Francisco, CA 94103",
        "Jane Doe",
        "Jane",
        "DOE",
    ],
)
def test_pii_is_replaced(redacted: tuple[str, Redactor], secret: str) -> None:
    text, _ = redacted
    assert secret not in text


@pytest.mark.parametrize(
    "kept",
    [
        "4111-1111-1111-1112",  # fails Luhn: not a card
        "10:30:00",
        "2025-03-14",
        "03/14/2025",
        "9400 1000 0000 0000 0000 00",  # 22 digits: a tracking number
        "1Z999AA10123456784",
        "794612345678",
        "ORD-2025-12345",
        "$1,234.50",
        "EUR 1.234,50",
    ],
)
def test_evidence_values_are_kept(redacted: tuple[str, Redactor], kept: str) -> None:
    text, _ = redacted
    assert kept in text


def test_kinds_and_stable_placeholders(redacted: tuple[str, Redactor]) -> None:
    text, redactor = redacted
    kinds = {ph.strip("[]").rsplit("_", 1)[0] for ph in redactor.mapping}
    assert kinds == {"CARD", "EMAIL", "PHONE", "IP", "DEVICE", "ADDRESS", "NAME"}
    assert "[CARD_1]" in text and "[IP_1]" in text and "[IP_2]" in text
    # the same original gets the same placeholder, in this text and the next one
    again = redactor.redact("from 192.168.10.5 by jane.doe+x@example.co.uk")
    assert again == "from [IP_1] by [EMAIL_1]"
    assert redactor.redact("from 10.0.0.1") == "from [IP_3]"


def test_restore_round_trip(redacted: tuple[str, Redactor]) -> None:
    text, redactor = redacted
    assert redactor.restore(text) == LETTER
    answer = {"ip": "[IP_1]", "quote": "IP [IP_1].", "list": ["[DEVICE_1]", 3], "n": None}
    assert redactor.restore_value(answer) == {
        "ip": "192.168.10.5",
        "quote": "IP 192.168.10.5.",
        "list": ["D00012345", 3],
        "n": None,
    }
    # a placeholder the redactor never made stays as it is, and is reported
    assert redactor.restore("[IP_99]") == "[IP_99]"
    assert redactor.unknown_placeholders("x [IP_99] [IP_1]") == ["[IP_99]"]


def test_repr_hides_originals(redacted: tuple[str, Redactor]) -> None:
    _, redactor = redacted
    assert "192.168" not in repr(redactor) and "Jane" not in repr(redactor)
    assert "placeholders" in repr(redactor)


def test_kinds_can_be_limited_and_unknown_kind_is_an_error() -> None:
    r = Redactor(kinds=("EMAIL",))
    assert r.redact("a@b.example from 10.1.2.3") == "[EMAIL_1] from 10.1.2.3"
    with pytest.raises(ValueError, match="unknown PII kinds"):
        Redactor(kinds=("SSN",))  # type: ignore[arg-type]


def test_salutation_names_without_known_entities() -> None:
    text, r = redact("Dear Maria Lopez, thanks.\nRegards,\nTom Baker\nDear Customer, hi")
    assert "Maria" not in text and "Tom Baker" not in text
    assert "Dear Customer" in text
    assert set(r.mapping.values()) == {"Maria Lopez", "Tom Baker"}


def test_known_address_and_device() -> None:
    text, r = redact(
        "Ship to 7 Rue de la Paix, Paris. Session from laptop-7f3a9.",
        addresses=["7 Rue de la Paix, Paris"],
        devices=["laptop-7f3a9"],
    )
    assert text == "Ship to [ADDRESS_1]. Session from [DEVICE_1]."
    assert r.restore(text).endswith("laptop-7f3a9.")


def test_names_and_devices_found_by_label_are_found_everywhere() -> None:
    thread = (
        "From: Olivia Brown <olivia.brown31 @example.com>\n"
        "Thanks, I got it. The card I used is 4125 9640 7219\n3029, please check.\n"
        "Olivia\n"
        "From: Copper Supply Co Support <support@copper.example>\n"
        "The Copper Supply Co team, +1 555 1965\n"
        "Device ID: D00000120\n"
        "Time  IP  Device\n2024-05-31 10:31  10.0.0.9  D00000120\n2024-05-31  10.0.0.8  D00000121\n"
    )
    text, r = redact(thread)
    for secret in ("Olivia", "Brown", "olivia.brown31", "4125 9640", "555 1965", "D0000012"):
        assert secret not in text, secret
    assert "Copper Supply Co Support" in text and "Copper Supply Co team" in text
    assert text.count("[DEVICE_1]") == 2 and "[DEVICE_2]" in text
    assert r.restore(text) == thread
