"""Evidence extraction: the ``Extractor`` protocol, the rules extractor and the library call.

:class:`RulesExtractor` (the default: offline, deterministic, fast) reads each page's text with
pattern rules. A rule finds a *candidate*: a field's value, the span it was read from and the
rule's strength (a labelled value, ``Tracking number: 1Z...``, is strong; a value read from prose
is weaker). Values are parsed tolerantly: dates numeric (``2025-03-14``, ``03/14/2025``,
``14.03.2025``, ``14/03/25``, ISO timestamps ``2025-03-14T09:30:00Z``) or with a month name in any
order (``March 14th, 2025``, ``14-Mar-2025``, ``14-Mar-25``, ``Friday 14 March 2025``, ``2025 Mar
14``); amounts with either decimal separator and a currency symbol or ISO code before or after
(``$1,234.50``, ``1.234,50 EUR``, ``EUR1234.50``, ``US$ 45``); OCR noise (``O``/``0``, ``l``/``1``,
``S``/``5`` in digits where the label says the value is a number or an id, ``1D`` for ``ID`` in
labels, stray spaces and tildes in ids). Whether ``03/04/2025`` is March or April is settled per
document (:func:`infer_dayfirst`): by a date on it that only reads one way (``21/05/2025``), else
by the reading that keeps its dates days rather than months apart, else by the currency of its
amounts (pounds, euros: day first; :func:`currency_dayfirst`), else month first (dots: day first).

Rule kinds, written so that a vendor whose documents no rule has seen is read too:

* *label rules*: ``Label: value`` on a line (or the value at the start of the next line); the
  labels are composed of the words vendors use (``Order``/``Purchase``/``Booking``/``Invoice``/
  ``Reference`` with ``number``/``no.``/``#``/``ID``/``ref``/``code`` in either order; an event
  with ``date``/``on``), guarded by words that make them another field (``Tracking ref``,
  ``Refund amount``, ``Estimated delivery``); a label that means different things by document,
  "Address check", is read by the page's context;
* *keyed pairs* (:func:`keyed_rule`): any short label (``Label: value``, a table's ``Label
  value`` cells, ``Label value`` for values with a shape of their own, a label alone on its
  line over its value), classified by the words in it (:data:`KEY_CLASSES`: "IP used" names an
  IP address, "Arrival date" a delivery date) when the value parses as that field's kind;
* *one-row tables* (a header row of labels over one row of values: each column is read as
  ``header: value``);
* *prose* (a refund "of $12.50 ... on 09/24/2024", "credited $12.50 back", "cancelled ... on")
  and *phrases* for the booleans, negations first; refunds are read from what the merchant
  writes only, the acknowledgement of receipt from the customer's own e-mails only;
* the *letterhead*: a name among the page's first lines above its contact line (website,
  e-mail, phone), surer when it is the website's or e-mail's domain; a document title above it
  is skipped; a carrier's name heading its tracking page is the carrier, never the merchant;
  known carriers named on a shipping line;
* an order id by its shape alone (``ORD-2024-00012``, ``INV/2024/7``), weakly.

An order id is never a date, an amount, a phone number or an address; a merchant's name is a
few capitalised words, not a contact detail and not a known carrier.

The rules were first written on the development template variants
(:data:`riskml.data.disputes.documents.DEVELOPMENT_VARIANTS`); :func:`evaluate_extractor`
scores them on any corpus, e.g. the held-out variants.

Per field, candidates with the same normalised value pool their support: a value found in two
documents is surer than one found once. The chosen value's confidence is
``1 - prod(1 - strength * ocr_confidence)`` over its candidates, scaled down by the support of
conflicting values; its provenance lists every span it was read from (document, page, start,
end, text).

:func:`riskml.features.disputes.extractors.extract_documents` is the library call: paths (or
already-read :class:`DocumentText`) in, :class:`ExtractionResult` out, with ``extractor=
"layout"`` (the default: these rules and the learned layout model), ``"rules"`` or ``"llm"``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

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

ExtractorName = Literal["layout", "rules", "llm"]


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
    "US $": "USD",
    "U$S": "USD",  # Argentina's and Uruguay's dollar sign
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "C$": "CAD",
    "A$": "AUD",
    "CA$": "CAD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "S$": "SGD",
    "R$": "BRL",
    "₹": "INR",
    "zł": "PLN",
    "Kč": "CZK",
    # the sign before the country, as French-Canadian prices print it ("34,16 $ US")
    "$ US": "USD",
    "$US": "USD",
    "$ CA": "CAD",
    "$CA": "CAD",
    "$ CAN": "CAD",
    "$CAN": "CAD",
    "$ AU": "AUD",
    "$AU": "AUD",
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
} | {  # French, as Canadian and European vendors print them
    m: i + 1
    for i, names in enumerate(
        [
            ("janv", "janvier"),
            ("fév", "févr", "février", "fev", "fevr", "fevrier"),
            ("mars",),
            ("avr", "avril"),
            ("mai",),
            ("juin",),
            ("juil", "juillet"),
            ("août", "aout"),
            ("septembre",),
            ("octobre",),
            ("novembre",),
            ("déc", "décembre", "decembre"),
        ]
    )
    for m in names
}
_MONTH_RE = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|janv(?:ier)?|f[ée]vr?(?:ier)?|"
    r"mars|avr(?:il)?|mai|juin|juil(?:let)?|ao[uû]t|septembre|octobre|novembre|d[ée]c(?:embre)?)"
    r"\.?(?:/(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|janv|f[ée]v|avr|mai|juin|juil|"
    r"ao[uû]|d[ée]c)[a-zéû]*\.?)?"  # a bilingual month: MAY/MAI, JUL/JUIL
)
_D = r"[0-9OolI|SB]"  # a digit as OCR may print it
_DAY = rf"{_D}{{1,2}}(?:st|nd|rd|th|er)?"
#: A date: numeric (year first, or day/month first with a 4- or 2-digit year, any of ``-/.``)
#: or with a month name in any order (``March 14, 2025``, ``14-Mar-2025``, ``14th of March
#: 2025``, ``2025 Mar 14``), optionally after a weekday.
DATE_RE = (
    rf"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?"
    # 2025-03-14, 2025-03-14T09:30:00Z
    rf"(?<![\w.])(?:{_D}{{4}}[-/.]{_D}{{1,2}}[-/.]{_D}{{1,2}}(?!(?!T\d{{2}}:)[\w.]?\d)"
    rf"|{_D}{{1,2}}[-/.]{_D}{{1,2}}[-/.]{_D}{{4}}(?![\w.]?\d)"  # 14/03/2025, 03-14-2025
    rf"|{_D}{{1,2}}\.[ \t]{_D}{{1,2}}\.[ \t]{_D}{{4}}(?![\w.]?\d)"  # 14. 3. 2025 (Czech)
    rf"|{_D}{{4}}\.[ \t]{_D}{{1,2}}\.[ \t]{_D}{{1,2}}\.?(?![\w]|[ \t]*\.?\d)"  # 2025. 3. 14.
    rf"|{_D}{{1,2}}[-/.]{_D}{{1,2}}[-/.]\d{{2}}(?![\w.:/-]?\d)"  # 03/14/25
    rf"|{_MONTH_RE}[ \t/-]*{_DAY},?[ \t/-]+{_D}{{4}}"  # March 14, 2025; Mar-14-2025
    rf"|{_DAY}(?:[ \t]+of)?[ \t/.-]*{_MONTH_RE},?[ \t/.-]*{_D}{{4}}"  # 14 March 2025, 14Mar2025
    rf"|{_D}{{4}}[ \t/.-]+{_MONTH_RE}[ \t/.-]+{_DAY}(?!\d)"  # 2025 Mar 14, 2025-Mar-14
    rf"|{_D}{{1,2}}-{_MONTH_RE}-\d{{2}}(?![\w.:/-]?\d)"  # 14-Mar-25
    # 14MAR25 (an airline's or a mainframe's date)
    rf"|(?-i:{_D}{{1,2}}(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\d{{2}})(?![\w]))"
    r"(?:[ \t]*\((?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?\))?"  # 14 Mar 2025 (Fri)
)
_NUM = r"[0-9OolI|SB]"
_CUR_PRE = (
    r"(?:"
    + "|".join(re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
    + r"|\b(?:"
    + "|".join(sorted(CURRENCY_CODES))
    + r"))"
)
_CUR_POST = (
    r"(?:"
    + "|".join(re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
    + r"|(?:"
    + "|".join(sorted(CURRENCY_CODES))
    + r")\b)"
)
#: Currencies written out after an amount ("137.41 US DOLLARS").
CURRENCY_WORDS = {
    "us dollars": "USD",
    "u.s. dollars": "USD",
    "dollars": "USD",
    "euros": "EUR",
    "euro": "EUR",
    "pounds sterling": "GBP",
    "pounds": "GBP",
    "canadian dollars": "CAD",
    "australian dollars": "AUD",
}
_CUR_WORD = (
    r"(?i:" + "|".join(re.escape(w) for w in sorted(CURRENCY_WORDS, key=len, reverse=True)) + r")\b"
)
_CURRENCY_WORD = re.compile(rf"\b{_CUR_WORD}")
#: Digits grouped by thousands (``1,234,567``, ``1.234.567``, ``1 234 567``) or the Indian way
#: (``12,34,567``: lakhs and crores), or not grouped.
_DIGITS = (
    rf"(?:{_NUM}{{1,2}}(?:,{_NUM}{{2}})+,{_NUM}{{3}}(?![\d])"
    rf"|{_NUM}{{1,3}}(?:[,. \u00a0']{_NUM}{{3}})+|{_NUM}+)"
)
#: A currency after an amount, in parentheses only when they close on it ("12.50 (USD)", not
#: the "(INR" of "USD 86.37 (INR 7,173.03)": a conversion, not this amount's currency).
_POST = rf"(?:\({_CUR_POST}\)|{_CUR_POST})"
_NUMBER = rf"(?<![\w.,]){_DIGITS}"
_CENTS = rf"[.,]{_NUM}{{2}}(?![\w]|[.,]\d)"  # not a date's day and month ("12.03.2025")
#: An amount: with a currency (symbol or ISO code, before or after, with or without a space)
#: or with cents.
AMOUNT_RE = (
    rf"(?:{_CUR_PRE}(?:[ \t]?{_CUR_PRE})?[ \t\u00a0]?(?<![\d.,]){_DIGITS}(?:{_CENTS})?(?![\w.,]\d)"
    rf"(?:[ \t]?{_POST})?"
    rf"|{_NUMBER}(?:{_CENTS}(?:[ \t\u00a0]?{_POST}|[ \t]{_CUR_WORD})?"
    rf"|[ \t\u00a0]?{_CUR_POST}))"
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
    found = _CURRENCY_WORD.search(text)
    if found:
        currency = CURRENCY_WORDS[found.group().lower()]
        text = text[: found.start()] + text[found.end() :]
    for sym in sorted(CURRENCY_SYMBOLS, key=len, reverse=True):
        if sym in text:
            currency = CURRENCY_SYMBOLS[sym]
            text = text.replace(sym, " ")
            break
    code = re.search(r"(?<![A-Za-z])([A-Z]{3})(?![A-Za-z])", text)
    if code and code.group(1) in CURRENCY_CODES:
        currency = code.group(1)
        text = text.replace(code.group(1), " ")
    text = re.sub(r"\(\s*\)", "", text)  # "12.50 (USD)": the code's parentheses
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
    when ``a > 12`` or ``dayfirst`` (dots: day first unless ``dayfirst`` is False), else month
    first (US); a 2-digit year is 20yy (19yy from 70). Month names in any order."""
    s = re.sub(r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "", text.strip().lower())
    s = re.sub(r"\s*\((?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?\)$", "", s)
    s = re.sub(r"\s+", " ", s.replace(",", " ")).strip()
    s = re.sub(r"^(\S{1,2})\. (\S{1,2})\. (\S{4})$", r"\1.\2.\3", s)  # 14. 3. 2025
    s = re.sub(r"^(\S{4})\. (\S{1,2})\. (\S{1,2}?)\.?$", r"\1.\2.\3", s)  # 2025. 3. 14.
    m = re.fullmatch(r"(\S{4})[-/.](\S{1,2})[-/.](\S{1,2})", s)
    try:
        if m:
            y, mo, d = (int(fix_digits(g)) for g in m.groups())
            return dt.date(y, mo, d)
        m = re.fullmatch(r"(\S{1,2})([-/.])(\S{1,2})[-/.](\S{4}|\d{2})", s)
        if m:
            a, sep, b, y = (
                int(fix_digits(m.group(1))),
                m.group(2),
                int(fix_digits(m.group(3))),
                int(fix_digits(m.group(4))),
            )
            if y < 100:
                y += 2000 if y < 70 else 1900
            day_first = a > 12 or (b <= 12 and (dayfirst or (dayfirst is None and sep == ".")))
            return dt.date(y, b, a) if day_first else dt.date(y, a, b)
        month_m = re.search(rf"(?<![a-z]){_MONTH_RE}(?![a-z])", s)
        if not month_m:
            return None
        word = re.sub(r"\W", "", month_m.group().split("/")[0])
        month = _MONTHS.get(word) or _MONTHS.get(word[:3])
        rest = s[: month_m.start()] + " " + s[month_m.end() :]
        rest = re.sub(r"\bof\b", " ", rest)
        rest = re.sub(r"(?<=[0-9OolI|SB])(?:st|nd|rd|th|er)\b", " ", rest)
        nums = [fix_digits(n) for n in re.findall(r"[0-9olI|sb]+", rest)]
        nums = [n for n in nums if n.isdigit()]
        if month and len(nums) == 2:
            if len(nums[0]) == 4:
                year, day = nums
            elif len(nums[1]) == 4 or len(nums[0]) <= 2 == len(nums[1]):  # 14-Mar-25: 2025
                day, year = nums
                year = (
                    year
                    if len(year) == 4
                    else str(2000 + int(year) if int(year) < 70 else 1900 + int(year))
                )
            else:
                return None
            return dt.date(int(year), month, int(day))
    except ValueError:
        return None
    return None


#: A numeric date whose first or second part is above 12 says which comes first.
_NUMERIC_DATE = re.compile(r"(?<![\w.])(\d{1,2})([-/.])(\d{1,2})\2(?:\d{4}|\d{2})(?![\w]|\.\d)")


def infer_dayfirst(text: str) -> bool | None:
    """Whether the numeric dates of ``text`` put the day first: True when some date's first
    part is above 12 (``21/05/2024``) and none's second, False for the opposite. When no date
    settles it, the reading that keeps the document's dates closest together (an order, its
    dispatch and its delivery are days apart, not months), if one does by a week or more;
    else None."""
    day = month = False
    ambiguous: list[str] = []
    for m in _NUMERIC_DATE.finditer(text):
        a, b = int(m.group(1)), int(m.group(3))
        day |= a > 12 >= b
        month |= b > 12 >= a
        if a <= 12 and b <= 12 and a != b:
            ambiguous.append(m.group())
    if day != month:
        return day
    if day or not ambiguous:
        return None
    fixed = [
        d
        for m in _DATE_PATTERN().finditer(text)
        if not _NUMERIC_DATE.fullmatch(m.group().strip())
        and (d := parse_date(m.group())) is not None
    ]
    spans = {}
    for reading in (False, True):
        dates = fixed + [d for a in ambiguous if (d := parse_date(a, reading)) is not None]
        if len(dates) >= 2:
            spans[reading] = (max(dates) - min(dates)).days
    if len(spans) == 2 and abs(spans[True] - spans[False]) >= 7:
        return spans[True] < spans[False]
    return None


#: Currencies of countries that write numeric dates day first (the US, the one that writes
#: them month first, pays in dollars; so do Canada, whose usage is mixed, and others).
DAY_FIRST_CURRENCIES = frozenset(
    {"GBP", "EUR", "AUD", "NZD", "INR", "ZAR", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "BRL"}
)


#: An amount's decimal comma ("137,39", "1.234,50"): the locales that write it write dates day
#: first (continental Europe, Latin America; a dollar sign does not make them American).
_DECIMAL_COMMA = re.compile(r"\d,\d{2}(?![\d.,])")
_DECIMAL_POINT = re.compile(r"\d\.\d{2}(?![\d.,])")


def currency_dayfirst(text: str) -> bool | None:
    """True when every currency the page's amounts name is one of countries that put the day
    first (:data:`DAY_FIRST_CURRENCIES`: ``£12.50``, ``1.234,50 EUR``), or when its amounts
    write cents after a decimal comma and none after a point (``137,39 $``), else None: the
    last hint for a page whose numeric dates all read both ways."""
    amounts = [m.group() for m in _AMOUNT_PATTERN().finditer(text)]
    found = {got[1] for a in amounts if (got := parse_amount(a))}
    found.discard(None)
    if found and found <= DAY_FIRST_CURRENCIES:
        return True
    comma = any(_DECIMAL_COMMA.search(a) for a in amounts)
    return True if comma and not any(_DECIMAL_POINT.search(a) for a in amounts) else None


@lru_cache(maxsize=1)
def _AMOUNT_PATTERN() -> re.Pattern[str]:
    return re.compile(AMOUNT_RE)


@lru_cache(maxsize=1)
def _DATE_PATTERN() -> re.Pattern[str]:
    return re.compile(DATE_RE, re.IGNORECASE)


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
    #: The whole page: what a rule's ``when``/``unless`` look at (a header-row cell pair is read
    #: as a line of its own, but it stays on its page: "Value date" on a refund's page).
    page: str = ""


#: A hit: (field, value, start, end, strength).
Hit = tuple[str, Any, int, int, float]
#: A rule reads a page's text and yields hits.
Rule = Callable[[str, RuleContext], Iterator[Hit]]
#: A value parser: the matched text -> the value (None: not a value after all).
Parser = Callable[[str, RuleContext], Any]

#: Between a label and its value: spaces, optionally one separator character or word, or dot
#: leaders (``Order number ...... 123``).
_SEP = r"[ \t]*(?:[:#=|\-–—→>\[\]]|\.:?|[.·…_]{2,}:?|\bis\b|\bwas\b|\bon\b)?[ \t]*"
#: A short parenthetical a label may carry (``Address check (AVS)``, ``Total (incl. VAT)``).
#: A parenthesis after a label ("Total (USD)", "Security code (CCV)"); never one that takes
#: something out of it ("Total (ex GST)": a total before tax).
_PAREN = r"(?:[ \t]*\((?![ \t]*(?:ex|excl\w*|excluding|before|pre|net)\b)[^()\n]{1,30}\))?"
#: A label's gloss in a second language after a slash ("Total amount / Montant total  34,16 $"):
#: letters up to a gap, a colon or the value's first digit or currency sign.
_GLOSS = (
    r"(?:[ \t]*/[ \t]*(?=[^\W\d_])[^\n/:\d$€£]{1,40}?(?=[ \t]{2,}|[ \t]*:|[ \t]+[\d$€£]|[ \t]*$))?"
)
#: The end of a value cell: two spaces, a ``|`` column separator or the end of the line.
_CELL_END = r"(?=[ \t]{2,}|[ \t]*\||[ \t]*$)"
#: An identifier with at least one digit (case-sensitive inside a case-insensitive rule).
_TOKEN = r"[A-Za-z0-9](?:[A-Za-z0-9_/.\-~–]*[A-Za-z0-9])?"
ID_VALUE = (
    # a digit in the first token (OCR may space out its hyphens): "date 2024" is no id
    r"#?[ \t]?(?-i:(?=[A-Za-z0-9_/.\-~–]*(?:[ ]?[-~–][ ]?[A-Za-z0-9_/.\-~–]*)*[0-9])"
    + _TOKEN
    # OCR spaces around a hyphen ("ORD-2021 -66887"); digit groups ("9400 1000 ...")
    + r"(?:(?:[-~–]|[ ][-~–][ ]?|[-~–][ ])(?:(?<=[-~–])(?=[A-Za-z0-9])|(?=[A-Za-z0-9_/.]*\d))"
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


#: Dot leaders: three or more dots (spaced or not) after a label, before a colon or a value.
_LEADER = re.compile(r"(?<=[A-Za-z)#.])[ \t]*(?:[.·…][ \t]?){3,}(?=[ \t]*(?::|\S))")
#: A currency code in a label's parentheses ("Amount (USD)").
_LABEL_CURRENCY = re.compile(r"\(([A-Z]{3})\)")
#: Two cells on a line: a gap of two spaces (or a tab) between words.
_MULTI_CELL = re.compile(r"\S(?:[ ]{2,}|\t)\S")


def _line_start(text: str, at: int) -> int:
    return text.rfind("\n", 0, at) + 1


def _in_header_row(text: str, at: int) -> bool:
    """Whether the line at ``at`` is a table's row of headers: two or more cells, each with a
    field label in it, no digits, and the next non-empty line has as many cells (its values)."""
    start = _line_start(text, at)
    end = text.find("\n", at)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if not _MULTI_CELL.search(line) or re.search(r"\d", line):
        return False
    following = next((ln for ln in text[end + 1 :].split("\n", 3)[:3] if ln.strip()), "")
    heads = _CELL.findall(line)
    if len(heads) < 2 or not all(_ALL_LABELS().search(h) for h in heads):
        return False
    return len(_CELL.findall(following)) == len(heads)


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
    # the words a label must not follow, checked on the line before a match (a lookbehind per
    # word, tried at every position, made the rules several times slower)
    guard = (
        re.compile(rf"\b(?:{'|'.join(re.escape(w) for w in not_after)})(?:[ \t]|-)$", re.IGNORECASE)
        if not_after
        else None
    )
    patterns = [
        (re.compile(rf"(?im)\b{labels}(?!\w){_PAREN}{_GLOSS}{_SEP}(?P<v>{value})"), strength)
    ]
    if below:
        patterns.append(
            (
                re.compile(
                    rf"(?im)\b{labels}(?!\w){_PAREN}[ \t]*[:#]?[ \t]*\n[ \t]*(?P<v>{value})"
                ),
                strength - 0.15,
            )
        )

    need = re.compile(when, re.IGNORECASE) if when else None
    veto = re.compile(unless, re.IGNORECASE) if unless else None

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        scope = ctx.page or text
        if (need is not None and not need.search(scope)) or (
            veto is not None and veto.search(scope)
        ):
            return
        seen: set[int] = set()
        for pattern, s in patterns:
            below_value = s < strength
            for m in pattern.finditer(text):
                if m.start("v") in seen:
                    continue
                if below_value and _MULTI_CELL.search(
                    text, _line_start(text, m.start()), m.start()
                ):
                    continue  # a header among others: its value is in its column, not first
                if not below_value and _in_header_row(text, m.start()):
                    continue  # "Ship Via   PRO / Tracking No.": the next header, not a value
                if guard is not None and guard.search(text, max(0, m.start() - 40), m.start()):
                    continue
                raw = m.group("v")
                parsed = parse(raw, ctx)
                if parsed is None:
                    continue
                seen.add(m.start("v"))
                yield name, parsed, m.start("v"), m.end("v"), s
                if currency:
                    got = parse_amount(raw)
                    named = got[1] if got else None
                    if named is None:
                        code = _LABEL_CURRENCY.search(text, m.start(), m.start("v"))
                        named = code.group(1) if code and code.group(1) in CURRENCY_CODES else None
                    if named:
                        yield "currency", named, m.start("v"), m.end("v"), s

    return rule


def pattern_rule(
    name: str,
    pattern: str,
    parse: Parser,
    strength: float = 0.8,
    *,
    currency: bool = False,
    when: str | None = None,
) -> Rule:
    """Prose: ``pattern`` (case-insensitive) with a ``v`` group holding the value; ``when``: a
    cheap regex the page must contain first (an amount pattern is slow to try everywhere)."""
    compiled = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    need = re.compile(when, re.IGNORECASE) if when else None

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        if need is not None and not need.search(text):
            return
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


#: Values that have an identifier's characters but are something else.
_NOT_AN_ID = re.compile(
    r"\d{1,3}(?:[.,]\d{3})*[.,]\d{2}"  # an amount
    r"|\+?\d[\d ()-]{6,}\d"  # a phone number
    r"|(?:\d{1,3}\.){3}\d{1,3}"  # an IPv4 address
    r"|.*@.*|(?:www\.|https?://).*"
)


def _order_id(raw: str, ctx: RuleContext) -> str | None:
    """An order reference: an identifier that is not a date, an amount, a phone number or an
    address (a bare "Purchase" or "Order" label may stand before any of those)."""
    value = _id(raw, ctx)
    if value is None:
        return None
    if _NOT_AN_ID.fullmatch(value) or parse_date(value) is not None:
        return None
    if re.fullmatch(r"(?:19|20)\d{2}", value):  # a year
        return None
    return value


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


#: A word that ends a reference's label ("Invoice No.", "Order ID").
_REFERENCE_WORD = re.compile(r"(?i:no\.?|nr\.?|number|#|ref\.?)|ID")


def _is_name(s: str) -> bool:
    """Whether ``s`` reads as a name (a merchant's, a carrier's): a few words, capitalised, not a
    contact detail, not a label and its value, not mostly digits."""
    words = s.split()
    if not words or len(words) > 6 or len(s) > 60 or ":" in s or _CONTACT.search(s):
        return False
    if not (words[0][:1].isupper() or words[0][:1].isdigit()):
        return False  # "online at ...", "credit: $5": prose after a label word
    if sum(c.isdigit() for c in s) > len(s) / 3:
        return False
    if _REFERENCE_WORD.fullmatch(words[-1]):
        return False  # "Challan No.": a reference's label, not a name
    return not is_label(s) and not is_label(words[0])


def _merchant(raw: str, ctx: RuleContext) -> str | None:
    s = _text(raw, ctx)
    if s is None or not _is_name(s) or known_carrier(s):
        return None
    return s


def _carrier(raw: str, ctx: RuleContext) -> str | None:
    s = _text(raw, ctx)
    if s is None:
        return None
    known = known_carrier(s)
    if known:
        return known
    if _DATE_PATTERN().search(s):
        return None  # "Handed over to carrier   15 May 2024": the hand-over's date
    if _AMOUNT_PATTERN().search(s):
        return None  # "Courier shipping 4,99 $ / VAT 8,54 $": a price under the label
    # an unknown name, unless it is the next column's label ("Carrier  Tracking number")
    return s if len(s.split()) <= 4 and _is_name(s) and not _names_a_field(s) else None


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


#: A value vocabulary, compiled: (case-insensitive regex, the value it means) in order.
Vocabulary = tuple[tuple[re.Pattern[str], Any], ...]


def compile_vocabulary(table: Sequence[tuple[str, Any]]) -> Vocabulary:
    return tuple((re.compile(p, re.IGNORECASE), v) for p, v in table)


def vocabulary_value(vocabulary: Vocabulary, text: str) -> Any:
    """The value of the first of ``vocabulary``'s regexes found in ``text``, or None."""
    for p, v in vocabulary:
        if p.search(text):
            return v
    return None


def enum(table: Sequence[tuple[str, Any]], *, max_words: int | None = None) -> Parser:
    """A parser mapping the first matching regex (searched in the value cell) to its value.
    ``max_words``: longer cells are prose, not a value (a bare label such as "Terms")."""
    compiled = compile_vocabulary(table)

    def parse(raw: str, ctx: RuleContext) -> Any:
        cell = re.split(r"[ \t]{2,}|\|", raw.strip())[0]
        if max_words is not None and len(cell.split()) > max_words:
            return None
        return vocabulary_value(compiled, cell)

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
#: A merchant's support desk as it signs ("Acme Support", "Acme Customer Care").
_DESK = (
    r"(?:customer[ \t]+)?(?:support|service|care|success|experience|relations|team|"
    r"help[ \t]*desk|billing|orders|sales|returns|refunds)"
)
#: An order reference recognised by its shape alone: an order/invoice/PO prefix and digits.
ORDER_SHAPE = r"(?<![\w-])(?P<v>(?-i:(?:ORD|ORDER|INV|PO|SO)[-_/#]?\d[\w/-]*\d))(?![\w-])"
#: A page about a refund (where a bare "Processed on" dates the refund).
REFUND_CONTEXT = (
    r"\b(?:refund(?:ed)?|credit(?:ed)?\s+(?:note|memo|advice|issued|to)|reimburse(?:d|ment))\b"
)
DELIVERY_STATUS = (
    (
        r"not\s+found|no\s+record|no\s+(?:information|info|data|details|tracking)|unknown|lost|"
        r"no\s+scan|not\s+(?:recogni[sz]ed|available|in\s+(?:our|the)\s+system)|invalid|no\s+such|"
        r"unavailable|(?:can'?t|cannot|could\s+not|unable\s+to)\s+(?:find|locate|trace)|no\s+trace|"
        r"nothing\s+found|no\s+results?\b",
        "not_found",
    ),
    (
        r"return|back\s+to\s+(?:the\s+)?(?:sender|shipper|merchant|origin)|undeliverable|\brts\b|"
        r"sent\s+back|undelivered",
        "returned",
    ),
    (
        r"(?:collected|picked\s+up|received|signed)\s+by\s+(?:the\s+)?(?:customer|recipient|"
        r"consignee|addressee|buyer)|\bleft\s+(?:at|in|with|by|on)\s+(?:the\s+)?(?:\w+\s+)?(?:door|"
        r"porch|doorstep|safe\s+place|reception|neighbou?r|mail\s*box|letter\s*box|locker|"
        r"concierge|mailroom|garage)|handed\s+(?:over\s+)?to\s+"
        r"(?:the\s+)?(?:customer|recipient|consignee|addressee|buyer|neighbou?r)",
        "delivered",
    ),
    (
        r"transit|on\s+(?:its|the)\s+way|out\s+for\s+delivery|en\s*route|shipped|in\s+progress|"
        r"awaiting|moving|dispatched|despatched|picked\s+up|collected|accepted|departed|"
        r"arrived\s+at|processing|attempt|\bhub\b|depot|sort(?:ing)?\s+(?:centre|center|facility)|"
        r"with\s+(?:the\s+)?(?:\w+\s+)?(?:courier|carrier|driver)|on\s*board|loaded\s+(?:on|onto)|"
        r"\bfor\s+delivery\b",
        "in_transit",
    ),
    (r"deliver|signed\s+for|handed\s+(?:over\s+)?to", "delivered"),
)
#: A check that could not be made: "Not possible - no reply from issuer".
_NO_REPLY = r"not\s+possible|no\s+(?:reply|answer)\s+from"
AVS = (
    (
        r"^\s*(?:partial|[AWZPB](?![/\w]))|partial|(?:street|address|zip|postcode|postal\s+code)\b"
        r"(?:\s+\w+)?\s+only|\bonly\s+(?:the\s+)?(?:street|address|zip|postcode|postal\s+code)|"
        r"\b(?:street|address|zip|post\s*code|postal\s+code)\s+(?:match\w*|verified|confirmed|ok),?"
        r"\s+(?:but\s+)?(?:the\s+)?(?:street|address|zip|post\s*code|postal\s+code)\s+(?:does\s*n[o']t|"
        r"did\s*n[o']t|not|mismatch\w*|failed|incorrect|wrong)",
        "partial",
    ),
    (
        r"\b(?:street|address|zip(?:\s*code)?|post\s*code|postal\s+code)\s*:?\s+(?:does\s*n[o']t|"
        r"did\s*n[o']t|not|no)\s+match\w*,?\s+(?:but\s+)?(?:the\s+)?(?:street|address|"
        r"zip(?:\s*code)?|post\s*code|postal\s+code)"
        r"\s*:?\s+(?:match\w*|verified|confirmed|ok|correct)\b",
        "partial",
    ),
    (
        r"^\s*(?:no[\s_-]*match|mismatch|fail|N(?![/\w]))|no[\s_-]*match|not\s+match|mismatch|"
        r"failed|not\s+(?:verified|confirmed)|unconfirmed|does\s+not\s+match|\bneither\b|"
        r"(?:does|did)\s*n'?t\s+match|"
        r"^\s*none\b|\bno\s+(?:details?|data|fields?)\s+match|\bno\s+(?:avs|address)\s+match|"
        r"\brejected\b|^\s*(?:negative|ng)\b|\bincorrect\b",
        "no_match",
    ),
    (
        r"^\s*(?:unavailable|not\s+available|n/?a\b|not\s+(?:checked|supported|performed)|"
        r"[URSGE](?![/\w]))|unavailable|not\s+(?:available|supported|performed|checked|"
        r"applicable|returned)|unknown|no\s+(?:response|data|(?:avs\s+)?result)|unable\s+to\s+"
        r"(?:verify|check)|"
        rf"unchecked|does\s*(?:n'?t|\s+not)\s+(?:participate|support)|{_NO_REPLY}",
        "unavailable",
    ),
    (
        r"^\s*(?:full\b|(?:full\s+)?match|pass|positive|ok\b|[YXMD](?![/\w]))|match|passed|\bverified|"
        r"\bconfirmed|\bcorrect\b",
        "match",
    ),
)
CVV = (
    (
        r"^\s*(?:no[\s_-]*match|mismatch|fail|N(?![/\w]))|no[\s_-]*match|not\s+match|mismatch|"
        r"failed|incorrect|invalid|does\s+not\s+match|rejected|declined|(?:does|did)\s*n'?t\s+match|"
        r"^\s*(?:negative|ng)\b|\bwrong\b",
        "no_match",
    ),
    (
        r"^\s*(?:unavailable|not\s+(?:available|provided|checked|processed|present|supported|"
        r"performed)|"
        r"n/?a\b|[UPSX](?![/\w]))|unavailable|not\s+(?:available|provided|checked|processed|"
        r"present|supported|applicable|verified|certified)|unknown|missing|unverified|could\s+not\s+be\s+"
        r"verified|issuer\s+not\b|"
        r"unable\s+to\s+(?:verify|check)|unchecked|does\s*(?:n'?t|\s+not)\s+(?:participate|support)|"
        rf"no\s+(?:response|data)|not\s+returned|{_NO_REPLY}",
        "unavailable",
    ),
    (
        r"^\s*(?:match|pass|ok|positive|[MY](?![/\w]))|match|passed|\bverified|\bcorrect|\bvalid|"
        r"\bok\b|"
        r"\baccepted\b",
        "match",
    ),
)
#: A refund document's bare "Status" (the delivery statuses never say these).
REFUND_STATE = (
    (r"^\s*(?:none|not\s+refunded|no\s+refund)\b", False),
    (r"^\s*(?:refunded|credited)\b", True),
)
YES_NO = (
    (
        r"^\s*(?:no|n|false|not|does\s+not|differs?|different|mismatch|unticked|unchecked|"
        r"declined|refused|off|unverified|failed|\[\s\]|✗|✘|☐)(?![\w-])|\b(?:differ|differs|"
        r"differed|different|diff|not\s+the\s+same|not\s+identical|mismatch(?:ed)?|unticked|"
        r"unchecked|unselected|not\s+(?:ticked|checked|selected)|elsewhere|separate)\b",
        False,
    ),
    (
        r"^\s*(?:yes|y|true|matches|match|matched|same|identical|ticked|checked|accepted|agreed|"
        r"given|confirmed|verified|consistent|acknowledged|consented|on|ok|\[x\]|✓|✔|☑|"
        r"consent\s+(?:given|granted|recorded)|captured|recorded|logged|obtained|granted)(?![\w-])|"
        r"^\s*(?:check)?box\s+(?:ticked|checked|selected|marked)\b",
        True,
    ),
)
REFUND_STATUS = (
    (
        r"^\s*(?:not|no|none|declined|refused|rejected|denied|pending|n|nil|failed)\b|"
        r"\b(?:not|no)\s+(?:issued|refund(?:ed)?|credit(?:ed)?|processed|paid)\b|"
        r"\b(?:refund|credit)\s+(?:declined|refused|rejected|denied|failed)\b",
        False,
    ),
    (
        r"^\s*(?:issued|completed?|processed|refunded|paid|sent|credited|done|yes|y|approved|"
        r"successful|succeeded|success|settled|returned|granted|reimbursed|fully\s+refunded|posted|"
        r"applied|paid\s+back|executed|transferred|booked(?:\s+back)?|"
        r"(?:full|partial)\s+refund)\b|\b(?:money|amount|funds)\s+(?:returned|refunded|booked\s+"
        r"back)\b|\b(?:refund|credit)"
        r"(?:\s+(?:note|memo))?\s+(?:issued|processed|completed|paid|sent|granted)\b",
        True,
    ),
)

# label alternatives per field (case-insensitive; longest tried first). Labels are composed of
# the words vendors use (a noun for what the value is, a word for "number"/"date"...) rather
# than listed whole, so an unseen combination ("Booking ref.", "Purchase no.", "Dispatch
# date") is read too.
#: "ID" as OCR reads it ("1D", "lD", "10").
_ID = r"[il1|][d0o]"
#: The words that say "this is a reference": number, no., #, ID, code, ref.
_NO = rf"(?:no\.?|nr\.?|nbr\.?|n[º°o]\.?|num(?:ber)?\.?|#|{_ID}|code|ref(?:erence)?\.?)"
#: What an order reference is the reference of.
_ORDER_NOUN = (
    r"(?:order|purchase|booking|reservation|invoice|receipt|confirmation|sales?[ \t]+order|po|"
    r"(?-i:SO))"
)
#: Whose reference it is.
_OWNER = r"(?:(?:your|our|the|merchant|shipper'?s?|sender'?s?|seller'?s?|vendor'?s?)[ \t]+)"
#: Order labels that say "this is the reference" (not a bare "Order").
L_ORDER_REF = _labels(
    rf"{_OWNER}?{_ORDER_NOUN}[ \t]*{_NO}(?:[ \t]*{_NO})?",  # Order number, Purchase no.
    rf"{_OWNER}?ref(?:erence)?\.?(?:[ \t]*(?:no\.?|number|#|code|{_ID}))?",  # Ref, Reference no.
    rf"{_NO}[ \t]*(?:of[ \t]+)?(?:the[ \t]+|your[ \t]+)?{_ORDER_NOUN}",  # No. of order
    r"re:\s*(?:your\s+)?order",
    r"(?:purchase|sales)[ \t]+order",
)
L_ORDER = _labels(
    L_ORDER_REF, r"order", r"booking", r"invoice", r"receipt", r"purchase", r"reservation"
)
#: "incl. VAT", "including sales tax": a total with its tax in it.
_WITH_TAX = (
    r"(?:[ \t]+\(?(?:incl(?:uding|usive(?:[ \t]+of)?|\.)?|inc\.?|with)[ \t]+(?:all[ \t]+)?"
    r"(?:vat|gst|(?:sales[ \t]+)?tax(?:es)?)\)?)?"
)
#: Not after "incl."/"including": a tax word that names a part of the total.
_NOT_INCLUDED = r"(?<!incl\.\s)(?<!incl\s)(?<!inc\.\s)(?<!including\s)(?<!inclusive\s)(?<!of\s)"
L_TOTAL = _labels(
    r"(?:order[ \t]+|grand[ \t]+|invoice[ \t]+|final[ \t]+|payment[ \t]+|purchase[ \t]+|"
    r"transaction[ \t]+|sale[ \t]+)?total(?:[ \t]+(?:charged|paid|billed|amount|due|payable|"
    rf"price|to[ \t]+pay))?{_WITH_TAX}",
    r"(?:total[ \t]+)?(?:order|purchase|transaction|basket|cart|invoice)[ \t]+value",
    r"(?:(?:order|payment|purchase|transaction|charge|invoice|sale)[ \t]+)?amount(?:[ \t]+"
    r"(?:charged|paid|billed|due|payable|authori[sz]ed|captured))?",
    r"(?:charged|paid|billed)(?:[ \t]+(?:to[ \t]+(?:your[ \t]+)?card|today))?",
    r"you[ \t]+paid",
    r"balance[ \t]+(?:paid|due)",
)
#: Dates: a noun or verb for the event with "date"/"on", in either order.
_ORDER_EVENT = r"(?:order|purchase|transaction|payment|checkout|booking|invoice|sale|charge)"
L_ORDER_DATE = _labels(
    rf"{_ORDER_EVENT}[ \t]+(?:date|time|placed(?:[ \t]+on)?|made(?:[ \t]+on)?|on)",
    rf"date[ \t]+(?:of[ \t]+)?(?:the[ \t]+)?{_ORDER_EVENT}",
    rf"(?:your[ \t]+)?{_ORDER_EVENT}[ \t]+(?:of|dated)",  # "Your order of 10.05.2024"
    r"(?:ordered|purchased|placed|bought|booked|invoiced|paid)(?:[ \t]+(?:on|at|date))?",
    r"order[ \t]+(?:was[ \t]+)?placed(?:[ \t]+on)?",
)
_SHIP_EVENT = (
    r"(?:ship(?:ping|ment)?|dispatch|despatch|posting|fulfil?ment|pick[ \t-]?up|collection|"
    r"outbound)"
)
L_SHIP_DATE = _labels(
    rf"{_SHIP_EVENT}[ \t]+(?:date|on)",
    rf"date[ \t]+(?:of[ \t]+)?{_SHIP_EVENT}",
    r"date[ \t]+(?:shipped|dispatched|despatched|posted|mailed|picked[ \t]+up)",
    r"sent[ \t]+out(?:[ \t]+(?:on|date))?",
    r"(?:shipped|dispatched|despatched|sent)[ \t]+by[ \t]+(?:us|the[ \t]+(?:shop|store|seller|"
    r"merchant))(?:[ \t]+on)?",
    r"(?:shipped|dispatched|despatched|posted|mailed|picked[ \t]+up|lodged)"
    r"(?:[ \t]+(?:on|at|date))?",
    r"dispatch(?:ed)?",
    r"left[ \t]+(?:the[ \t]+|our[ \t]+)?(?:warehouse|depot|premises)(?:[ \t]+on)?",
)
L_DELIVERY_DATE = _labels(
    r"(?:proof[ \t]+of[ \t]+)?deliver(?:y|ed)(?:[ \t]+(?:completion|completed|made|effected))?"
    r"[ \t]+(?:date|on|at)",
    r"delivered[ \t]+to[ \t]+(?:you|the[ \t]+(?:recipient|customer|addressee))[ \t]+on",
    r"date[ \t]+(?:of[ \t]+)?deliver(?:y|ed)",
    r"delivered",
    r"hand[ \t-]*over[ \t]+(?:date|on)",
    r"pod[ \t]+(?:date|on)",
    r"date[ \t]+of[ \t]+hand[ \t-]*over",
)
L_CARRIER = _labels(
    r"(?:shipping[ \t]+|delivery[ \t]+)?carrier",
    r"courier(?:[ \t]+(?:service|company|name))?+",
    r"(?:ship(?:ped)?|sent|dispatched|despatched|delivered|delivery)[ \t]+(?:via|with|by|through)",
    r"(?:ship(?:ping)?|delivery|postal|parcel|transport)[ \t]+(?:carrier|company|service|provider|"
    r"partner|"
    r"method|agent|firm)",
    r"logistics(?:[ \t]+(?:partner|provider|company))?",
    r"via",
)
L_TRACKING = _labels(
    rf"track(?:ing)?(?:[ \t]*{_NO}){{0,2}}",
    rf"track[ \t]*(?:&|and|\+)[ \t]*trace(?:[ \t]*{_NO})?",
    rf"(?:air[ \t]*)?way[ \t]*bill(?:[ \t]*{_NO})?",
    rf"track(?:ing)?[ \t]+invoice(?:[ \t]*{_NO})?",
    rf"awb(?:[ \t]*{_NO})?",
    rf"(?:consignment|parcel|shipment|package|article)[ \t]*{_NO}",
    r"track[ \t]+(?:your|my|this|the)[ \t]+(?:package|parcel|order|shipment|item|delivery)",
)
L_STATUS = _labels(
    r"(?:current[ \t]+|latest[ \t]+|last[ \t]+)?(?:delivery[ \t]+|shipment[ \t]+|tracking[ \t]+|"
    r"shipping[ \t]+|parcel[ \t]+|package[ \t]+|consignment[ \t]+)?status",
    r"(?:current|latest|last|most[ \t]+recent)[ \t]+(?:update|event|scan|activity|checkpoint|"
    r"stage)",
    r"(?:tracking|delivery|shipment|consignment|parcel)[ \t]+(?:result|outcome)",
)
L_AVS = _labels(
    r"avs(?:[ \t]+(?:result|response|check|code|status|match))?",
    r"address[ \t]+verif(?:ication|\.)(?:[ \t]+(?:service|system))?(?:[ \t]*\(avs\))?"
    r"(?:[ \t]+(?:result|response|status|check|code))?",
    r"billing[ \t]+address[ \t]+(?:check|verification)(?:[ \t]+result)?",
    r"(?:street|address)[ \t]*(?:/|and|&|\+)[ \t]*(?:post[ \t]*code|postal[ \t]+code|zip)"
    r"[ \t]+(?:check|verification|result)",
    r"(?:billing[ \t]+)?address[ \t]+(?:check|verification)[ \t]+(?:by|from)[ \t]+(?:the[ \t]+)?"
    r"(?:card[ \t]+)?(?:issuer|issuing[ \t]+bank|bank)",
)
L_CVV = _labels(
    r"(?:cv+|cvc|ccv|cvd|cid|csc)2?(?:[ \t]+(?:result|response|check|code|status|match))?",
    r"card[ \t]+verification[ \t]+(?:value|code)(?:[ \t]+(?:result|check|response))?",
    r"(?:card[ \t]+)?security[ \t]+code(?:[ \t]+(?:result|check|response))?",
    r"card[ \t]+code(?:[ \t]+(?:result|check|response|verification))?",
    r"(?:card[ \t]+)?verification[ \t]+code(?:[ \t]+(?:result|check|response))?",
)
L_IP = _labels(
    r"ip(?:v[46])?(?:[ \t]+address)?",
    r"(?:customer|client|source|remote|checkout|originating|login|device)[ \t]+ip"
    r"(?:[ \t]+address)?",
)
L_DEVICE = _labels(
    rf"(?:device|browser|machine|hardware|handset)(?:[ \t]+(?:{_ID}|fingerprint|identifier|hash|"
    rf"token|ref(?:erence)?))?",
    rf"(?:device[ \t]+)?fingerprint(?:[ \t]+{_ID})?",
)
L_REFUND_AMOUNT = _labels(
    r"refund(?:ed|able)?[ \t]+(?:amount|total|sum|value)",
    r"amount[ \t]+(?:refunded|credited|reimbursed|returned)",
    r"(?:refunded|credited|reimbursed|returned)[ \t]+(?:amount|sum|total)",
    r"refunded",
    r"credit(?:ed)?(?:[ \t]+(?:amount|total|value))?",
    r"reimburse(?:d|ment)(?:[ \t]+amount)?",
    r"refund",
)
L_REFUND_DATE = _labels(
    r"refund(?:ed)?[ \t]+(?:date|on|(?:issued|processed|credited|paid)[ \t]+on)",
    r"date[ \t]+(?:of[ \t]+)?(?:refund|refunded|credit|credited|reimbursement)",
    r"credit(?:ed)?[ \t]+(?:date|on|issued(?:[ \t]+on)?)",
    r"reimburse(?:d|ment)[ \t]+(?:date|on)",
    r"(?:booked|paid|sent|credited|transferred)[ \t]+back(?:[ \t]+on)?",
    r"(?:money|amount|payment)[ \t]+(?:returned|refunded|reimbursed)[ \t]+on",
)
#: A bare "Processed on"/"Issued on": the refund's date on a page about a refund.
L_PROCESSED_ON = _labels(
    r"(?:processed|issued|completed|executed)(?:[ \t]+on)?", r"value[ \t]+date"
)
L_REFUND_STATUS = _labels(
    r"(?:refund|credit|reimbursement)[ \t]+(?:status|state|issued|processed|initiated|decision|"
    r"outcome|result|entry)",
    r"return[ \t]+of[ \t]+(?:money|funds|payment)",
    r"refund|reimbursement",
)
L_CANCEL = _labels(
    r"cancell?(?:ation|ed)(?:[ \t]+(?:date|on|effective))?",
    r"date[ \t]+(?:of[ \t]+)?(?:cancell?(?:ation|ed)|termination)",
    r"(?:subscription|membership|plan|account|service|contract)[ \t]+(?:cancell?(?:ed|ation)|"
    r"ended|terminated|closed|stopped)(?:[ \t]+(?:on|date))?",
    r"(?:ended|terminated)[ \t]+on",
    r"(?:end|termination)[ \t]+date",
)
_SHIP_SIDE = (
    r"(?:(?:ship(?:ping)?|delivery)(?:[ \t-]*to)?|recipient(?:'?s)?|consignee(?:'?s)?)"
    r"(?:[ \t]+address(?:es)?)?"
)
_BILL_SIDE = (
    r"(?:bill(?:ing)?|invoice|sold|(?:orderer|purchaser|buyer|card[ \t]*holder)(?:'?s)?)"
    r"(?:[ \t-]*to)?(?:[ \t]+address(?:es)?)?"
)
#: A shipping/billing address comparison (in a shipping document): the two sides in either
#: order with a few words between ("Ship-to verified against bill-to").
L_ADDRESS_MATCH = _labels(
    rf"{_SHIP_SIDE}[ \t]*(?:[\w/&=.-]+[ \t]*){{0,4}}?{_BILL_SIDE}"
    r"(?:[ \t](?:match(?:es)?|identical|same|agree|verified|check))?",
    rf"{_BILL_SIDE}[ \t]*(?:[\w/&=.-]+[ \t]*){{0,4}}?{_SHIP_SIDE}"
    r"(?:[ \t](?:match(?:es)?|identical|same|agree|verified|check))?",
    r"(?:delivered|shipped)[ \t]+to[ \t]+(?:the[ \t]+)?billing[ \t]+address",
    r"same[ \t]+as[ \t]+(?:the[ \t]+)?(?:billing|invoice|card(?:holder'?s?)?|payment)"
    r"(?:[ \t]+address)?",
)
#: "Address check"/"Address match": AVS on an authorisation record, else ship-to vs bill-to.
L_ADDRESS_AMBIGUOUS = _labels(r"address(?:es)?[ \t]+(?:check|match(?:es)?|verified)")
#: A page about the card authorisation (where an address check is AVS).
AUTH_CONTEXT = r"\b(?:cv[cv]?2?|cvc|security\s+code|card\s+code|authori[sz]ation|avs)\b"
_TERMS = (
    r"(?:general[ \t]+terms(?:[ \t]+(?:and|&)[ \t]+conditions)?|gtcs?|"
    r"(?:(?:refund|cancellation|returns?)[ \t]+)?(?:policy|policies|terms(?:[ \t]+(?:and|&)[ \t]+"
    r"conditions|[ \t]+of[ \t]+(?:sale|service|use))?|t[ \t]*&[ \t]*cs?|conditions(?:[ \t]+of"
    r"[ \t]+sale)?))"
)
L_POLICY = _labels(
    rf"{_TERMS}[ \t]+(?:accepted|agreed|acknowledged|acceptance|agreement|consent)"
    r"(?:[ \t]+(?:at|during|on)[ \t]+(?:checkout|purchase|order|sign[ \t-]?up|registration))?",
    r"(?:customer[ \t]+|cardholder[ \t]+|buyer[ \t]+)?(?:agreed|accepted|consented|acknowledged)"
    r"[ \t]+(?:to[ \t]+)?(?:the[ \t]+)?(?:terms|policy|t[ \t]*&[ \t]*cs?|refund[ \t]+policy|"
    r"conditions)(?:[ \t]+at[ \t]+checkout)?",
    r"(?:checkout[ \t]+)?(?:acceptance|consent)(?:[ \t]+(?:status|checkbox|box|given|recorded|"
    r"captured|logged|obtained))?+",
    r"(?:policy|terms)[ \t]+checkbox",
)
#: A bare "Terms"/"Policy" label: policy acceptance when its value is a short yes/no.
L_TERMS = _labels(_TERMS)
L_MERCHANT = _labels(
    r"merchant[ \t]+(?:name|of[ \t]+record)",
    r"(?:seller|vendor|merchant)(?:'s)?[ \t]+(?:shop|store)",
    r"(?:sold|billed|invoiced|supplied)[ \t]+by",
    r"(?:seller|vendor|retailer|supplier|store|shop)[ \t]+name",
    r"(?:trading|doing[ \t]+business)[ \t]+as",
)
#: A bare noun naming the merchant ("Seller", "Store"): read with a colon or a gap only.
L_MERCHANT_NOUN = _labels(
    r"merchant|seller|vendor|retailer|supplier|store|shop|web[ \t-]?shop|online[ \t]+(?:shop|"
    r"store)|distributor|wholesaler|dealer|reseller"
)
#: A footer's or a form's "Company" ("Company: Acme Ltd  ·  CEO ..."), not a carrier's or an
#: insurer's ("Logistics company").
L_COMPANY = _labels(r"company(?:[ \t]+name)?")
#: An invoice signed for the company ("for ACME TRADERS" above "Authorised Signatory").
SIGNED_FOR = (
    r"(?im)^[ \t]*for[ \t]+(?P<v>[^\n]{2,60}?)[ \t]*\n(?:[ \t]*\n){0,4}[ \t]*(?:authori[sz]ed[ \t]+"
    r"signatory|"
    r"proprietor|(?:managing[ \t]+)?director|partner)\b"
)
#: A value after a colon, a bar, a tab or a gap of two spaces (not after one space).
_AFTER_GAP = r"(?:(?<=[:|\t])|(?<=[ ]{2})|(?<=:[ ]))"


def _cases(*words: str) -> tuple[str, ...]:
    """Each word as printed in lower case, capitalised and in capitals (label guards)."""
    return tuple(w for base in words for w in (base, base.capitalize(), base.upper()))


#: Words before "reference"/"number" that make it some other reference than the order's.
_NOT_ORDER = _cases(
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
    "auth",
    "payment",
    "return",
    "returns",
    "dispute",
    "case",
    "chargeback",
    "member",
    "membership",
    "loyalty",
    "ticket",
    "support",
    "claim",
    "device",
    "browser",
    "session",
    "terminal",
    "of",
    "this",
)
_NOT_REFUND = _cases("refund", "credit")
_NOT_OWN_COMPANY = _cases(
    "logistics", "courier", "shipping", "delivery", "carrier", "transport", "freight", "parcel",
    "insurance", "card", "payment", "your", "parent", "holding",
)  # fmt: skip
#: ... and a customer's sentence ("Got my order on 26 Jun") is no order-date label.
_NOT_ORDER_DATE = (*_NOT_REFUND, *_cases("my", "got", "received"))
#: Words before a noun that make it part of a sentence ("from the retailer"), not a label.
_ARTICLES = _cases("the", "a", "an", "from", "to", "by", "your", "our", "this")
#: ... and for a carrier label: "Lodged with carrier", "Handed to courier".
_NOT_CARRIER = (
    *_ARTICLES,
    *_cases("with", "over", "at", "accepted", "paid", "submitted", "received", "signed", "ordered"),
)
#: Words before "total"/"amount" that make it a part of the order's total.
_NOT_TOTAL = _cases(
    "refund",
    "refunded",
    "credit",
    "credited",
    "reimbursed",
    "reimbursement",
    "returned",
    "line",
    "unit",
    "item",
    "items",
    "tax",
    "shipping",
    "discount",
    "vat",
    "delivery",
    "net",
    "sub",
    "mdse",
    "memo",
    "merchandise",
    "sous",
)
#: Words before "delivered"/"delivery date" that make it a forecast.
_NOT_ACTUAL = _cases("estimated", "expected", "scheduled", "planned", "anticipated", "est.")
_NOT_SUB = _cases(
    "refund", "subscription", "account", "payment", "order", "credit", "avs", "cvv", "cvc", "csc"
)
#: Words before "posted"/"sent" that make it another event's date than the parcel's.
_NOT_SHIPPED = (*_NOT_ACTUAL, *_cases("refund", "credit", "payment", "invoice", "reply", "message"))

#: An e-mail's first-person sentences about the goods.
_ARRIVE = (
    r"(?:receiv|arriv|came|come|deliver|got|get|reach|turn(?:ed)?\s+up|show(?:n|ed)?\s+up|"
    r"ma(?:de|ke)\s+it|drop(?:ped)?\s+(?:\w+\s+)?off)"
)
ACK_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        rf"\b(?:never|not\s+yet|still\s+(?:not|waiting|haven'?t))\b.{{0,40}}?\b{_ARRIVE}",
        False,
    ),
    (
        rf"\b(?:has|have|had|did|was|were|is|does)(?:\s+still)?\s*(?:n'?t|\s+not)\b.{{0,30}}?\b"
        rf"{_ARRIVE}",
        False,
    ),
    (
        r"\bdid\s*n'?t\s+(?:receive|get|arrive)|\bnothing\s+(?:was\s+|has\s+been\s+|has\s+|had\s+|"
        r"ever\s+)?(?:delivered|received|arrived|came|come|showed\s+up|turned\s+up|reached)|"
        r"\byet\s+to\s+(?:receive|get|see|arrive)|\bstill\s+nothing\b|\bstill\s+(?:do\s*n[o']t|"
        r"haven'?t|have\s+not)\s+(?:have|got|received)\b|\bno\s+(?:package|"
        r"parcel|delivery|sign\s+of)\b|\bwhere\s+is\s+my\s+(?:order|package|parcel)|\b(?:package|"
        r"parcel|order|shipment|delivery|goods|item)s?\s+(?:is|are|was|were|got)\s+(?:still\s+)?"
        r"(?:lost|missing)|\bnot\s+(?:been\s+)?(?:received|delivered)|\b(?:received|got|had)\s+"
        r"nothing\b|\bstill\s+without\b|\bno\s+(?:courier|driver|carrier|one)\s+(?:has\s+)?(?:been|"
        r"came|come)\b",
        False,
    ),
    (
        r"\bdropped\s+(?:the|my|our)\s+(?:parcel|package|order|item|box|goods)\s+off\b|"
        r"\beverything\s+(?:was|has\s+been)\s+(?:received|delivered)\b|"
        r"\b(?:I|we)\s+(?:have\s+|did\s+)?(?:received|got|collected|picked\s+up|signed\s+for|"
        r"opened|installed|wore|tried)\b|\b(?:arrived|was\s+delivered|came|turned\s+up)\b.{0,60}?"
        r"\b(?:I|we)\b|\b(?:I|we)\s+(?:have\s+been|am|are|was|were)\s+(?:using|wearing|enjoying)\b|"
        r"\b(?:it|they|the\s+(?:order|item|package|parcel|goods|product|delivery)s?|(?:my|your)\s+(?:order|"
        r"item|package|parcel|goods|delivery|purchase))\s+(?:has\s+|have\s+|finally\s+)?(?:arrived|"
        r"came|turned\s+up|showed\s+up|was\s+delivered|were\s+delivered|got\s+here|reached\s+me)"
        r"\b|\b(?:love|using|enjoying)\s+(?:it|the\s+\w+)\b|\bgot\s+(?:it|(?:the|my)\s+"
        r"(?:item|order|package|parcel|goods|delivery))\b|\bdelivered\s+to\s+me\b|\b(?:started|began|begun)\s+(?:using|wearing)\b|"
        r"\b(?:handed|given)\s+to\s+me\b|\b(?:it|they|the\s+(?:goods|items?|products?|parcel|"
        r"package|order))\s+(?:is|are)\s+(?:here\s+)?with\s+me\b|\bpicked\s+(?:the|my|our)\s+(?:parcel|package|order|"
        r"item|box|goods)\s+up\b|\b(?:parcel|package|item|order|goods|delivery)\s+"
        r"(?:was\s+|has\s+been\s+)?(?:received|collected|picked\s+up|dropped\s+off|left\s+"
        r"(?:at|on|by|with))\b|\b(?:I|we)(?:'ve|\s+have)?\s+(?:have|got)\s+it\s+(?:here|now|with\s+"
        r"me)\b|\bwaiting\s+(?:on|at|by|outside)\s+my\s+(?:front\s+)?(?:doorstep|door|porch)\b|"
        r"\beverything\s+(?:was|"
        r"is)\s+(?:inside|there|included|in\s+the\s+(?:box|parcel|package))\b|"
        r"\b(?:everything|all\s+(?:the\s+)?items|it\s+all)\s+(?:has\s+|have\s+)?(?:arrived|came|"
        r"turned\s+up)\b|\b(?:I|we)\s+(?:now\s+)?have\s+(?:the|my|our)\s+(?:item|order|parcel|"
        r"package|goods|product)s?\b|(?:^|[.!?]\s+)(?:received|got|collected)\s+(?:it|them|"
        r"(?:the|my)\s+(?:item|order|package|parcel|goods|delivery))\b|\bcontents?\s+(?:was|were|is|"
        r"are)\s+(?:fine|ok|okay|intact|complete|all\s+there)\b|\b(?:I|we)\s+(?:have\s+)?(?:accepted|"
        r"took\s+over|taken\s+over)\s+(?:the|my|our)\s+(?:consignment|package|parcel|order|delivery|"
        r"shipment|goods|items?)\b|\ball\s+(?:the\s+)?(?:products|items|goods|contents)\s+(?:were|was)\s+"
        r"(?:inside|there|included)\b",
        True,
    ),
)
REFUND_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"\bno\s+refund\b|\bnot\s+in\s+a\s+position\s+to\s+(?:refund|reimburse|credit)|"
        r"\bdecided\s+not\s+to\s+(?:refund|reimburse|credit)|"
        r"\b(?:refund|reimbursement|credit)\s+(?:is|was)\s+not\s+possible\b|\b(?:refund|"
        r"reimbursement)\s+(?:can'?t|cannot|won'?t|will\s+not)\s+be\s+(?:given|issued|offered|"
        r"made|processed)|"
        r"\b(?:not|never)\s+(?:been\s+)?(?:issued|processed|given|made)\s+"
        r"(?:a\s+|any\s+|your\s+)?refund|\b(?:not|never)\s+(?:been\s+)?refunded\b|\bnot\s+eligible\s+for\s+a\s+refund|\b(?:declin|refus|reject|"
        r"den)\w*\s+(?:the\s+|your\s+|a\s+)?(?:refund|request)|\brefund\b.{0,40}?\b(?:declined|"
        r"refused|rejected|denied)\b|\b(?:unable|not\s+able)\s+to\s+(?:offer|issue|process|"
        r"provide|give)\s+(?:a|any)\s+refund|\b(?:cannot|can'?t|won'?t|will\s+not)\s+(?:offer|"
        r"issue|process|provide|give)\s+(?:a|any|you\s+a)\s+refund|\b(?:will\s+not|won'?t|cannot|"
        r"can'?t|unable\s+to)\s+(?:be\s+)?(?:refund|reimburs|credit)\w*|\b(?:won'?t|will\s+not|"
        r"cannot|can'?t|unable\s+to)\s+(?:be\s+able\s+to\s+)?(?:give|offer|pay|send)\s+(?:you\s+)?"
        r"(?:your\s+|the\s+)?money\s+back|\b(?:does\s*n[o']t|do\s*n[o']t|not)\s+qualify\s+for\s+"
        r"(?:a\s+)?refund|\b(?:will\s+not|won'?t|cannot|can'?t|are\s+not|aren'?t)\s+(?:be\s+)?"
        r"(?:giving|offering|issuing|providing|making|processing)\s+(?:you\s+)?(?:a|any)\s+refund",
        False,
    ),
    (
        r"\b(?:money|funds|payment|amount|sum|charge|balance)\b.{0,40}?\b(?:has\s+been|have\s+"
        r"been|was|were)\s+(?:returned|refunded|credited|reimbursed|reversed|sent\s+back|put\s+"
        r"back)\b|\b(?:was|were|has\s+been)\s+(?:refunded|credited|reimbursed)\s+to\s+(?:the|your)\s+"
        r"(?:card|account)\b|\b(?:returned|refunded|credited|reversed|reimbursed)\b.{0,30}?\bto\s+your\s+"
        r"(?:card|account|bank|original\s+payment)|\bwe(?:\s+have|'ve)?\s+(?:reimbursed|reversed)\b|"
        r"\bpaid\s+back\s+(?:to|onto|on)\s+your\b|\bpaid\s+(?:your|the)\s+money\s+back\b|"
        r"\breleased\s+(?:a|the|your)\s+refund\b|"
        r"\brefund\b(?:[^.]|\.(?=\d)){0,40}?\b(?:completed|processed|issued|sent|paid|credited)\s+"
        r"on\b|"
        r"\b(?:went|gone|sent|paid)\s+back\s+to\s+your\s+(?:card|account|bank)|\bwe(?:\s+have|'ve)?\s+"
        r"(?:sent|paid|put|transferred)\b.{0,30}?\bback\s+(?:to|on|onto)\s+(?:you|your)\b|"
        r"\b(?:was|were|has\s+been)\s+put\s+through\b|\bwe\s+(?:have\s+)?made\s+(?:the|a|your)\s+"
        r"(?:full\s+|partial\s+)?refund\b|\brefund\s+(?:confirmed|approved|completed)\b|"
        r"\b(?:arranged|approved|authori[sz]ed)\s+(?:a|the|your)\s+(?:full\s+|partial\s+)?refund\b|"
        r"\brefunded\s+to\s+you\b|\brefund\b.{0,40}?\b(?:has|have)\s+(?:now\s+)?been\s+(?:approved|"
        r"completed|processed|issued|sent)\b|"
        r"\brefund\s+has\s+gone\s+through\b|\bwe\s+(?:have\s+)?"
        r"returned\s+(?:the\s+(?:money|funds|payment|amount|sum)|[$€£¥]|[A-Z]{3}\s?\d|\d)|"
        r"\b(?:we\s+have|we'?ve|has\s+been|have\s+been|was|were)\s+(?:issued|processed|sent|"
        r"refunded|credited|returned|completed)\b.{0,30}?\brefund|\brefund\b.{0,40}?\b(?:was|has\s+"
        r"been|is|have\s+been)\s+(?:processed|sent|issued|credited|paid|completed|approved\s+and\s+"
        r"processed|returned|refunded|made)|\b(?:we\s+have|we'?ve)\s+(?:issued|processed|sent|"
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
#: A phrase followed by a colon is a label (its value says yes or no), not a statement.
_NOT_A_LABEL = r"(?![ \t\w]*:)"
ADDRESS_PHRASES: tuple[tuple[str, Any], ...] = (
    (
        r"(?:\b(?:shipped|delivered|sent)\s+to\s+(?:an?\s+)?(?:address\s+)?(?:different|other)\s+"
        r"(?:from|than)\s+(?:the\s+)?billing|\b(?:shipping|delivery)\s+address\s+(?:differs|"
        rf"does\s+not\s+match|is\s+different)){_NOT_A_LABEL}",
        False,
    ),
    (
        r"(?:\b(?:shipped|delivered|sent)\s+to\s+(?:the\s+)?(?:cardholder'?s\s+)?billing\s+address|"
        r"\b(?:shipping|delivery)\s+address\s+(?:matches|is\s+the\s+same\s+as)\s+(?:the\s+)?"
        rf"billing(?:\s+address)?){_NOT_A_LABEL}",
        True,
    ),
)


def default_rules() -> list[Rule]:
    """The rule set: label rules per field, then prose rules."""
    L = label_rule
    return [
        L("order_id", L_ORDER, ID_VALUE, _order_id, not_after=_NOT_ORDER),
        L("order_id", L_ORDER_REF, CODE_VALUE, _code, 0.9, below=False, not_after=_NOT_ORDER),
        pattern_rule("order_id", ORDER_SHAPE, _order_id, 0.6),
        # an e-mail's subject names the order it is about ("Ticket update for payment 3442160")
        pattern_rule(
            "order_id",
            rf"^[ \t]*Subject:[^\n]*?\b(?:{_ORDER_NOUN}|payment|transaction)(?:[ \t]*/[ \t]*\w+)?"
            r"(?:[ \t]+(?:inquiry|enquiry|query|question|issue|problem|complaint)\])?"
            rf"[ \t]*(?:{_NO}[ \t]*)?"
            rf"[:.]?[ \t]*(?P<v>{ID_VALUE})",
            _order_id,
            0.65,
        ),
        L(
            "merchant_name",
            L_MERCHANT,
            CELL_VALUE,
            _merchant,
            0.9,
            below=False,
            not_after=_ARTICLES,
        ),
        L(
            "merchant_name",
            L_MERCHANT_NOUN,
            _AFTER_GAP + CELL_VALUE,
            _merchant,
            0.9,
            below=False,
            not_after=_ARTICLES,
        ),
        L(
            "merchant_name",
            L_COMPANY,
            _AFTER_GAP + CELL_VALUE,
            _merchant,
            0.85,
            below=False,
            not_after=(*_ARTICLES, *_NOT_OWN_COMPANY),
        ),
        pattern_rule("merchant_name", SIGNED_FOR, _merchant, 0.85),
        L("amount", L_TOTAL, AMOUNT, _amount, not_after=_NOT_TOTAL, currency=True),
        L(
            "currency",
            _labels(r"currency"),
            r"[A-Z]{3}\b",
            lambda raw, ctx: raw if raw in CURRENCY_CODES else None,
        ),
        L("transaction_date", L_ORDER_DATE, DATE, _date, not_after=_NOT_ORDER_DATE),
        L("shipping_date", L_SHIP_DATE, DATE, _date, not_after=_NOT_SHIPPED),
        L("delivery_date", L_DELIVERY_DATE, DATE, _date, not_after=_NOT_ACTUAL),
        L("carrier", L_CARRIER, CELL_VALUE, _carrier, 0.9, below=False, not_after=_NOT_CARRIER),
        L("tracking_number", L_TRACKING, ID_VALUE, _tracking),
        L("delivery_status", L_STATUS, CELL_VALUE, enum(DELIVERY_STATUS), 0.9, not_after=_NOT_SUB),
        L("avs_result", L_AVS, CELL_VALUE, enum(AVS)),
        L("cvv_result", L_CVV, CELL_VALUE, enum(CVV)),
        L("ip_address", L_IP, IP_VALUE, _ip),
        L("device_id", L_DEVICE, ID_VALUE, _id),
        L("refund_amount", L_REFUND_AMOUNT, AMOUNT, _amount, 0.9, currency=True),
        L("refund_date", L_REFUND_DATE, DATE, _date),
        L("refund_date", L_PROCESSED_ON, DATE, _date, 0.8, when=REFUND_CONTEXT),
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
        L("policy_accepted", L_TERMS, CELL_VALUE, enum(YES_NO, max_words=4), 0.8),
        # prose (a refund is what the merchant says it did, never what a customer asks for)
        merchant_rule(
            pattern_rule(
                "refund_amount",
                rf"\b(?:(?:refund|credit|reimbursement)(?:\s+amount)?\s+(?:of|for|:|(?:confirmed|approved|issued|"
                rf"processed)\s*:?)|(?:credited|refunded|reimbursed|reversed|we(?:\s+have|'ve)?\s+"
                rf"(?:returned|sent|paid|transferred))(?:\s+you)?)\s+(?P<v>{AMOUNT})",
                _amount,
                currency=True,
            )
        ),
        merchant_rule(
            pattern_rule(
                "refund_amount",
                rf"(?P<v>{AMOUNT})\s+(?:was|has\s+been|have\s+been|were)\s+(?:returned|refunded|"
                r"credited|reimbursed|reversed|sent\s+back|paid\s+back)",
                _amount,
                0.75,
                currency=True,
                when=r"\b(?:was|been|were)\s+(?:returned|refunded|credited|reimbursed|reversed|"
                r"sent|paid\s+back)",
            )
        ),
        merchant_rule(
            pattern_rule(
                "refund_date",
                rf"\b(?:refund\w*|credit(?:ed\b|\b(?!\s+card))|reimburs\w*|revers\w*|(?:returned|"
                rf"went\s+back|sent\s+back|paid\s+back)\s+to\s+your\s+(?:card|account|bank)|we"
                rf"(?:\s+have|'ve)?\s+(?:returned|sent|paid|transferred)\b.{{0,30}}?\bback)\b"
                rf"(?:[^.\n]|\.(?=\d)){{0,60}}?\b(?:on|dated)\s+(?P<v>{DATE})",
                _date,
            )
        ),
        pattern_rule(
            "cancellation_date",
            rf"\b(?:cancell?\w*|unsubscrib\w*|terminat\w*|(?:ended|stopped|closed|quit)\s+(?:my|"
            rf"the|our)\s+(?:subscription|membership|plan|account|service)|(?:switched|turned)\s+"
            rf"off\s+(?:the\s+)?auto-?renew\w*|disabled\s+(?:the\s+)?auto-?renew\w*|opted\s+out|"
            rf"close\s+my\s+(?:account|subscription|membership|plan))"
            rf"\b[^.\n]{{0,40}}?\b"
            rf"(?:on|effective|as\s+of)"
            rf"\s+(?P<v>{DATE})",
            _date,
        ),
        pattern_rule(
            "cancellation_date",
            rf"\b(?:[Oo]n|[Aa]s\s+of)\s+(?P<v>{DATE}),?\s+(?:I|we)\s+(?:(?:\w+\s+){{0,2}}?(?:cancell?\w*|"
            r"terminated|ended|stopped|unsubscribed|closed)\b|(?:\w+\s+){0,3}?(?:end|stop|cancel|"
            r"terminate|close)\s+(?:the|my|our)\s+(?:subscription|membership|plan|account|service|"
            r"contract)\b)",
            _date,
            0.8,
        ),
        pattern_rule(
            "cancellation_date",
            rf"\b(?:subscription|membership|plan|account|contract|service)\s+(?:was|has\s+been)\s+"
            rf"(?:stopped|ended|cancell?ed|terminated|closed)\s+(?:on|as\s+of)\s+(?P<v>{DATE})",
            _date,
            0.8,
        ),
        merchant_rule(
            pattern_rule(
                "refund_date",
                rf"\b[Oo]n\s+(?P<v>{DATE}),?\s+(?:we\s+(?:have\s+)?(?:returned|refunded|credited|"
                r"reimbursed|reversed|sent|paid|issued|made\s+(?:the|a|your)\s+refund)\b|(?:a|the|"
                r"your)\s+(?:full\s+|partial\s+)?"
                r"refund\b|[^.\n]{0,30}?\b(?:was|were|has\s+been)\s+(?:refunded|credited|reimbursed|"
                r"returned)\b)",
                _date,
                0.8,
            )
        ),
        pattern_rule(
            "shipping_date",
            rf"^[ \t]*(?P<v>{DATE})[ \t]+(?:\d{{1,2}}:\d{{2}}[ \t]+)?(?:(?:shipment|parcel|"
            r"package|consignment|item|article|waybill)\s+(?:was\s+)?)?(?:picked\s+up|collected|"
            r"accepted|pick-?up\s+scan|"
            r"lodged(?:\s+(?:with|at)\s+(?:the\s+)?(?:carrier|courier|post\s+office))?|"
            r"received\s+(?:by\s+(?:the\s+)?(?:carrier|courier)|from\s+(?:the\s+)?(?:sender|"
            r"shipper|merchant|retailer|seller|vendor|store|shop))|picked\s+up\s+from\s+(?:the\s+)?"
            r"(?:sender|shipper|merchant|retailer|seller|vendor|store|shop)|handed\s+(?:over\s+)?to\s+"
            r"(?:the\s+)?(?:carrier|courier)|handed\s+in\b|taken\s+over\s+from\s+(?:the\s+)?(?:sender|"
            r"shipper|merchant|retailer|seller|vendor|store|shop))",
            _date,
            0.75,
        ),
        pattern_rule(
            "delivery_date",
            rf"^[ \t]*(?P<v>{DATE})[ \t]+(?:\d{{1,2}}:\d{{2}}[ \t]+)?(?:delivered\b|delivery\s+"
            r"scan\b)",
            _date,
            0.75,
        ),
        pattern_rule(
            "merchant_name",
            rf"^From:[ \t]*(?P<v>[^<\n]+?)[ \t]+{_DESK}(?:[ \t]+team)?[ \t]*(?:<|$)",
            _merchant,
            0.75,
        ),
        pattern_rule(
            "merchant_name",
            rf"^[ \t]*The[ \t]+(?P<v>[^\n]+?)(?:[ \t]+{_DESK})?[ \t]+team\b",
            _merchant,
            0.7,
        ),
        merchant_rule(phrase_rule("refund_issued", REFUND_PHRASES, 0.8)),
        phrase_rule("policy_accepted", POLICY_PHRASES, 0.75),
        phrase_rule("shipping_address_matches", ADDRESS_PHRASES, 0.75),
        pattern_rule(
            "shipping_address_matches",
            r"\b(?:ship(?:ping)?|deliver(?:y|ing))(?:[ \t-]*to)?[ \t]+address[ \t]*:?"
            r"[ \t]*(?P<v>(?:same[ \t]+as|identical[ \t]+to|(?:differs?|different)[ \t]+"
            r"(?:from|to))[ \t]+(?:the[ \t]+)?(?:billing|invoice|card(?:holder)?|payment)[ \t]+"
            r"address)",
            enum(YES_NO),
            0.85,
        ),
        letterhead_rule,
        keyed_rule,
        carrier_mention_rule,
        customer_rule("customer_acknowledged", ACK_PHRASES, 0.8),
    ]


# --- keyed pairs: any short label, classified by the words in it ---------------------------------
#
# The label rules above know label phrases; a vendor never seen writes its own ("IP used",
# "Arrival date", "Shipment state"). A *keyed pair* is a short label and a value cell on one
# line: ``Label: value``, ``Label   value`` (a gap of two spaces or more: table layouts) or, for
# values with a shape of their own (a date, an amount, an IP address, an identifier with a
# digit), ``Label value``. The label is classified by the words in it (a field's concept words,
# less the words that make it another field), and the value must parse as that field's kind.


@dataclass(frozen=True)
class KeyClass:
    """A field as a label's words name it: ``words`` (one must occur), ``unless`` (none may),
    ``also`` (this must occur too), the value ``pattern`` and its ``parse``; ``typed``: the value
    has a shape of its own, so a label without ``:`` or a gap before it is read too."""

    field: str
    words: re.Pattern[str]
    pattern: re.Pattern[str]
    parse: Parser
    unless: re.Pattern[str] | None = None
    also: re.Pattern[str] | None = None
    typed: bool = True


def _kw(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _v(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{pattern})", re.IGNORECASE)


_CELL_TEXT = r"[^\s|](?:[^\n|]*?[^\s|])?(?=[ \t]{2,}|[ \t]*\||[ \t]*$)"
#: Words that make a label's reference some other reference than the order's.
_OTHER_REF = (
    r"date|time|placed|total|amount|status|state|track\w*|shipment|parcel|package|consignment|"
    r"waybill|refund\w*|credit\w*|customer|account|transaction|payment|auth\w*|ticket|case|"
    r"returns?|items?|qty|quantity|tax|vat|subject|device|ip|member\w*|loyalty|points?|support|claim"
)
KEY_CLASSES: tuple[KeyClass, ...] = (
    KeyClass(
        "order_id",
        _kw(
            r"\b(?:order|purchase|booking|reservation|invoice|confirmation|reference|ref|receipt|"
            r"po|(?-i:SO))\b"
        ),
        _v(ID_VALUE),
        _order_id,
        unless=_kw(rf"\b(?:{_OTHER_REF})\b"),
    ),
    KeyClass(
        "order_id",
        _kw(
            rf"\b(?:{_ORDER_NOUN}|ref(?:erence)?)\b.*(?:\b(?:no|nr|number|num|id|code|"
            r"ref(?:erence)?)"
            r"\b|#)|\bref(?:erence)?\b|\b(?:sales|purchase)\s+order\b"
        ),
        _v(CODE_VALUE),
        _code,
        unless=_kw(rf"\b(?:{_OTHER_REF})\b"),
    ),
    KeyClass(
        "transaction_date",
        _kw(
            r"\b(?:order\w*|purchas\w*|transaction|booking|booked|invoice\w*|checkout|payment|"
            r"placed|bought|sale|paid|charged?|(?-i:SO))\b"
        ),
        _v(DATE_RE),
        _date,
        unless=_kw(
            r"\b(?:ship\w*|dispatch\w*|despatch\w*|deliver\w*|refund\w*|credit\w*|cancel\w*|back|"
            r"terminat\w*|end(?:ed)?|estimated|expected|due|next|renew\w*)\b"
        ),
    ),
    KeyClass(
        "shipping_date",
        _kw(
            r"\b(?:ship(?:ped|ping|ment)?|dispatch\w*|despatch\w*|sent|posted|mailed|handed|"
            r"picked|pick-?up|collected|collection|fulfil\w*|departed|lodged|shpmt|shipmt|"
            r"released\s+(?:to|for)|left\s+(?:the\s+|our\s+|"
            r"its\s+)?(?:warehouse|depot|facility|store|premises))\b"
        ),
        _v(DATE_RE),
        _date,
        unless=_kw(
            r"\b(?:deliver\w*|estimated|expected|scheduled|recipient|customer|refund\w*|"
            r"credit\w*|received|arriv\w*|back)\b"
        ),
    ),
    KeyClass(
        "delivery_date",
        _kw(
            r"\b(?:deliver(?:ed|y)|dlvry|dlvd|delv|arriv\w*|received|signed|drop(?:ped)?[\s-]?off|"
            r"handed\s+(?:over\s+)?"
            r"to\s+(?:the\s+)?(?:recipient|customer|consignee))\b"
        ),
        _v(DATE_RE),
        _date,
        unless=_kw(
            r"\b(?:estimated|expected|scheduled|planned|eta|est|anticipated|attempt\w*|"
            r"due)\b|\b(?:deliver\w*|arriv\w*)\s+by\b"
        ),
    ),
    KeyClass(
        "refund_date",
        _kw(
            r"\b(?:refund\w*|credit(?:ed)?|reimburs\w*|revers\w*|(?:paid|sent|given|put)\s+back)\b"
        ),
        _v(DATE_RE),
        _date,
    ),
    KeyClass(
        "cancellation_date",
        _kw(r"\b(?:cancel\w*|terminat\w*|ended|end|unsubscrib\w*|closed|stopped)\b"),
        _v(DATE_RE),
        _date,
    ),
    KeyClass(
        "amount",
        _kw(r"\b(?:total|amount|charged?|paid|price|sum|due|billed|balance|payment|value)\b"),
        _v(AMOUNT_RE),
        _amount,
        unless=_kw(
            rf"\b(?:refund\w*|credit\w*|reimburs\w*|{_NOT_INCLUDED}(?:tax|vat|gst)|shipping|"
            r"delivery|postage|discount|subtotal|sub|unit|line|items?|fees?|returned|deposit|tip|"
            r"net|ex|excl\w*|excluding|freight|each|date)\b"
        ),
    ),
    KeyClass(
        "refund_amount",
        _kw(r"\b(?:refund\w*|credit(?:ed)?|reimburs\w*|returned|(?:get|paid|given)\s+back)\b"),
        _v(AMOUNT_RE),
        _amount,
    ),
    KeyClass(
        "tracking_number",
        _kw(
            r"\b(?:track\w*|waybill|awb|consignment|con\s+note|(?:parcel|shipment|package|article)\s+"
            r"(?:id|no|number|ref\w*|#))\b"
        ),
        _v(ID_VALUE),
        _tracking,
        unless=_kw(r"\b(?:status|state|date|carrier|url|link|history|events?)\b"),
    ),
    KeyClass(
        "ip_address",
        _kw(r"\bip(?:v[46])?\b"),
        _v(IP_VALUE),
        _ip,
    ),
    KeyClass(
        "device_id",
        _kw(r"\b(?:device|fingerprint|browser|machine|hardware|handset)\b"),
        _v(ID_VALUE),
        _id,
        unless=_kw(r"\b(?:type|model|os|name)\b"),
    ),
    KeyClass(
        "carrier",
        _kw(
            r"\b(?:carrier|courier|logistics|(?:shipped|sent|delivered|transported|carried|"
            r"dispatched|despatched|shipping)\s+(?:by|with|via)|(?:delivery|shipping|postal|"
            r"parcel|transport)\s+(?:partner|service|company|provider|method|agent|firm))\b"
        ),
        _v(_CELL_TEXT),
        _carrier,
        unless=_kw(r"\b(?:track\w*|number|no|id|code|ref\w*|date|status|state|sign\w*)\b"),
        typed=False,
    ),
    KeyClass(
        "delivery_status",
        _kw(
            r"\b(?:status|state|progress|situation)\b|\b(?:consignment|shipment|parcel|package|tracking|"
            r"delivery)\s+update\b|\b(?:current|latest|last|most\s+recent)\s+(?:update|"
            r"event|scan|activity|checkpoint|stage)\b"
        ),
        _v(_CELL_TEXT),
        enum(DELIVERY_STATUS, max_words=8),
        unless=_kw(
            r"\b(?:refund\w*|credit\w*|subscription|account|payment|order|plan|membership|"
            r"policy|terms|avs|cvv|cvc)\b"
        ),
        typed=False,
    ),
    KeyClass(
        "shipping_address_matches",
        _kw(r"\b(?:ship\w*|deliver\w*)\b"),
        _v(_CELL_TEXT),
        enum(YES_NO, max_words=4),
        also=_kw(r"\b(?:bill\w*|invoice|card(?:holder'?s?)?)\b"),
        typed=False,
    ),
    KeyClass(
        "avs_result",
        _kw(
            r"\bavs\b|\baddress\s+verif(?:ication|\.)?(?!\w)|\bbilling\s+address\s+(?:check|verification|"
            r"match)\b|\b(?:street|address)\s*(?:/|and|&|\+)\s*(?:post\s*code|postal\s+code|zip)\b"
        ),
        _v(_CELL_TEXT),
        enum(AVS, max_words=8),
        unless=_kw(r"\b(?:ship\w*|deliver\w*)\b"),
        typed=False,
    ),
    KeyClass(
        "cvv_result",
        _kw(
            r"\b(?:cvv2?|cvc2?|cv2|ccv|cvd|cid|csc|security\s+code|card\s+verification|card\s+code|"
            r"verification\s+code)\b"
        ),
        _v(_CELL_TEXT),
        enum(CVV, max_words=8),
        typed=False,
    ),
    KeyClass(
        "policy_accepted",
        _kw(r"\b(?:terms|t\s*&\s*cs?|policy|conditions|consent\w*)\b"),
        _v(_CELL_TEXT),
        enum(YES_NO, max_words=4),
        typed=False,
    ),
    KeyClass(
        "refund_issued",
        _kw(r"\b(?:refund\w*|credit(?:ed)?|reimburs\w*)\b"),
        _v(_CELL_TEXT),
        enum(REFUND_STATUS, max_words=6),
        unless=_kw(r"\b(?:policy|terms|card|date|amount|total|value|sum|reason)\b"),
        typed=False,
    ),
    KeyClass(
        "merchant_name",
        _kw(
            r"\b(?:merchant|seller|vendor|retailer|supplier|(?:sold|billed|invoiced)\s+by|store|"
            r"shop|web-?shop|distributor|wholesaler|dealer|reseller)\b"
        ),
        _v(_CELL_TEXT),
        _merchant,
        unless=_kw(
            r"\b(?:id|number|no|code|category|address|phone|url|website|e-?mail|credit|ref\w*)\b"
        ),
        typed=False,
    ),
)
#: Labels that are e-mail headers or a person's words, not a form's fields.
_NOT_A_KEY = re.compile(
    r"^(?:from|to|cc|bcc|sent|date|subject|re)$|\b(?:i|we|me|my|it|they|he|she|us|was|were|has|"
    r"have|had|is|are|will|would|dear|hello|hi|thank\w*|please)\b",
    re.IGNORECASE,
)


#: Where a line holds a second ``Label: value`` pair: a ``|``, or a gap before a label (words
#: with single spaces, then a colon) after a value ("No.:  3638246    Created:  15 May 2024").
_PAIR_SPLIT = re.compile(
    r"\||(?<=[^\s:])[ \t]{2,}(?=[A-Za-z](?:[^:\n|\s]|[ \t](?![ \t])){0,40}:(?:[ \t]|$))"
)


def _segments(text: str) -> Iterator[tuple[int, str, tuple[int, str] | None]]:
    """Each line of ``text`` and each pair on it (``|``-separated parts, or ``Label: value``
    pairs side by side in a grid), with its offset; a line that is one part comes with the
    next non-empty line (where a label alone on its line has its value)."""
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    for i, (at, line) in enumerate(lines):
        cuts = [(m.start(), m.end()) for m in _PAIR_SPLIT.finditer(line)]
        bounds = [0, *(c for cut in cuts for c in cut), len(line)]
        parts = [
            (at + a, line[a:b]) for a, b in zip(bounds[::2], bounds[1::2], strict=True) if b > a
        ]
        below = lines[i + 1] if len(parts) == 1 and i + 1 < len(lines) else None
        for part_at, part in parts:
            yield part_at, part, below


#: A word that only separates a label from its value ("Order number - 123", "Status = ok").
_SEPARATOR_WORD = re.compile(r"[:=\-–—>→|]+|\.{2,}|…+")


def keyed_rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
    """Keyed pairs (see above): for each line (or ``|`` part of one), each way a leading label
    of up to seven words may end; the label's words pick the fields, the value after it must
    parse as one. ``Label: value`` and ``Label   value`` read at 0.8, ``Label value`` (typed
    values only, never in an e-mail's body: "Everything arrived on 13/05/24" is prose) and a
    label alone on its line with the value on the next at 0.7."""
    bodies = [(b.body, b.end) for b in mail_blocks(text)]
    for at, seg, below in _segments(text):
        lead = len(seg) - len(seg.lstrip())
        body = seg[lead:].rstrip()
        if not body[:1].isalpha():
            continue
        prose = any(a <= at < b for a, b in bodies)
        found: set[str] = set()
        for key_end, value_at, spaced in _keyed_splits(body):
            if spaced and prose:
                continue
            key = body[:key_end].strip(" \t.")
            if value_at < len(body):
                yield from _keyed(key, body[value_at:], at + lead + value_at, spaced, ctx, found)
            elif below is not None and not prose and not _CONTACT.search(below[1]):
                value = below[1].lstrip()
                start = below[0] + len(below[1]) - len(value)
                yield from _keyed(key, value, start, False, ctx, found, strength=0.7)


def _keyed(
    key: str,
    rest: str,
    rest_at: int,
    spaced: bool,
    ctx: RuleContext,
    found: set[str],
    strength: float | None = None,
) -> Iterator[Hit]:
    """The hits of one label/value split: each field the label's words name whose value
    parses at the start of ``rest`` (once per field and segment)."""
    if not key or len(key) > 60 or _NOT_A_KEY.search(key):
        return
    for kc in KEY_CLASSES:
        if kc.field in found or (spaced and not kc.typed) or not kc.words.search(key):
            continue
        if (kc.unless is not None and kc.unless.search(key)) or (
            kc.also is not None and not kc.also.search(key)
        ):
            continue
        v = kc.pattern.match(rest)
        if v is None:
            continue
        value = kc.parse(v.group(), ctx)
        if value is None:
            continue
        found.add(kc.field)
        start = rest_at + v.start()
        s = strength if strength is not None else (0.7 if spaced else 0.8)
        yield kc.field, value, start, start + len(v.group()), s
        if kc.field in ("amount", "refund_amount") and (got := parse_amount(v.group())) and got[1]:
            yield "currency", got[1], start, start + len(v.group()), s


def _keyed_splits(body: str) -> Iterator[tuple[int, int, bool]]:
    """Where a leading label of ``body`` may end: ``(end of the label, start of the value,
    whether only a single space separates them)``, shortest label first. A colon, a gap of two
    spaces or a separator word ends the label for good; a label that is the whole line (up
    to seven words) ends at the line's end (its value is on the next line)."""
    words = list(re.finditer(r"\S+", body))
    for i, w in enumerate(words[:7]):
        end = w.end()
        if i + 1 >= len(words):
            yield end - 1 if w.group().endswith(":") else end, len(body), False
            return
        after = words[i + 1].start()
        if w.group().endswith(":"):
            yield end - 1, after, False
            return
        if _SEPARATOR_WORD.fullmatch(words[i + 1].group()) and i + 2 < len(words):
            yield end, words[i + 2].start(), False
            return
        gap = body[end:after]
        if "\t" in gap or len(gap) >= 2:
            yield end, after, False
            return
        yield end, after, True


_CELL = re.compile(r"[^|\s](?:[^|\n]*?[^|\s])?(?=[ \t]{2,}|[ \t]*\||[ \t]*$)", re.MULTILINE)
#: Column headers of logs (history tables): their rows are not the case's record.
_LOG_HEADER = re.compile(
    r"(?:events?|time(?:[ \t]*\([^)]*\))?|timestamp|activity|history|location|depot|facility|"
    r"place)",
    re.IGNORECASE,
)


#: A page's non-blank lines: (offset, line, its cells as (offset in the line, text)).
Row = tuple[int, str, list[tuple[int, str]]]


def table_rows(text: str) -> list[Row]:
    """The page's non-blank lines split into cells once (both table readers walk them)."""
    return [
        (m.start(), m.group(), [(c.start(), c.group()) for c in _CELL.finditer(m.group())])
        for m in re.finditer(r"[^\n]*", text)
        if m.group().strip()
    ]


def _header_cells(heads: list[tuple[int, str]]) -> list[tuple[int, str]] | None:
    """``heads`` if they are a table's header row (two or more short cells, no digits, no
    colon, not a log's columns), else None."""
    if len(heads) < 2 or any(len(h) > 40 or re.search(r"\d", h) for _, h in heads):
        return None
    if any(_LOG_HEADER.fullmatch(h) or ":" in h for _, h in heads):
        return None  # a log's header, or "Label:  value" / "Y: match" cells (no headers)
    return heads


def header_row_pairs(rows: list[Row]) -> Iterator[tuple[str, str, int]]:
    """``(header, value, value offset)`` for each column of a one-row table: a line of two or
    more short header cells (no digits) followed by exactly one line with as many cells. A
    second such line makes it a list (e.g. a log) and it is skipped, unless that line is the
    next header row of a grid (header cells, one of them a field's label: label rows over value
    rows, "Order no.  Carrier" / "ORD-1  FedEx" / "Order date  Parcel ID" / ...)."""
    for i in range(len(rows) - 1):
        heads = _header_cells(rows[i][2])
        if heads is None:
            continue
        vat, _, cells = rows[i + 1]
        if len(cells) != len(heads):
            continue
        if i + 2 < len(rows) and len(rows[i + 2][2]) == len(heads):
            after = _header_cells(rows[i + 2][2])
            if after is None or not any(is_label(h) for _, h in after):
                continue
        for (_, h), (c_at, c) in zip(heads, cells, strict=True):
            yield h, c, vat + c_at


def column_pairs(rows: list[Row], taken: set[int]) -> Iterator[tuple[str, str, int]]:
    """``(label, value, value offset)`` for a block of labelled columns beside other text: a
    line with two or more cells that name fields (no digits, no colon) and, on the next line,
    a cell starting in the same column under each of them (an Indian tax invoice's header:
    "Invoice No.   Dated" over "BA/EXP/2024-25/8991   20-May-24", right of the issuer's
    address, which :func:`header_row_pairs` cannot take for a table: its lines hold the
    address's cells too). Not when the columns go on below their values (a log's rows); values in
    ``taken`` (read as a table already) are not repeated."""
    for i in range(len(rows) - 1):
        heads = [
            (at, h)
            for at, h in rows[i][2]
            if len(h) <= 40 and ":" not in h and not re.search(r"\d", h) and _names_a_field(h)
        ]
        if len(heads) < 2 or any(_LOG_HEADER.fullmatch(c) for _, c in rows[i][2]):
            continue  # (a log's header: "Time (UTC)  IP  Device  Event")
        vat, _, cells = rows[i + 1]
        below = {at: c for at, c in cells}
        after = {at: c for at, c in rows[i + 2][2]} if i + 2 < len(rows) else {}
        if sum(at in after and not is_label(after[at]) for at, _ in heads) >= 2:
            continue  # the columns go on below their first values: a log's rows, not a record
        for at, h in heads:
            for col in (at, at - 1, at + 1):
                value = below.get(col)
                if value is not None:
                    if vat + col not in taken and not is_label(value):
                        yield h, value, vat + col
                    break


#: A number standing alone (a value), not one inside a word ("3-digit code", "IPv4").
_NUMBER_WORD = re.compile(r"(?<![\w-])\d+(?![\w-])")


def _names_a_field(cell: str) -> bool:
    """A cell that is a field's label, or whose words name a field ("Order reception no.")."""
    return is_label(cell) or any(
        k.words.search(cell) and not (k.unless and k.unless.search(cell)) for k in KEY_CLASSES
    )


def caption_row_pairs(rows: list[Row]) -> Iterator[tuple[str, str, int, float]]:
    """``(caption, value, value offset, weight)`` where each value stands above its caption (an
    app's tiles: "ORD-1   2024/5/10" over "Order no.   Order placed"): a row of caption cells,
    one of them a field's label, under a row of as many cells that is no table header itself.
    Not when the row below has as many cells (then the captions head that row: a table),
    except a lone caption over a lone line, weighed less ("Carrier" over "UPS" reads down)."""
    for i in range(1, len(rows)):
        caps, values = rows[i][2], rows[i - 1][2]
        if not caps or len(values) != len(caps):
            continue
        if any(len(c) > 40 or ":" in c or _NUMBER_WORD.search(c) for _, c in caps):
            continue
        if len(caps) == 1:
            if not is_label(caps[0][1]):
                continue  # a lone caption is a whole label ("Seller shop"), not a title
            column = {len(line) - len(line.lstrip()) for _, line, _ in rows[max(0, i - 2) : i + 1]}
            if i >= 2 and len(rows[i - 2][2]) == 1 and len(column) == 1:
                continue  # one column of lone lines ("Order ref." / "7436762" / ...) reads down
        elif not any(_names_a_field(c) for _, c in caps):
            continue
        above = _header_cells(values)
        if above is not None and any(is_label(h) for _, h in above):
            continue  # the row above is a table's header row
        below = len(rows[i + 1][2]) if i + 1 < len(rows) else 0
        weight = 0.85
        if below == len(caps):
            if below > 1:
                continue
            weight = 0.6
        vat = rows[i - 1][0]
        for (_, c), (v_at, v) in zip(caps, values, strict=True):
            if not is_label(v):
                yield c, v, vat + v_at, weight


_CONTACT = re.compile(
    r"@|www\.|https?://|\.(?:com|net|org|example|shop|store|co)\b|(?<!\w)\+?\d[\d ()-]{7,}"
)


#: Words of a document's title ("Sales receipt", "Fraud screening report"), not of a name.
_TITLE_WORDS = re.compile(
    r"\b(?:receipt|invoice|confirmation|record|report|notice|note|statement|policy|log|history|"
    r"details|summary|agreement|correspondence|thread|memo|advice|trail|acknowledg\w*|terms|"
    r"tracking|shipment|dispatch|despatch|e-?mail|messages?|ticket|session|audit|screening|"
    r"refund|credit|proof|document)\b",
    re.IGNORECASE,
)
#: Words of a logistics company's name (a carrier heading its page is not the merchant).
_LOGISTICS = re.compile(
    r"\b(?:logistics|couriers?|freight|parcels?|post|postal|express|shipping|delivery|"
    r"deliveries|cargo|mail|transport|forwarding)\b",
    re.IGNORECASE,
)
#: A carrier's tracking page ...
_TRACKING_PAGE = re.compile(
    r"\b(?:track(?:ing)?\s*(?:&|and)\s*trace|proof\s+of\s+delivery|travel\s+history|scan\s+"
    r"history|tracking\s+(?:details|history|events|report|results?)|shipment\s+(?:tracking|"
    r"progress|history|events)|delivery\s+(?:record|report)|signed\s+by)\b",
    re.IGNORECASE,
)
#: ... and what only the merchant's own documents show.
_MERCHANT_PAGE = re.compile(
    r"\b(?:bill(?:ing)?[\s-]*(?:to|address)|sold\s+by|subtotal|unit\s+price|order\s+(?:date|"
    r"placed|total)|thank\s+you\s+for\s+(?:your\s+order|shopping)|checkout|your\s+order|"
    r"invoiced?\s+to|sold[\s-]+to)\b",
    re.IGNORECASE,
)
_MAIL_HEADER = re.compile(r"[ \t]*(?:From|To|Cc|Sent|Date|Subject):", re.IGNORECASE)


def _fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _echoed(name: str, contact: str) -> bool:
    """Whether ``name`` is the web or e-mail domain on ``contact`` (``Blue Boutique`` and
    ``www.blueboutique.example``): then it is surely the sender's own name."""
    key = _fold(name)
    for domain in re.findall(r"(?:@|www\.|https?://)([\w-]+)", contact, flags=re.IGNORECASE):
        d = _fold(domain)
        if len(d) >= 4 and len(key) >= 4 and (d in key or key in d):
            return True
    return False


def letterhead_rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
    """The page's letterhead: a name among its first three lines with a contact line (website,
    e-mail, phone) within the two lines below is the merchant's (a document title such as
    "INVOICE" above it is skipped). A known carrier's name heading the page is the carrier; on
    a tracking page (the carrier's record of a parcel, none of the merchant's order details)
    the name heading it is the carrier's, never the merchant's."""
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
    if _TRACKING_PAGE.search(text) and not _MERCHANT_PAGE.search(text):
        if len(name.split()) <= 4 and _is_name(name) and not _TITLE_WORDS.search(name):
            value = name.title() if name.isupper() and len(name) > 4 else name
            yield "carrier", value, offset, offset + len(name), 0.6
        return
    for i, (start, line) in enumerate(lines[:3]):
        name = line.strip()
        if _MAIL_HEADER.match(name) or _CONTACT.search(name):
            return  # an e-mail or a contact line comes first: no letterhead above it
        contact = next(
            (
                other
                for _, other in lines[i + 1 : i + 3]
                if _CONTACT.search(other) and not _MAIL_HEADER.match(other)
            ),
            None,
        )
        if contact is None or not _is_name(name) or known_carrier(name):
            continue
        echoed = _echoed(name, contact)
        if not echoed and (_TITLE_WORDS.search(name) or _LOGISTICS.search(name)):
            continue
        offset = start + line.index(name)
        value = name.title() if name.isupper() else name
        yield "merchant_name", value, offset, offset + len(name), 0.8 if echoed else 0.7
        return


#: A ``From:`` header of the merchant's side of a thread (its support desk or mailbox).
_MERCHANT_FROM = re.compile(
    r"support|team|service|care|help|no-?reply|orders?@|billing|sales|info@", re.IGNORECASE
)


@dataclass(frozen=True)
class MailBlock:
    """One message of an e-mail thread on a page: ``[start, end)``, where its body starts and
    whether the merchant sent it."""

    start: int
    end: int
    body: int
    merchant: bool


def mail_blocks(text: str) -> list[MailBlock]:
    """The messages of the thread on a page (from each ``From:`` line to the next); none when
    the page is no e-mail."""
    starts = [m.start() for m in re.finditer(r"(?im)^[ \t]*From:", text)]
    out = []
    for a, b in itertools.pairwise([*starts, len(text)]):
        block = text[a:b]
        header = block.split("\n", 1)[0]
        out.append(MailBlock(a, b, a + _body_start(block), bool(_MERCHANT_FROM.search(header))))
    return out


def customer_rule(name: str, phrases: Sequence[tuple[str, Any]], strength: float) -> Rule:
    """:func:`phrase_rule` over the customer's own messages of an e-mail thread (blocks whose
    ``From:`` is not the merchant's support address); nothing when there is no ``From:``
    line."""
    inner = phrase_rule(name, phrases, strength)

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        for block in mail_blocks(text):
            if block.merchant:
                continue
            for field_name, value, s, e, st in inner(text[block.body : block.end], ctx):
                yield field_name, value, block.body + s, block.body + e, st

    return rule


def merchant_rule(inner: Rule) -> Rule:
    """``inner`` over what the merchant says: the whole page, except the customer's messages
    of an e-mail thread (a customer asking "has the refund of $12 been sent?" states no
    refund)."""

    def rule(text: str, ctx: RuleContext) -> Iterator[Hit]:
        blocks = mail_blocks(text)
        if not blocks:
            yield from inner(text, ctx)
            return
        parts = [(0, blocks[0].start)] + [(b.start, b.end) for b in blocks if b.merchant]
        for a, b in parts:
            for field_name, value, s, e, st in inner(text[a:b], ctx):
                yield field_name, value, a + s, a + e, st

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
            # one vendor prints its dates one way: a date like 21/05/2024 settles 03/04/2024
            whole = "\n".join(page.text for page in doc.pages)
            dayfirst = infer_dayfirst(whole)
            if dayfirst is None:
                dayfirst = currency_dayfirst(whole)
            for page in doc.pages:
                ctx = RuleContext(
                    document=doc.name,
                    ocr=page.source == "ocr",
                    dayfirst=dayfirst,
                    page=page.text,
                )
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
        """Every rule's hits on the page, then on each header-row table cell pair and each
        caption under its value (read as ``header: value``, its spans mapped back to the value
        cell, strength x 0.85; a lone caption over a lone line, x 0.6: that line may be its
        value read down the page). Dot
        leaders between a label and its value (``ORDER NBR . . . . :  123``) are read as the
        gap they draw (blanked in place: every span stays the page's)."""
        text = _LEADER.sub(lambda m: re.sub(r"[.·…]", " ", m.group()), text)
        for rule in self.rules:
            yield from rule(text, ctx)
        rows = table_rows(text)
        tables = list(header_row_pairs(rows))
        taken = {at for _, _, at in tables}
        pairs = itertools.chain(
            ((h, v, at, 0.85) for h, v, at in tables),
            caption_row_pairs(rows),
            ((h, v, at, 0.8) for h, v, at in column_pairs(rows, taken)),
        )
        for header, value, at, factor in pairs:
            mini = f"{header}: {value}"
            base = len(header) + 2
            for rule in self.rules:
                for name, parsed, start, end, strength in rule(mini, ctx):
                    if start >= base:
                        yield name, parsed, at + start - base, at + end - base, strength * factor

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
