"""The library call: a case's documents -> :class:`ExtractionResult` with a named extractor.

``"layout"`` (the default: the rules, and the learned layout model where they found nothing or
are less sure, :mod:`riskml.features.disputes.layout`), ``"rules"`` (the pattern rules alone,
:mod:`riskml.features.disputes.extract`) or ``"llm"`` (:mod:`riskml.features.disputes.llm`, any
OpenAI-compatible server). A module of its own: it names every extractor, and the layout model
builds on the rules.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from riskml.data.disputes.evidence import ExtractionResult
from riskml.features.disputes.extract import Extractor, ExtractorName, RulesExtractor
from riskml.features.disputes.text import DocumentText

if TYPE_CHECKING:
    from riskml.features.disputes.llm import LLMSettings


def extract_documents(
    documents: Sequence[Path | str | DocumentText],
    extractor: ExtractorName | Extractor = "layout",
    *,
    llm_settings: LLMSettings | None = None,
) -> ExtractionResult:
    """Evidence from one case's documents with the named extractor: ``"layout"`` (the
    default: the rules, and the learned layout model where they found nothing or are less sure,
    :class:`riskml.features.disputes.layout.LayoutExtractor`), ``"rules"`` (the rules alone),
    ``"llm"`` (:class:`riskml.features.disputes.llm.LLMExtractor` with ``llm_settings`` or the
    ``RISKML_LLM_*`` environment) or any :class:`Extractor`."""
    chosen = make_extractor(extractor, llm_settings=llm_settings)
    t0 = time.perf_counter()
    result = chosen.extract(documents)
    if not result.latency_ms:
        result.latency_ms = (time.perf_counter() - t0) * 1000
    return result


def make_extractor(
    extractor: ExtractorName | Extractor, *, llm_settings: LLMSettings | None = None
) -> Extractor:
    """The :class:`Extractor` a name stands for (an :class:`Extractor` is returned as is)."""
    if not isinstance(extractor, str):
        return extractor
    if extractor == "layout":
        from riskml.features.disputes.layout import LayoutExtractor

        return LayoutExtractor()
    if extractor == "rules":
        return RulesExtractor()
    if extractor == "llm":
        from riskml.features.disputes.llm import LLMExtractor, LLMSettings

        return LLMExtractor(settings=llm_settings or LLMSettings.from_settings())
    raise ValueError(f"unknown extractor {extractor!r}; choose 'layout', 'rules' or 'llm'")
