"""The LLM extractor against a local OpenAI-compatible server (tests/support/openai_server.py):
request shape, redaction, restoration, provenance, accounting, faults. Never the network."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from riskml.data.disputes.evidence import field_names
from riskml.features.disputes.extractors import extract_documents
from riskml.features.disputes.llm import (
    LLMAnswerError,
    LLMError,
    LLMExtractor,
    LLMSettings,
    LLMUnavailable,
    extraction_schema,
)
from riskml.features.disputes.text import DocumentText, PageText
from riskml.settings import get_settings
from tests.support.openai_server import API_KEY, Fault, OpenAIServer

LOGIN = (
    "Acme Outdoor\n"
    "Account holder: Jane Doe (jane.doe@example.com), phone +1 (415) 555-0132\n"
    "Order ID: ORD-2024-55120\n"
    "Order date: 2024-05-17\n"
    "Total: $358.17\n"
    "IP address: 203.0.113.45\n"
    "Device ID: D00012345\n"
    "AVS result: Match\n"
    "Card: 4111 1111 1111 1111\n"
    "Ship to: 1200 Market Street, San Francisco, CA 94103\n"
)
#: What must never reach the server.
PII = (
    "Jane",
    "jane.doe@example.com",
    "555-0132",
    "203.0.113.45",
    "D00012345",
    "4111 1111 1111 1111",
    "1200 Market Street",
)


def _doc(text: str = LOGIN, name: str = "login_record.pdf") -> DocumentText:
    return DocumentText(name=name, pages=(PageText(number=1, text=text, source="text_layer"),))


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


def _extractor(server: OpenAIServer, **overrides: Any) -> LLMExtractor:
    settings = {
        "base_url": server.base_url,
        "api_key": API_KEY,
        "model": "local-extractor",
        "timeout_s": 2.0,
        "max_retries": 1,
        **overrides,
    }
    return LLMExtractor(LLMSettings(**settings), names=["Jane Doe"])


def test_schema_is_strict_and_covers_every_field() -> None:
    schema = extraction_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(field_names()) == list(schema["properties"])
    item = schema["properties"]["delivery_status"]
    assert item["required"] == ["value", "quote", "document"]
    assert item["additionalProperties"] is False
    assert item["properties"]["value"]["enum"][-1] is None
    assert schema["properties"]["amount"]["properties"]["value"]["type"] == ["number", "null"]


def test_extracts_restores_and_locates(server: OpenAIServer) -> None:
    ex = _extractor(server)
    result = ex.extract([_doc()])
    ev = result.evidence
    assert ev.order_id == "ORD-2024-55120"
    assert ev.amount == pytest.approx(358.17)
    assert ev.transaction_date == dt.date(2024, 5, 17)
    assert ev.avs_result == "match"
    # IP and device were sent as placeholders and restored locally
    assert ev.ip_address == "203.0.113.45"
    assert ev.device_id == "D00012345"
    prov = result.fields["ip_address"].provenance[0]
    assert prov.document == "login_record.pdf" and prov.page == 1
    assert LOGIN[prov.start : prov.end] == prov.text
    assert "203.0.113.45" in prov.text
    assert result.fields["ip_address"].confidence == pytest.approx(0.9)
    assert result.extractor == "llm" and result.documents == ["login_record.pdf"]
    assert result.warnings == []


def test_request_shape_and_no_pii_leaves(server: OpenAIServer) -> None:
    _extractor(server).extract([_doc()])
    (req,) = server.chat_requests
    assert req["auth"] == f"Bearer {API_KEY}"
    body = req["body"]
    assert body["model"] == "local-extractor"
    assert body["temperature"] == 0.0
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "evidence" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == extraction_schema()
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    sent = server.sent_text()
    for secret in PII:
        assert secret not in sent, secret
    assert "[IP_1]" in sent and "[DEVICE_1]" in sent and "[CARD_1]" in sent
    assert "ORD-2024-55120" in sent  # evidence that is no PII is sent as it is


def test_token_and_latency_accounting(server: OpenAIServer) -> None:
    ex = _extractor(server)
    r1 = ex.extract([_doc()])
    r2 = ex.extract([_doc()])
    assert r1.tokens_in > 100 and r1.tokens_out > 100
    assert (r2.tokens_in, r2.tokens_out) == (r1.tokens_in, r1.tokens_out)  # deterministic server
    assert r1.latency_ms > 0
    assert ex.totals.calls == 2 and ex.totals.failures == 0
    assert ex.totals.prompt_tokens == r1.tokens_in + r2.tokens_in
    assert ex.totals.completion_tokens == r1.tokens_out + r2.tokens_out
    assert ex.totals.latency_ms == pytest.approx(r1.latency_ms + r2.latency_ms)


def test_429_with_retry_after_is_retried(server: OpenAIServer) -> None:
    server.inject(Fault("status", status=429, retry_after=0.3))
    ex = _extractor(server)
    t0 = time.perf_counter()
    result = ex.extract([_doc()])
    assert time.perf_counter() - t0 >= 0.3  # Retry-After honoured
    assert result.evidence.order_id == "ORD-2024-55120"
    assert len(server.chat_requests) == 2
    assert server.chat_requests[1]["retry_count"] == "1"
    assert ex.calls[-1].retries == 1 and ex.totals.retries == 1


def test_5xx_past_the_retries_is_a_clear_error(server: OpenAIServer) -> None:
    server.inject(Fault("status", status=500), Fault("status", status=503))
    with pytest.raises(LLMUnavailable, match=r"HTTP 503 \(after 1 retries\)"):
        _extractor(server).extract([_doc()])
    assert len(server.chat_requests) == 2


def test_timeout(server: OpenAIServer) -> None:
    server.inject(Fault("delay", seconds=1.5))
    ex = _extractor(server, timeout_s=0.3, max_retries=0)
    with pytest.raises(LLMUnavailable, match=r"did not answer within 0\.3 s.*RISKML_LLM_TIMEOUT_S"):
        ex.extract([_doc()])
    assert ex.calls[-1].error == "timeout" and not ex.calls[-1].ok


def test_unauthorised_names_the_key_setting(server: OpenAIServer) -> None:
    with pytest.raises(LLMUnavailable, match=r"HTTP 401.*RISKML_LLM_API_KEY"):
        _extractor(server, api_key="wrong").extract([_doc()])
    assert len(server.chat_requests) == 1  # 401 is not retried


def test_malformed_answer_is_asked_again_once(server: OpenAIServer) -> None:
    server.inject(Fault("malformed"))
    ex = _extractor(server)
    result = ex.extract([_doc()])
    assert result.evidence.order_id == "ORD-2024-55120"
    _, second = server.chat_requests
    assert len(second["body"]["messages"]) == 4
    assert "invalid" in second["body"]["messages"][-1]["content"]
    assert [c.ok for c in ex.calls] == [False, True]
    # both attempts are accounted
    assert result.tokens_in == ex.calls[0].prompt_tokens + ex.calls[1].prompt_tokens


@pytest.mark.parametrize("fault", ["schema", "malformed", "bad_body"])
def test_two_bad_answers_raise_and_return_nothing(server: OpenAIServer, fault: str) -> None:
    server.inject(Fault(fault), Fault(fault))  # type: ignore[arg-type]
    with pytest.raises(LLMAnswerError, match="no valid answer in 2 attempts"):
        _extractor(server).extract([_doc()])
    assert len(server.chat_requests) == 2


def _answer(**fields: dict[str, Any]) -> dict[str, Any]:
    empty = {"value": None, "quote": None, "document": None}
    return {name: fields.get(name, empty) for name in field_names()}


def test_unknown_placeholder_and_lost_quote_are_warned(server: OpenAIServer) -> None:
    server.answer_with(
        _answer(
            ip_address={"value": "[IP_7]", "quote": "IP address: [IP_7]", "document": "x"},
            carrier={"value": "UPS", "quote": "Shipped with UPS", "document": "login_record.pdf"},
            amount={"value": 358.17, "quote": "Total: $358.17", "document": "login_record.pdf"},
        )
    )
    result = _extractor(server).extract([_doc()])
    assert result.evidence.ip_address is None  # an invented placeholder is never a value
    assert result.evidence.carrier == "UPS"
    assert result.fields["carrier"].provenance == []
    assert result.fields["carrier"].confidence == pytest.approx(0.4)
    assert result.fields["amount"].confidence == pytest.approx(0.9)
    assert any("unknown placeholder [IP_7]" in w for w in result.warnings)
    assert any("carrier: the quoted source was not found" in w for w in result.warnings)


def test_invalid_value_is_dropped_with_a_warning(server: OpenAIServer) -> None:
    server.answer_with(
        _answer(currency={"value": "dollars", "quote": "$", "document": "login_record.pdf"})
    )
    result = _extractor(server).extract([_doc()])
    assert result.evidence.currency is None
    assert any(w.startswith("currency: value 'dollars' rejected") for w in result.warnings)


def test_ocr_confidence_lowers_the_field_confidence(server: OpenAIServer) -> None:
    text = "Order ID: ORD-2024-55120"
    from riskml.features.disputes.text import OcrWord

    words = tuple(
        OcrWord(text=w, start=s, end=s + len(w), left=0, top=0, width=1, height=1, confidence=c)
        for w, s, c in (("Order", 0, 0.9), ("ID:", 6, 0.9), ("ORD-2024-55120", 10, 0.5))
    )
    page = PageText(number=1, text=text, source="ocr", ocr_confidence=0.77, words=words)
    result = _extractor(server).extract([DocumentText(name="scan.pdf", pages=(page,))])
    assert result.fields["order_id"].confidence == pytest.approx(0.45)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKML_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RISKML_LLM_API_KEY", "sk-secret")
    monkeypatch.setenv("RISKML_LLM_MODEL", "qwen")
    monkeypatch.setenv("RISKML_LLM_TIMEOUT_S", "5")
    monkeypatch.setenv("RISKML_LLM_MAX_RETRIES", "4")
    get_settings.cache_clear()
    s = LLMSettings.from_settings()
    assert (s.base_url, s.model, s.timeout_s, s.max_retries) == (
        "http://127.0.0.1:9/v1",
        "qwen",
        5,
        4,
    )
    assert "sk-secret" not in repr(s) and s.api_key is not None
    assert s.api_key.get_secret_value() == "sk-secret"
    monkeypatch.setenv("RISKML_LLM_MAX_RETRIES", "-1")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="max_retries"):
        LLMSettings.from_settings()
    get_settings.cache_clear()


def test_settings_from_riskml_settings() -> None:
    from types import SimpleNamespace

    from pydantic import SecretStr

    ns = SimpleNamespace(llm_base_url="http://h/v1", llm_model="m", llm_api_key=SecretStr("k"))
    s = LLMSettings.from_settings(ns)
    assert (s.base_url, s.model, s.timeout_s) == ("http://h/v1", "m", 60.0)
    assert s.api_key is not None and s.api_key.get_secret_value() == "k"


def test_missing_settings_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKML_LLM_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="RISKML_LLM_BASE_URL"):
        LLMExtractor(LLMSettings(model="m"))
    with pytest.raises(LLMError, match="RISKML_LLM_MODEL"):
        LLMExtractor(LLMSettings(base_url="http://127.0.0.1:9/v1"))


def test_unreachable_server(server: OpenAIServer) -> None:
    server.stop()
    with pytest.raises(LLMUnavailable, match="cannot reach the LLM API"):
        _extractor(server, max_retries=0).extract([_doc()])


def test_library_call_with_the_llm(server: OpenAIServer) -> None:
    settings = LLMSettings(base_url=server.base_url, api_key=API_KEY, model="m")
    result = extract_documents([_doc()], extractor="llm", llm_settings=settings)
    assert result.extractor == "llm" and result.evidence.order_id == "ORD-2024-55120"
    # the rules read the same document the same way
    rules = extract_documents([_doc()], extractor="rules")
    assert rules.extractor == "rules"
    for name in ("order_id", "amount", "transaction_date", "ip_address", "device_id"):
        assert getattr(rules.evidence, name) == getattr(result.evidence, name), name
    assert json.loads(result.model_dump_json())["tokens_in"] > 0
