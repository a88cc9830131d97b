"""Who may call a service's API, and what failing costs.

Clients present an API key, as ``X-API-Key``, as an ``Authorization: Bearer`` token, or
as the password of HTTP Basic (what a browser sends for a page, e.g. insights' report).
Each key has scopes: ``read`` for GET and HEAD, ``write`` for everything else, so that a
dashboard's key cannot change anything. A wrong or missing key is 401, a key without the
scope 403, both RFC 9457 problem+json.

Failed attempts (a wrong or missing key, a bad signature, a guessed survey link) are
counted per client address in the service's ``limits`` storage; an address over the
limit gets 429 with Retry-After until its window has passed, whatever it sends. The
address is the TCP peer's, or behind proxies the operator trusts (``TRUSTED_PROXIES``)
the one the nearest of them saw.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from shared.settings import ServiceSettings

MIN_KEY_CHARS = 16
FORWARDED_FOR = "X-Forwarded-For"

Network = IPv4Network | IPv6Network


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


ALL_SCOPES = frozenset(Scope)
_READING = frozenset({"GET", "HEAD", "OPTIONS"})


def scope_for(method: str) -> Scope:
    """Reading needs ``read``; anything that may change something needs ``write``."""
    return Scope.READ if method.upper() in _READING else Scope.WRITE


class ApiKey(BaseModel):
    """A client's key and what it may do. A bare string is a key with every scope, so
    that keys configured before there were scopes keep working."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    key: SecretStr
    scopes: frozenset[Scope] = Field(default=ALL_SCOPES, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_key(cls, value: Any) -> Any:
        return {"key": value} if isinstance(value, str | SecretStr) else value

    @model_validator(mode="after")
    def _long_enough(self) -> ApiKey:
        if len(self.key.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(f"an API key must have {MIN_KEY_CHARS} characters or more")
        return self


def _one_key_per_client(keys: dict[str, ApiKey]) -> dict[str, ApiKey]:
    by_key: dict[str, list[str]] = {}
    for name, api_key in keys.items():
        by_key.setdefault(api_key.key.get_secret_value(), []).append(name)
    shared = [", ".join(sorted(names)) for names in by_key.values() if len(names) > 1]
    if shared:
        raise ValueError(f"clients {'; '.join(shared)} share a key: give each its own")
    return keys


# A service's clients as a setting: JSON of client name -> key, or -> {"key": ...,
# "scopes": ["read"]}.
ApiKeySettings = Annotated[dict[str, ApiKey], AfterValidator(_one_key_per_client)]


@dataclass(frozen=True)
class Client:
    name: str
    scopes: frozenset[Scope]


def forbidden(client: Client, scope: Scope) -> str | None:
    """Why ``client`` may not do what needs ``scope``; None when it may."""
    if scope in client.scopes:
        return None
    has = " and ".join(sorted(client.scopes))
    return f"the key of {client.name} has the {has} scope only; this needs the {scope} scope"


class ApiKeys:
    """The configured keys, compared by their SHA-256 in constant time."""

    def __init__(self, keys: Mapping[str, ApiKey]) -> None:
        self._clients = [
            (
                hashlib.sha256(api_key.key.get_secret_value().encode()).digest(),
                Client(name, api_key.scopes),
            )
            for name, api_key in keys.items()
        ]

    def client_of(self, presented: str) -> Client | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for expected, client in self._clients:  # every one, whichever matches
            if hmac.compare_digest(digest, expected):
                found = client
        return found


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The address failed attempts are counted for. The peer's, unless the peer is a
    trusted proxy: then the nearest address in X-Forwarded-For that is not one, read
    from the right, since a client can put anything at the left of the header."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _trusted(peer, proxies):
        return peer
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        try:
            address = str(ip_address(hop.strip()))
        except ValueError:
            return address  # past what a trusted proxy wrote: the last good hop
        if not _trusted(address, proxies):
            return address
    return address


class FailureLimit:
    """Failed attempts per client address, in the service's ``limits`` storage."""

    def __init__(self, storage: Storage, limit: str, namespace: str) -> None:
        self.storage = storage
        self._limits: list[RateLimitItem] = parse_many(limit)
        self._limiter = FixedWindowRateLimiter(storage)
        self._namespace = namespace

    async def retry_after(self, address: str) -> int | None:
        """None while ``address`` is within the limit, else the seconds until it is."""
        for limit in self._limits:
            if not await self._limiter.test(limit, "failures", self._namespace, address):
                stats = await self._limiter.get_window_stats(
                    limit, "failures", self._namespace, address
                )
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def count(self, address: str) -> None:
        for limit in self._limits:
            await self._limiter.hit(limit, "failures", self._namespace, address)


@dataclass(frozen=True)
class Gate:
    """What an API needs to admit a request: the clients' keys, the limit on failed
    attempts and the proxies whose X-Forwarded-For is believed. On ``app.state.gate``."""

    keys: ApiKeys
    failures: FailureLimit
    proxies: Sequence[Network] = ()

    @classmethod
    def of(
        cls,
        service: str,
        settings: ServiceSettings,
        keys: Mapping[str, ApiKey],
        storage: Storage,
    ) -> Gate:
        return cls(
            keys=ApiKeys(keys),
            failures=FailureLimit(storage, settings.auth_failure_limit, service),
            proxies=tuple(settings.trusted_proxies),
        )

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.get(FORWARDED_FOR), self.proxies)


def too_many_failures(retry_after: int) -> HTTPException:
    return HTTPException(
        429,
        f"too many failed attempts from this address: retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The client's key")
bearer = HTTPBearer(auto_error=False, description="The same key as a bearer token")
basic = HTTPBasic(
    auto_error=False,
    description="The same key as the password of HTTP Basic (any user name), so that a "
    "browser can open a service's pages and follow their links",
)


def basic_challenge(realm: str) -> str:
    """The challenge that makes a browser ask for the key (as the password)."""
    return f'Basic realm="{realm}", charset="UTF-8"'


async def admit(request: Request, presented: str | None, challenge: str = "Bearer") -> Client:
    """The client whose key was ``presented``. 429 for an address over the limit on
    failed attempts (whatever it sends), 401 with ``challenge`` without a valid key,
    403 for a key without the scope the method needs."""
    gate: Gate = request.app.state.gate
    address = gate.address(request)
    wait = await gate.failures.retry_after(address)
    if wait is not None:
        raise too_many_failures(wait)
    client = gate.keys.client_of(presented) if presented else None
    if client is None:
        await gate.failures.count(address)
        raise HTTPException(
            401,
            "a valid API key is required (X-API-Key header, Authorization: Bearer, or as the "
            "password of HTTP Basic)",
            headers={"WWW-Authenticate": challenge},
        )
    reason = forbidden(client, scope_for(request.method))
    if reason is not None:
        raise HTTPException(403, reason)
    request.state.client = client.name
    return client


def presented_key(
    api_key: str | None,
    token: HTTPAuthorizationCredentials | None,
    credentials: HTTPBasicCredentials | None,
) -> str | None:
    if api_key:
        return api_key
    if token is not None:
        return token.credentials
    return credentials.password if credentials is not None else None


async def api_client(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    credentials: Annotated[HTTPBasicCredentials | None, Security(basic)],
) -> str:
    """The name of the calling client (:func:`admit`)."""
    client = await admit(request, presented_key(api_key, token, credentials))
    return client.name


async def browser_client(request: Request, realm: str) -> Client:
    """:func:`admit` for a page a person opens: the key comes as any API client sends it
    or as HTTP Basic's password, and the 401 asks the browser for it."""
    try:
        credentials = await basic(request)
    except HTTPException:  # Basic that is not base64 of user:password: no key given
        credentials = None
    presented = presented_key(await api_key_header(request), await bearer(request), credentials)
    return await admit(request, presented, basic_challenge(realm))
