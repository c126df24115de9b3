"""PII redaction before text leaves the process, reversible only inside it.

:class:`Redactor` finds card numbers (13-19 digits, spaces/dashes allowed, Luhn-checked), email
addresses, phone numbers, IP addresses (v4 and v6), device ids (after a device label, or given),
street addresses (a US/UK-style street line, or given) and person names (given as known entities,
plus the name after a salutation, a sign-off or a label such as "Customer:", and before an
e-mail address in angle brackets) and replaces each with a placeholder such as
``[EMAIL_1]``. The same original text always gets the same placeholder within one redactor, so a
model still sees that two documents mention the same address or device, and restoring gives back
the exact original characters (so a quoted span is found again in the original text).
:meth:`Redactor.restore` maps placeholders in the model's answer back to the originals: IP
address and device id are evidence fields, so their values are restored locally and never sent.

The mapping lives only in the redactor object (never logged: ``repr`` shows counts only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["CARD", "EMAIL", "PHONE", "IP", "DEVICE", "ADDRESS", "NAME"]
#: Overlap priority (earlier wins on equal length).
KINDS: tuple[Kind, ...] = ("EMAIL", "CARD", "IP", "ADDRESS", "PHONE", "DEVICE", "NAME")

PLACEHOLDER_RE = re.compile(r"\[(CARD|EMAIL|PHONE|IP|DEVICE|ADDRESS|NAME)_(\d+)\]")

#: 13-19 digits, single spaces/dashes between them (or a line break: OCR wraps long numbers).
_CARD_RE = re.compile(r"(?<![\w.-])(?<!\d )\d(?:(?:[ -]|\n)?\d){12,18}(?![\w-])(?! \d)")
#: An e-mail address; OCR may put a space on either side of the @ or a dot.
_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+ ?@ ?[A-Za-z0-9-]+(?: ?\. ?[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![\w-])"
)
_PHONE_RE = re.compile(
    r"(?<![\w+.-])(?<!\d )(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?|\d{2,5}[ .-])"
    r"\d{3,4}[ .-]?\d{3,4}(?![\w-])(?![ .]\d)"
)
#: International numbers with short local parts ("+1 555 1965", "+44 20 7946").
_INTL_PHONE_RE = re.compile(
    r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{2,5}\)?[ .-]?\d{3,4}(?![\w-])(?![ .]\d)"
)
_LABELLED_PHONE_RE = re.compile(
    r"(?i:\b(?:phone|tel(?:ephone)?|mobile|cell)\b\s*(?:no\.?|number|#)?\s*[:.]?\s*)"
    r"(\+?\d{7,15})(?!\w)"
)
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?!\w)")
_IPV6_RE = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4})"
    r"(?![\w:])|(?<![\w:])::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![\w:])"
)
_DEVICE_RE = re.compile(
    r"(?i:\bdevice(?:\s+(?:id|fingerprint|identifier))?\b\s*[:#]?\s*)"
    r"([A-Za-z0-9][A-Za-z0-9_.:-]{3,127})"
)
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Close|Crescent|Row|Trail|Mews|"
    r"Gardens|Hill|Park)"
)
_ADDRESS_RE = re.compile(
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z0-9'.-]*\s+){1,4}" + _STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*[\w-]+)?"
    r"(?:,\s*[A-Z][A-Za-z.'-]*(?:\s[A-Z][A-Za-z.'-]*){0,3})?"
    r"(?:,\s*[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?"
    r"(?:,?\s+[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})?"
)
_SALUTATION_RE = re.compile(
    r"(?:\b(?:Dear|Hi|Hello)\s+|(?:Regards|Sincerely|Thanks|Thank you|Best|Cheers),?[ \t]*\n"
    r"[ \t]*)((?:[A-Z][a-z'-]+)(?:[ \t]+[A-Z][a-z'-]+){0,2})\b"
)
#: A person's name after a label that introduces one, or before an e-mail in angle brackets.
_LABELLED_NAME_RE = re.compile(
    r"(?:\b(?:(?i:account\s+holder|customer(?:\s+name)?|cardholder(?:\s+name)?|name|bill(?:ed)?"
    r"\s+to|ship(?:ped)?\s+to|deliver(?:ed)?\s+to|signed\s+by|recipient|attn|contact))[ \t]*:?"
    r"[ \t]*\n?[ \t]*)((?:[A-Z][a-z'-]+|[A-Z]{2,})(?:[ \t]+(?:[A-Z][a-z'-]+|[A-Z]{2,})){0,2})"
    r"(?=[ \t]*(?:\(|<|,|$|\n))",
    re.MULTILINE,
)
_FROM_NAME_RE = re.compile(
    r"((?:[A-Z][a-z'-]+)(?:[ \t]+[A-Z][a-z'-]+){0,2})[ \t]*<[^<>\n]+@[^<>\n]+>"
)
#: Words that make a would-be name no person's (salutations, a shop's support desk).
_NOT_NAMES = frozenset(
    {
        "Customer",
        "Sir",
        "Madam",
        "Team",
        "Support",
        "Merchant",
        "All",
        "There",
        "Valued",
        "Service",
        "Services",
        "Co",
        "Inc",
        "Ltd",
        "Llc",
        "Store",
        "Shop",
        "Sales",
        "Billing",
        "Help",
        "Care",
        "Desk",
        "Orders",
        "Returns",
        "Accounts",
        "Helpdesk",
    }
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (card numbers pass it)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Finding:
    """One piece of PII found in a text: ``text[start:end]`` is of ``kind``."""

    kind: Kind
    start: int
    end: int
    text: str


def _entity_pattern(value: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in value.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


class Redactor:
    """Finds PII and swaps it for stable placeholders; restores them in answers.

    ``names``/``addresses``/``devices``: known entities (a cardholder's name, their billing
    address, a device id), matched case-insensitively with any whitespace between words; a
    name's parts of three letters or more are matched on their own too (capitalised), so
    "Dear Jane" is caught when "Jane Doe" is known. ``kinds``: what to redact (default all).
    """

    def __init__(
        self,
        *,
        names: Iterable[str] = (),
        addresses: Iterable[str] = (),
        devices: Iterable[str] = (),
        kinds: Sequence[Kind] = KINDS,
        salutations: bool = True,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.salutations = salutations
        self._known: list[tuple[Kind, re.Pattern[str]]] = []
        for kind, values in (("NAME", names), ("ADDRESS", addresses), ("DEVICE", devices)):
            for value in values:
                if value and value.strip():
                    self._known.append((kind, _entity_pattern(value.strip())))  # type: ignore[arg-type]
        for value in names:
            for part in value.split():
                if len(part) >= 3 and part[0].isalpha():
                    self._known.append(
                        ("NAME", re.compile(r"(?<!\w)" + re.escape(part.capitalize()) + r"(?!\w)"))
                    )
                    self._known.append(
                        ("NAME", re.compile(r"(?<!\w)" + re.escape(part.upper()) + r"(?!\w)"))
                    )
        self._to_placeholder: dict[tuple[Kind, str], str] = {}
        self._to_original: dict[str, str] = {}
        self._counts: dict[Kind, int] = {}

    def __repr__(self) -> str:
        return f"Redactor({len(self._to_original)} placeholders)"

    @property
    def mapping(self) -> dict[str, str]:
        """Placeholder -> original (a copy; keep it in process)."""
        return dict(self._to_original)

    # -- detection -----------------------------------------------------------------------------

    def findings(self, text: str) -> list[Finding]:
        """The PII in ``text``, non-overlapping, in order (longer span wins an overlap)."""
        found: list[Finding] = []

        def add(kind: Kind, start: int, end: int) -> None:
            if kind in self.kinds and end > start:
                found.append(Finding(kind, start, end, text[start:end]))

        for kind, pattern in self._known:
            for m in pattern.finditer(text):
                add(kind, m.start(), m.end())
        for m in _EMAIL_RE.finditer(text):
            add("EMAIL", m.start(), m.end())
        for m in _CARD_RE.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                add("CARD", m.start(), m.end())
        for m in _IPV4_RE.finditer(text):
            if _is_ip(m.group()):
                add("IP", m.start(), m.end())
        for m in _IPV6_RE.finditer(text):
            if _is_ip(m.group()) and m.group().count(":") >= 2:
                add("IP", m.start(), m.end())
        for m in _ADDRESS_RE.finditer(text):
            add("ADDRESS", m.start(), m.end())
        for pattern in (_PHONE_RE, _INTL_PHONE_RE):
            for m in pattern.finditer(text):
                if 7 <= sum(c.isdigit() for c in m.group()) <= 15:
                    add("PHONE", m.start(), m.end())
        for m in _LABELLED_PHONE_RE.finditer(text):
            add("PHONE", m.start(1), m.end(1))
        for m in _DEVICE_RE.finditer(text):
            value = m.group(1).rstrip(".:-")
            if any(c.isdigit() for c in value):
                add("DEVICE", m.start(1), m.start(1) + len(value))
        if self.salutations:
            for pattern in (_SALUTATION_RE, _LABELLED_NAME_RE, _FROM_NAME_RE):
                for m in pattern.finditer(text):
                    if not any(w.capitalize() in _NOT_NAMES for w in m.group(1).split()):
                        add("NAME", m.start(1), m.end(1))
        # what was found by its label is found everywhere else too: a name's parts ("Olivia"
        # signing off) and ids shaped like a found device id (the same device, or another one,
        # in a session history table)
        for part in {p for f in found if f.kind == "NAME" for p in f.text.split() if len(p) >= 3}:
            for m in re.finditer(rf"(?<!\w){re.escape(part)}(?!\w)", text):
                add("NAME", m.start(), m.end())
        for shape in {_shape(f.text) for f in found if f.kind == "DEVICE"}:
            for m in re.finditer(shape, text):
                add("DEVICE", m.start(), m.end())
        return _resolve(found)

    # -- redaction and restoration -------------------------------------------------------------

    def placeholder(self, kind: Kind, original: str) -> str:
        """The placeholder of ``original`` (made on first sight, then stable)."""
        key = (kind, original)
        if key not in self._to_placeholder:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            ph = f"[{kind}_{self._counts[kind]}]"
            self._to_placeholder[key] = ph
            self._to_original[ph] = original
        return self._to_placeholder[key]

    def redact(self, text: str) -> str:
        """``text`` with every finding replaced by its placeholder."""
        out: list[str] = []
        pos = 0
        for f in self.findings(text):
            out.append(text[pos : f.start])
            out.append(self.placeholder(f.kind, f.text))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """``text`` with this redactor's placeholders replaced by their originals (unknown
        placeholders, e.g. invented by a model, are left as they are)."""
        return PLACEHOLDER_RE.sub(lambda m: self._to_original.get(m.group(), m.group()), text)

    def restore_value(self, value: Any) -> Any:
        """:meth:`restore` applied to every string in a JSON-like value."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, dict):
            return {k: self.restore_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.restore_value(v) for v in value]
        return value

    def unknown_placeholders(self, text: str) -> list[str]:
        """Placeholders in ``text`` this redactor never made."""
        return [
            m.group() for m in PLACEHOLDER_RE.finditer(text) if m.group() not in self._to_original
        ]


def _shape(value: str) -> str:
    """A regex for ids shaped like ``value``: its letters, then as many digits
    (``D00000120`` -> ``D\\d{8}``); an id without digits only matches itself."""
    m = re.fullmatch(r"([A-Za-z_-]*)(\d{4,})", value)
    if not m:
        return rf"(?<![\w-]){re.escape(value)}(?![\w-])"
    return rf"(?<![\w-]){re.escape(m.group(1))}\d{{{len(m.group(2))}}}(?![\w-])"


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _resolve(found: list[Finding]) -> list[Finding]:
    """Non-overlapping findings: at an overlap the longer span wins, then the earlier kind."""
    rank = {k: i for i, k in enumerate(KINDS)}
    chosen: list[Finding] = []
    for f in sorted(found, key=lambda f: (-(f.end - f.start), rank[f.kind], f.start)):
        if all(f.end <= c.start or f.start >= c.end for c in chosen):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.start)


def redact(text: str, **entities: Any) -> tuple[str, Redactor]:
    """One-shot: ``text`` redacted and the redactor that can restore it."""
    redactor = Redactor(**entities)
    return redactor.redact(text), redactor
