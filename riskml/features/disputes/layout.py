"""Learned label-value pairing over the page layout: the reading of a vendor no rule has seen.

Hand-written rules read the vendors they were written on almost perfectly and a new vendor's
layout poorly (blind pairs of template variants read 0.59-0.93 per document: captions under
their values, ruled boxes, app tiles). This module learns *which value on the page is which
field* from the page's geometry and words, so a new layout is read by what its labels say and
where they stand, not by a pattern someone wrote for it.

**Candidates** (:func:`document_candidates`): every value with a shape of its own on each page
(dates, amounts, identifiers, IP addresses, known carriers' names: parsed with the rules' own
parsers) and every text cell (a line's runs of text between gaps of two or more spaces, the
value part after a ``Label:`` or dot leaders), each with the words around it by where they
stand: before it in its cell (``P``), the cells left and right on its line (``L``, ``R``), the
cells above and below it in its column (``A``, ``B``; up to two lines away), the section heading
over it (``H``), any of ``P``/``L``/``A``/``B`` that holds no digits (``K``: a label wherever it
stands), the page's first lines (``T``: the document's title); and the value's own features (its
shape, its rank among the page's dates or amounts, how often it occurs in the document, whether
its line is a row of a table of such values). A text cell also says whether it holds digits,
how many of the document's web and e-mail addresses are its name (``Cedar Grocers`` and
``www.cedargrocers.example``: a shop's name is its domain's more often than not), which
non-blank line of the page it is on, and what the rules' value vocabularies would read in it
(``E:avs=match`` for ``"Y (full match)"``, wherever it stands). An identifier after a word in
the same run (``Commande 8209187``) is a candidate of its own. Words enter as themselves and
by their first four letters (``dispatch``/``dispatched``), hashed
(:class:`~sklearn.feature_extraction.FeatureHasher`).

**Heads** (:class:`LayoutModel`), one logistic regression per field: for the fields with a shape
(order id, amount, the five dates, carrier, tracking number, IP address, device id, refund
amount) the probability that a candidate of that kind is the field's value; for the merchant the
probability that a cell is its name; for the enumerations and booleans (AVS, CVV, delivery
status, address match, policy accepted, acknowledged, refund issued) a cell's class (``none`` or
one of the field's values), so the value words (``"Full match"``, ``"OK (code matched)"``) are
learned along with where they stand. The currency is the chosen amount's. Labels for the shaped
fields and the merchant are the ground truth itself (a candidate is positive when its value is
the field's true value); for the enumerations, the cell the rules read the true value from
(on development variants, where they are right 99.8 % of the time).

**Combination** (:class:`LayoutExtractor`): the rules' answer, with the model's where the rules
found nothing (the model's best reading at probability >= :attr:`LayoutExtractor.threshold`,
0.3) or where the model disagrees at probability >= :attr:`LayoutExtractor.override` (0.5) and
the rules are less than 0.99 sure. Chosen on the ten blind pairs 8-9 ... 26-27 with each pair
read by the rules as they were when it was blind (the commit that added it) and by a model
trained without it: see ``benchmarks/extraction_layout.py`` and ``docs/disputes.md``.

The shipped model (:data:`MODEL_FILE`) is trained on the development variants only
(``python -m riskml.features.disputes.layout --out FILE``, deterministic); its coefficients are
stored sparse in an ``.npz`` (no pickle).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from riskml.data.disputes.evidence import (
    Evidence,
    ExtractedField,
    ExtractionResult,
    Provenance,
    normalise,
    values_match,
)
from riskml.features.disputes import extract as rules_mod
from riskml.features.disputes.text import DocumentText, extract_texts

#: Candidate kinds with a shape of their own -> the fields they may be.
SHAPED: dict[str, tuple[str, ...]] = {
    "date": (
        "transaction_date",
        "shipping_date",
        "delivery_date",
        "refund_date",
        "cancellation_date",
    ),
    "amount": ("amount", "refund_amount"),
    "id": ("order_id", "tracking_number", "device_id"),
    "ip": ("ip_address",),
    "carrier": ("carrier",),
}
#: Fields read as a class of a text cell.
CELL_CLASSES: tuple[str, ...] = (
    "avs_result",
    "cvv_result",
    "delivery_status",
    "shipping_address_matches",
    "policy_accepted",
    "customer_acknowledged",
    "refund_issued",
)
#: Bump when candidates or features change: a model of another version is refused.
FEATURES_VERSION = 2
N_FEATURES = 2**18
MODEL_FILE = Path(__file__).with_name("layout_model.npz")

#: A line's cells: runs of text between gaps of two or more spaces or ``|`` (the rules' own).
_CELL = rules_mod._CELL
_IP = re.compile(r"(?<![\w.:])(?:" + rules_mod.IP_VALUE + r")(?![\w.:])")
#: An identifier: a token with a digit, or digit groups ("1Z 999 AA1 01"), not in a word.
_TOKEN = re.compile(
    r"(?<![\w@./-])#?[A-Za-z0-9](?:[A-Za-z0-9_/.\-]*[A-Za-z0-9])?"
    r"(?:[ ](?=[A-Z0-9]*\d)[A-Z0-9]{2,}(?![\w.@-]))*(?![\w@])"
)
_WORD = re.compile(r"[^\W\d_]+")
_PHONE = re.compile(
    r"(?<![\w-])\+\d[\d ()-]{7,}\d|\(\d{3}\)[ ]?\d{3}-\d{4}"
    r"|(?<![\w-])\d{3}[ .-]\d{3}[ .-]\d{4}(?![\w-])"
)
#: Values with an identifier's characters that are something else (the rules' list without
#: phone numbers: long digit runs are tracking numbers here, phone numbers are masked above).
_NOT_ID = re.compile(
    r"\d{1,3}(?:[.,]\d{3})*[.,]\d{2}|(?:\d{1,3}\.){3}\d{1,3}|.*@.*|(?:www\.|https?://).*"
)
#: A cell's label part: up to a colon or dot leaders.
_LABEL_PART = re.compile(r"^(.{2,60}?)(?:[ \t]*:[ \t]*|[ \t]*(?:[.·…_][ \t]?){2,}:?[ \t]*)(?=\S)")


@dataclass(frozen=True)
class LayoutCandidate:
    """A value on a page (``kind``: a :data:`SHAPED` kind or ``"cell"``) and its features."""

    kind: str
    value: Any
    page: int
    start: int
    end: int
    text: str
    features: tuple[str, ...] = field(repr=False)


# --- candidates ----------------------------------------------------------------------------------

#: A page line: (offset, text, its cells as (start, end, text) within the line).
_Line = tuple[int, str, list[tuple[int, int, str]]]


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    pos = 0
    for line in text.split("\n"):
        out.append((pos, line, [(m.start(), m.end(), m.group()) for m in _CELL.finditer(line)]))
        pos += len(line) + 1
    return out


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


def _cell_near(lines: list[_Line], i: int, c0: int, c1: int, step: int) -> str:
    """The cell overlapping columns ``c0:c1`` most on the nearest of the next two non-blank
    lines in direction ``step`` (-1 above, +1 below); "" if none."""
    j, seen = i + step, 0
    while 0 <= j < len(lines) and seen < 2:
        cells = lines[j][2]
        if cells:
            seen += 1
            best, text = 0, ""
            for s, e, t in cells:
                overlap = min(c1, e) - max(c0, s)
                if overlap > best:
                    best, text = overlap, t
            if text:
                return text
        j += step
    return ""


def _context(
    lines: list[_Line], i: int, ci: int, cell: tuple[int, int, str], a: int, b: int
) -> list[str]:
    """Features of the words around columns ``a:b`` of line ``i`` (in cell ``ci``)."""
    line, cells = lines[i][1], lines[i][2]
    section = ""
    for j in range(i - 1, max(-1, i - 12), -1):
        row = lines[j][2]
        if len(row) == 1 and not _has_digit(row[0][2]) and len(row[0][2].split()) <= 5:
            section = row[0][2]
            break
    sources = {
        "P": line[cell[0] : a],
        "S2": line[b : cell[1]],
        "L": cells[ci - 1][2] if ci > 0 else "",
        "R": cells[ci + 1][2] if 0 <= ci < len(cells) - 1 else "",
        "A": _cell_near(lines, i, cell[0], cell[1], -1),
        "B": _cell_near(lines, i, cell[0], cell[1], +1),
        "H": section,
    }
    out: list[str] = []
    label_words: list[str] = []
    for name, text in sources.items():
        words = _words(text)[:8]
        if not words:
            out.append(f"{name}:none")
            continue
        if _has_digit(text):
            out.append(f"{name}:digits")
        elif name in ("P", "L", "A", "B"):
            label_words += words
        for w in words:
            out += (f"{name}={w}", f"{name}~{w[:4]}")
    for w in label_words:
        out += (f"K={w}", f"K~{w[:4]}")
    if not label_words:
        out.append("K:none")
    return out


def _key(kind: str, value: Any) -> Any:
    if kind == "amount":
        return round(value[0], 2)
    if kind == "id":
        return re.sub(r"\s+", "", value.lower()).lstrip("#")
    return value


def _spans(text: str, dayfirst: bool | None, ocr: bool) -> list[tuple[int, int, str, Any]]:
    """The page's shaped values: ``(start, end, kind, value)``; each character in one at most
    (IP addresses, then dates, amounts, carriers; phone numbers are nothing)."""
    spans: list[tuple[int, int, str, Any]] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    def add(s: int, e: int, kind: str, value: Any) -> None:
        spans.append((s, e, kind, value))
        taken.append((s, e))

    for m in _IP.finditer(text):
        ip = rules_mod.parse_ip(m.group())
        if ip and ("." in ip or m.group().count(":") >= 3):
            add(m.start(), m.end(), "ip", ip)
    for m in rules_mod._DATE_PATTERN().finditer(text):
        if free(m.start(), m.end()) and (d := rules_mod.parse_date(m.group(), dayfirst)):
            add(m.start(), m.end(), "date", d)
    for m in rules_mod._AMOUNT_PATTERN().finditer(text):
        got = rules_mod.parse_amount(m.group()) if free(m.start(), m.end()) else None
        if got and got[0] >= 0:
            add(m.start(), m.end(), "amount", got)
    for m in rules_mod._CARRIER_NAMES.finditer(text):
        if free(m.start(), m.end()) and (carrier := rules_mod.known_carrier(m.group())):
            add(m.start(), m.end(), "carrier", carrier)
    for m in _PHONE.finditer(text):
        if free(m.start(), m.end()) and "\n" not in m.group():
            taken.append((m.start(), m.end()))
    for m in _TOKEN.finditer(text):
        s, e, raw = m.start(), m.end(), m.group()
        if not _has_digit(raw) or len(raw.replace(" ", "")) < 4 or not free(s, e):
            continue
        parts = [(s, e)]
        if " " in raw:
            first = raw.split(" ")[0]
            parts.append((s, s + len(first)))
            if not _has_digit(first):  # "Commande 8209187": the identifier after the word
                parts.append((s + len(first) + 1, e))
        for part_start, part_end in parts:
            value = rules_mod.clean_id(text[part_start:part_end])
            if value and ocr:
                value = rules_mod.fix_id(value)
            if (
                value
                and len(value) >= 4
                and _has_digit(value)
                and not re.fullmatch(r"(?:19|20)\d{2}", value)
                and not _NOT_ID.fullmatch(value)
            ):
                spans.append((part_start, part_end, "id", value))
    return spans


def _shape(value: str) -> str:
    s = re.sub(r"[A-Z]", "A", re.sub(r"[a-z]", "a", re.sub(r"\d", "9", value)))
    return re.sub(r"(.)\1+", r"\1+", s)[:12]


#: The rules' value vocabularies: what each would read in a cell (the whole cell, not only its
#: first run as a rule reads a value) is a feature of the cell wherever it stands, so a new
#: vendor's wording the rules know is read by the model next to a label the rules do not know.
_VOCABULARIES: dict[str, rules_mod.Vocabulary] = {
    name: rules_mod.compile_vocabulary(table)
    for name, table in (
        ("avs", rules_mod.AVS),
        ("cvv", rules_mod.CVV),
        ("status", rules_mod.DELIVERY_STATUS),
        ("refund", rules_mod.REFUND_STATUS),
        ("yesno", rules_mod.YES_NO),
    )
}


def _vocabulary(value: str) -> list[str]:
    return [
        f"E:{name}={v}"
        for name, vocabulary in _VOCABULARIES.items()
        if (v := rules_mod.vocabulary_value(vocabulary, value)) is not None
    ]


#: A web address or an e-mail's domain (``www.cedar-grocers.example``,
#: ``support@cedargrocers.example``). A bare host name (``global.komorebi-market.example``) is
#: not taken: it is a marketplace's or a platform's as often as the shop's (leave-one-pair-out,
#: counting bare host names too read the app tiles 20-21 at 0.880 against 0.931).
_DOMAIN = re.compile(r"(?:@|\bwww\.|\bhttps?://)((?:[\w-]+\.)*[\w-]+)", re.IGNORECASE)


def _domains(text: str) -> Counter[str]:
    """The web and e-mail domain names in ``text``, letters only (``cedargrocers``), by how many
    addresses name them: a shop's name is its domain's more often than not."""
    out: Counter[str] = Counter()
    for m in _DOMAIN.finditer(text):
        for label in m.group(1).lower().split("."):
            letters = re.sub(r"[^a-z]", "", label)
            if len(letters) >= 4 and letters not in ("example", "mail"):
                out[letters] += 1
    return out


def _page_candidates(
    text: str,
    page: int,
    spans: list[tuple[int, int, str, Any]],
    title: list[str],
    counts: Counter[tuple[str, Any]],
    domains: Counter[str],
) -> Iterator[LayoutCandidate]:
    lines = _lines(text)
    rank = list(itertools.accumulate(int(bool(cells)) for _, _, cells in lines))
    starts = [line[0] for line in lines]
    by_kind: dict[str, list[tuple[int, int, str, Any]]] = defaultdict(list)
    for span in spans:
        by_kind[span[2]].append(span)
    titled = [f"T={w}" for w in title]
    for s, e, kind, value in spans:
        i = bisect.bisect_right(starts, s) - 1
        pos, line, cells = lines[i]
        a, b = s - pos, e - pos
        ci, cell = -1, (a, b, line[a:b])
        for k, (cs, ce, ct) in enumerate(cells):
            if cs <= a < ce or cs < b <= ce:
                ci, cell = k, (cs, ce, ct)
                break
        feats = [
            f"kind={kind}",
            f"ncells={min(len(cells), 5)}",
            *_context(lines, i, ci, cell, a, b),
        ]
        same = sum(1 for sp in by_kind[kind] if pos <= sp[0] < pos + len(line))
        feats += (
            f"rowsame={min(same, 4)}",
            f"rowpos={'first' if ci == 0 else 'later'}",
            f"count={min(counts[(kind, _key(kind, value))], 4)}",
        )
        if kind == "date":
            dates = sorted({sp[3] for sp in by_kind["date"]})
            r = dates.index(value)
            feats.append(f"drank={'first' if r == 0 else 'last' if r == len(dates) - 1 else 'mid'}")
            feats.append(f"ndates={min(len(dates), 5)}")
        elif kind == "amount":
            amounts = sorted({sp[3][0] for sp in by_kind["amount"]})
            r = amounts.index(value[0])
            feats.append(f"arank={'max' if r == len(amounts) - 1 else 'min' if r == 0 else 'mid'}")
            feats += (f"cur={value[1] is not None}", f"zero={value[0] == 0}")
        elif kind == "id":
            feats += (
                f"shape={_shape(value)}",
                f"len={min(len(value) // 3, 8)}",
                f"alpha={any(c.isalpha() for c in value)}",
                f"hash={text[s] == '#'}",
            )
        yield LayoutCandidate(kind, value, page, s, e, text[s:e], tuple(feats + titled))
    for i, (pos, line, cells) in enumerate(lines):
        for ci, (cs, ce, ct) in enumerate(cells):
            m = _LABEL_PART.match(ct)
            a = cs + (m.end() if m else 0)
            value = line[a:ce]
            words = _words(value)
            if not words or len(words) > 25:
                continue
            letters = "".join(words)
            feats = [
                "kind=cell",
                f"ncells={min(len(cells), 5)}",
                f"vlen={min(len(words), 6)}",
                f"split={m is not None}",
                f"vdigits={_has_digit(value)}",
                f"domain={min(domains[letters], 2) if letters in domains else 0}",
                f"linerank={min(rank[i], 6)}",
                *_context(lines, i, ci, (cs, ce, ct), a, ce),
            ]
            feats += _vocabulary(value)
            for w in words:
                feats += (f"V={w}", f"V~{w[:4]}")
            feats += [f"VV={w1}_{w2}" for w1, w2 in itertools.pairwise(words)]
            yield LayoutCandidate(
                "cell", value, page, pos + a, pos + ce, value, tuple(feats + titled)
            )


def document_candidates(doc: DocumentText) -> list[LayoutCandidate]:
    """Every candidate of every page of ``doc`` (module docstring)."""
    whole = "\n".join(page.text for page in doc.pages)
    dayfirst = rules_mod.infer_dayfirst(whole)
    if dayfirst is None:
        dayfirst = rules_mod.currency_dayfirst(whole)
    first = [line for line in whole.split("\n") if line.strip()][:6]
    title = sorted({w for line in first for w in _words(line) if len(w) > 2})[:30]
    pages = [(p, _spans(p.text, dayfirst, p.source == "ocr")) for p in doc.pages]
    counts: Counter[tuple[str, Any]] = Counter(
        (kind, _key(kind, value)) for _, spans in pages for _, _, kind, value in spans
    )
    domains = _domains(whole)
    out: list[LayoutCandidate] = []
    for page, spans in pages:
        out += _page_candidates(page.text, page.number, spans, title, counts, domains)
    return out


# --- the model -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _hasher() -> Any:
    from sklearn.feature_extraction import FeatureHasher

    return FeatureHasher(n_features=N_FEATURES, input_type="string", alternate_sign=False)


def _matrix(candidates: Sequence[LayoutCandidate]) -> Any:
    return _hasher().transform(c.features for c in candidates)


def _value(name: str, c: LayoutCandidate) -> Any:
    if c.kind == "amount":
        return c.value[0]
    if c.kind == "cell":
        return c.value.strip()
    return c.value


@dataclass(frozen=True)
class Reading:
    """The model's best reading of one field in one document."""

    field: str
    value: Any
    probability: float
    document: str
    candidate: LayoutCandidate


@dataclass
class _Head:
    """One field's logistic regression over one candidate kind: its coefficients as a sparse
    ``(features, k)`` matrix (k = 1 for a yes/no head, one column per class otherwise), or a
    constant probability (every candidate of the kind was the field's value in training)."""

    kind: str
    classes: tuple[str, ...] = ()
    weights: Any = None  # scipy.sparse.csr_matrix
    intercept: np.ndarray | None = None
    constant: float | None = None

    @classmethod
    def of(cls, kind: str, estimator: Any) -> _Head:
        """From a fitted :class:`~sklearn.linear_model.LogisticRegression`."""
        from scipy import sparse

        return cls(
            kind,
            tuple(str(k) for k in estimator.classes_),
            sparse.csr_matrix(np.asarray(estimator.coef_, dtype=np.float64).T),
            np.asarray(estimator.intercept_, dtype=np.float64),
        )

    def proba(self, xw: np.ndarray | None, n: int) -> np.ndarray:
        """Per candidate (``n`` of them) the probability of each class (``[P(no), P(yes)]``
        for a yes/no head) from ``xw``, the product of their features and :attr:`weights`
        (None for a constant head): the regression's own ``predict_proba``, computed on the
        sparse weights (sklearn's path makes the dense ``features x k`` matrix contiguous on
        every call)."""
        from scipy.special import expit, softmax

        if self.constant is not None:
            return np.full((n, 2), [1.0 - self.constant, self.constant])
        assert xw is not None, "a head with weights needs the product"
        z = xw + self.intercept
        if z.shape[1] == 1:
            p = expit(z[:, 0])
            return np.column_stack([1.0 - p, p])
        return np.asarray(softmax(z, axis=1))


#: Where the rules read a field: (page, start, end) of each span.
_Silver = dict[str, list[tuple[int, int, int]]]


def _silver(rules: Any, doc: DocumentText, truth: Evidence) -> _Silver:
    """Per cell-class field the rules read right: the spans they read it from."""
    result = rules.extract([doc])
    out: _Silver = {}
    for name in CELL_CLASSES:
        got = result.fields.get(name)
        if got is not None and got.value == getattr(truth, name):
            out[name] = [(p.page, p.start, p.end) for p in got.provenance]
    return out


def _cell_class(c: LayoutCandidate, name: str, truth: Evidence, silver: _Silver) -> str | None:
    """Training class of cell ``c`` for ``name``: the true value where the rules read it,
    ``"none"`` elsewhere, None (not used) in a document whose true value the rules missed."""
    value = getattr(truth, name)
    if value is None:
        return "none"
    if name not in silver:
        return None
    if any(
        page == c.page and (c.start <= a <= c.end or a <= c.start < b)
        for page, a, b in silver[name]
    ):
        return str(value)
    return "none"


class LayoutModel:
    """Per-field heads over :func:`document_candidates` (module docstring)."""

    def __init__(self, heads: dict[str, _Head]) -> None:
        from scipy import sparse

        self.heads = heads
        # per kind, every head's weights side by side: one product per kind and document
        self._stacked: dict[str, tuple[Any, dict[str, slice]]] = {}
        for kind in {h.kind for h in heads.values() if h.weights is not None}:
            named = [(n, h) for n, h in heads.items() if h.kind == kind and h.weights is not None]
            columns, at = {}, 0
            for n, h in named:
                columns[n] = slice(at, at + h.weights.shape[1])
                at += h.weights.shape[1]
            stacked = sparse.hstack([h.weights for _, h in named], format="csr")
            self._stacked[kind] = (stacked, columns)

    @classmethod
    def fit(
        cls, examples: Iterable[tuple[DocumentText, Evidence]], *, c: float = 0.5
    ) -> LayoutModel:
        """Train on ``(document, its true evidence)`` pairs (clean development documents)."""
        from sklearn.linear_model import LogisticRegression

        rules = rules_mod.RulesExtractor()
        rows = [
            (doc, truth, document_candidates(doc), _silver(rules, doc, truth))
            for doc, truth in examples
        ]
        heads: dict[str, _Head] = {}
        for kind, names in SHAPED.items():
            pairs = [
                (cand, truth) for _, truth, cands, _ in rows for cand in cands if cand.kind == kind
            ]
            if not pairs:
                continue
            x = _matrix([cand for cand, _ in pairs])
            for name in names:
                y = np.array(
                    [
                        int(
                            getattr(t, name) is not None
                            and values_match(name, _value(name, cand), getattr(t, name))
                        )
                        for cand, t in pairs
                    ]
                )
                if y.sum() == 0:
                    continue
                if y.min() == 1:
                    heads[name] = _Head(kind, constant=1.0)
                    continue
                heads[name] = _Head.of(kind, LogisticRegression(C=c, max_iter=2000).fit(x, y))
        cells = [
            (cand, truth, silver)
            for _, truth, cands, silver in rows
            for cand in cands
            if cand.kind == "cell"
        ]
        x = _matrix([cand for cand, _, _ in cells])
        for name in CELL_CLASSES:
            labels = [_cell_class(cand, name, truth, silver) for cand, truth, silver in cells]
            keep = np.array([label is not None for label in labels])
            y = np.array([label for label in labels if label is not None])
            if len(set(y)) >= 2:
                fitted = LogisticRegression(C=c, max_iter=3000).fit(x[keep], y)
                heads[name] = _Head.of("cell", fitted)
        y = np.array(
            [
                int(
                    truth.merchant_name is not None
                    and normalise("merchant_name", cand.value)
                    == normalise("merchant_name", truth.merchant_name)
                )
                for cand, truth, _ in cells
            ]
        )
        if 0 < y.sum() < len(y):
            fitted = LogisticRegression(C=c, max_iter=3000).fit(x, y)
            heads["merchant_name"] = _Head.of("cell", fitted)
        return cls(heads)

    def read(self, doc: DocumentText) -> dict[str, Reading]:
        """Per field the model can read in ``doc``: its best reading (any probability)."""
        return self.read_candidates(doc.name, document_candidates(doc))

    def read_candidates(
        self, document: str, candidates: Sequence[LayoutCandidate]
    ) -> dict[str, Reading]:
        by_kind: dict[str, list[LayoutCandidate]] = defaultdict(list)
        for cand in candidates:
            by_kind[cand.kind].append(cand)
        scores: dict[str, np.ndarray] = {}
        for kind, of_kind in by_kind.items():
            if kind in self._stacked:
                scores[kind] = np.asarray((_matrix(of_kind) @ self._stacked[kind][0]).todense())
        out: dict[str, Reading] = {}
        for name, head in self.heads.items():
            cands = by_kind.get(head.kind)
            if not cands:
                continue
            xw = None
            if head.constant is None:
                xw = scores[head.kind][:, self._stacked[head.kind][1][name]]
            proba = head.proba(xw, len(cands))
            if name in CELL_CLASSES:
                classes = list(head.classes)
                proba = proba.copy()
                proba[:, classes.index("none")] = -1.0
                i = int(np.argmax(proba.max(axis=1)))
                j = int(np.argmax(proba[i]))
                # the class as the schema reads it ("True" is a boolean field's true)
                value = getattr(Evidence.model_validate({name: classes[j]}), name)
                out[name] = Reading(name, value, float(proba[i, j]), document, cands[i])
                continue
            p = proba[:, 1]
            i = int(np.argmax(p))
            out[name] = Reading(name, _value(name, cands[i]), float(p[i]), document, cands[i])
        amount = out.get("amount")
        if amount is not None and amount.candidate.value[1]:
            out["currency"] = Reading(
                "currency",
                amount.candidate.value[1],
                amount.probability,
                document,
                amount.candidate,
            )
        return out

    # --- persistence: sparse coefficients in an .npz, no pickle ---

    def save(self, path: Path | str, *, prune: float = 1e-3) -> Path:
        """Write the heads to ``path`` (``.npz``); weights below ``prune`` in magnitude are
        dropped (at 1e-3: half of them, a third of the file; 4 of 14,342 readings on development
        documents differ, near ties; the largest change of a probability 0.0004)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"version": np.array([FEATURES_VERSION, N_FEATURES])}
        names = []
        for name, head in self.heads.items():
            names.append(name)
            arrays[f"{name}.kind"] = np.array(head.kind)
            if head.constant is not None:
                arrays[f"{name}.constant"] = np.array(head.constant)
                continue
            coef = head.weights.T.toarray().astype(np.float32)
            rows, cols = np.nonzero(np.abs(coef) >= prune)
            arrays[f"{name}.rows"] = rows.astype(np.int16)
            arrays[f"{name}.cols"] = cols.astype(np.int32)
            arrays[f"{name}.values"] = coef[rows, cols]
            arrays[f"{name}.shape"] = np.array(coef.shape)
            arrays[f"{name}.intercept"] = np.asarray(head.intercept, dtype=np.float64)
            arrays[f"{name}.classes"] = np.array(list(head.classes))
        arrays["names"] = np.array(names)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: Path | str) -> LayoutModel:
        from scipy import sparse

        with np.load(Path(path), allow_pickle=False) as data:
            version, n_features = (int(v) for v in data["version"])
            if version != FEATURES_VERSION or n_features != N_FEATURES:
                raise ValueError(
                    f"{path}: a layout model of features version {version} ({n_features} "
                    f"features); this code reads version {FEATURES_VERSION} ({N_FEATURES}): "
                    "retrain it with `python -m riskml.features.disputes.layout --out FILE`"
                )
            heads: dict[str, _Head] = {}
            for name in (str(n) for n in data["names"]):
                kind = str(data[f"{name}.kind"])
                if f"{name}.constant" in data:
                    heads[name] = _Head(kind, constant=float(data[f"{name}.constant"]))
                    continue
                k, n = (int(v) for v in data[f"{name}.shape"])
                weights = sparse.csr_matrix(
                    (
                        data[f"{name}.values"].astype(np.float64),
                        (data[f"{name}.cols"].astype(np.int64), data[f"{name}.rows"]),
                    ),
                    shape=(n, k),
                )
                heads[name] = _Head(
                    kind,
                    tuple(str(c) for c in data[f"{name}.classes"]),
                    weights,
                    np.asarray(data[f"{name}.intercept"], dtype=np.float64),
                )
        return cls(heads)


@lru_cache(maxsize=1)
def default_model() -> LayoutModel:
    """The shipped model (:data:`MODEL_FILE`), loaded once per process."""
    if not MODEL_FILE.exists():
        raise FileNotFoundError(
            f"{MODEL_FILE} is missing; train it with "
            f"`python -m riskml.features.disputes.layout --out {MODEL_FILE}`"
        )
    return LayoutModel.load(MODEL_FILE)


# --- the extractor -------------------------------------------------------------------------------


@dataclass
class LayoutExtractor:
    """The rules, and the layout model where they found nothing or are less sure than it is."""

    rules: rules_mod.RulesExtractor = field(default_factory=rules_mod.RulesExtractor)
    #: The shipped model unless one is given (loaded when the extractor is made, once a process).
    model: LayoutModel = field(default_factory=default_model)
    #: The model's reading fills a field the rules left empty from this probability on.
    threshold: float = 0.3
    #: The model's reading replaces the rules' from this probability on, where the rules are
    #: less sure than :attr:`sure` (chosen on ten earlier blind pairs: 0.5 reads them at 0.956
    #: on average, 0.9 at 0.952; ``sure`` 0.99 or never, the same to 0.0003).
    override: float = 0.5
    sure: float = 0.99
    name: str = "layout"

    def extract(self, documents: Sequence[Path | str | DocumentText]) -> ExtractionResult:
        texts = extract_texts(documents)
        return self.combine(texts, self.rules.extract(texts), [self.model.read(d) for d in texts])

    def combine(
        self,
        texts: Sequence[DocumentText],
        result: ExtractionResult,
        readings: Sequence[dict[str, Reading]],
    ) -> ExtractionResult:
        """The rules' ``result`` on ``texts`` and the model's ``readings`` of each, combined
        (the class docstring; a benchmark's grid combines one reading many ways)."""
        best: dict[str, tuple[Reading, DocumentText]] = {}
        for doc, read in zip(texts, readings, strict=True):
            for name, reading in read.items():
                if name not in best or reading.probability > best[name][0].probability:
                    best[name] = (reading, doc)
        values = result.evidence.model_dump()
        fields = dict(result.fields)
        warnings = list(result.warnings)
        for name, (reading, doc) in best.items():
            current, sure = values.get(name), fields.get(name)
            take = (current is None and reading.probability >= self.threshold) or (
                current is not None
                and reading.probability >= self.override
                and (sure is None or sure.confidence < self.sure)
                and not values_match(name, reading.value, current)
            )
            if not take:
                continue
            try:  # the schema checks the model's reading as it checks the rules'
                value = getattr(Evidence.model_validate({name: reading.value}), name)
            except ValidationError as exc:
                warnings.append(
                    f"{name}: the layout model's reading {reading.value!r} is not a valid value "
                    f"({exc.errors()[0]['msg']}); kept the rules' ({current!r})"
                )
                continue
            values[name] = value
            c = reading.candidate
            fields[name] = ExtractedField(
                value=value,
                confidence=round(min(1.0, reading.probability), 4),
                provenance=[
                    Provenance(
                        document=doc.name,
                        page=c.page,
                        start=c.start,
                        end=c.end,
                        text=doc.page(c.page).text[c.start : c.end],
                    )
                ],
            )
        return ExtractionResult(
            evidence=Evidence(**values),
            fields=fields,
            extractor=self.name,
            documents=result.documents,
            warnings=warnings,
        )


# --- training ------------------------------------------------------------------------------------


def training_examples(
    root: Path, *, n_disputes: int = 900, seed: int = 2024
) -> list[tuple[DocumentText, Evidence, int]]:
    """Clean documents of the development variants, their truth and their variant (a simulated
    set under ``root``): what the shipped model is trained on."""
    from riskml.data.disputes.documents import DEVELOPMENT_VARIANTS
    from riskml.data.disputes.simulator import DisputeConfig, simulate_disputes
    from riskml.data.simulator import SimulationConfig
    from riskml.features.disputes.text import extract_text

    config = DisputeConfig(
        seed=seed,
        n_disputes=n_disputes,
        scanned_share=0.0,
        variants=DEVELOPMENT_VARIANTS,
        transactions=SimulationConfig(n_customers=600, n_terminals=300, days=400, seed=5),
    )
    ds = simulate_disputes(config, root)
    return [
        (
            extract_text(ds.root / r["document"]),
            Evidence.model_validate_json(r["truth"]),
            int(r["variant"]),
        )
        for r in ds.documents.iter_rows(named=True)
        if not r["scanned"]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(
        description="Train the layout model on the development variants."
    )
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument("--disputes", type=int, default=900)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        examples = training_examples(Path(tmp) / "set", n_disputes=args.disputes)
    t1 = time.perf_counter()
    model = LayoutModel.fit((doc, truth) for doc, truth, _ in examples)
    path = model.save(args.out)
    print(
        f"{len(examples)} documents ({t1 - t0:.0f} s), {len(model.heads)} heads trained in "
        f"{time.perf_counter() - t1:.0f} s -> {path} ({path.stat().st_size / 1e6:.2f} MB)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
