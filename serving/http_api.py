"""FastAPI pieces every riskml Serve app shares (the fraud decision API, the credit API).

- :class:`RiskApi`: a FastAPI app whose OpenAPI document says what the app does — with no API key
  configured (an open local app) it declares no security scheme and no 401
  (:func:`without_security`).
- :func:`install_error_handlers`: the same error answers on every app: a request that fails
  validation is a 422 ``{"detail": [{"type", "loc", "msg", "input", "ctx"}]}`` with the offending
  input kept JSON-encodable and short (:func:`json_safe`), and a body FastAPI cannot decode as
  JSON text (not UTF-8, nested past the parser's recursion limit) is that same 422
  (``json_invalid``) rather than FastAPI's bare 400.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Self

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from riskml.settings import get_settings
from serving.auth import parse_keys


def json_safe(value: Any, depth: int = 0) -> Any:
    """Errors echo the offending input; keep it JSON-encodable (NaN/inf -> text) and short."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value[:200] if isinstance(value, str) else value
    if depth > 3:
        return "..."
    if isinstance(value, dict):
        return {str(k)[:100]: json_safe(v, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        items = [json_safe(v, depth + 1) for v in list(value)[:5]]
        return items + ([f"... {len(value) - 5} more"] if len(value) > 5 else [])
    return str(value)[:200]


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that fails validation: 422 with each error's type, location, message, input
    and context."""
    errors = [
        {k: json_safe(v) for k, v in err.items() if k in ("type", "loc", "msg", "input", "ctx")}
        for err in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's own answers, but one: a body it cannot decode as JSON text (not UTF-8, nested
    past the parser's recursion limit) is a bare 400 there where malformed JSON is a 422; here
    it is the 422 (``json_invalid``) every other body that is not a request gets."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
        error = {
            "type": "json_invalid",
            "loc": ["body"],
            "msg": "JSON decode error",
            "ctx": {"error": json_safe(str(cause))},
        }
        return JSONResponse(status_code=422, content={"detail": [error]})
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> FastAPI:
    """Register the shared 422 handlers on ``app`` (before ``@serve.ingress`` freezes it)."""
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    return app


def without_security(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with no security scheme and no 401 (a copy)."""
    doc = copy.deepcopy(doc)
    doc.get("components", {}).pop("securitySchemes", None)
    for operations in doc.get("paths", {}).values():
        for op in operations.values():
            if isinstance(op, dict):
                op.pop("security", None)
                (op.get("responses") or {}).pop("401", None)
    return doc


def keys_configured() -> bool:
    """Whether any API key (client or admin) is configured: the app then requires one."""
    settings = get_settings()
    return bool(parse_keys(settings.api_keys) or parse_keys(settings.admin_api_keys))


class RiskApi(FastAPI):
    """A riskml API. Its OpenAPI document says what the app does: without API keys configured
    (an open local app) it declares no security scheme and no 401. Subclasses adjust the
    document in :meth:`adjust_openapi`."""

    def adjust_openapi(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Hook: live limits and the like written into the document (a copy)."""
        return doc

    def openapi(self) -> dict[str, Any]:
        doc = self.adjust_openapi(copy.deepcopy(super().openapi()))
        return doc if keys_configured() else without_security(doc)


class BundleSource(BaseModel):
    """Where a replica loads a product line's bundle from: a registry URI (pinned with its
    digest) or a local bundle directory. Each line's subclass loads it (``load``)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = None
    digest: str | None = None
    bundle_dir: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.model_uri is None) == (self.bundle_dir is None):
            raise ValueError("give exactly one of a models:/ URI and a bundle directory")
        return self

    def resolved(self) -> Self:
        """An alias resolved to its pinned version and digest, the bundle fetched and verified
        (once, here, before anything is deployed)."""
        if self.model_uri is None:
            from riskml.models.bundle import verify_bundle

            verify_bundle(str(self.bundle_dir), digest=self.digest)
            return self
        from riskml.registry.store import fetch, resolve

        ref = resolve(self.model_uri)
        fetch(ref, digest=self.digest)
        return type(self)(model_uri=ref.model_uri, digest=ref.digest)

    def bundle_path(self) -> Path:
        """The verified bundle's directory (fetched from the registry into the cache)."""
        if self.model_uri is None:
            return Path(str(self.bundle_dir))
        from riskml.registry.store import fetch

        return Path(fetch(self.model_uri, digest=self.digest))

    def load(self, *, nthread: int = 1) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not say how to load its bundle")


#: Replicas that reserve no CPU (local runs on a small machine; the serve config sets its own).
NO_CPU = {"num_cpus": 0}


def app_entry(
    import_path: str,
    deployment: str,
    args: dict[str, Any],
    user_config: BaseModel,
    *,
    name: str,
    route_prefix: str,
    num_replicas: int = 1,
    actor_options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One application entry of a serve config (the shape of ``serving/serve_config.yaml``'s)
    with one deployment, for local runs: ``num_replicas`` replicas reserving no CPU unless
    ``actor_options`` say otherwise; ``env``: environment variables of the app (its build,
    where registry URIs are resolved, and its replicas). The caller validates ``args``."""
    entry: dict[str, Any] = {
        "name": name,
        "route_prefix": route_prefix,
        "import_path": import_path,
        "args": args,
        "deployments": [
            {
                "name": deployment,
                "num_replicas": num_replicas,
                "ray_actor_options": {**NO_CPU, **(actor_options or {})},
                "user_config": user_config.model_dump(),
            }
        ],
    }
    if env:
        entry["runtime_env"] = {"env_vars": dict(env)}
    return entry
