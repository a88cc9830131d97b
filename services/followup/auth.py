"""Who may use the case API: agent tools with an API key, sent as ``X-API-Key`` or as an
``Authorization: Bearer`` token. Customers never use it; their survey link is their
credential."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Agent tool key")
bearer = HTTPBearer(auto_error=False, description="The same key as a bearer token")


class ApiKeys:
    """Configured keys, compared by their SHA-256 in constant time."""

    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._digests = {
            name: hashlib.sha256(key.get_secret_value().encode()).digest()
            for name, key in keys.items()
        }

    def client_of(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for name, expected in self._digests.items():
            if hmac.compare_digest(digest, expected):
                found = name
        return found


async def agent_client(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> str:
    """The name of the calling agent tool; 401 without a valid key."""
    presented = api_key or (token.credentials if token else None)
    keys: ApiKeys = request.app.state.api_keys
    client = keys.client_of(presented) if presented else None
    if client is None:
        raise HTTPException(
            401,
            "a valid API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.client = client
    return client
