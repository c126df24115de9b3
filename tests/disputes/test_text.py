"""Document -> text: the PDF text layer with offsets, OCR of scanned pages, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riskml.data.disputes.evidence import Evidence
from riskml.data.disputes.simulator import DisputeSet
from riskml.features.disputes.text import (
    PAGE_BREAK,
    DocumentText,
    OCRUnavailable,
    PageText,
    TextExtractionError,
    estimate_skew,
    extract_text,
    remove_rules,
)


def _pick(ds: DisputeSet, *, scanned: bool, doc_type: str) -> tuple[Path, Evidence]:
    rows = ds.documents.filter(
        (ds.documents["scanned"] == scanned) & (ds.documents["doc_type"] == doc_type)
    )
    assert rows.height, f"no {'scanned' if scanned else 'clean'} {doc_type} in the dispute set"
    row = rows.row(0, named=True)
    return ds.root / row["document"], Evidence.model_validate_json(row["truth"])


@pytest.fixture(scope="module")
def scanned(dispute_set: DisputeSet) -> tuple[DocumentText, Evidence]:
    """One scanned login record, OCR'd once for the module (a few seconds)."""
    path, truth = _pick(dispute_set, scanned=True, doc_type="login_record")
    return extract_text(path), truth


def test_text_layer_with_offsets(dispute_set: DisputeSet) -> None:
    path, truth = _pick(dispute_set, scanned=False, doc_type="receipt")
    doc = extract_text(path)
    assert doc.name == path.name
    assert [p.source for p in doc.pages] == ["text_layer"] * len(doc.pages)
    assert all(p.ocr_confidence is None and p.confidence_at(0, 5) == 1.0 for p in doc.pages)
    assert truth.order_id is not None and truth.order_id in doc.text
    # an offset in the joined text maps back to its page and the offset in that page
    at = doc.text.index(truth.order_id)
    number, local = doc.locate(at)
    assert doc.page(number).text[local : local + len(truth.order_id)] == truth.order_id
    # layout mode keeps a label and its value on one line
    line = next(line for line in doc.text.splitlines() if truth.order_id in line)
    assert line.strip() != truth.order_id


def test_bytes_in_and_multi_page_offsets(dispute_set: DisputeSet) -> None:
    path, _ = _pick(dispute_set, scanned=False, doc_type="receipt")
    from_bytes = extract_text(path.read_bytes())
    assert from_bytes.name == "document.pdf"
    assert from_bytes.pages == extract_text(path).pages
    two = DocumentText(
        name="x.pdf",
        pages=(
            PageText(number=1, text="abc", source="text_layer"),
            PageText(number=2, text="defg", source="text_layer"),
        ),
    )
    assert two.text == "abc" + PAGE_BREAK + "defg"
    assert two.locate(1) == (1, 1)
    assert two.locate(5) == (2, 1)
    with pytest.raises(ValueError, match="past the end"):
        two.locate(50)
    with pytest.raises(KeyError, match="no page 3"):
        two.page(3)


def test_text_and_bad_files(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Order #: A-123\n")
    doc = extract_text(note)
    assert doc.pages[0].source == "text" and doc.text == "Order #: A-123\n"
    with pytest.raises(FileNotFoundError, match="document not found"):
        extract_text(tmp_path / "missing.pdf")
    (tmp_path / "fake.pdf").write_bytes(b"not a pdf at all")
    with pytest.raises(TextExtractionError, match="not a PDF"):
        extract_text(tmp_path / "fake.pdf")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    with pytest.raises(TextExtractionError, match="not a readable PDF"):
        extract_text(tmp_path / "broken.pdf")


def test_ocr_of_a_scanned_page(scanned: tuple[DocumentText, Evidence]) -> None:
    doc, truth = scanned
    page = doc.pages[0]
    assert page.source == "ocr"
    assert page.ocr_confidence is not None and 0.8 < page.ocr_confidence <= 1.0
    assert page.words and all(page.text[w.start : w.end] == w.text for w in page.words)
    # the values came through OCR (label and value on one line)
    flat = " ".join(doc.text.split())
    assert truth.ip_address is not None and truth.ip_address in flat
    assert truth.order_id is not None and truth.order_id in flat.replace(" -", "-")
    at = page.text.index(truth.ip_address)
    assert 0.5 < page.confidence_at(at, at + len(truth.ip_address)) <= 1.0


def test_ocr_never_keeps_the_empty_layer(dispute_set: DisputeSet) -> None:
    path, _ = _pick(dispute_set, scanned=True, doc_type="login_record")
    doc = extract_text(path, ocr="never")
    assert doc.pages[0].source == "text_layer" and doc.pages[0].text.strip() == ""


def test_missing_tesseract_is_a_clear_error(
    dispute_set: DisputeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytesseract

    path, _ = _pick(dispute_set, scanned=True, doc_type="login_record")
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(OCRUnavailable, match="apt-get install tesseract-ocr"):
        extract_text(path)
    # pages with a text layer never need tesseract
    clean, _ = _pick(dispute_set, scanned=False, doc_type="receipt")
    assert extract_text(clean).pages[0].source == "text_layer"


def _page_image(dispute_set: DisputeSet) -> Image.Image:
    import pypdfium2 as pdfium

    path, _ = _pick(dispute_set, scanned=False, doc_type="login_record")
    pdf = pdfium.PdfDocument(str(path))
    try:
        return pdf[0].render(scale=100 / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()


def test_skew_is_found(dispute_set: DisputeSet) -> None:
    image = _page_image(dispute_set)
    assert abs(estimate_skew(image)) <= 0.2
    tilted = image.rotate(1.2, resample=Image.Resampling.BICUBIC, fillcolor=255)
    assert estimate_skew(tilted) == pytest.approx(-1.2, abs=0.25)


def test_ruled_lines_are_removed_and_text_kept() -> None:
    pixels = np.full((400, 600), 235, dtype=np.uint8)
    pixels[100:102, 50:550] = 60  # a table border
    pixels[150:380, 300:302] = 60  # a column rule
    pixels[200:212, 100:108] = 20  # a letter-sized blob
    out = np.asarray(remove_rules(Image.fromarray(pixels)))
    assert out[100:102, 50:550].min() == 255
    assert out[150:380, 300:302].min() == 255
    assert out[200:212, 100:108].max() == 20
