"""API keys with scopes, the client's address behind proxies, and the limit on failed
attempts per address: the decisions, without a server."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from shared.auth import (
    ApiKeys,
    ApiKeySettings,
    FailureLimit,
    Scope,
    client_address,
    forbidden,
    scope_for,
)
from shared.ratelimit import async_storage

READ_KEY = "a-dashboard-read-key-0123"
WRITE_KEY = "a-workforce-tool-key-4567"


class KeysOnly(BaseModel):
    api_keys: ApiKeySettings


def keys(raw: object) -> ApiKeys:
    return ApiKeys(KeysOnly.model_validate({"api_keys": raw}).api_keys)


def test_reading_needs_the_read_scope_and_everything_else_the_write_scope() -> None:
    assert scope_for("GET") is Scope.READ
    assert scope_for("HEAD") is Scope.READ
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert scope_for(method) is Scope.WRITE


def test_a_bare_key_keeps_working_with_both_scopes() -> None:
    client = keys({"crm": WRITE_KEY}).client_of(WRITE_KEY)
    assert client is not None
    assert client.name == "crm" and client.scopes == {Scope.READ, Scope.WRITE}
    # As the tests and older code pass it: a SecretStr rather than a string.
    assert keys({"crm": SecretStr(WRITE_KEY)}).client_of(WRITE_KEY) is not None


def test_a_read_key_may_read_and_is_refused_writing_with_a_reason() -> None:
    api_keys = keys(
        {"dashboard": {"key": READ_KEY, "scopes": ["read"]}, "workforce": {"key": WRITE_KEY}}
    )
    dashboard = api_keys.client_of(READ_KEY)
    workforce = api_keys.client_of(WRITE_KEY)
    assert dashboard is not None and workforce is not None
    assert forbidden(dashboard, Scope.READ) is None
    reason = forbidden(dashboard, Scope.WRITE)
    assert reason is not None and "dashboard" in reason and "write" in reason
    assert forbidden(workforce, Scope.WRITE) is None


def test_an_unknown_key_is_no_client() -> None:
    api_keys = keys({"crm": WRITE_KEY})
    assert api_keys.client_of("a-guessed-key-0000000") is None
    assert api_keys.client_of(WRITE_KEY[:-1]) is None
    assert api_keys.client_of("") is None


@pytest.mark.parametrize(
    "raw",
    [
        {"crm": "short"},
        {"crm": {"key": WRITE_KEY, "scopes": []}},
        {"crm": {"key": WRITE_KEY, "scopes": ["admin"]}},
        {"crm": {"key": WRITE_KEY, "role": "write"}},
    ],
    ids=["short key", "no scope", "unknown scope", "unknown field"],
)
def test_keys_that_cannot_work_are_refused_at_start(raw: object) -> None:
    with pytest.raises(ValidationError, match="crm"):
        KeysOnly.model_validate({"api_keys": raw})


def test_a_key_given_to_two_clients_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="crm, dialer"):
        KeysOnly.model_validate({"api_keys": {"crm": WRITE_KEY, "dialer": WRITE_KEY}})


PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", []) == "203.0.113.9"
    assert client_address("10.1.2.3", "198.51.100.1", []) == "10.1.2.3"


def test_behind_a_trusted_proxy_the_client_is_the_last_address_it_did_not_add() -> None:
    # The client may send any X-Forwarded-For of its own: only what the trusted proxies
    # appended is believed.
    assert client_address("10.1.2.3", "1.1.1.1, 198.51.100.1", PROXIES) == "198.51.100.1"
    assert client_address("10.1.2.3", "198.51.100.1, 10.9.9.9", PROXIES) == "198.51.100.1"
    assert client_address("fd00::1", "2001:db8::7", PROXIES) == "2001:db8::7"


def test_an_untrusted_peer_or_a_header_that_is_no_address_leaves_the_peer() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", PROXIES) == "203.0.113.9"
    assert client_address("10.1.2.3", None, PROXIES) == "10.1.2.3"
    assert client_address("10.1.2.3", "not-an-address", PROXIES) == "10.1.2.3"
    assert client_address("10.1.2.3", "10.4.4.4", PROXIES) == "10.4.4.4"
    assert client_address(None, None, PROXIES) == "unknown"


async def test_failures_are_counted_per_address_until_the_limit_then_refused() -> None:
    failures = FailureLimit(async_storage("async+memory://"), "3/minute", "test")
    for _ in range(3):
        assert await failures.retry_after("198.51.100.1") is None
        await failures.count("198.51.100.1")
    wait = await failures.retry_after("198.51.100.1")
    assert wait is not None and 1 <= wait <= 60
    assert await failures.retry_after("198.51.100.2") is None
    other_service = FailureLimit(failures.storage, "3/minute", "other")
    assert await other_service.retry_after("198.51.100.1") is None
