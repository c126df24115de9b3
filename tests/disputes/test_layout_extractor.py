"""The layout extractor: candidates and their features, the shipped model on a layout of its
own, the combination with the rules, training, persistence. The held-out figures are in
``test_rules_extractor.py::test_held_out_clean_f1`` (both extractors on one corpus)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riskml.data.disputes.evidence import Evidence
from riskml.data.disputes.simulator import DisputeSet
from riskml.features.disputes import layout
from riskml.features.disputes.extract import RuleContext, RulesExtractor
from riskml.features.disputes.extractors import make_extractor
from riskml.features.disputes.layout import (
    LayoutExtractor,
    LayoutModel,
    Reading,
    default_model,
    document_candidates,
)
from riskml.features.disputes.text import DocumentText, PageText, extract_text

#: An app's tiles: each value over its caption, words no variant uses.
TILES = (
    "Harbourline Outfitters\n"
    "harbourline.example  ·  +1 555 0301  ·  Since 2024\n"
    "Purchase summary\n"
    "\n"
    " HB-58213-Q                    14 Mar 2025                    $84.20\n"
    " Purchase reference            Placed on                      Total charged\n"
)


def _doc(text: str, name: str = "doc.pdf") -> DocumentText:
    return DocumentText(name=name, pages=(PageText(number=1, text=text, source="text_layer"),))


def _cand(doc: DocumentText, kind: str, text: str) -> Any:
    return next(c for c in document_candidates(doc) if c.kind == kind and c.text == text)


def test_candidates_carry_the_words_around_them_wherever_they_stand() -> None:
    doc = _doc(TILES)
    order = _cand(doc, "id", "HB-58213-Q")
    assert order.value == "HB-58213-Q"
    assert {"B=purchase", "B=reference", "K=reference", "K~refe", "P:none"} <= set(order.features)
    date = _cand(doc, "date", "14 Mar 2025")
    assert date.value == dt.date(2025, 3, 14) and "B=placed" in date.features
    amount = _cand(doc, "amount", "$84.20")
    assert amount.value == (84.2, "USD") and {"B=charged", "arank=max"} <= set(amount.features)
    # the caption row is cells; a phone number and a year are no identifiers
    assert any(c.kind == "cell" and c.value == "Total charged" for c in document_candidates(doc))
    ids = {c.text for c in document_candidates(doc) if c.kind == "id"}
    assert not ids & {"555 0301", "2024", "+1 555 0301"}
    # every span is the page's own text
    for c in document_candidates(doc):
        assert TILES[c.start : c.end] == c.text


def test_a_cell_by_its_domain_its_words_and_its_line() -> None:
    page = (
        "Komorebi Market\n"
        "global.komorebi-market.example\n"
        " Cedar Grocers\n"
        "8941 River Road, Madison, WI 53743\n"
        "Shop: www.cedargrocers.example  ·  support@cedargrocers.example\n"
        "Address check:       Y (full match)\n"
        "Commande 8209187\n"
    )
    doc = _doc(page)
    cells = {c.value: set(c.features) for c in document_candidates(doc) if c.kind == "cell"}
    # the shop's name is two addresses' domain; the marketplace's bare host name is none; an
    # address has digits
    assert {"domain=2", "vdigits=False", "linerank=3"} <= cells["Cedar Grocers"]
    assert {"domain=0", "linerank=1"} <= cells["Komorebi Market"]
    assert {"domain=0", "vdigits=True"} <= cells["8941 River Road, Madison, WI 53743"]
    # what the rules' value words would read in the cell, wherever it stands
    assert {"E:avs=match", "E:yesno=True"} <= cells["Y (full match)"]
    # the identifier after a word is a candidate of its own
    ids = {c.value for c in document_candidates(doc) if c.kind == "id"}
    assert "8209187" in ids


def test_the_shipped_model_reads_a_layout_by_its_words_and_geometry() -> None:
    got = LayoutExtractor().extract([_doc(TILES, "summary.pdf")])
    ev = got.evidence
    assert (ev.order_id, ev.transaction_date, ev.amount, ev.currency) == (
        "HB-58213-Q",
        dt.date(2025, 3, 14),
        84.2,
        "USD",
    )
    assert got.extractor == "layout"
    prov = got.fields["amount"].provenance[0]
    assert (prov.document, prov.page, prov.text) == ("summary.pdf", 1, "$84.20")
    assert TILES[prov.start : prov.end] == "$84.20"
    assert 0 < got.fields["order_id"].confidence <= 1


class _Fixed(LayoutModel):
    """A model whose readings are given (the combination's logic, apart from any model)."""

    def __init__(self, readings: dict[str, tuple[Any, float]]) -> None:
        super().__init__({})
        self.readings = readings

    def read(self, doc: DocumentText) -> dict[str, Reading]:
        cand = document_candidates(doc)[0]
        return {
            name: Reading(name, value, p, doc.name, cand)
            for name, (value, p) in self.readings.items()
        }


def _one_rule(value: str, strength: float) -> RulesExtractor:
    def rule(text: str, ctx: RuleContext) -> Iterator[tuple[str, Any, int, int, float]]:
        yield "order_id", value, 0, 4, strength

    return RulesExtractor(rules=[rule])


@pytest.mark.parametrize(
    ("strength", "model_p", "expected"),
    [
        (0.6, 0.55, "MODEL-1"),  # from the override on (0.5), the model's value
        (0.6, 0.45, "RULE-1"),  # below the override: the rules' value stays
        (0.995, 0.99, "RULE-1"),  # the rules are sure: theirs, whatever the model says
    ],
)
def test_the_model_overrides_only_unsure_rules(
    strength: float, model_p: float, expected: str
) -> None:
    ex = LayoutExtractor(
        rules=_one_rule("RULE-1", strength), model=_Fixed({"order_id": ("MODEL-1", model_p)})
    )
    got = ex.extract([_doc("ORD 1 of a page\n")])
    assert got.evidence.order_id == expected
    # the rules' reading combined with the model's, given both (what a benchmark's grid does)
    doc = _doc("ORD 1 of a page\n")
    never_sure = LayoutExtractor(rules=ex.rules, model=ex.model, sure=1.01)
    combined = never_sure.combine([doc], ex.rules.extract([doc]), [ex.model.read(doc)])
    assert combined.evidence.order_id == ("RULE-1" if model_p < 0.5 else "MODEL-1")


def test_the_model_fills_what_the_rules_left_empty_from_its_threshold() -> None:
    readings = {"order_id": ("MODEL-1", 0.31), "amount": (12.5, 0.29)}
    got = LayoutExtractor(rules=RulesExtractor(rules=[]), model=_Fixed(readings)).extract(
        [_doc("a page\n")]
    )
    assert (got.evidence.order_id, got.evidence.amount) == ("MODEL-1", None)
    assert got.fields["order_id"].confidence == 0.31
    # a reading the schema refuses is not taken: the case is read, the reason is a warning
    refused = LayoutExtractor(
        rules=RulesExtractor(rules=[]),
        model=_Fixed({"amount": (-3.0, 0.9), "order_id": ("A-1", 0.9)}),
    ).extract([_doc("a page\n")])
    assert (refused.evidence.amount, refused.evidence.order_id) == (None, "A-1")
    assert any(w.startswith("amount: the layout model's reading -3.0") for w in refused.warnings)


def test_named_extractors_and_the_default() -> None:
    assert isinstance(make_extractor("layout"), LayoutExtractor)
    assert isinstance(make_extractor("rules"), RulesExtractor)
    with pytest.raises(ValueError, match="choose 'layout', 'rules' or 'llm'"):
        make_extractor("magic")  # type: ignore[arg-type]


def _clean(ds: DisputeSet) -> list[tuple[DocumentText, Evidence]]:
    return [
        (extract_text(ds.root / r["document"]), Evidence.model_validate_json(r["truth"]))
        for r in ds.documents.iter_rows(named=True)
        if not r["scanned"]
    ]


def test_fit_save_load_round_trip(dispute_set: DisputeSet, tmp_path: Path) -> None:
    examples = _clean(dispute_set)
    train, test = examples[:80], examples[80:]
    model = LayoutModel.fit(train)
    assert {"order_id", "amount", "transaction_date", "avs_result", "merchant_name"} <= set(
        model.heads
    )
    # 80 documents of four variants teach the shapes (letters-only order codes are no id
    # candidates: those stay the rules')
    for name, share in (("amount", 0.9), ("ip_address", 0.9), ("order_id", 0.7)):
        wanted = [(doc, truth) for doc, truth in test if getattr(truth, name) is not None]
        found = sum(model.read(doc)[name].value == getattr(truth, name) for doc, truth in wanted)
        assert found >= share * len(wanted), (name, found, len(wanted))
    path = model.save(tmp_path / "m.npz", prune=0.0)
    again = LayoutModel.load(path)
    for doc, _ in test[:10]:
        a, b = model.read(doc), again.read(doc)
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].value == b[name].value, name
            assert a[name].probability == pytest.approx(b[name].probability, abs=1e-5)


def test_a_model_of_other_features_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with np.load(layout.MODEL_FILE, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["version"] = np.array([layout.FEATURES_VERSION + 1, layout.N_FEATURES])
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    with pytest.raises(
        ValueError, match=r"retrain it with `python -m riskml\.features\.disputes\.layout"
    ):
        LayoutModel.load(old)
    monkeypatch.setattr(layout, "MODEL_FILE", tmp_path / "missing.npz")
    default_model.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match=r"missing\.npz is missing; train it"):
            default_model()
    finally:
        default_model.cache_clear()
