"""Bearer-key authentication of the decision API (``Authorization: Bearer <key>``).

Keys come from the settings (``RISKML_API_KEYS``, ``RISKML_ADMIN_API_KEYS``, comma-separated so
that two keys can be valid while one is rotated), read once when an Ingress replica starts and
never logged. A presented key is compared in constant time against every configured key (no
early exit). An admin key does everything a normal key does and also reads the model's
internals (``GET /v1/model``). With no key configured the API is open (a local app) and the
replica says so at start-up; with ``RISKML_REQUIRE_API_KEYS`` (the cluster) it refuses to start.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from riskml.settings import Settings
from serving.admission import Problem

#: The OpenAPI security scheme; ``auto_error=False``: a missing or malformed header reaches
#: :meth:`Authenticator.role` (a 401 with our body, not FastAPI's 403).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from RISKML_API_KEYS (or RISKML_ADMIN_API_KEYS).",
)

#: What the protected routes declare in the OpenAPI document beside their own answers.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "Missing or invalid API key (`Authorization: Bearer <key>`).",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    }
}
OPEN_WARNING = "decision API is open: no RISKML_API_KEYS"


class Role(enum.IntEnum):
    CLIENT = 1
    ADMIN = 2


class MissingApiKeys(RuntimeError):
    """``require_api_keys`` is set but no key is configured."""


def parse_keys(value: SecretStr | None) -> tuple[bytes, ...]:
    """The keys of a comma-separated secret (blanks around and empty items dropped)."""
    if value is None:
        return ()
    return tuple(k.strip().encode() for k in value.get_secret_value().split(",") if k.strip())


def client_key(settings: Settings) -> str | None:
    """The key a client in this repository sends (replay, demos, benchmarks): the first of
    ``RISKML_API_KEYS``, else of ``RISKML_ADMIN_API_KEYS``; None when there is none."""
    for keys in (parse_keys(settings.api_keys), parse_keys(settings.admin_api_keys)):
        if keys:
            return keys[0].decode()
    return None


def auth_headers(key: str | None) -> dict[str, str]:
    """``{"Authorization": "Bearer <key>"}``, or nothing for no key."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def _matches(given: bytes, keys: Sequence[bytes]) -> bool:
    found = False
    for key in keys:  # every key compared: how long it takes does not depend on which matched
        found |= hmac.compare_digest(given, key)
    return found


class Authenticator:
    """The keys of one replica; :meth:`role` checks a request's credentials."""

    def __init__(self, client_keys: Sequence[bytes], admin_keys: Sequence[bytes]) -> None:
        self.client_keys = tuple(client_keys)
        self.admin_keys = tuple(admin_keys)

    @classmethod
    def from_settings(cls, settings: Settings, log: logging.Logger) -> Authenticator:
        auth = cls(parse_keys(settings.api_keys), parse_keys(settings.admin_api_keys))
        if auth.open:
            if settings.require_api_keys:
                raise MissingApiKeys(
                    "RISKML_REQUIRE_API_KEYS is true but no API key is configured: set "
                    "RISKML_API_KEYS (comma-separated; on Kubernetes from the Secret "
                    "riskml-api-keys) or RISKML_ADMIN_API_KEYS"
                )
            log.warning(OPEN_WARNING)
        return auth

    @property
    def open(self) -> bool:
        """No key configured: every request is let in (as an admin)."""
        return not self.client_keys and not self.admin_keys

    def role(self, credentials: HTTPAuthorizationCredentials | None) -> Role:
        """The caller's role; ``HTTPException(401)`` for a missing or unknown key."""
        if self.open:
            return Role.ADMIN
        if credentials is not None:
            given = credentials.credentials.encode()
            admin = _matches(given, self.admin_keys)
            client = _matches(given, self.client_keys)
            if admin:
                return Role.ADMIN
            if client:
                return Role.CLIENT
        raise HTTPException(
            status_code=401,
            detail="invalid API key" if credentials else "missing API key (Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
