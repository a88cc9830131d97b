"""Secrets everyone knows: the local stack's credentials and the placeholders of the
examples operators copy (deploy/secrets/*.env.example). A service outside the local
stack refuses to start with one of them, naming the setting that holds it.

This is the one list: shared/tools/devstack.py takes its credentials from here, and the
tests check that every value the examples show is in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from shared.settings import ServiceSettings

# The local stack's own credentials (shared/tools/devstack.py passes them to the services).
FOLLOWUP_DEV_API_KEY = "local-dev-followup-agent-key"
FOLLOWUP_DEV_SURVEY_SECRET = "local-dev-followup-survey-link-secret"
INTAKE_DEV_API_KEY = "local-dev-intake-key"
ROUTER_DEV_API_KEY = "local-dev-router-workforce-key"
ROUTER_DEV_READ_API_KEY = "local-dev-router-dashboard-key"
INSIGHTS_DEV_API_KEY = "local-dev-insights-reports-key"

LOCAL_STACK = "the local stack's (shared/tools/devstack.py), published with the code"
LOCAL_PREFIX = "local-dev-"

# Value -> where everyone can read it.
KNOWN_SECRETS: dict[str, str] = {
    FOLLOWUP_DEV_API_KEY: LOCAL_STACK,
    FOLLOWUP_DEV_SURVEY_SECRET: LOCAL_STACK,
    INTAKE_DEV_API_KEY: LOCAL_STACK,
    ROUTER_DEV_API_KEY: LOCAL_STACK,
    ROUTER_DEV_READ_API_KEY: LOCAL_STACK,
    INSIGHTS_DEV_API_KEY: LOCAL_STACK,
    "replace-with-a-random-key": "a placeholder of deploy/secrets/*.env.example",
    "replace-with-another-random-key": "a placeholder of deploy/secrets/router.env.example",
    "replace-with-a-random-insights-key": "the placeholder of deploy/secrets/insights.env.example",
    "the-previous-secret": "the placeholder of deploy/secrets/followup.env.example",
    "PASSWORD": "the placeholder of deploy/secrets/mongodb.env.example",
}
_KNOWN_DIGESTS = {
    hashlib.sha256(value.encode()).hexdigest(): where for value, where in KNOWN_SECRETS.items()
}


def known_secret(value: str) -> str | None:
    """Where ``value`` is published, or None for a secret of one's own."""
    if value in KNOWN_SECRETS:
        return KNOWN_SECRETS[value]
    if value.startswith(LOCAL_PREFIX):
        return LOCAL_STACK
    return None


def known_digest(sha256_hex: str) -> str | None:
    """Where the key whose hex SHA-256 this is is published, or None."""
    return _KNOWN_DIGESTS.get(sha256_hex.lower())


def refusal(setting: str, where: str, local_switch: str) -> str:
    """Why a service does not start with a published secret in ``setting``."""
    return (
        f"{setting} holds a secret everyone knows ({where}): set one of your own "
        f"(e.g. openssl rand -hex 32); the local stack's values work only with {local_switch}"
    )


def _secrets_in(value: Any, url: bool) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and url:
        password = urlsplit(value).password
        if password:
            yield password
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item, url)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _secrets_in(item, url)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name), url)


def refuse_known_secrets(settings: ServiceSettings) -> None:
    """Raise ValueError naming every setting that holds a published secret: any
    ``SecretStr`` (also inside lists, mappings and models) and the password of any
    connection string (``*_url``, ``*_storage``). Nothing is refused in the local stack."""
    if settings.environment == "local":
        return
    prefix = str(settings.model_config.get("env_prefix", ""))
    problems = []
    for name in type(settings).model_fields:
        url = name.endswith(("_url", "_storage"))
        for secret in _secrets_in(getattr(settings, name), url):
            where = known_secret(secret)
            if where is not None:
                problems.append(
                    refusal(f"{prefix}{name.upper()}", where, f"{prefix}ENVIRONMENT=local")
                )
                break
    if problems:
        raise ValueError("; ".join(problems))
