"""Published secrets (the examples operators copy, the local stack's own) never start a
production service, and do start the local stack."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from services.followup.settings import FollowupSettings
from services.intake.policy import load_integrations
from services.intake.settings import IntakeSettings
from services.router.settings import RouterSettings
from shared.config import ConfigError
from shared.credentials import KNOWN_SECRETS, known_secret
from shared.tools import devstack

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_INTEGRATIONS = ROOT / "services" / "intake" / "policy.yaml"
OWN_KEY = "a-key-of-our-own-0f3b9c2e"
OWN_SECRET = "a-survey-secret-of-our-own-4d1c8e7a9b"


def leaves(value: Any, scopes: bool = True) -> list[str]:
    """The strings in a JSON-like value; with ``scopes`` false, not the scope names of
    API keys (``read``, ``write``), which are no secrets."""
    if isinstance(value, dict):
        return [
            leaf
            for field, item in value.items()
            if scopes or field != "scopes"
            for leaf in leaves(item, scopes)
        ]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item, scopes)]
    return [str(value)]


def example_values() -> dict[str, str]:
    """Every concrete value in deploy/secrets/*.env.example, commented examples too:
    JSON values by their strings, connection strings by their password."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / "deploy" / "secrets").glob("*.env.example")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.fullmatch(r"#?\s*([A-Za-z_][A-Za-z0-9_]*)=(.+)", line.strip())
            if not match:
                continue
            name, value = match[1], match[2].strip()
            if value.startswith(("{", "[")):
                strings = leaves(json.loads(value), scopes=False)
                out |= {f"{path.name} {name} {i}": s for i, s in enumerate(strings)}
            elif "://" in value:
                out[f"{path.name} {name}"] = str(urlsplit(value).password)
            else:
                out[f"{path.name} {name}"] = value
    return out


def test_every_value_the_secret_examples_show_is_a_known_secret() -> None:
    values = example_values()
    assert values, "the examples show no value at all"
    assert {where: known_secret(value) is not None for where, value in values.items()} == {
        where: True for where in values
    }


def test_the_local_stacks_credentials_are_known_secrets() -> None:
    local = [
        devstack.FOLLOWUP_DEV_API_KEY,
        devstack.FOLLOWUP_DEV_SURVEY_SECRET,
        devstack.INTAKE_DEV_API_KEY,
        devstack.ROUTER_DEV_API_KEY,
        devstack.ROUTER_DEV_READ_API_KEY,
    ]
    assert all(value in KNOWN_SECRETS for value in local)
    assert known_secret("local-dev-anything-else") is not None
    assert known_secret(OWN_KEY) is None


def followup(**values: Any) -> FollowupSettings:
    return FollowupSettings.model_validate(
        {"api_keys": {"crm": OWN_KEY}, "survey_secret": OWN_SECRET, **values}
    )


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"api_keys": {"crm": "replace-with-a-random-key"}}, "CLOSELOOP_FOLLOWUP_API_KEYS"),
        ({"api_keys": {"local-dev": devstack.FOLLOWUP_DEV_API_KEY}}, "CLOSELOOP_FOLLOWUP_API_KEYS"),
        (
            {"survey_secret": devstack.FOLLOWUP_DEV_SURVEY_SECRET},
            "CLOSELOOP_FOLLOWUP_SURVEY_SECRET",
        ),
        (
            {"survey_old_secrets": [devstack.FOLLOWUP_DEV_SURVEY_SECRET]},
            "CLOSELOOP_FOLLOWUP_SURVEY_OLD_SECRETS",
        ),
        (
            {"mongo_url": "mongodb://closeloop:PASSWORD@mongo-0:27017/?replicaSet=rs0"},
            "CLOSELOOP_FOLLOWUP_MONGO_URL",
        ),
    ],
    ids=["example key", "local key", "local survey secret", "old secret", "example password"],
)
def test_followup_refuses_a_published_secret_naming_the_setting(
    values: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        followup(**values)
    message = str(refused.value)
    assert setting in message
    assert "CLOSELOOP_FOLLOWUP_ENVIRONMENT=local" in message
    for secret in leaves(values):
        assert secret not in message  # a published secret is named, never echoed


def test_the_local_stack_starts_with_its_own_credentials() -> None:
    settings = followup(
        environment="local",
        api_keys={"local-dev": devstack.FOLLOWUP_DEV_API_KEY},
        survey_secret=devstack.FOLLOWUP_DEV_SURVEY_SECRET,
    )
    assert settings.environment == "local"
    assert followup().environment == "production"  # the safe default


def test_the_router_refuses_the_local_stacks_keys_outside_it() -> None:
    local = {"dashboard": devstack.ROUTER_DEV_READ_API_KEY}
    with pytest.raises(ValidationError, match="CLOSELOOP_ROUTER_API_KEYS"):
        RouterSettings.model_validate({"api_keys": local})
    assert RouterSettings.model_validate({"api_keys": local, "environment": "local"}).api_keys


def test_intake_refuses_a_limits_store_with_the_example_password() -> None:
    with pytest.raises(ValidationError, match="CLOSELOOP_INTAKE_RATE_LIMIT_STORAGE"):
        IntakeSettings(rate_limit_storage="async+mongodb://closeloop:PASSWORD@mongo:27017")


def test_intake_refuses_the_local_stacks_key_for_an_integration_outside_it() -> None:
    environ = {"CLOSELOOP_INTAKE_DEV_API_KEY": devstack.INTAKE_DEV_API_KEY}
    with pytest.raises(ConfigError, match="CLOSELOOP_INTAKE_DEV_API_KEY") as refused:
        load_integrations(SHIPPED_INTEGRATIONS, environ)
    assert devstack.INTAKE_DEV_API_KEY not in str(refused.value)
    assert load_integrations(SHIPPED_INTEGRATIONS, environ, local=True).names == ["development"]


def test_intake_refuses_a_signing_secret_or_key_digest_that_is_published(tmp_path: Path) -> None:
    environ = {
        "CLOSELOOP_INTAKE_MAIL_GATEWAY_API_KEY": OWN_KEY,
        "CLOSELOOP_INTAKE_MAIL_GATEWAY_SIGNING_SECRET": "replace-with-a-random-key",
    }
    with pytest.raises(ConfigError, match="CLOSELOOP_INTAKE_MAIL_GATEWAY_SIGNING_SECRET"):
        load_integrations(SHIPPED_INTEGRATIONS, environ)
    digest = hashlib.sha256(devstack.INTAKE_DEV_API_KEY.encode()).hexdigest()
    path = tmp_path / "integrations.yaml"
    path.write_text(f"integrations:\n  - name: hashed\n    api_key_sha256: {digest}\n")
    with pytest.raises(ConfigError, match="hashed: api_key_sha256"):
        load_integrations(path, {})
    assert load_integrations(path, {}, local=True).names == ["hashed"]
