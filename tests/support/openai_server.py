"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the LLM extractor tests.

It speaks ``POST /v1/chat/completions`` with the real request and response shapes (``id``,
``object``, ``created``, ``model``, ``choices[0].message.content``, ``finish_reason``, ``usage``)
and answers an extraction request with a deterministic "model": an independent, deliberately
simple label-and-value reader over the document text in the prompt (not the rules extractor),
that fills the response format's JSON schema (each field: ``value``, ``quote``, ``document``).
A test can register canned answers instead, and queue faults consumed one per request:

* ``Fault("delay", seconds=...)``: sleep before answering (past the client's timeout);
* ``Fault("status", status=429|500|..., retry_after=...)``: an error response, JSON error body;
* ``Fault("malformed")``: a 200 whose message content is not JSON;
* ``Fault("schema")``: a 200 whose content is JSON that violates the schema;
* ``Fault("bad_body")``: a 200 whose HTTP body itself is not JSON.

Every request is recorded (headers and parsed body), so a test can assert what left the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from tests.support.fake_http import FakeHttpServer

API_KEY = "sk-test-local"

FaultKind = Literal["delay", "status", "malformed", "schema", "bad_body"]


@dataclass
class Fault:
    kind: FaultKind
    seconds: float = 0.0
    status: int = 500
    retry_after: float | None = None


# -- the deterministic "model" --------------------------------------------------------------------

#: Field -> label words the model looks for at the start of a line segment (``Label: value``).
_LABELS: dict[str, tuple[str, ...]] = {
    "order_id": ("order number", "order no", "order id", "order #", "order", "reference"),
    "merchant_name": ("merchant", "sold by", "seller"),
    "amount": ("total charged", "order total", "total", "amount charged", "amount"),
    "transaction_date": ("order date", "purchase date", "transaction date", "date of purchase"),
    "shipping_date": ("ship date", "shipped on", "shipping date", "date shipped"),
    "carrier": ("carrier", "shipped via", "courier"),
    "tracking_number": ("tracking number", "tracking no", "tracking #", "tracking id"),
    "delivery_status": ("status", "delivery status"),
    "delivery_date": ("delivered on", "delivery date", "date delivered"),
    "avs_result": ("avs result", "avs", "address verification"),
    "cvv_result": ("cvv result", "cvv", "cvv2", "security code"),
    "ip_address": ("ip address", "ip"),
    "device_id": ("device id", "device fingerprint", "device"),
    "refund_amount": ("refund amount", "amount refunded"),
    "refund_date": ("refund date", "refunded on"),
    "cancellation_date": ("cancellation date", "cancelled on"),
}
_DATE_FORMATS = ("%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%m/%d/%Y")
_DOC_RE = re.compile(r"^=+ DOCUMENT (\S+) .*?=+$", re.MULTILINE)


def _date(text: str) -> str | None:
    text = text.strip().rstrip(".")
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _typed(field: str, spec: dict[str, Any], raw: str) -> Any:
    """``raw`` as the schema's type for ``field``, or None when it does not parse."""
    types = spec.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "enum" in spec:
        word = raw.strip().lower().replace(" ", "_").rstrip(".")
        return word if word in spec["enum"] else None
    if "number" in types:
        m = re.search(r"\d[\d,]*(?:\.\d+)?", raw)
        return float(m.group().replace(",", "")) if m else None
    if "boolean" in types:
        return None
    if "date" in field:
        return _date(raw)
    return raw.strip() or None


def answer_from_prompt(prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The deterministic model: for each schema field, the first ``Label: value`` line whose
    label names it, with that line as the quote and the enclosing document's name."""
    props = schema.get("properties", {})
    answer: dict[str, Any] = {
        name: {"value": None, "quote": None, "document": None} for name in props
    }
    doc = None
    for line in prompt.splitlines():
        m = _DOC_RE.match(line.strip())
        if m:
            doc = m.group(1)
            continue
        for segment in re.split(r"\s{2,}(?=[A-Z][A-Za-z #]+:)", line.strip()):
            if ":" not in segment:
                continue
            label, _, raw = segment.partition(":")
            label = label.strip().lower()
            for field, names in _LABELS.items():
                if field not in props or answer[field]["value"] is not None:
                    continue
                if label in names:
                    spec = props[field]["properties"]["value"]
                    value = _typed(field, spec, raw)
                    if value is not None:
                        answer[field] = {"value": value, "quote": segment.strip(), "document": doc}
                    break
    return answer


def _tokens(text: str) -> int:
    """A deterministic token count (about 4 characters a token)."""
    return max(1, (len(text) + 3) // 4)


# -- the server -----------------------------------------------------------------------------------


class OpenAIServer(FakeHttpServer):
    """Start with ``with OpenAIServer() as server:``; point the client at ``server.base_url``."""

    def __init__(self, *, api_key: str = API_KEY, model: str = "local-extractor") -> None:
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.faults: deque[Fault] = deque()
        self.answers: deque[dict[str, Any] | str] = deque()
        self.answer_fn: Callable[[str, dict[str, Any]], dict[str, Any]] = answer_from_prompt
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.host}/v1"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each request consumes the next one (then answers normally)."""
        self.faults.extend(faults)

    def answer_with(self, *answers: dict[str, Any] | str) -> None:
        """Queue canned answers (a dict is sent as JSON content; a str verbatim)."""
        self.answers.extend(answers)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    def sent_text(self) -> str:
        """Everything the clients sent (bodies as JSON text): for 'no PII left' checks."""
        return "\n".join(json.dumps(r["body"]) for r in self.requests)

    def _complete(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        usage_in, usage_out = _tokens(prompt), _tokens(content)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage_in,
                "completion_tokens": usage_out,
                "total_tokens": usage_in + usage_out,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                # the client may have given up (timeout)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def _error(self, code: int, message: str, kind: str, **headers: str) -> None:
                body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
                self._send(code, body, headers)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    return self._send(
                        200, {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                    )
                self._error(404, f"no route GET {self.path}", "invalid_request_error")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                with server._lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "retry_count": self.headers.get("x-stainless-retry-count"),
                            "body": body,
                        }
                    )
                    fault = server.faults.popleft() if server.faults else None
                    canned = server.answers.popleft() if server.answers and not fault else None
                if self.path != "/v1/chat/completions":
                    return self._error(404, f"no route POST {self.path}", "invalid_request_error")
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._error(401, "Incorrect API key provided", "invalid_request_error")
                if "_unparsed" in body or not body.get("messages"):
                    return self._error(400, "messages is required", "invalid_request_error")
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                if fault is not None and fault.kind == "status":
                    headers = (
                        {"Retry-After": f"{fault.retry_after:g}"}
                        if fault.retry_after is not None
                        else {}
                    )
                    return self._error(fault.status, "injected fault", "server_error", **headers)
                if fault is not None and fault.kind == "bad_body":
                    return self._send(200, b'{"id": "chatcmpl-x", "choices": [')
                if fault is not None and fault.kind == "malformed":
                    return self._send(200, server._complete(body, '{"order_id": {"value": "A1'))
                schema = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
                if fault is not None and fault.kind == "schema":
                    return self._send(
                        200, server._complete(body, json.dumps({"order_id": 12, "bogus": True}))
                    )
                if canned is not None:
                    content = canned if isinstance(canned, str) else json.dumps(canned)
                else:
                    prompt = "\n".join(
                        str(m.get("content", ""))
                        for m in body["messages"]
                        if m.get("role") == "user"
                    )
                    content = json.dumps(server.answer_fn(prompt, schema))
                self._send(200, server._complete(body, content))

        return Handler
