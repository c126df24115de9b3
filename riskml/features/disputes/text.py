"""Document -> text with provenance: pages, their text, where it came from and how sure OCR was.

A PDF page's text comes from its text layer (pypdf) when it has one; a page without one (a scan:
an image-only page) is rendered with pypdfium2 and read by tesseract (pytesseract), word by word.
OCR words are laid out into lines by their boxes (not by tesseract's block order), so a label and
its value printed on one row of the page stay on one line of text, as they do in the text layer.

Offsets: every :class:`PageText` has its own text; spans (``start``, ``end``) are character
offsets into that page's text, which is what extraction provenance records. ``DocumentText.text``
joins the pages with a form feed; :meth:`DocumentText.locate` maps an offset in it back to
``(page, start)``.

Also accepted: ``.txt`` files (one page, source ``text``) and images (``.png``, ``.jpg``,
``.tif``: OCR). Tesseract is a system program: when it is missing, OCR raises
:class:`OCRUnavailable` naming how to install it; text-layer pages never need it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from PIL.Image import Image

#: Page separator in :attr:`DocumentText.text`.
PAGE_BREAK = "\f"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".eml"})

OcrMode = Literal["auto", "never", "always"]
PageSource = Literal["text_layer", "ocr", "text"]


class TextExtractionError(ValueError):
    """The document cannot be read (not a PDF/image/text file, damaged, encrypted)."""


class OCRUnavailable(RuntimeError):
    """A page needs OCR and tesseract is not installed (or cannot run)."""

    def __init__(self, detail: str = "") -> None:
        msg = (
            "this page has no text layer and needs OCR, but the tesseract program is not "
            "installed or not on PATH; install it with `apt-get install tesseract-ocr` "
            "(macOS: `brew install tesseract`), or point pytesseract at it with "
            "`pytesseract.pytesseract.tesseract_cmd = '/path/to/tesseract'`"
        )
        super().__init__(f"{msg} ({detail})" if detail else msg)


class OcrWord(BaseModel):
    """One OCR word: its span in the page text, its box in pixels and tesseract's confidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    start: int
    end: int
    left: int
    top: int
    width: int
    height: int
    confidence: float = Field(ge=0.0, le=1.0)


class PageText(BaseModel):
    """The text of one page (1-based ``number``) and where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1)
    text: str
    source: PageSource
    #: Mean word confidence (0-1) for OCR pages; None for text-layer pages.
    ocr_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    words: tuple[OcrWord, ...] = ()

    def confidence_at(self, start: int, end: int) -> float:
        """How much to trust the characters in ``[start, end)``: 1.0 on a text layer, else the
        lowest confidence of the OCR words overlapping the span (the page's mean if none)."""
        if self.source != "ocr":
            return 1.0
        hit = [w.confidence for w in self.words if w.start < end and w.end > start]
        if hit:
            return min(hit)
        return self.ocr_confidence if self.ocr_confidence is not None else 0.0


class DocumentText(BaseModel):
    """A document's pages of text. ``name`` is what provenance records as the document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pages: tuple[PageText, ...]

    @property
    def text(self) -> str:
        return PAGE_BREAK.join(p.text for p in self.pages)

    @property
    def sources(self) -> set[str]:
        return {p.source for p in self.pages}

    def page(self, number: int) -> PageText:
        for p in self.pages:
            if p.number == number:
                return p
        raise KeyError(f"{self.name} has no page {number} (pages 1..{len(self.pages)})")

    def locate(self, offset: int) -> tuple[int, int]:
        """Map an offset in :attr:`text` to ``(page number, offset in that page's text)``."""
        if offset < 0:
            raise ValueError(f"offset {offset} < 0")
        base = 0
        for p in self.pages:
            if offset <= base + len(p.text):
                return p.number, offset - base
            base += len(p.text) + len(PAGE_BREAK)
        raise ValueError(f"offset {offset} is past the end of {self.name} ({base - 1} chars)")


def _ensure_tesseract() -> None:
    import pytesseract

    try:
        pytesseract.get_tesseract_version()
    except pytesseract.TesseractNotFoundError as exc:
        raise OCRUnavailable(str(exc).strip()) from exc


def _layout_words(data: dict[str, list[Any]], min_conf: float) -> tuple[str, list[OcrWord]]:
    """Lay OCR words out into lines by their boxes: a word joins the line whose vertical extent
    holds its centre; lines read top to bottom, words left to right; a wide horizontal gap
    becomes two spaces (a column break a label/value rule can still read across)."""
    raw = []
    for i, word in enumerate(data["text"]):
        word = str(word).strip()
        conf = float(data["conf"][i])
        if not word or conf < 0:
            continue
        raw.append(
            (
                word,
                int(data["left"][i]),
                int(data["top"][i]),
                int(data["width"][i]),
                int(data["height"][i]),
                max(0.0, min(1.0, conf / 100.0)),
            )
        )
    if not raw:
        return "", []
    raw = [w for w in raw if w[5] >= min_conf]
    raw.sort(key=lambda w: (w[2], w[1]))
    lines: list[list[tuple[str, int, int, int, int, float]]] = []
    bounds: list[tuple[float, float]] = []
    for w in raw:
        centre = w[2] + w[4] / 2
        for k, (top, bottom) in enumerate(bounds):
            if top <= centre <= bottom:
                lines[k].append(w)
                bounds[k] = (min(top, w[2]), max(bottom, w[2] + w[4]))
                break
        else:
            lines.append([w])
            bounds.append((w[2], w[2] + w[4]))
    order = sorted(range(len(lines)), key=lambda k: bounds[k][0])
    parts: list[str] = []
    words: list[OcrWord] = []
    pos = 0
    for n, k in enumerate(order):
        line = sorted(lines[k], key=lambda w: w[1])
        if n:
            parts.append("\n")
            pos += 1
        prev_right: int | None = None
        for w in line:
            if prev_right is not None:
                gap = w[1] - prev_right
                sep = "  " if gap > 2.5 * max(w[4], 1) else " "
                parts.append(sep)
                pos += len(sep)
            parts.append(w[0])
            words.append(
                OcrWord(
                    text=w[0],
                    start=pos,
                    end=pos + len(w[0]),
                    left=w[1],
                    top=w[2],
                    width=w[3],
                    height=w[4],
                    confidence=w[5],
                )
            )
            pos += len(w[0])
            prev_right = w[1] + w[3]
    return "".join(parts), words


def estimate_skew(image: Image, max_deg: float = 3.0) -> float:
    """The small rotation (degrees, PIL's sense) that makes the text lines of a page image
    horizontal: the angle whose row profile of dark pixels is sharpest (projection profile),
    searched coarse (0.5 deg) then fine (0.1 deg) on a downscaled copy."""
    import numpy as np
    from PIL import Image as PILImage

    gray = image.convert("L")
    scale = min(1.0, 1000 / max(gray.size))
    small = gray.resize((max(1, int(gray.width * scale)), max(1, int(gray.height * scale))))
    ink = PILImage.fromarray(((np.asarray(small) < 160) * 255).astype("uint8"))

    def sharpness(angle: float) -> float:
        rows = np.asarray(ink.rotate(angle, resample=PILImage.Resampling.NEAREST)).sum(axis=1)
        return float(np.square(np.diff(rows.astype(np.float64))).sum())

    coarse = [a / 2 for a in range(int(-2 * max_deg), int(2 * max_deg) + 1)]
    best = max(coarse, key=sharpness)
    fine = [best + a / 10 for a in range(-5, 6)]
    return max(fine, key=sharpness)


def remove_rules(image: Image, min_frac: float = 0.04) -> Image:
    """The page with its ruled lines (table borders, underlines) whitened: horizontal dark runs
    at least ``min_frac`` of the page width long, vertical ones 2% of its height (a
    morphological opening with a line element). Tesseract drops or garbles text in bordered
    cells otherwise."""
    import numpy as np
    from PIL import Image as PILImage
    from scipy import ndimage

    pixels = np.asarray(image.convert("L"))
    # scans are blurred and low in contrast: a thin rule is lighter than text, so "ink" is
    # anything a quarter of the way from the paper's grey to the text's
    paper, text = np.percentile(pixels, 50), np.percentile(pixels, 0.5)
    ink = pixels < paper - 0.25 * (paper - text)
    across = max(15, int(min_frac * pixels.shape[1]))
    # a table row's side borders are short: a vertical run of half the text-line pitch
    # (2% of the page height) is a rule, no letter is that tall and thin
    down = max(15, int(0.02 * pixels.shape[0]))
    ruled = ndimage.binary_opening(ink, structure=np.ones((1, across), dtype=bool))
    ruled |= ndimage.binary_opening(ink, structure=np.ones((down, 1), dtype=bool))
    if not ruled.any():
        return image.convert("L")
    ruled = ndimage.binary_dilation(ruled, iterations=1)
    out = pixels.copy()
    out[ruled] = 255
    return PILImage.fromarray(out)


def prepare_scan(image: Image, *, deskew: bool = True) -> Image:
    """A scanned page ready for OCR: grayscale, specks removed, straightened, ruled lines
    removed."""
    from PIL import Image as PILImage
    from PIL import ImageFilter

    gray = image.convert("L").filter(ImageFilter.MedianFilter(3))
    if deskew:
        angle = estimate_skew(gray)
        if abs(angle) >= 0.1:
            gray = gray.rotate(angle, resample=PILImage.Resampling.BICUBIC, fillcolor=255)
    return remove_rules(gray)


def ocr_image(
    image: Image,
    number: int = 1,
    *,
    lang: str = "eng",
    psm: int = 11,
    min_conf: float = 0.0,
    deskew: bool = True,
) -> PageText:
    """OCR one page image with tesseract into a :class:`PageText` with word boxes (the image
    is straightened and despeckled first: :func:`prepare_scan`).

    ``psm`` 11 (sparse text) finds the label and value cells of forms and bordered tables that
    the page-layout modes drop; the words are laid out into lines by :func:`_layout_words`.
    Tesseract runs single-threaded unless ``OMP_THREAD_LIMIT`` says otherwise (its OpenMP
    threads slow it down on a busy machine, and callers parallelise across pages)."""
    import pytesseract

    _ensure_tesseract()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        data = pytesseract.image_to_data(
            prepare_scan(image, deskew=deskew),
            lang=lang,
            config=f"--psm {psm}",
            output_type=pytesseract.Output.DICT,
        )
    except pytesseract.TesseractNotFoundError as exc:
        raise OCRUnavailable(str(exc).strip()) from exc
    except pytesseract.TesseractError as exc:
        raise TextExtractionError(f"tesseract failed on page {number}: {exc}") from exc
    text, words = _layout_words(data, min_conf)
    mean = sum(w.confidence for w in words) / len(words) if words else 0.0
    return PageText(number=number, text=text, source="ocr", ocr_confidence=mean, words=words)


def _layer_text(page: Any, layout: bool) -> str:
    """A page's text layer; in layout mode (rows kept: a label and the value printed beside
    it share a line, as in OCR text), falling back to plain mode where layout mode fails."""
    if layout:
        try:
            return str(page.extract_text(extraction_mode="layout") or "")
        except Exception:
            pass
    return str(page.extract_text() or "")


def _scan_dpi(page: Any, default: int = 300) -> int:
    """The resolution a page's images were scanned at (their pixels over the inches they
    cover), within 150-400 dpi; ``default`` when the page has no image."""
    import pypdfium2.raw as pdfium_c

    best = 0.0
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, _, right, _ = obj.get_bounds()
        if right - left > 36:  # at least half an inch wide
            best = max(best, obj.get_px_size()[0] / ((right - left) / 72.0))
    return int(min(400, max(150, round(best)))) if best else default


def _pdf_pages(
    data: bytes,
    name: str,
    ocr: OcrMode,
    dpi: int | None,
    lang: str,
    min_chars: int,
    layout: bool,
) -> list[PageText]:
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise TextExtractionError(f"{name}: encrypted PDF")
        layer = [_layer_text(page, layout) for page in reader.pages]
    except PdfReadError as exc:
        raise TextExtractionError(f"{name}: not a readable PDF ({exc})") from exc
    pages: list[PageText] = []
    pdf = None
    try:
        for i, text in enumerate(layer):
            text = text.replace(PAGE_BREAK, "\n")
            if ocr == "always" or (ocr == "auto" and len(text.strip()) < min_chars):
                if pdf is None:
                    import pypdfium2 as pdfium

                    pdf = pdfium.PdfDocument(data)
                page = pdf[i]
                scale = (dpi or _scan_dpi(page)) / 72
                image = page.render(scale=scale, grayscale=True).to_pil()
                pages.append(ocr_image(image, i + 1, lang=lang))
            else:
                pages.append(PageText(number=i + 1, text=text, source="text_layer"))
    finally:
        if pdf is not None:
            pdf.close()
    return pages


def extract_text(
    source: Path | str | bytes,
    *,
    name: str | None = None,
    ocr: OcrMode = "auto",
    dpi: int | None = None,
    lang: str = "eng",
    min_chars: int = 16,
    layout: bool = True,
) -> DocumentText:
    """Read a document (PDF, image or text file; a path or the PDF's bytes) into pages of text.

    ``ocr``: ``"auto"`` OCRs only pages whose text layer has fewer than ``min_chars``
    non-blank characters; ``"never"`` keeps the (possibly empty) text layer; ``"always"`` OCRs
    every page. ``dpi``: the resolution OCR renders a page at (default: the resolution its
    scanned images have, 150-400 dpi). ``layout`` reads the text layer row by row (pypdf's
    layout mode) so label and value share a line as in OCR text. ``name`` defaults to the file
    name (``"document.pdf"`` for bytes).
    """
    if isinstance(source, bytes):
        data, suffix = source, ".pdf"
        name = name or "document.pdf"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"document not found: {path}")
        data, suffix = path.read_bytes(), path.suffix.lower()
        name = name or path.name
    if suffix in TEXT_SUFFIXES:
        text = data.decode("utf-8", errors="replace").replace(PAGE_BREAK, "\n")
        return DocumentText(name=name, pages=(PageText(number=1, text=text, source="text"),))
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image as PILImage

        if ocr == "never":
            raise TextExtractionError(f"{name}: an image has no text layer; OCR is needed")
        try:
            image = PILImage.open(io.BytesIO(data))
            image.load()
        except OSError as exc:
            raise TextExtractionError(f"{name}: not a readable image ({exc})") from exc
        return DocumentText(name=name, pages=(ocr_image(image, 1, lang=lang),))
    if not data.startswith(b"%PDF"):
        raise TextExtractionError(
            f"{name}: not a PDF (no %PDF header); supported: PDF, "
            f"{', '.join(sorted(IMAGE_SUFFIXES | TEXT_SUFFIXES))}"
        )
    pages = _pdf_pages(data, name, ocr, dpi, lang, min_chars, layout)
    return DocumentText(name=name, pages=tuple(pages))


def extract_texts(
    sources: Sequence[Path | str | DocumentText],
    *,
    ocr: OcrMode = "auto",
    dpi: int | None = None,
) -> list[DocumentText]:
    """:func:`extract_text` over several documents; already-read :class:`DocumentText` pass
    through unchanged."""
    return [
        s if isinstance(s, DocumentText) else extract_text(s, ocr=ocr, dpi=dpi) for s in sources
    ]
