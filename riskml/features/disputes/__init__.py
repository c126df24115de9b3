"""riskml.features.disputes: evidence extraction from dispute documents and the reason-code
family of a customer's message.

Modules (import them directly; nothing heavy is imported here):

- :mod:`.text`: document -> pages of text with offsets (PDF text layer, tesseract OCR);
- :mod:`.extract`: the ``Extractor`` protocol, the rules extractor and their value parsers;
- :mod:`.layout`: the learned label-value pairing over the page layout (with the rules: the
  default extractor);
- :mod:`.extractors`: ``extract_documents`` and ``make_extractor`` (the extractors by name);
- :mod:`.llm`: the OpenAI-compatible LLM extractor and its settings;
- :mod:`.redact`: PII redaction with reversible placeholders;
- :mod:`.reason`: reason-code family from the customer's message (rules and TF-IDF + LR).
"""
