"""Integrations: the configuration file, secrets from the environment, request
signatures, rate limits and replay protection."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from limits import parse_many

from services.intake.guards import Guards
from services.intake.policy import (
    Integration,
    Integrations,
    load_integrations,
    sign,
    signature_problem,
)
from services.intake.settings import IntakeSettings
from shared.config import ConfigError
from shared.contracts import Channel
from shared.ratelimit import async_storage

SHIPPED = Path(__file__).resolve().parents[3] / "services" / "intake" / "policy.yaml"
NOW = 1_773_000_000


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "integrations.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_activates_only_integrations_whose_keys_are_set() -> None:
    assert len(load_integrations(SHIPPED, {})) == 0
    dev = load_integrations(SHIPPED, {"CLOSELOOP_INTAKE_DEV_API_KEY": "k"})
    integration = dev.by_key("k")
    assert integration is not None and integration.name == "development"
    assert integration.region == "CN" and not integration.signs


def test_the_shipped_mail_gateway_needs_its_signing_secret_once_its_key_is_set() -> None:
    with pytest.raises(ConfigError, match="CLOSELOOP_INTAKE_MAIL_GATEWAY_SIGNING_SECRET"):
        load_integrations(SHIPPED, {"CLOSELOOP_INTAKE_MAIL_GATEWAY_API_KEY": "k"})
    gateway = load_integrations(
        SHIPPED,
        {
            "CLOSELOOP_INTAKE_MAIL_GATEWAY_API_KEY": "k",
            "CLOSELOOP_INTAKE_MAIL_GATEWAY_SIGNING_SECRET": "s",
        },
    ).by_key("k")
    assert gateway is not None and gateway.signs
    assert gateway.allows(Channel.EMAIL) and not gateway.allows(Channel.WEB)


def test_a_key_can_be_given_as_its_sha256_instead_of_a_variable(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"the-key").hexdigest()
    path = write(tmp_path, f"integrations:\n  - name: crm\n    api_key_sha256: {digest}\n")
    integrations = load_integrations(path, {})
    assert integrations.by_key("the-key") is not None
    assert integrations.by_key("the-key ") is None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("integrations:\n  - name: a\n", "api_key_env or api_key_sha256"),
        ("integrations:\n  - name: a\n    api_key_env: K\n    rate_limit: lots\n", "rate_limit"),
        ("integrations:\n  - name: a\n    api_key_env: K\n    default_region: XX\n", "region"),
        ("integrations:\n  - name: a\n    api_key_env: K\n    timezone: Mars/Base\n", "timezone"),
        ("integrations:\n  - name: a\n    api_key_env: K\n    channels: [fax]\n", "channels"),
        ("integrations:\n  - name: A B\n    api_key_env: K\n", "name"),
        ("integrations:\n  - {name: a, api_key_env: K}\n  - {name: a, api_key_env: L}\n", "unique"),
        ("integrations: []\n", "integrations"),
        ("integrations:\n  - name: a\n    api_key_env: MISSING\n", "MISSING"),
    ],
)
def test_a_bad_file_fails_fast_naming_the_file_and_field(
    tmp_path: Path, text: str, names: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_integrations(path, {"K": "k1", "L": "k2"})
    assert str(path) in str(caught.value)
    assert names in str(caught.value)


def test_two_integrations_may_not_share_a_key() -> None:
    same = Integration(name="a", key_sha256="0" * 64)
    with pytest.raises(ConfigError, match="share an API key"):
        Integrations([same, Integration(name="b", key_sha256="0" * 64)])


SIGNED = Integration(
    name="gateway",
    key_sha256="0" * 64,
    signing_secrets=(b"old", b"new"),
    signature_tolerance_s=300,
)
BODY = b'{"text": "refund"}'


@pytest.mark.parametrize("secret", [b"old", b"new"])
def test_a_signature_with_any_configured_secret_within_the_window_passes(secret: bytes) -> None:
    signature = sign(secret, NOW - 299, BODY)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    problem = signature_problem(
        SIGNED, timestamp=str(NOW - 299), signature=signature, body=BODY, now=NOW
    )
    assert problem is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "header", "reason"),
    [
        (None, sign(b"new", NOW, BODY), "X-Closeloop-Timestamp", "missing"),
        ("12.5", sign(b"new", NOW, BODY), "X-Closeloop-Timestamp", "unix time"),
        ("١٢٣", sign(b"new", NOW, BODY), "X-Closeloop-Timestamp", "unix time"),
        (str(NOW - 301), sign(b"new", NOW - 301, BODY), "X-Closeloop-Timestamp", "300 s"),
        (str(NOW + 301), sign(b"new", NOW + 301, BODY), "X-Closeloop-Timestamp", "300 s"),
        (str(NOW), None, "X-Closeloop-Signature", "missing"),
        (str(NOW), sign(b"new", NOW, BODY)[7:], "X-Closeloop-Signature", "sha256="),
        (str(NOW), sign(b"other", NOW, BODY), "X-Closeloop-Signature", "does not match"),
        (str(NOW), sign(b"new", NOW - 1, BODY), "X-Closeloop-Signature", "does not match"),
        (str(NOW), sign(b"new", NOW, BODY + b" "), "X-Closeloop-Signature", "does not match"),
        (str(NOW), "sha256=ünïcode", "X-Closeloop-Signature", "does not match"),
    ],
)
def test_a_missing_stale_or_wrong_signature_names_the_header_and_why(
    timestamp: str | None, signature: str | None, header: str, reason: str
) -> None:
    problem = signature_problem(
        SIGNED, timestamp=timestamp, signature=signature, body=BODY, now=NOW
    )
    assert problem is not None
    assert problem[0] == header
    assert reason in problem[1]


def throttled(limit: str) -> Integration:
    return Integration(name=f"t-{limit}", key_sha256="1" * 64, rate_limits=tuple(parse_many(limit)))


async def test_requests_over_the_rate_limit_get_the_seconds_to_wait() -> None:
    guards = Guards(async_storage("async+memory://"))
    integration = throttled("3/minute")
    waits = [await guards.retry_after(integration) for _ in range(4)]
    assert waits[:3] == [None, None, None]
    assert waits[3] is not None and 1 <= waits[3] <= 60


async def test_every_limit_of_an_integration_counts() -> None:
    guards = Guards(async_storage("async+memory://"))
    integration = throttled("100/second;2/hour")
    # The hour's window is aligned on the clock: near its end the wait is what is left.
    left_in_hour = 3600 - time.time() % 3600
    waits = [await guards.retry_after(integration) for _ in range(3)]
    # Held back by the hourly limit, not by the one per second.
    assert waits[2] is not None and waits[2] >= min(60, left_in_hour - 2)


async def test_a_signature_is_usable_once_and_per_integration() -> None:
    guards = Guards(async_storage("async+memory://"))
    other = Integration(name="other", key_sha256="2" * 64, signing_secrets=(b"new",))
    signature = sign(b"new", NOW, BODY)
    assert await guards.first_use(SIGNED, signature) is True
    assert await guards.first_use(SIGNED, signature) is False
    assert await guards.first_use(other, signature) is True


def test_a_storage_that_is_not_async_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="async"):
        IntakeSettings(rate_limit_storage="memory://")


def test_the_active_and_skipped_integrations_are_known_by_name_only() -> None:
    integrations = load_integrations(SHIPPED, {"CLOSELOOP_INTAKE_DEV_API_KEY": "secret-key"})
    assert integrations.names == ["development"]
    assert integrations.skipped == ("mail-gateway",)
    assert "secret-key" not in repr(integrations.names) + repr(integrations.skipped)
