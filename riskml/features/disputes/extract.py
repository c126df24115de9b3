"""Evidence extraction: the ``Extractor`` protocol, the rules extractor and the library call.

:class:`RulesExtractor` (the default: offline, deterministic, fast) reads each page's text with
pattern rules. A rule finds a *candidate*: a field's value, the span it was read from and the
rule's strength (a labelled value, ``Tracking number: 1Z...``, is strong; a value read from prose
is weaker). Values are parsed tolerantly: label variants, date formats (ISO, ``03/14/2025``,
``14.03.2025``, ``March 14, 2025``, ``14 Mar 2025``), amount formats (``$1,234.50``,
``1.234,50 EUR``, ``GBP 45``), and OCR noise (``O``/``0``, ``l``/``1``, ``S``/``5`` in digits,
``1D`` for ``ID`` in labels, stray spaces and tildes in ids).

Rule kinds: *label rules* (``Label: value`` on a line, or the value at the start of the next
line; a label that means different things by document, "Address check", is read by the page's
context); *one-row tables* (a header row of labels over one row of values: each column is read
as ``header: value``); *prose* (a refund "of $12.50 ... on 09/24/2024", "cancelled ... on");
*phrases* for the booleans, negations first (the customer's own e-mails only, for
``customer_acknowledged``); the *letterhead* (the merchant's name above its contact line, a
carrier's name heading its tracking page); known carriers named on a shipping line.

The rules were written on the development template variants only
(:data:`riskml.data.disputes.documents.DEVELOPMENT_VARIANTS`); :func:`evaluate_extractor`
scores them on any corpus, e.g. the held-out variants.

Per field, candidates with the same normalised value pool their support: a value found in two
documents is surer than one found once. The chosen value's confidence is
``1 - prod(1 - strength * ocr_confidence)`` over its candidates, scaled down by the support of
conflicting values; its provenance lists every span it was read from (document, page, start,
end, text).

:func:`extract_documents` is the library call: paths (or already-read :class:`DocumentText`) in,
:class:`ExtractionResult` out, with ``extractor="rules"`` or ``"llm"``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from riskml.data.disputes.evidence import (
    Evidence,
    ExtractedField,
    ExtractionResult,
    ExtractionScores,
    Provenance,
    field_names,
    normalise,
    score,
)
from riskml.features.disputes.text import DocumentText, extract_texts

if TYPE_CHECKING:
    from riskml.features.disputes.llm import LLMSettings

ExtractorName = Literal["rules", "llm"]


@runtime_checkable
class Extractor(Protocol):
    """Anything that turns one case's documents into evidence."""

    name: str

    def extract(self, documents: Sequence[Path | str | DocumentText]) -> ExtractionResult: ...


# --- value parsers -------------------------------------------------------------------------------

#: OCR confusions of digits, fixed where a digit is expected.
_DIGIT_FIX = str.maketrans(
    {
        "O": "0",
        "o": "0",
        "Q": "0",
        "l": "1",
        "I": "1",
        "|": "1",
        "i": "1",
        "S": "5",
        "s": "5",
        "B": "8",
        "Z": "2",
    }
)
_CONFUSABLE = "OoQlI|iSsBZ"

CURRENCY_SYMBOLS = {
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "C$": "CAD",
    "A$": "AUD",
    "CA$": "CAD",
    "AU$": "AUD",
}
CURRENCY_CODES = frozenset(
    {
        "USD",
        "EUR",
        "GBP",
        "CAD",
        "AUD",
        "JPY",
        "CHF",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "NZD",
        "SGD",
        "HKD",
        "MXN",
        "BRL",
        "INR",
        "ZAR",
    }
)
_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ]
    )
    for m in names
}
_MONTH_RE = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_D = r"[0-9OolI|SB]"  # a digit as OCR may print it
DATE_RE = (
    rf"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?"
    rf"(?:{_D}{{4}}[-/.]{_D}{{1,2}}[-/.]{_D}{{1,2}}"  # 2025-03-14
    rf"|{_D}{{1,2}}[-/.]{_D}{{1,2}}[-/.]{_D}{{4}}"  # 14/03/2025, 03-14-2025
    rf"|{_MONTH_RE}\s+{_D}{{1,2}}(?:st|nd|rd|th)?,?\s+{_D}{{4}}"  # March 14, 2025
    rf"|{_D}{{1,2}}(?:st|nd|rd|th)?[\s-]+{_MONTH_RE}[\s-]+,?\s*{_D}{{4}})"  # 14 March 2025
)
_NUM = r"[0-9OolI|SB]"
_CUR_PRE = r"(?:US\$|C\$|A\$|CA\$|AU\$|[$€£¥]|\b(?:" + "|".join(sorted(CURRENCY_CODES)) + r"))"
_CUR_POST = r"(?:[$€£¥]|(?:" + "|".join(sorted(CURRENCY_CODES)) + r")\b)"
_NUMBER = rf"(?<![\w.,])(?:{_NUM}{{1,3}}(?:[,. \u00a0']{_NUM}{{3}})+|{_NUM}+)"
_CENTS = rf"[.,]{_NUM}{{2}}(?![\w])"
#: An amount: with a currency (symbol or ISO code, before or after) or with cents.
AMOUNT_RE = (
    rf"(?:{_CUR_PRE}[ \t]?{_NUMBER}(?:{_CENTS})?(?![\w.,]\d)(?:[ \t]?{_CUR_POST})?"
    rf"|{_NUMBER}(?:{_CENTS}(?:[ \t]?{_CUR_POST})?|[ \t]?{_CUR_POST}))"
)


def fix_digits(text: str) -> str:
    """OCR letter->digit confusions fixed (``O``->0, ``l``/``I``->1, ``S``->5, ``B``->8)."""
    return text.translate(_DIGIT_FIX)


def parse_amount(text: str) -> tuple[float, str | None] | None:
    """``(amount, currency or None)`` from an amount string, or None. ``1,234.50``,
    ``1.234,50``, ``1 234,50`` and ``1234`` are all understood; the currency is a symbol or an
    ISO code before or after the number."""
    text = text.strip()
    currency = None
    for sym in sorted(CURRENCY_SYMBOLS, key=len, reverse=True):
        if sym in text:
            currency = CURRENCY_SYMBOLS[sym]
            text = text.replace(sym, " ")
            break
    code = re.search(r"\b([A-Z]{3})\b", text)
    if code and code.group(1) in CURRENCY_CODES:
        currency = code.group(1)
        text = text.replace(code.group(1), " ")
    number = fix_digits(re.sub(r"[\s\u00a0']", "", text))
    negative = number.startswith("-")
    number = number.lstrip("-")
    if not re.fullmatch(r"\d[\d.,]*", number):
        return None
    last_dot, last_comma = number.rfind("."), number.rfind(",")
    decimal = None
    if last_dot >= 0 and last_comma >= 0:
        decimal = "." if last_dot > last_comma else ","
    elif last_comma >= 0:
        decimal = "," if len(number) - last_comma - 1 in (1, 2) else None
    elif last_dot >= 0:
        decimal = "." if len(number) - last_dot - 1 != 3 else None
    if decimal:
        whole, _, frac = number.rpartition(decimal)
        whole = re.sub(r"[.,]", "", whole)
        value = float(f"{whole}.{frac}")
    else:
        value = float(re.sub(r"[.,]", "", number))
    return (-value if negative else value), currency


def parse_date(text: str, dayfirst: bool | None = None) -> dt.date | None:
    """A date from one of the :data:`DATE_RE` forms, or None. Numeric ``a/b/yyyy``: day first
    when ``a > 12`` or ``dayfirst`` (dots: day first), else month first (US)."""
    s = re.sub(r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "", text.strip().lower())
    s = re.sub(r"\s+", " ", s.replace(",", " ")).strip()
    m = re.fullmatch(r"(\S{4})[-/.](\S{1,2})[-/.](\S{1,2})", s)
    try:
        if m:
            y, mo, d = (int(fix_digits(g)) for g in m.groups())
            return dt.date(y, mo, d)
        m = re.fullmatch(r"(\S{1,2})([-/.])(\S{1,2})[-/.](\S{4})", s)
        if m:
            a, sep, b, y = (
                int(fix_digits(m.group(1))),
                m.group(2),
                int(fix_digits(m.group(3))),
                int(fix_digits(m.group(4))),
            )
            day_first = a > 12 or (b <= 12 and (dayfirst or (dayfirst is None and sep == ".")))
            return dt.date(y, b, a) if day_first else dt.date(y, a, b)
        words = s.replace(".", " ").replace("-", " ").split()
        month = next((_MONTHS[w] for w in words if w in _MONTHS), None)
        nums = [fix_digits(re.sub(r"(st|nd|rd|th)$", "", w)) for w in words if w not in _MONTHS]
        nums = [n for n in nums if n.isdigit()]
        if month and len(nums) == 2:
            day, year = (nums[0], nums[1]) if len(nums[1]) == 4 else (nums[1], nums[0])
            return dt.date(int(year), month, int(day))
    except ValueError:
        return None
    return None


def parse_ip(text: str) -> str | None:
    """A canonical IP address from ``text`` (OCR digit confusions fixed in IPv4), or None."""
    candidate = text.strip().strip(".,;")
    for attempt in (candidate, fix_digits(candidate) if "." in candidate else candidate):
        attempt = re.sub(r"\s*([.:])\s*", r"\1", attempt)
        try:
            return ipaddress.ip_address(attempt).compressed
        except ValueError:
            continue
    return None


def clean_id(text: str) -> str | None:
    """An identifier: trailing punctuation and a leading ``#``/``No.`` dropped."""
    s = text.strip().strip(".,;:)(").lstrip("#").strip()
    # OCR reads a hyphen as a tilde or a dash, and puts spaces around it
    s = re.sub(r"(?<=\w)\s?[-~–—]\s?(?=\w)", "-", s)
    s = re.sub(r"^(?:no\.?|nr\.?)\s*", "", s, flags=re.IGNORECASE)
    return s if len(s) >= 3 and any(c.isalnum() for c in s) else None


# --- candidates and rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One reading of a field's value from a span of a page."""

    field: str
    value: Any
    document: str
    page: int
    start: int
    end: int
    text: str
    strength: float
    ocr: float = 1.0

    @property
    def score(self) -> float:
        return self.strength * self.ocr


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the page text."""

    document: str
    ocr: bool = False
    dayfirst: bool | None = None


#: A hit: (field, value, start, end, strength).
Hit = tuple[str, Any, int, int, float]
#: A rule reads a page's text and yields hits.
Rule = Callable[[str, RuleContext], Iterator[Hit]]
#: A value parser: the matched text -> the value (None: not a value after all).
Parser = Callable[[str, RuleContext], Any]

#: Between a label and its value: spaces, optionally one separator character or word.
_SEP = r"[ \t]*(?:[:#=|\-–\[\]]|\.:?|\bis\b|\bwas\b|\bon\b)?[ \t]*"
#: The end of a value cell: two spaces, a ``|`` column separator or the end of the line.
_CELL_END = r"(?=[ \t]{2,}|[ \t]*\||[ \t]*$)"
#: An identifier with at least one digit (case-sensitive inside a case-insensitive rule).
_TOKEN = r"[A-Za-z0-9](?:[A-Za-z0-9_/.\-~–]*[A-Za-z0-9])?"
ID_VALUE = (
    r"#?[ \t]?(?-i:(?=[A-Za-z0-9_/.\-~– ]*[0-9])"
    + _TOKEN
    # OCR spaces around a hyphen ("ORD-2021 -66887"); digit groups ("9400 1000 ...")
    + r"(?:[ ]?[-~–][ ]?"
    + _TOKEN
    + r")*(?:[ ][A-Z0-9]{2,}(?![a-z]))*)"
)
#: A letters-only reference in capitals (``ZGZNMVKK``), accepted after an explicit order label.
CODE_VALUE = r"#?[ \t]?(?-i:[A-Z][A-Z0-9]{5,19}(?![\w-]))"
IP_VALUE = (
    r"(?:[0-9OolI|SB]{1,3}[ ]?\.[ ]?){3}[0-9OolI|SB]{1,3}"
    r"|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
)
CELL_VALUE = r"[^\s|](?:[^\n|]*?)" + _CELL_END


def _labels(*alternatives: str) -> str:
    """Label alternatives, longest first (so 'order id' is tried before 'order')."""
    return "(?:" + "|".join(sorted(alternatives, key=len, reverse=True)) + ")"


def label_rule(
    name: str,
    labels: str,
    value: str,
    parse: Parser,
    strength: float = 0.95,
    *,
    below: bool = True,
    not_after: Sequence[str] = (),
    currency: bool = False,
    when: str | None = None,
    unless: str | None = None,
) -> Rule:
    """``Label: value`` on one line (the value right after the label and a separator), or the
    value alone at the start of the next line (``strength - 0.15``). ``not_after``: words the
    label must not follow (``refund`` before ``amount``). ``currency``: an amount's
    currency is a ``currency`` hit too. ``when``/``unless``: a regex the page must (not)
    contain for the rule to apply (a label whose meaning depends on the document)."""
    guard = "".join(rf"(?<!{w}\s)" for w in not_after)
    patterns = [(re.compile(rf"(?im){guard}\b{labels}(?!\w){_SEP}(?P<v>{value})"), strength)]
    if below:
        patterns.append(
            (
                re.compile(rf"(?im){guard}\b{labels}(?!\w)[ \t]*[:#]?[ \t]*\n[ \t]*(?P<v>{value})"),
                strength - 0.15,
            )
        )

    need = re.compile(when, re.IGNORECASE) if when else None
    veto = re.compile(unless, re.IGNORECASE) if unless else None

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        if (need is not None and not need.search(text)) or (veto is not None and veto.search(text)):
            return
        seen: set[int] = set()
        for pattern, s in patterns:
            for m in pattern.finditer(text):
                if m.start("v") in seen:
                    continue
                raw = m.group("v")
                parsed = parse(raw, ctx)
                if parsed is None:
                    continue
                seen.add(m.start("v"))
                yield name, parsed, m.start("v"), m.end("v"), s
                if currency:
                    got = parse_amount(raw)
                    if got and got[1]:
                        yield "currency", got[1], m.start("v"), m.end("v"), s

    return rule


def pattern_rule(
    name: str, pattern: str, parse: Parser, strength: float = 0.8, *, currency: bool = False
) -> Rule:
    """Prose: ``pattern`` (case-insensitive) with a ``v`` group holding the value."""
    compiled = re.compile(pattern, re.IGNORECASE | re.MULTILINE)

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        for m in compiled.finditer(text):
            parsed = parse(m.group("v"), ctx)
            if parsed is None:
                continue
            yield name, parsed, m.start("v"), m.end("v"), strength
            if currency:
                got = parse_amount(m.group("v"))
                if got and got[1]:
                    yield "currency", got[1], m.start("v"), m.end("v"), strength

    return rule


#: A sentence: up to a full stop that ends a word (not the one in 12.50) or a blank line.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?=[^\s])|\n(?![ \t]*\n))+")


def phrase_rule(name: str, phrases: Sequence[tuple[str, Any]], strength: float = 0.8) -> Rule:
    """A fixed value where one of ``phrases`` (regex, value) occurs; the first phrase that
    matches a sentence wins, so negations are listed before the positive forms."""
    compiled = [(re.compile(p, re.IGNORECASE), v) for p, v in phrases]

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        if ctx.ocr:  # OCR reads the pronoun I as "|" or "l" (same length: spans stay right)
            text = re.sub(r"(?<![^\s])[|l](?=\s)", "I", text)
        for sentence in _SENTENCE.finditer(text):
            for p, v in compiled:
                m = p.search(sentence.group())
                if m:
                    base = sentence.start()
                    yield name, v, base + m.start(), base + m.end(), strength
                    break

    return rule


# value parsers (rule-facing)


def _amount(raw: str, ctx: RuleContext) -> float | None:
    got = parse_amount(raw)
    return got[0] if got and got[0] >= 0 else None


def _date(raw: str, ctx: RuleContext) -> dt.date | None:
    return parse_date(raw, ctx.dayfirst)


def _ip(raw: str, ctx: RuleContext) -> str | None:
    return parse_ip(raw)


def _id(raw: str, ctx: RuleContext) -> str | None:
    """An identifier with at least one digit."""
    value = clean_id(raw)
    if value is not None and ctx.ocr:
        value = fix_id(value)
    return value if value is not None and any(c.isdigit() for c in value) else None


def _code(raw: str, ctx: RuleContext) -> str | None:
    """A letters-only reference (after an explicit order label)."""
    return clean_id(raw)


def _tracking(raw: str, ctx: RuleContext) -> str | None:
    value = _id(raw, ctx)
    if value is not None:
        value = re.sub(r"\s+", "", value)  # carriers print long numbers in groups
    if value is not None and ctx.ocr:
        # UPS numbers: "1Z", six shipper characters, then ten digits; OCR reads 1 as I or l
        value = re.sub(r"^[Il|]Z(?=[0-9A-Z]{16}$)", "1Z", value)
        if re.fullmatch(r"1Z[0-9A-Z]{16}", value):
            value = value[:8] + fix_digits(value[8:])
    return value


def _text(raw: str, ctx: RuleContext) -> str | None:
    s = re.split(r"[ \t]{2,}|\||\n", raw.strip())[0].strip(" .,;:")
    if not s or not re.search(r"[A-Za-z]", s) or is_label(s):
        return None
    return s.title() if s.isupper() and len(s) > 4 else s


def _carrier(raw: str, ctx: RuleContext) -> str | None:
    s = _text(raw, ctx)
    if s is None:
        return None
    known = known_carrier(s)
    if known:
        return known
    # an unknown name, unless it is the next column's label ("Carrier  Tracking number")
    return s if len(s.split()) <= 4 and not is_label(s) else None


def is_label(text: str) -> bool:
    """Whether ``text`` is one of the rules' field labels (a header cell, not a value)."""
    return _ALL_LABELS().fullmatch(text.strip(" :#")) is not None


@lru_cache(maxsize=1)
def _ALL_LABELS() -> re.Pattern[str]:
    labels = [
        L_ORDER,
        L_TOTAL,
        L_ORDER_DATE,
        L_SHIP_DATE,
        L_DELIVERY_DATE,
        L_CARRIER,
        L_TRACKING,
        L_STATUS,
        L_AVS,
        L_CVV,
        L_IP,
        L_DEVICE,
        L_REFUND_AMOUNT,
        L_REFUND_DATE,
        L_REFUND_STATUS,
        L_CANCEL,
        L_ADDRESS_MATCH,
        L_ADDRESS_AMBIGUOUS,
        L_POLICY,
        L_MERCHANT,
    ]
    return re.compile("|".join(labels), re.IGNORECASE)


def enum(table: Sequence[tuple[str, Any]]) -> Parser:
    """A parser mapping the first matching regex (searched in the value cell) to its value."""
    compiled = [(re.compile(p, re.IGNORECASE), v) for p, v in table]

    def parse(raw: str, ctx: RuleContext) -> Any:
        cell = re.split(r"[ \t]{2,}|\|", raw.strip())[0]
        for p, v in compiled:
            if p.search(cell):
                return v
        return None

    return parse


def fix_id(value: str) -> str:
    """OCR digit confusions fixed inside the mostly-numeric parts of an identifier (a leading
    run of letters, such as ``ORD`` or ``D`` in ``D9O845O73``, is kept)."""
    parts = re.split(r"([-_/.])", value)
    out = []
    for part in parts:
        m = re.match(r"([A-Za-z]*)(.*)$", part)
        prefix, rest = (m.group(1), m.group(2)) if m else ("", part)
        if prefix and not rest:
            out.append(part)
            continue
        if len(prefix) > 1 and prefix.endswith("O") and rest[:1].isdigit():
            # "DO0000120": an O between a letter prefix and digits is a zero
            trail = len(prefix) - len(prefix.rstrip("O"))
            prefix, rest = prefix[:-trail], "0" * trail + rest
            if not prefix:
                prefix, rest = "O", rest[1:]
        digits = sum(c.isdigit() for c in rest)
        confusable = sum(c in _CONFUSABLE for c in rest)
        if rest and digits >= 3 and digits + confusable == len(rest):
            rest = fix_digits(rest)
        out.append(prefix + rest)
    return "".join(out)


#: Carriers by name (any casing) -> their usual spelling.
KNOWN_CARRIERS = {
    "ups": "UPS",
    "united parcel service": "UPS",
    "fedex": "FedEx",
    "federal express": "FedEx",
    "usps": "USPS",
    "united states postal service": "USPS",
    "us postal service": "USPS",
    "dhl": "DHL",
    "dhl express": "DHL",
    "royal mail": "Royal Mail",
    "canada post": "Canada Post",
    "purolator": "Purolator",
    "australia post": "Australia Post",
    "dpd": "DPD",
    "gls": "GLS",
    "tnt": "TNT",
    "evri": "Evri",
    "hermes": "Hermes",
    "ontrac": "OnTrac",
    "la poste": "La Poste",
    "colissimo": "Colissimo",
    "parcelforce": "Parcelforce",
    "yodel": "Yodel",
    "amazon logistics": "Amazon Logistics",
    "postnl": "PostNL",
    "deutsche post": "Deutsche Post",
}


def known_carrier(text: str) -> str | None:
    """The carrier ``text`` names (``"FedEx Ground"`` -> FedEx), or None."""
    key = re.sub(r"\s+", " ", re.sub(r"[^a-z ]+", " ", text.lower())).strip()
    words = key.split()
    for n in range(min(4, len(words)), 0, -1):
        hit = KNOWN_CARRIERS.get(" ".join(words[:n]))
        if hit:
            return hit
    return None


_CARRIER_NAMES = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(
        re.escape(k).replace(r"\ ", r"\s+") for k in sorted(KNOWN_CARRIERS, key=len, reverse=True)
    )
    + r")(?![\w-])",
    re.IGNORECASE,
)
_SHIPPING_WORDS = re.compile(
    r"\b(?:ship|shipped|shipping|shipment|deliver\w*|carrier|courier|track\w*|parcel|package|"
    r"dispatch\w*|sent|transit)\b",
    re.IGNORECASE,
)


def carrier_mention_rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
    """A known carrier named on a line about shipping ("sent with FedEx Ground")."""
    for line in re.finditer(r"[^\n]+", text):
        if not _SHIPPING_WORDS.search(line.group()):
            continue
        for m in _CARRIER_NAMES.finditer(line.group()):
            name = known_carrier(m.group())
            if name:
                yield "carrier", name, line.start() + m.start(), line.start() + m.end(), 0.55


DATE = DATE_RE
AMOUNT = AMOUNT_RE
DELIVERY_STATUS = (
    (r"not\s+found|no\s+record|no\s+information|unknown|lost|no\s+scan", "not_found"),
    (r"return", "returned"),
    (
        r"transit|on\s+its\s+way|out\s+for\s+delivery|en\s+route|shipped|in\s+progress|"
        r"awaiting\s+delivery|moving",
        "in_transit",
    ),
    (r"deliver", "delivered"),
)
AVS = (
    (
        r"^\s*(?:partial|[AWZPB]\b)|partial|(?:street|address|zip|postcode|postal\s+code)\s+only",
        "partial",
    ),
    (
        r"^\s*(?:no[\s_-]*match|mismatch|fail|N\b)|no[\s_-]*match|not\s+match|mismatch|failed|"
        r"not\s+verified|does\s+not\s+match",
        "no_match",
    ),
    (
        r"^\s*(?:unavailable|not\s+available|n/?a\b|not\s+(?:checked|supported|performed)|"
        r"[URSGE]\b)|unavailable|not\s+(?:available|supported|performed|checked)|unknown|"
        r"no\s+(?:response|data)",
        "unavailable",
    ),
    (r"^\s*(?:(?:full\s+)?match|pass|[YXMD]\b)|match|passed|verified", "match"),
)
CVV = (
    (
        r"^\s*(?:no[\s_-]*match|mismatch|fail|N\b)|no[\s_-]*match|not\s+match|mismatch|"
        r"failed|incorrect|invalid|does\s+not\s+match",
        "no_match",
    ),
    (
        r"^\s*(?:unavailable|not\s+(?:available|provided|checked|processed|present|supported)|"
        r"n/?a\b|[UPSX]\b)|unavailable|not\s+(?:available|provided|checked|processed|present|"
        r"supported)|unknown|missing",
        "unavailable",
    ),
    (r"^\s*(?:match|pass|M\b|Y\b)|match|passed|verified|correct|valid", "match"),
)
#: A refund document's bare "Status" (the delivery statuses never say these).
REFUND_STATE = (
    (r"^\s*(?:none|not\s+refunded|no\s+refund)\b", False),
    (r"^\s*(?:refunded|credited)\b", True),
)
YES_NO = (
    (
        r"^\s*(?:no|n|false|not|does\s+not|differs?|different|mismatch|unticked|unchecked|"
        r"declined|refused|off|\[\s\])(?![\w-])",
        False,
    ),
    (
        r"^\s*(?:yes|y|true|matches|match|same|identical|ticked|checked|accepted|agreed|given|"
        r"confirmed|on|\[x\]|✓|✔)(?![\w-])",
        True,
    ),
)
REFUND_STATUS = (
    (r"^\s*(?:not|no|none|declined|refused|rejected|denied|pending|n)\b", False),
    (
        r"^\s*(?:issued|completed?|processed|refunded|paid|sent|credited|done|yes|y|approved|"
        r"successful|settled|returned)\b",
        True,
    ),
)

# label alternatives per field (case-insensitive; longest tried first)
#: "ID" as OCR reads it ("1D", "lD", "10").
_ID = r"[il1|][d0o]"
#: Order labels that say "this is the reference" (not a bare "Order").
L_ORDER_REF = _labels(
    rf"(?:your\s+|our\s+)?order\s*(?:{_ID}|number|no\.?|n[º°o]\.?|num|#|ref(?:erence)?|code)"
    r"(?:\s*(?:number|no\.?|#))?",
    r"(?:your\s+|our\s+)?ref(?:erence)?(?:\s*(?:no\.?|number|#|code))?",
    r"merchant\s+(?:order\s+)?ref(?:erence)?",
    r"re:\s*order",
    r"(?:purchase|sales)\s+order(?:\s*(?:number|no\.?|#))?",
    r"po\s*(?:number|no\.?|#)",
    r"(?:confirmation|booking|reservation|receipt|invoice)\s*(?:number|no\.?|#|code|ref(?:erence)?"
    rf"|{_ID})",
)
L_ORDER = _labels(L_ORDER_REF, r"order", r"booking", r"invoice", r"receipt")
L_TOTAL = _labels(
    r"(?:order\s+|grand\s+|invoice\s+)?total(?:\s+(?:charged|paid|amount|due))?",
    r"amount\s+(?:charged|paid|billed)",
    r"charged",
    r"transaction\s+amount",
    r"purchase\s+amount",
    r"amount",
)
L_ORDER_DATE = _labels(
    r"order\s+date",
    r"date\s+of\s+(?:purchase|order|transaction)",
    r"purchase(?:d|\s+date)(?:\s+on)?",
    r"transaction\s+date",
    r"ordered(?:\s+on)?",
    r"placed(?:\s+on)?",
    r"order\s+placed",
)
L_SHIP_DATE = _labels(
    r"ship(?:ping)?\s+date",
    r"date\s+(?:shipped|dispatched)",
    r"shipped(?:\s+on)?",
    r"dispatch(?:ed)?(?:\s+(?:date|on))?",
)
L_DELIVERY_DATE = _labels(r"deliver(?:y|ed)\s+(?:date|on)", r"date\s+(?:of\s+)?deliver(?:y|ed)")
L_CARRIER = _labels(
    r"(?:shipping\s+|delivery\s+)?carrier",
    r"courier(?:\s+service)?",
    r"(?:ship(?:ped)?|sent|dispatched|delivered|delivery)\s+(?:via|with|by)",
    r"shipping\s+(?:carrier|company|service|provider|partner|method)",
    r"delivery\s+(?:service|partner|provider|company)",
    r"logistics(?:\s+partner)?",
    r"via",
)
L_TRACKING = _labels(
    rf"track(?:ing)?\s*(?:number|no\.?|#|{_ID}|code|ref(?:erence)?)?(?:\s*(?:number|no\.?|#))?",
    r"track\s*(?:&|and)\s*trace(?:\s+(?:number|no\.?|code))?",
    r"(?:air\s*)?waybill(?:\s+(?:number|no\.?))?",
    r"awb(?:\s+(?:number|no\.?))?",
    rf"(?:consignment|parcel|shipment|package)\s*(?:number|no\.?|#|{_ID}|ref(?:erence)?)",
)
L_STATUS = _labels(
    r"(?:current\s+|delivery\s+|shipment\s+|tracking\s+|shipping\s+|parcel\s+)"
    r"?status"
)
L_AVS = _labels(
    r"avs(?:\s+(?:result|response|check|code|status|match))?",
    r"address\s+verification(?:\s+(?:service|system))?(?:\s*\(avs\))?"
    r"(?:\s+(?:result|response|status|check))?",
    r"billing\s+address\s+(?:check|verification)(?:\s+result)?",
)
L_CVV = _labels(
    r"(?:cv+|cvc|cid|csc)2?(?:\s+(?:result|response|check|code|status|match))?",
    r"card\s+verification\s+(?:value|code)(?:\s+(?:result|check))?",
    r"(?:card\s+)?security\s+code(?:\s+(?:result|check|response))?",
)
L_IP = _labels(
    r"ip(?:\s+address)?",
    r"(?:customer|client|source|remote|checkout)\s+ip"
    r"(?:\s+address)?",
)
L_DEVICE = _labels(
    rf"(?:device|browser)(?:\s+(?:{_ID}|fingerprint|identifier|hash|token|ref(?:erence)?))?",
    rf"(?:device\s+)?fingerprint(?:\s+{_ID})?",
    rf"machine\s+{_ID}",
)
L_REFUND_AMOUNT = _labels(
    r"refund(?:ed)?\s+amount",
    r"amount\s+(?:refunded|credited)",
    r"refunded",
    r"credit(?:ed)?(?:\s+amount)?",
    r"refund\s+total",
)
L_REFUND_DATE = _labels(
    r"refund(?:ed)?\s+(?:date|on)",
    r"date\s+(?:of\s+)?(?:refund|refunded|credited)",
    r"credit(?:ed)?\s+(?:date|on)",
    r"refund\s+(?:processed|issued)\s+on",
)
L_REFUND_STATUS = _labels(r"refund\s+(?:status|issued|processed)", r"refund")
L_CANCEL = _labels(
    r"cancell?(?:ation|ed)(?:\s+(?:date|on|effective))?",
    r"date\s+(?:of\s+)?cancell?(?:ation|ed)",
    r"(?:subscription|membership|plan)\s+(?:cancell?ed|ended|terminated)(?:\s+on)?",
    r"(?:ended|terminated)\s+on",
    r"end\s+date",
)
#: A shipping/billing address comparison (in a shipping document).
L_ADDRESS_MATCH = _labels(
    r"(?:ship(?:ping)?[\s-]*(?:to)?|delivery)(?:\s+address)?\s*(?:matches|=|same\s+as|equals|is)"
    r"\s*(?:the\s+)?bill(?:ing)?(?:[\s-]*to)?(?:\s+address)?",
    r"(?:billing|bill[\s-]*to)(?:\s+address)?\s*(?:matches|=|same\s+as|equals)\s*(?:the\s+)?"
    r"(?:shipping|ship[\s-]*to|delivery)(?:\s+address)?",
    r"(?:shipping|ship[\s-]*to|delivery|billing)\s*(?:and|&|/)\s*(?:billing|shipping|delivery)"
    r"(?:\s+address(?:es)?)?(?:\s+(?:match(?:es)?|identical|same|agree))?",
    r"(?:delivered|shipped)\s+to\s+(?:the\s+)?billing\s+address",
    r"same\s+as\s+billing(?:\s+address)?",
)
#: "Address check"/"Address match": AVS on an authorisation record, else ship-to vs bill-to.
L_ADDRESS_AMBIGUOUS = _labels(r"address(?:es)?\s+(?:check|match(?:es)?|verified)")
#: A page about the card authorisation (where an address check is AVS).
AUTH_CONTEXT = r"\b(?:cv[cv]2?|cvc|security\s+code|authori[sz]ation|avs)\b"
L_POLICY = _labels(
    r"(?:(?:refund|cancellation|returns?)\s+)?(?:policy|terms)(?:\s+(?:and\s+conditions|of\s+sale)"
    r")?\s+(?:accepted|agreed|acknowledged|acceptance|agreement|consent)",
    r"(?:t\s*&\s*cs?|terms\s+(?:and|&)\s+conditions)\s+(?:accepted|agreed|acknowledged|"
    r"acceptance|agreement|consent)",
    r"(?:customer\s+)?(?:agreed|accepted|consented|acknowledged)\s+(?:to\s+)?(?:the\s+)?"
    r"(?:terms|policy|t\s*&\s*cs?|refund\s+policy|conditions)(?:\s+at\s+checkout)?",
    r"(?:checkout\s+)?(?:acceptance|consent)(?:\s+(?:status|checkbox|box|given|recorded))?",
    r"(?:policy|terms)\s+checkbox",
)
L_MERCHANT = _labels(r"merchant(?:\s+name)?", r"sold\s+by", r"seller", r"retailer")

#: Words before "reference"/"number" that make it some other reference than the order's.
_NOT_ORDER = tuple(
    w
    for base in (
        "tracking",
        "shipment",
        "parcel",
        "package",
        "consignment",
        "carrier",
        "refund",
        "credit",
        "customer",
        "account",
        "transaction",
        "authorisation",
        "authorization",
    )
    for w in (base, base.capitalize(), base.upper())
)
_NOT_REFUND = ("refund", "Refund", "REFUND", "credit", "Credit", "CREDIT")
_NOT_SUB = (
    "refund",
    "Refund",
    "REFUND",
    "subscription",
    "Subscription",
    "SUBSCRIPTION",
    "account",
    "Account",
    "ACCOUNT",
    "payment",
    "Payment",
    "PAYMENT",
)
#: An e-mail's first-person sentences about the goods.
ACK_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"\b(?:never|not\s+yet|still\s+(?:not|waiting|haven'?t))\b.{0,40}?\b(?:receiv|arriv|came|"
        r"deliver|got|turn(?:ed)?\s+up|show(?:n|ed)?\s+up)",
        False,
    ),
    (
        r"\b(?:has|have|had|did|was|were|is|does)\s*(?:n'?t|\s+not)\b.{0,30}?\b(?:receiv|arriv|"
        r"came|come|deliver|turn(?:ed)?\s+up|show(?:n|ed)?\s+up|get|got)",
        False,
    ),
    (
        r"\bdid\s*n'?t\s+(?:receive|get|arrive)|\bnothing\s+(?:was\s+|has\s+been\s+|ever\s+)?"
        r"(?:delivered|received|arrived|came)|\bno\s+(?:package|parcel|delivery|sign\s+of)\b|"
        r"\bwhere\s+is\s+my\s+(?:order|package|parcel)|\b(?:package|parcel|order)\s+(?:is|was|"
        r"got)\s+(?:lost|missing)|\bnot\s+(?:been\s+)?(?:received|delivered)",
        False,
    ),
    (
        r"\b(?:I|we)\s+(?:have\s+|did\s+)?(?:received|got|collected|picked\s+up|signed\s+for|"
        r"opened|installed|wore|tried)\b|\b(?:arrived|was\s+delivered|came|turned\s+up)\b.{0,60}?"
        r"\b(?:I|we)\b|\b(?:I|we)\s+(?:have\s+been|am|are|was|were)\s+(?:using|wearing|enjoying)\b|"
        r"\b(?:it|the\s+(?:order|item|package|parcel|goods|product))\s+(?:has\s+)?(?:arrived|came|"
        r"was\s+delivered)\b|\b(?:love|using|enjoying)\s+(?:it|the\s+\w+)\b|\bgot\s+(?:it|the\s+"
        r"(?:item|order|package|parcel))\b",
        True,
    ),
)
REFUND_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"\bno\s+refund\b|\b(?:not|never)\s+(?:been\s+)?(?:issued|processed|given|made)\s+"
        r"(?:a\s+|any\s+|your\s+)?refund|\b(?:not|never)\s+(?:been\s+)?refunded\b|\bnot\s+eligible\s+for\s+a\s+refund|\b(?:declin|refus|reject|"
        r"den)\w*\s+(?:the\s+|your\s+|a\s+)?(?:refund|request)|\brefund\b.{0,40}?\b(?:declined|"
        r"refused|rejected|denied)\b|\b(?:unable|not\s+able)\s+to\s+(?:offer|issue|process|"
        r"provide|give)\s+(?:a|any)\s+refund|\b(?:cannot|can'?t|won'?t|will\s+not)\s+(?:offer|"
        r"issue|process|provide|give)\s+(?:a|any|you\s+a)\s+refund",
        False,
    ),
    (
        r"\b(?:we\s+have|we'?ve|has\s+been|have\s+been|was|were)\s+(?:issued|processed|sent|"
        r"refunded|credited|returned|completed)\b.{0,30}?\brefund|\brefund\b.{0,40}?\b(?:was|has\s+"
        r"been|is|have\s+been)\s+(?:processed|sent|issued|credited|paid|completed|approved\s+and\s+"
        r"processed|returned|refunded)|\b(?:we\s+have|we'?ve)\s+(?:issued|processed|sent|"
        r"completed)\s+(?:a|your|the|a\s+full|a\s+partial)\s+refund|\bwe\s+(?:have\s+)?(?:refunded|"
        r"credited)\b|\b(?:has|have)\s+been\s+(?:refunded|credited)\b|\bcredited\s+back\b",
        True,
    ),
)
POLICY_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"\b(?:customer|cardholder|buyer|account\s+holder|user)\b.{0,30}?\b(?:did\s+not|didn'?t|"
        r"never|declined\s+to|refused\s+to)\s+(?:accept|agree|acknowledge|tick|check)",
        False,
    ),
    (
        r"\b(?:customer|cardholder|buyer|account\s+holder|user)\b.{0,30}?\b(?:accepted|agreed\s+"
        r"to|acknowledged|consented\s+to|ticked|checked)\b.{0,40}?\b(?:terms|policy|conditions|"
        r"box)",
        True,
    ),
)
ADDRESS_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"\b(?:shipped|delivered|sent)\s+to\s+(?:an?\s+)?(?:address\s+)?(?:different|other)\s+"
        r"(?:from|than)\s+(?:the\s+)?billing|\b(?:shipping|delivery)\s+address\s+(?:differs|"
        r"does\s+not\s+match|is\s+different)",
        False,
    ),
    (
        r"\b(?:shipped|delivered|sent)\s+to\s+(?:the\s+)?(?:cardholder'?s\s+)?billing\s+address|"
        r"\b(?:shipping|delivery)\s+address\s+(?:matches|is\s+the\s+same\s+as)\s+(?:the\s+)?"
        r"billing",
        True,
    ),
)


def default_rules() -> list[Rule]:
    """The rule set: label rules per field, then prose rules."""
    L = label_rule
    return [
        L("order_id", L_ORDER, ID_VALUE, _id, not_after=_NOT_ORDER),
        L("order_id", L_ORDER_REF, CODE_VALUE, _code, 0.9, below=False, not_after=_NOT_ORDER),
        L("merchant_name", L_MERCHANT, CELL_VALUE, _text, 0.9, below=False),
        L("amount", L_TOTAL, AMOUNT, _amount, not_after=_NOT_REFUND, currency=True),
        L(
            "currency",
            _labels(r"currency"),
            r"[A-Z]{3}\b",
            lambda raw, ctx: raw if raw in CURRENCY_CODES else None,
        ),
        L("transaction_date", L_ORDER_DATE, DATE, _date),
        L("shipping_date", L_SHIP_DATE, DATE, _date),
        L("delivery_date", L_DELIVERY_DATE, DATE, _date),
        L("carrier", L_CARRIER, CELL_VALUE, _carrier, 0.9, below=False),
        L("tracking_number", L_TRACKING, ID_VALUE, _tracking),
        L("delivery_status", L_STATUS, CELL_VALUE, enum(DELIVERY_STATUS), 0.9, not_after=_NOT_SUB),
        L("avs_result", L_AVS, CELL_VALUE, enum(AVS)),
        L("cvv_result", L_CVV, CELL_VALUE, enum(CVV)),
        L("ip_address", L_IP, IP_VALUE, _ip),
        L("device_id", L_DEVICE, ID_VALUE, _id),
        L("refund_amount", L_REFUND_AMOUNT, AMOUNT, _amount, 0.9, currency=True),
        L("refund_date", L_REFUND_DATE, DATE, _date),
        L("refund_issued", L_REFUND_STATUS, CELL_VALUE, enum(REFUND_STATUS), 0.9, below=False),
        L("refund_issued", _labels("status"), CELL_VALUE, enum(REFUND_STATE), 0.85, below=False),
        L("cancellation_date", L_CANCEL, DATE, _date),
        L("shipping_address_matches", L_ADDRESS_MATCH, CELL_VALUE, enum(YES_NO), 0.9),
        L(
            "shipping_address_matches",
            L_ADDRESS_AMBIGUOUS,
            CELL_VALUE,
            enum(YES_NO),
            0.85,
            unless=AUTH_CONTEXT,
        ),
        L("avs_result", L_ADDRESS_AMBIGUOUS, CELL_VALUE, enum(AVS), 0.85, when=AUTH_CONTEXT),
        L("policy_accepted", L_POLICY, CELL_VALUE, enum(YES_NO), 0.9),
        # prose
        pattern_rule(
            "refund_amount",
            rf"\brefund(?:ed)?\s+(?:of|for)\s+(?P<v>{AMOUNT})",
            _amount,
            currency=True,
        ),
        pattern_rule(
            "refund_date",
            rf"\brefund\b(?:[^.\n]|\.(?=\d)){{0,60}}?\b(?:on|dated)\s+(?P<v>{DATE})",
            _date,
        ),
        pattern_rule(
            "cancellation_date",
            rf"\b(?:cancell?\w*|unsubscrib\w*|terminat\w*|ended\s+(?:my|the|our)\s+"
            rf"(?:subscription|membership|plan))\b[^.\n]{{0,40}}?\b(?:on|effective|as\s+of)"
            rf"\s+(?P<v>{DATE})",
            _date,
        ),
        pattern_rule(
            "shipping_date",
            rf"^[ \t]*(?P<v>{DATE})[ \t]+(?:\d{{1,2}}:\d{{2}}[ \t]+)?(?:shipment\s+)?"
            r"(?:picked\s+up|collected|accepted|received\s+by\s+carrier)",
            _date,
            0.75,
        ),
        pattern_rule(
            "delivery_date",
            rf"^[ \t]*(?P<v>{DATE})[ \t]+(?:\d{{1,2}}:\d{{2}}[ \t]+)?delivered\b",
            _date,
            0.75,
        ),
        pattern_rule(
            "merchant_name",
            r"^From:[ \t]*(?P<v>[^<\n]+?)[ \t]+(?:support|customer\s+"
            r"(?:service|care)|team|help\s*desk)\b",
            _text,
            0.75,
        ),
        pattern_rule("merchant_name", r"^[ \t]*The[ \t]+(?P<v>[^\n]+?)[ \t]+team\b", _text, 0.7),
        phrase_rule("refund_issued", REFUND_PHRASES, 0.8),
        phrase_rule("policy_accepted", POLICY_PHRASES, 0.75),
        phrase_rule("shipping_address_matches", ADDRESS_PHRASES, 0.75),
        letterhead_rule,
        carrier_mention_rule,
        customer_rule("customer_acknowledged", ACK_PHRASES, 0.8),
    ]


_CELL = re.compile(r"[^|\s](?:[^|\n]*?[^|\s])?(?=[ \t]{2,}|[ \t]*\||[ \t]*$)", re.MULTILINE)
#: Column headers of logs (history tables): their rows are not the case's record.
_LOG_HEADER = re.compile(r"\b(?:event|time|timestamp|activity|history|location)\b", re.IGNORECASE)


def header_row_pairs(text: str) -> Iterator[tuple[str, str, int]]:
    """``(header, value, value offset)`` for each column of a one-row table: a line of two or
    more short header cells (no digits) followed by exactly one line with as many cells (a
    second such line makes it a list, e.g. a log, and it is skipped)."""
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]*", text) if m.group().strip()]
    for i in range(len(lines) - 1):
        _, head = lines[i]
        heads = [(m.start(), m.group()) for m in _CELL.finditer(head)]
        if len(heads) < 2 or any(len(h) > 40 or re.search(r"\d", h) for _, h in heads):
            continue
        if _LOG_HEADER.search(head):
            continue
        vat, row = lines[i + 1]
        cells = [(m.start(), m.group()) for m in _CELL.finditer(row)]
        if len(cells) != len(heads):
            continue
        if i + 2 < len(lines) and len(list(_CELL.finditer(lines[i + 2][1]))) == len(heads):
            continue
        for (_, h), (c_at, c) in zip(heads, cells, strict=True):
            yield h, c, vat + c_at


_CONTACT = re.compile(
    r"@|www\.|https?://|\.(?:com|net|org|example|shop|store|co)\b|\+?\d[\d ()-]{7,}"
)


def letterhead_rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
    """The first line of a page: the merchant's name when a contact line (website, e-mail,
    phone) follows within two lines; a carrier's name when it is a known carrier."""
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    if not lines:
        return
    start, first = lines[0]
    name = first.strip()
    offset = start + first.index(name)
    carrier = known_carrier(name)
    if carrier:
        yield "carrier", carrier, offset, offset + len(name), 0.75
        return
    if len(name) > 60 or not re.search(r"[A-Za-z]", name) or _CONTACT.search(name):
        return
    if any(_CONTACT.search(line) for _, line in lines[1:3]):
        value = name.title() if name.isupper() else name
        yield "merchant_name", value, offset, offset + len(name), 0.75


def customer_rule(name: str, phrases: Sequence[tuple[str, Any]], strength: float) -> Rule:
    """:func:`phrase_rule` over the customer's own messages of an e-mail thread (blocks whose
    ``From:`` is not the merchant's support address); the whole page when there is no
    ``From:`` line."""
    inner = phrase_rule(name, phrases, strength)
    merchant_from = re.compile(
        r"support|team|service|care|help|no-?reply|orders?@|billing|sales|info@", re.IGNORECASE
    )

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        starts = [m.start() for m in re.finditer(r"(?im)^[ \t]*From:", text)]
        if not starts:
            return
        bounds = [*starts, len(text)]
        for a, b in itertools.pairwise(bounds):
            block = text[a:b]
            header = block.split("\n", 1)[0]
            if merchant_from.search(header):
                continue
            body_at = _body_start(block)
            for field_name, value, s, e, st in inner(block[body_at:], ctx):
                yield field_name, value, a + body_at + s, a + body_at + e, st

    return rule


def _body_start(block: str) -> int:
    """Offset of an e-mail block's body: after its header lines (From/To/Sent/Date/Subject)."""
    pos = 0
    for m in re.finditer(r"[^\n]*\n?", block):
        if not re.match(r"[ \t]*(?:From|To|Cc|Sent|Date|Subject):", m.group()):
            return m.start()
        pos = m.end()
    return pos


# --- the extractor -------------------------------------------------------------------------------


@dataclass
class RulesExtractor:
    """Pattern rules -> :class:`Evidence` with provenance and confidence (module docstring)."""

    rules: list[Rule] = field(default_factory=default_rules)
    name: str = "rules"

    def candidates(self, texts: Sequence[DocumentText]) -> list[Candidate]:
        out: list[Candidate] = []
        for doc in texts:
            for page in doc.pages:
                ctx = RuleContext(document=doc.name, ocr=page.source == "ocr")
                for name, value, start, end, strength in self._hits(page.text, ctx):
                    out.append(
                        Candidate(
                            field=name,
                            value=value,
                            document=doc.name,
                            page=page.number,
                            start=start,
                            end=end,
                            text=page.text[start:end],
                            strength=strength,
                            ocr=page.confidence_at(start, end),
                        )
                    )
        return out

    def _hits(self, text: str, ctx: RuleContext) -> Iterator[Hit]:
        """Every rule's hits on the page, then on each header-row table cell pair (read as
        ``header: value``, its spans mapped back to the value cell, strength x 0.85)."""
        for rule in self.rules:
            yield from rule(text, ctx)
        for header, value, at in header_row_pairs(text):
            mini = f"{header}: {value}"
            base = len(header) + 2
            for rule in self.rules:
                for name, parsed, start, end, strength in rule(mini, ctx):
                    if start >= base:
                        yield name, parsed, at + start - base, at + end - base, strength * 0.85

    def extract(self, documents: Sequence[Path | str | DocumentText]) -> ExtractionResult:
        texts = extract_texts(documents)
        return self.from_candidates(self.candidates(texts), [d.name for d in texts])

    def from_candidates(
        self, candidates: Iterable[Candidate], documents: list[str]
    ) -> ExtractionResult:
        by_field: dict[str, list[Candidate]] = {}
        for c in candidates:
            by_field.setdefault(c.field, []).append(c)
        values: dict[str, Any] = {}
        fields: dict[str, ExtractedField] = {}
        warnings: list[str] = []
        for name in field_names():
            found = by_field.get(name)
            if not found:
                continue
            chosen, confidence, conflicts = _choose(name, found)
            values[name] = chosen[0].value
            if conflicts:
                warnings.append(
                    f"{name}: documents disagree ({', '.join(repr(v) for v in conflicts)}); "
                    f"chose {chosen[0].value!r}"
                )
            fields[name] = ExtractedField(
                value=chosen[0].value,
                confidence=confidence,
                provenance=[
                    Provenance(
                        document=c.document, page=c.page, start=c.start, end=c.end, text=c.text
                    )
                    for c in chosen
                ],
            )
        evidence = Evidence(**values)
        return ExtractionResult(
            evidence=evidence,
            fields=fields,
            extractor=self.name,
            documents=documents,
            warnings=warnings,
        )


def _choose(name: str, found: list[Candidate]) -> tuple[list[Candidate], float, list[Any]]:
    """The best-supported value's candidates (one per distinct span), its confidence and the
    conflicting values."""
    groups: dict[Any, list[Candidate]] = {}
    for c in found:
        key = normalise(name, c.value)
        if isinstance(key, float):
            key = round(key, 2)
        groups.setdefault(key, []).append(c)
    support: dict[Any, float] = {}
    for key, cands in groups.items():
        miss = 1.0
        seen: set[tuple[str, int, int]] = set()
        for c in sorted(cands, key=lambda c: -c.score):
            if (c.document, c.page, c.start) in seen:
                continue
            seen.add((c.document, c.page, c.start))
            miss *= 1.0 - min(c.score, 0.999)
        support[key] = 1.0 - miss
    order = list(groups)
    best = max(order, key=lambda k: (support[k], -order.index(k)))
    others = sum(s for k, s in support.items() if k != best)
    confidence = (
        support[best] * support[best] / (support[best] + others) if others else support[best]
    )
    chosen: list[Candidate] = []
    spans: set[tuple[str, int, int]] = set()
    for c in sorted(groups[best], key=lambda c: -c.score):
        if (c.document, c.page, c.start) not in spans:
            spans.add((c.document, c.page, c.start))
            chosen.append(c)
    conflicts = [groups[k][0].value for k in order if k != best]
    return chosen, round(min(1.0, confidence), 4), conflicts


def extract_documents(
    documents: Sequence[Path | str | DocumentText],
    extractor: ExtractorName | Extractor = "rules",
    *,
    llm_settings: LLMSettings | None = None,
) -> ExtractionResult:
    """Evidence from one case's documents with the named extractor (``"rules"``, the default,
    or ``"llm"``: :class:`riskml.features.disputes.llm.LLMExtractor` with ``llm_settings`` or
    the ``RISKML_LLM_*`` environment) or any :class:`Extractor`."""
    if isinstance(extractor, str):
        if extractor == "rules":
            chosen: Extractor = RulesExtractor()
        elif extractor == "llm":
            from riskml.features.disputes.llm import LLMExtractor, LLMSettings

            chosen = LLMExtractor(settings=llm_settings or LLMSettings.from_settings())
        else:
            raise ValueError(f"unknown extractor {extractor!r}; choose 'rules' or 'llm'")
    else:
        chosen = extractor
    t0 = time.perf_counter()
    result = chosen.extract(documents)
    if not result.latency_ms:
        result.latency_ms = (time.perf_counter() - t0) * 1000
    return result


def evaluate_extractor(
    extractor: Extractor, items: Iterable[tuple[Sequence[Path | str | DocumentText], Evidence]]
) -> ExtractionScores:
    """Precision/recall/F1 per field (:func:`riskml.data.disputes.evidence.score`) of
    ``extractor`` over ``(documents, truth)`` items: one document each (per-document scores)
    or one case's documents with the merged truth (per-case scores)."""
    pairs = []
    for documents, truth in items:
        pairs.append((extractor.extract(documents).evidence, truth))
    return score(pairs)
