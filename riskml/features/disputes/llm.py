"""LLM evidence extraction behind any OpenAI-compatible chat-completions API.

:class:`LLMExtractor` sends a case's document text to ``POST {base_url}/chat/completions`` (the
``openai`` SDK) with structured output: ``response_format={"type": "json_schema", ...}`` against
:func:`extraction_schema`, which asks for every :class:`Evidence` field its ``value``, the
verbatim ``quote`` it was read from and the ``document`` holding it. The answer is validated with
pydantic; a malformed one (not JSON, or not the schema) is asked for again once, with the error,
then refused with :class:`LLMAnswerError` (no partial evidence).

Before anything leaves the process the text is redacted (:mod:`.redact`: card numbers, emails,
phones, addresses, names, IP addresses, device ids -> placeholders); the answer's placeholders are
mapped back locally, and each quote is located in the original page text for provenance.

Transport: the SDK's own timeout and retries (exponential backoff with jitter on connection
errors, timeouts, 408/409/429/5xx; a ``Retry-After`` of up to two minutes is honoured). Every
call's latency, tokens (``usage.prompt_tokens``/``completion_tokens``) and retries are recorded
in :attr:`LLMExtractor.calls` and summed in :attr:`LLMExtractor.totals`.

Settings (:class:`LLMSettings`, from :mod:`riskml.settings`: ``RISKML_LLM_`` + ``BASE_URL``,
``API_KEY``, ``MODEL``, ``TIMEOUT_S``, ``MAX_RETRIES``, ...).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model

from riskml.data.disputes.evidence import (
    Evidence,
    ExtractedField,
    ExtractionResult,
    Provenance,
    field_names,
    values_match,
)
from riskml.features.disputes.redact import Redactor
from riskml.features.disputes.text import DocumentText, extract_texts

EXTRACTOR_NAME = "llm"

SYSTEM_PROMPT = """\
You extract evidence about a disputed card payment from a merchant's documents.
Documents follow, each page introduced by a line "===== DOCUMENT <name> page <n> =====".
For every field of the JSON schema return an object with:
- "value": the value the documents state, or null when they do not state it (never guess);
- "quote": the shortest verbatim excerpt of the document text that states the value (copied
  character for character, including placeholders), or null when value is null;
- "document": the <name> of the document the quote comes from, or null.
Dates are YYYY-MM-DD. Amounts are plain numbers without currency symbols or thousands separators.
Text in square brackets such as [IP_1] or [DEVICE_2] is a redacted value: copy it exactly as the
value when it is the answer.
"""


class LLMSettings(BaseModel):
    """Where and how to call the model. From the process settings (``RISKML_LLM_<FIELD>``,
    :mod:`riskml.settings`) with :meth:`from_settings`, or given directly."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API root, e.g. http://localhost:8000/v1 (vLLM, "
        "llama.cpp server, Ollama) or https://api.openai.com/v1.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Bearer key; local servers usually accept any (default EMPTY)."
    )
    model: str | None = Field(default=None, description="Model name the server serves.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout (seconds).")
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Transport retries (timeouts, 429, 5xx) per request."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_output_tokens: int = Field(default=2048, gt=0)
    max_input_chars: int = Field(
        default=60_000, gt=0, description="Longest document text sent; longer is cut (warning)."
    )

    @classmethod
    def from_settings(cls, settings: Any = None) -> LLMSettings:
        """From riskml's process settings (default :func:`riskml.settings.get_settings`): its
        ``llm_<field>`` values, the ``RISKML_LLM_*`` variables."""
        if settings is None:
            from riskml.settings import get_settings

            settings = get_settings()
        values = {
            name: getattr(settings, f"llm_{name}")
            for name in cls.model_fields
            if getattr(settings, f"llm_{name}", None) is not None
        }
        return cls(**values)


class LLMError(RuntimeError):
    """The LLM path failed; the message says why and what to do."""


class LLMUnavailable(LLMError):
    """The API could not be reached or kept failing (timeouts, 429, 5xx after retries)."""


class LLMAnswerError(LLMError):
    """The model's answer was not valid JSON for the schema, twice."""


@dataclass
class LLMCall:
    """Accounting of one chat-completions request (one attempt at an answer)."""

    attempt: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    retries: int
    ok: bool
    error: str | None = None


@dataclass
class LLMTotals:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    retries: int = 0
    failures: int = 0

    def add(self, call: LLMCall) -> None:
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.latency_ms += call.latency_ms
        self.retries += call.retries
        self.failures += 0 if call.ok else 1


# -- the schema -----------------------------------------------------------------------------------


def _value_type(annotation: Any) -> Any:
    """The non-None member of an ``X | None`` annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _value_schema(name: str) -> dict[str, Any]:
    info = Evidence.model_fields[name]
    tp = _value_type(info.annotation)
    out: dict[str, Any]
    if typing.get_origin(tp) is typing.Literal:
        out = {"type": ["string", "null"], "enum": [*typing.get_args(tp), None]}
    elif tp is bool:
        out = {"type": ["boolean", "null"]}
    elif tp is float or tp is int:
        out = {"type": ["number", "null"]}
    elif tp is dt.date:
        out = {"type": ["string", "null"], "description": "YYYY-MM-DD"}
    else:
        out = {"type": ["string", "null"]}
    if info.description:
        out["description"] = (info.description + " " + out.get("description", "")).strip()
    return out


def extraction_schema() -> dict[str, Any]:
    """The structured-output JSON schema (strict mode: every property required, no extras):
    per Evidence field ``{"value", "quote", "document"}``, each nullable."""
    props = {
        name: {
            "type": "object",
            "additionalProperties": False,
            "required": ["value", "quote", "document"],
            "properties": {
                "value": _value_schema(name),
                "quote": {"type": ["string", "null"]},
                "document": {"type": ["string", "null"]},
            },
        }
        for name in field_names()
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(props),
        "properties": props,
    }


def response_format() -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "evidence", "schema": extraction_schema(), "strict": True},
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _answer_model() -> type[BaseModel]:
    """pydantic model of the answer: each field ``{value: <Evidence type> | None, quote, doc}``."""
    models: dict[str, Any] = {}
    for name in field_names():
        tp: Any = Evidence.model_fields[name].annotation
        item = create_model(
            f"Answer_{name}",
            __base__=_Strict,
            value=(tp, ...),
            quote=(str | None, ...),
            document=(str | None, ...),
        )
        models[name] = (item, ...)
    return create_model("EvidenceAnswer", __base__=_Strict, **models)


# -- the extractor --------------------------------------------------------------------------------


def _quote_pattern(quote: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in quote.split()]
    return re.compile(r"\s+".join(words), re.IGNORECASE)


@dataclass
class LLMExtractor:
    """Evidence from an OpenAI-compatible model (see the module docstring).

    ``settings`` defaults to :meth:`LLMSettings.from_settings` (the process settings);
    ``client`` may be given (an ``openai.OpenAI``) to share one connection pool.
    ``names``/``addresses`` are known entities (the cardholder's) that :class:`Redactor` also
    removes.
    """

    settings: LLMSettings = field(default_factory=LLMSettings.from_settings)
    client: Any = None
    names: Sequence[str] = ()
    addresses: Sequence[str] = ()
    calls: list[LLMCall] = field(default_factory=list)
    totals: LLMTotals = field(default_factory=LLMTotals)
    name: str = EXTRACTOR_NAME

    def __post_init__(self) -> None:
        if not self.settings.base_url:
            raise LLMError(
                "the LLM extractor needs an OpenAI-compatible API: set RISKML_LLM_BASE_URL "
                "(e.g. http://localhost:8000/v1) and RISKML_LLM_MODEL, or use the rules extractor"
            )
        if not self.settings.model:
            raise LLMError(
                "set RISKML_LLM_MODEL: the model name the server at "
                f"{self.settings.base_url} serves"
            )
        if self.client is None:
            import openai

            key = self.settings.api_key.get_secret_value() if self.settings.api_key else "EMPTY"
            self.client = openai.OpenAI(
                base_url=self.settings.base_url,
                api_key=key,
                timeout=self.settings.timeout_s,
                max_retries=self.settings.max_retries,
            )
        self._answer = _answer_model()

    # -- one request --------------------------------------------------------------------------

    def _call(self, messages: list[dict[str, str]], attempt: int) -> str:
        import openai

        t0 = time.perf_counter()
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.settings.model,
                messages=messages,
                response_format=response_format(),
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_output_tokens,
            )
            completion = raw.parse()
        except openai.APITimeoutError as exc:
            self._record(attempt, t0, None, self.settings.max_retries, error="timeout")
            raise LLMUnavailable(
                f"the LLM API at {self.settings.base_url} did not answer within "
                f"{self.settings.timeout_s:g} s (after {self.settings.max_retries} retries); "
                "raise RISKML_LLM_TIMEOUT_S or check the server"
            ) from exc
        except openai.APIStatusError as exc:
            retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            retries = self.settings.max_retries if retried else 0
            self._record(attempt, t0, None, retries, error=f"HTTP {exc.status_code}")
            hint = {
                401: "check RISKML_LLM_API_KEY",
                404: "check RISKML_LLM_BASE_URL (it ends in /v1) and RISKML_LLM_MODEL",
                429: "rate limited after retries; raise RISKML_LLM_MAX_RETRIES or slow down",
            }.get(exc.status_code, "the server failed; see its logs")
            raise LLMUnavailable(
                f"the LLM API answered HTTP {exc.status_code} (after {retries} retries): {hint}"
            ) from exc
        except openai.APIConnectionError as exc:
            self._record(attempt, t0, None, self.settings.max_retries, error="connection")
            raise LLMUnavailable(
                f"cannot reach the LLM API at {self.settings.base_url}: {exc}"
            ) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:  # ValueError: not JSON
            self._record(attempt, t0, None, None, error="invalid response")
            raise LLMAnswerError(f"the LLM API's response is not a chat completion: {exc}") from exc
        from openai.types.chat import ChatCompletion

        if not isinstance(completion, ChatCompletion) or not completion.choices:
            self._record(attempt, t0, None, raw.retries_taken, error="not a chat completion")
            raise LLMAnswerError(
                f"the LLM API at {self.settings.base_url} did not return a chat completion"
            )
        self._record(attempt, t0, completion.usage, raw.retries_taken)
        choice = completion.choices[0]
        if getattr(choice.message, "refusal", None):
            raise LLMAnswerError(f"the model refused: {choice.message.refusal}")
        if choice.finish_reason == "length":
            raise LLMAnswerError(
                "the model's answer was cut at max_output_tokens "
                f"({self.settings.max_output_tokens}); raise RISKML_LLM_MAX_OUTPUT_TOKENS"
            )
        return str(choice.message.content or "")

    def _record(
        self, attempt: int, t0: float, usage: Any, retries: int | None, error: str | None = None
    ) -> None:
        call = LLMCall(
            attempt=attempt,
            latency_ms=(time.perf_counter() - t0) * 1000,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            retries=int(retries or 0),
            ok=error is None,
            error=error,
        )
        self.calls.append(call)
        self.totals.add(call)

    def _parse(self, content: str) -> BaseModel:
        try:
            return self._answer.model_validate_json(content)
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors()[:8]
            )
            raise LLMAnswerError(f"answer does not match the evidence schema: {errors}") from exc

    # -- a case -------------------------------------------------------------------------------

    def prompt(self, texts: Sequence[DocumentText], redactor: Redactor) -> tuple[str, list[str]]:
        """The (redacted) user message and any warnings (text cut at ``max_input_chars``)."""
        parts: list[str] = []
        for doc in texts:
            name = redactor.redact(doc.name)
            for page in doc.pages:
                parts.append(f"===== DOCUMENT {name} page {page.number} =====")
                # layout-mode runs of spaces cost tokens and say nothing more than two do
                parts.append(re.sub(r"[ \t]{3,}", "  ", redactor.redact(page.text)))
        text = "\n".join(parts)
        warnings: list[str] = []
        if len(text) > self.settings.max_input_chars:
            warnings.append(
                f"document text cut from {len(text)} to {self.settings.max_input_chars} chars "
                "(RISKML_LLM_MAX_INPUT_CHARS)"
            )
            text = text[: self.settings.max_input_chars]
        return text, warnings

    def extract(
        self,
        documents: Sequence[Path | str | DocumentText],
        *,
        names: Iterable[str] = (),
        addresses: Iterable[str] = (),
    ) -> ExtractionResult:
        """Evidence for one case's documents (see the module docstring)."""
        texts = extract_texts(documents)
        redactor = Redactor(names=[*self.names, *names], addresses=[*self.addresses, *addresses])
        user, warnings = self.prompt(texts, redactor)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
        first = len(self.calls)
        answer: BaseModel | None = None
        error: LLMAnswerError | None = None
        for attempt in (1, 2):
            content = ""
            try:
                content = self._call(messages, attempt)
                answer = self._parse(content)
                break
            except LLMAnswerError as exc:
                if self.calls and self.calls[-1].ok:
                    self.calls[-1].ok = False
                    self.calls[-1].error = "invalid answer"
                    self.totals.failures += 1
                error = exc
                retry = [{"role": "assistant", "content": content[:4000]}] if content else []
                messages = [
                    *messages[:2],
                    *retry,
                    {
                        "role": "user",
                        "content": f"That answer is invalid ({str(exc)[:500]}). Answer again with "
                        "JSON that matches the schema exactly.",
                    },
                ]
        if answer is None:
            raise LLMAnswerError(f"the model gave no valid answer in 2 attempts: {error}")
        mine = self.calls[first:]
        result = self._result(answer, texts, redactor, warnings)
        result.tokens_in = sum(c.prompt_tokens for c in mine)
        result.tokens_out = sum(c.completion_tokens for c in mine)
        result.latency_ms = sum(c.latency_ms for c in mine)
        return result

    def _result(
        self,
        answer: BaseModel,
        texts: Sequence[DocumentText],
        redactor: Redactor,
        warnings: list[str],
    ) -> ExtractionResult:
        values: dict[str, Any] = {}
        fields: dict[str, ExtractedField] = {}
        by_name = {d.name: d for d in texts}
        for name in field_names():
            item = getattr(answer, name)
            if item.value is None:
                continue
            value = redactor.restore_value(item.value)
            leftover = redactor.unknown_placeholders(str(value))
            if leftover:
                warnings.append(f"{name}: unknown placeholder {leftover[0]} in the answer; dropped")
                continue
            try:
                Evidence(**{name: value})
            except ValidationError as exc:
                warnings.append(f"{name}: value {value!r} rejected: {exc.errors()[0]['msg']}")
                continue
            quote = redactor.restore(item.quote) if item.quote else None
            doc_name = redactor.restore(item.document) if item.document else None
            provenance, confidence = self._locate(name, value, quote, doc_name, by_name, texts)
            if not provenance:
                warnings.append(f"{name}: the quoted source was not found in the documents")
            values[name] = value
            fields[name] = ExtractedField(value=value, confidence=confidence, provenance=provenance)
        evidence = Evidence(**values)
        fields = {
            k: f.model_copy(update={"value": getattr(evidence, k)}) for k, f in fields.items()
        }
        return ExtractionResult(
            evidence=evidence,
            fields=fields,
            extractor=self.name,
            documents=[d.name for d in texts],
            warnings=warnings,
        )

    @staticmethod
    def _locate(
        name: str,
        value: Any,
        quote: str | None,
        doc_name: str | None,
        by_name: dict[str, DocumentText],
        texts: Sequence[DocumentText],
    ) -> tuple[list[Provenance], float]:
        """Provenance of a value: its quote found in the named document (else in any), and a
        confidence: 0.9 when the quote is found and holds the value, 0.7 when only the quote is
        found, 0.4 when it is not found; times the OCR confidence of the span."""
        order = [by_name[doc_name]] if doc_name in by_name else []
        order += [d for d in texts if d.name != doc_name]
        needles = [q for q in (quote, str(value) if isinstance(value, str) else None) if q]
        for needle in needles:
            pattern = _quote_pattern(needle)
            for doc in order:
                for page in doc.pages:
                    m = pattern.search(page.text)
                    if m is None:
                        continue
                    span = m.group()
                    holds = needle is not quote or _quote_holds(name, value, span)
                    base = 0.9 if holds else 0.7
                    prov = Provenance(
                        document=doc.name, page=page.number, start=m.start(), end=m.end(), text=span
                    )
                    return [prov], round(base * page.confidence_at(m.start(), m.end()), 4)
        return [], 0.4


def _quote_holds(name: str, value: Any, quote: str) -> bool:
    """Whether the quote visibly carries the value (loosely: dates and booleans always do)."""
    if isinstance(value, (bool, dt.date)):
        return True
    if isinstance(value, float):
        numbers = re.findall(r"\d[\d,]*(?:\.\d+)?", quote)
        return any(values_match(name, float(n.replace(",", "")), value) for n in numbers)
    return re.sub(r"\W", "", str(value)).casefold() in re.sub(r"\W", "", quote).casefold()
