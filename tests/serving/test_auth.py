"""The decision API's bearer keys, in process: the Ingress (colocated, stand-in features in
memory) constructed as a replica would, its FastAPI app served by a TestClient on the same loop.
401 without a key or with a wrong one, both keys of a rotation accepted, the model's internals
only to an admin key, /healthz open; no keys: open and said so; keys required but absent: the
replica refuses to start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskml.settings import get_settings
from serving.auth import OPEN_WARNING, MissingApiKeys
from tests.support.standin_models import memory_source, model_args
from tests.support.traffic import live_transactions

KEYS = ("old-key-3f9a", "new-key-81c2")
ADMIN = "admin-key-77d0"


def _ingress_class() -> Any:
    """The user class under Serve's ASGI wrapper (its constructor is what a replica runs)."""
    from serving.deployments import Ingress

    cls = Ingress.func_or_class.__mro__[1]  # type: ignore[attr-defined]
    assert cls.__name__ == "Ingress"
    return cls


@pytest.fixture
def serve_app(reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``serve_app(**env)``: a TestClient on an Ingress started with ``RISKML_<env>`` set."""
    from ray import serve

    from serving.deployments import api

    replica = SimpleNamespace(
        servable_object=None, _deployment_config=SimpleNamespace(max_ongoing_requests=100)
    )
    monkeypatch.setattr(serve, "get_replica_context", lambda: replica)
    opened: list[tuple[TestClient, Any]] = []

    def start(**env: str) -> TestClient:
        for name, value in env.items():
            monkeypatch.setenv(f"RISKML_{name.upper()}", value)
        get_settings.cache_clear()
        client = TestClient(api, raise_server_exceptions=True)
        client.__enter__()
        cls = _ingress_class()

        async def construct() -> Any:
            obj = cls.__new__(cls)
            await cls.__init__(
                obj, champion="v1", colocated=model_args(reference, memory_source(reference))
            )
            return obj

        replica.servable_object = client.portal.call(construct)  # type: ignore[union-attr]
        opened.append((client, replica.servable_object))
        return client

    yield start
    for client, ingress in opened:
        client.portal.call(ingress.decision_log.close)  # type: ignore[union-attr]
        ingress.backend.components.close()
        client.__exit__(None, None, None)
        _retire(ingress)


def _retire(ingress: Any) -> None:
    """Serve awaits the async ``__del__`` at shutdown; here it has run (or, for a constructor
    that failed, has nothing to do): keep the garbage collector from calling it unawaited."""
    cls = type(ingress)
    ingress.__class__ = type("RetiredIngress", (cls,), {"__del__": lambda self: None})


def _tx() -> dict[str, Any]:
    return live_transactions(1, seed=3, prefix="auth")[0]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_guard_every_route_but_healthz(serve_app: Any) -> None:
    client = serve_app(api_keys=",".join(KEYS), admin_api_keys=ADMIN)
    tx = _tx()
    protected = [
        ("POST", "/v1/score", tx),
        ("POST", "/v1/score/batch", {"transactions": [tx]}),
        ("GET", "/v1/model", None),
        ("GET", "/v1/decision-log", None),
    ]
    for method, path, body in protected:
        for headers in ({}, _bearer("wrong"), {"Authorization": f"Basic {KEYS[0]}"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["detail"]
        for key in (*KEYS, ADMIN):  # both keys of a rotation, and the admin key
            r = client.request(method, path, json=body, headers=_bearer(key))
            assert r.status_code == 200, (path, r.text)
    assert client.get("/healthz").status_code == 200


def test_model_internals_only_to_an_admin_key(serve_app: Any) -> None:
    client = serve_app(api_keys=KEYS[0], admin_api_keys=ADMIN)
    plain = client.get("/v1/model", headers=_bearer(KEYS[0])).json()
    assert plain["champion"] == "v1" and "v1" in plain["versions"]
    assert plain["feature_names"] is None
    assert plain["decider_config"] is None and plain["ingress_config"] is None
    admin = client.get("/v1/model", headers=_bearer(ADMIN)).json()
    assert admin["feature_names"] and "thresholds" in admin["decider_config"]
    assert admin["ingress_config"]["deadline_ms"] > 0


def test_no_keys_is_open_and_says_so(serve_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("ray.serve").addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="ray.serve"):
            client = serve_app()
    finally:
        logging.getLogger("ray.serve").removeHandler(caplog.handler)
    assert OPEN_WARNING in caplog.text
    assert client.post("/v1/score", json=_tx()).status_code == 200
    assert client.get("/v1/model").json()["feature_names"]  # open: everything, as before


def test_required_keys_missing_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKML_REQUIRE_API_KEYS", "true")
    monkeypatch.setenv("RISKML_API_KEYS", " , ")  # blank items are no keys
    get_settings.cache_clear()
    cls = _ingress_class()
    ingress = cls.__new__(cls)
    with pytest.raises(MissingApiKeys, match="RISKML_REQUIRE_API_KEYS is true but no API key"):
        asyncio.run(cls.__init__(ingress, champion="v1", colocated={}))
    _retire(ingress)


def test_openapi_declares_the_bearer_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    from riskml.settings import get_settings
    from serving.deployments import api

    monkeypatch.setenv("RISKML_API_KEYS", "k1")
    get_settings.cache_clear()
    try:
        doc = api.openapi()
    finally:
        get_settings.cache_clear()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert doc["paths"]["/v1/score"]["post"]["security"] == [{"apiKey": []}]
    assert "401" in doc["paths"]["/v1/model"]["get"]["responses"]


def test_an_open_app_documents_no_security(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys the routes accept anyone, and the OpenAPI document says so (a client, or
    schemathesis' auth check, reading it sees what the app does)."""
    from riskml.settings import get_settings
    from serving.deployments import api

    for name in ("RISKML_API_KEYS", "RISKML_ADMIN_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        doc = api.openapi()
    finally:
        get_settings.cache_clear()
    assert "securitySchemes" not in doc.get("components", {})
    assert "security" not in doc["paths"]["/v1/score"]["post"]
    assert "401" not in doc["paths"]["/v1/model"]["get"]["responses"]
