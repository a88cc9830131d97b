"""Intake's policy, its integrations: who may post feedback, with which credentials,
and within which limits.

Operators list integrations in a YAML file (``services/intake/policy.yaml``);
secrets are never in the file: it names the environment variables that hold them, or
the SHA-256 of an API key. Signature checking is pure: it is given the time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from limits import RateLimitItem, parse_many
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config import ConfigError, load_yaml
from shared.contracts import Channel
from shared.credentials import known_digest, known_secret, refusal

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
TIMESTAMP_HEADER = "X-Closeloop-Timestamp"
SIGNATURE_HEADER = "X-Closeloop-Signature"
SIGNATURE_PREFIX = "sha256="

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]


class IntegrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    api_key_env: EnvName | None = Field(
        default=None, description="Environment variable holding the API key"
    )
    api_key_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the API key"
    )
    signing_secrets_env: list[EnvName] = Field(
        default_factory=list,
        max_length=5,
        description="Variables holding HMAC secrets; any one verifies (rotation). "
        "When set, every request must be signed.",
    )
    signature_tolerance_s: int = Field(default=300, ge=5, le=3_600)
    channels: list[Channel] | None = Field(
        default=None, description="Channels it may post for; default: all"
    )
    rate_limit: str = Field(default="50/second", description="limits notation, e.g. 20/second")
    default_region: str | None = Field(
        default=None, description="ISO 3166 region of phone numbers given without +country code"
    )
    timezone: str | None = Field(
        default=None, description="IANA zone of source timestamps that carry no offset"
    )
    optional: bool = Field(
        default=False, description="Skip (do not fail) when its key variable is not set"
    )

    @model_validator(mode="after")
    def _one_key(self) -> IntegrationConfig:
        if (self.api_key_env is None) == (self.api_key_sha256 is None):
            raise ValueError("give exactly one of api_key_env or api_key_sha256")
        return self

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '20/second;1000/hour': {exc}") from exc
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (use an ISO 3166 code such as CN)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class IntegrationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integrations: list[IntegrationConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> IntegrationsFile:
        names = [integration.name for integration in self.integrations]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"integration names must be unique: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True)
class Integration:
    """One integration as intake uses it: secrets resolved, limits parsed."""

    name: str
    key_sha256: str
    signing_secrets: tuple[bytes, ...] = ()
    signature_tolerance_s: int = 300
    channels: frozenset[Channel] | None = None
    rate_limits: tuple[RateLimitItem, ...] = ()
    region: str | None = None
    timezone: ZoneInfo | None = None

    @property
    def signs(self) -> bool:
        return bool(self.signing_secrets)

    def allows(self, channel: Channel) -> bool:
        return self.channels is None or channel in self.channels


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


class Integrations:
    """The integrations by API key."""

    def __init__(self, integrations: Iterable[Integration], skipped: Iterable[str] = ()) -> None:
        self.skipped = tuple(skipped)  # optional integrations whose key is not set
        self._by_key: dict[str, Integration] = {}
        for integration in integrations:
            if integration.key_sha256 in self._by_key:
                other = self._by_key[integration.key_sha256].name
                raise ConfigError(f"integrations {other} and {integration.name} share an API key")
            self._by_key[integration.key_sha256] = integration

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def names(self) -> list[str]:
        return sorted(integration.name for integration in self._by_key.values())

    def by_key(self, api_key: str) -> Integration | None:
        # Looking up the key's digest: comparing digests leaks nothing about the key.
        return self._by_key.get(key_digest(api_key))


LOCAL_SWITCH = "CLOSELOOP_INTAKE_ENVIRONMENT=local"


def _published(config: IntegrationConfig, variable: str, value: str, local: bool) -> None:
    where = None if local else known_secret(value)
    if where is not None:
        raise ConfigError(f"integration {config.name}: {refusal(variable, where, LOCAL_SWITCH)}")


def resolve(
    config: IntegrationConfig, environ: Mapping[str, str], *, local: bool = False
) -> Integration | None:
    """The integration with its secrets from ``environ``; None for an optional one whose
    key is not set. A required variable that is missing is a configuration error, and
    so is a secret everyone knows (shared/credentials.py) unless ``local``."""
    if config.api_key_env is not None:
        api_key = environ.get(config.api_key_env, "")
        if not api_key:
            if config.optional:
                return None
            raise ConfigError(
                f"integration {config.name}: environment variable {config.api_key_env} "
                "(its API key) is not set"
            )
        _published(config, config.api_key_env, api_key, local)
        digest = key_digest(api_key)
    else:
        assert config.api_key_sha256 is not None  # one of the two, by validation
        digest = config.api_key_sha256
        where = None if local else known_digest(digest)
        if where is not None:
            raise ConfigError(
                f"integration {config.name}: api_key_sha256 is the digest of a key everyone "
                f"knows ({where}): use a key of your own; the local stack's work only with "
                f"{LOCAL_SWITCH}"
            )
    secrets = []
    for variable in config.signing_secrets_env:
        secret = environ.get(variable, "")
        if not secret:
            raise ConfigError(
                f"integration {config.name}: environment variable {variable} "
                "(a signing secret) is not set"
            )
        _published(config, variable, secret, local)
        secrets.append(secret.encode())
    return Integration(
        name=config.name,
        key_sha256=digest,
        signing_secrets=tuple(secrets),
        signature_tolerance_s=config.signature_tolerance_s,
        channels=frozenset(config.channels) if config.channels is not None else None,
        rate_limits=tuple(parse_many(config.rate_limit)),
        region=config.default_region,
        timezone=ZoneInfo(config.timezone) if config.timezone else None,
    )


def load_integrations(
    path: Path, environ: Mapping[str, str], *, local: bool = False
) -> Integrations:
    """Read and check the integrations file at start; a bad file stops the service with
    a message naming the file and field. ``local``: the local stack, whose published
    keys are accepted."""
    config = load_yaml(path, IntegrationsFile)
    active = []
    skipped = []
    for item in config.integrations:
        try:
            integration = resolve(item, environ, local=local)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if integration is None:
            skipped.append(item.name)
        else:
            active.append(integration)
    try:
        return Integrations(active, skipped)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def log_integrations(integrations: Integrations) -> None:
    """Say at start who may post (names only, never keys)."""
    if len(integrations):
        log.info(
            "integrations active",
            extra={"integrations": integrations.names, "skipped": list(integrations.skipped)},
        )
    else:
        log.warning(
            "no integration is active: every post to intake will be refused (401)",
            extra={"skipped": list(integrations.skipped)},
        )


# --- request signatures -------------------------------------------------------------


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Closeloop-Signature`` value: HMAC-SHA256 over ``<timestamp>.<raw body>``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_problem(
    integration: Integration,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
) -> tuple[str, str] | None:
    """Why the request's signature is not acceptable, as (header, reason); None when it
    was made with one of the integration's secrets within the tolerance window."""
    if not timestamp:
        return TIMESTAMP_HEADER, "missing: signed requests carry the unix time they were signed"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return TIMESTAMP_HEADER, "not a unix time in seconds"
    if abs(now - int(timestamp)) > integration.signature_tolerance_s:
        return (
            TIMESTAMP_HEADER,
            f"more than {integration.signature_tolerance_s} s away from the server's time: "
            "sign each attempt anew",
        )
    if not signature:
        return SIGNATURE_HEADER, "missing: this integration signs its requests"
    if not signature.startswith(SIGNATURE_PREFIX):
        return SIGNATURE_HEADER, f"must start with {SIGNATURE_PREFIX}"
    presented = signature.encode("utf-8", "surrogateescape")
    for secret in integration.signing_secrets:
        if hmac.compare_digest(sign(secret, timestamp, body).encode(), presented):
            return None
    return SIGNATURE_HEADER, "does not match the body and timestamp"
