"""Reading the deployment files the way their tools read them, for the tests in this folder."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.contracts import TAXONOMY_FILE_VARIABLE
from shared.credentials import KNOWN_SECRETS
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
SERVICES = ("intake", "classifier", "router", "followup", "insights")
PORTS = {"intake": 8000, "classifier": 8001, "router": 8002, "followup": 8003, "insights": 8004}

# The Secrets the manifests reference, and the example each is created from.
SECRET_EXAMPLES = {
    "closeloop-intake-secrets": DEPLOY / "secrets" / "intake.env.example",
    "closeloop-followup-secrets": DEPLOY / "secrets" / "followup.env.example",
    "closeloop-router-secrets": DEPLOY / "secrets" / "router.env.example",
    "closeloop-insights-secrets": DEPLOY / "secrets" / "insights.env.example",
    "closeloop-mongodb": DEPLOY / "secrets" / "mongodb.env.example",
}

Doc = dict[str, Any]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# --- services -------------------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    assert issubclass(cls, ServiceSettings)
    return cls


def prefix(service: str) -> str:
    return f"CLOSELOOP_{service.upper()}_"


def file_settings(service: str) -> dict[str, Path]:
    """Settings naming a configuration file (``*_file``), with the file the service ships."""
    cls = settings_class(service)
    out = {}
    for name, info in cls.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if name.endswith("_file") and isinstance(default, Path):
            out[name] = default
    return out


def required_settings(service: str) -> list[str]:
    cls = settings_class(service)
    return [name for name, info in cls.model_fields.items() if info.is_required()]


def integration_secret_variables() -> set[str]:
    """Variables intake's integrations file names for keys and signing secrets."""
    spec = load(file_settings("intake")["integrations_file"])
    names: set[str] = set()
    for integration in spec.get("integrations", []):
        for key, value in integration.items():
            if key.endswith("_env"):
                names.update([value] if isinstance(value, str) else value)
    return names


def unknown_variables(service: str, env: Mapping[str, str]) -> list[str]:
    """Variables that the service would silently ignore: not one of its settings."""
    fields = settings_class(service).model_fields
    # Read by the shared contracts in every service, not by a service's settings.
    extra = {TAXONOMY_FILE_VARIABLE}
    if service == "intake":
        extra |= integration_secret_variables()
    return sorted(
        key
        for key in env
        if key not in extra
        and not (key.startswith(prefix(service)) and key[len(prefix(service)) :].lower() in fields)
    )


def read_settings(
    service: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """The service's settings from exactly this environment, parsed as the service does."""
    for key in list(os.environ):
        if key.startswith("CLOSELOOP_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("CLOSELOOP_"):
            monkeypatch.setenv(key, value)
    return settings_class(service)()


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines filled in as an operator would: a blank value gets a random one,
    and so does each placeholder it shows (the services refuse those, shared.credentials)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = value.strip() or secrets.token_hex(24)
        for placeholder in KNOWN_SECRETS:
            value = value.replace(placeholder, secrets.token_hex(24))
        out[key.strip()] = value
    return out


# --- the image --------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DEPLOY / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, arguments = line.partition(" ")
        out.append((instruction.upper(), arguments.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each from its FROM."""
    out: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def image_environment() -> dict[str, str]:
    """The ENV of the runtime (last) stage: KEY=value pairs."""
    env: dict[str, str] = {}
    for instruction, arguments in stages()[-1]:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


# --- compose --------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if variables.get(name):
            return variables[name]
        if op in (":-", "-"):
            return str(arg)
        if op in (":?", "?"):
            raise KeyError(f"{name} is required: {arg}")
        return ""

    return _INTERPOLATION.sub(replace, value)


def compose() -> Doc:
    doc = load(DEPLOY / "compose.yaml")
    assert isinstance(doc, dict)
    return doc


def compose_environment(service: Doc, variables: Mapping[str, str]) -> dict[str, str]:
    """A compose service's environment: its env_file entries, then ``environment``."""
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        path = DEPLOY / (entry if isinstance(entry, str) else entry["path"])
        example = path.with_name(path.name + ".example")
        env.update(env_file(example))
    raw = service.get("environment", {})
    items = raw.items() if isinstance(raw, dict) else (item.split("=", 1) for item in raw)
    for key, value in items:
        env[key] = interpolate(str(value), variables)
    return env


def bind_mounts(service: Doc) -> dict[str, Path]:
    """Container path -> host path of a compose service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            out[target] = (DEPLOY / source).resolve()
    return out


# --- kubernetes -----------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    return path


def render(overlay: str) -> list[Doc]:
    """``kubectl kustomize`` of an overlay, as docs/deployment.md applies it."""
    return copy.deepcopy(_render(overlay))


@functools.cache
def _render(overlay: str) -> list[Doc]:
    result = subprocess.run(
        [
            kubectl(),
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(OVERLAYS[overlay]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, container) for every Deployment and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


def secret_examples() -> dict[str, dict[str, str]]:
    return {name: env_file(path) for name, path in SECRET_EXAMPLES.items()}


def container_environment(docs: list[Doc], container: Doc) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom first, then env.

    Secrets are never in the manifests; their examples in deploy/secrets stand in."""
    configmaps = {name: doc.get("data", {}) for name, doc in by_kind(docs, "ConfigMap").items()}
    secrets_ = secret_examples()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets_[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            env[item["name"]] = configmaps[ref["configMapKeyRef"]["name"]][
                ref["configMapKeyRef"]["key"]
            ]
        elif "secretKeyRef" in ref:
            env[item["name"]] = secrets_[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
    return env


# --- PromQL ---------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric (or recorded series) names a PromQL expression selects."""
    text = _GRAFANA_VARIABLES.sub("1", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def grafana_exprs(dashboard: Doc) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query in a dashboard, template variables included."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((?P<expr>.+),\s*\w+\)", text)
            yield f"variable {variable['name']}", inner["expr"] if inner else text


def dashboards() -> dict[str, Doc]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    }


def rule_exprs() -> Iterator[tuple[str, str]]:
    """(rule name, expr) of every recording and alerting rule."""
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                yield rule.get("alert") or rule["record"], rule["expr"]


def recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
        for group in load(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
