"""deploy/Dockerfile: one multi-stage, non-root image for every service.

No container engine runs here; the file is read as BuildKit reads it, and what it names
(sources, modules, settings) is checked against the repository."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from deploy.tools.healthcheck import main_command, service_in_command
from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, ROOT, SERVICES


def instructions(stage: list[tuple[str, str]], kind: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == kind]


def included(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore rules (last match wins, ! re-includes) keep a path."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            keep = negate
    return keep


def test_the_build_has_a_build_stage_and_a_runtime_stage_without_the_tools() -> None:
    build, runtime = manifests.stages()
    assert build[0][1].endswith("AS build") and runtime[0][1].endswith("AS runtime")
    assert "uv sync --frozen --no-default-groups" in " ".join(instructions(build, "RUN"))
    copies = instructions(runtime, "COPY")
    assert copies == ["--from=build /app /app"]
    assert not any("uv" in run or "pip" in run for run in instructions(runtime, "RUN"))


def test_the_image_runs_as_an_unprivileged_user() -> None:
    runtime = manifests.stages()[-1]
    (user,) = instructions(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) >= 1000 and int(gid) >= 1000
    # The manifests run the same numeric user, so the kubelet can check runAsNonRoot.
    for overlay in manifests.OVERLAYS:
        for workload, _ in manifests.containers(manifests.render(overlay)):
            pod = workload["spec"]["template"]["spec"]["securityContext"]
            assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_the_command_chooses_the_service_and_the_default_is_a_real_module() -> None:
    runtime = manifests.stages()[-1]
    (entrypoint,) = instructions(runtime, "ENTRYPOINT")
    (cmd,) = instructions(runtime, "CMD")
    assert json.loads(entrypoint) == ["python", "-m"]
    (module,) = json.loads(cmd)
    assert module in {f"services.{name}" for name in SERVICES}
    for name in SERVICES:
        assert importlib.util.find_spec(f"services.{name}.__main__") is not None
    assert importlib.util.find_spec("deploy.tools.topics") is not None


def test_the_health_check_runs_the_shipped_probe() -> None:
    runtime = manifests.stages()[-1]
    (healthcheck,) = instructions(runtime, "HEALTHCHECK")
    command = healthcheck.split("CMD", 1)[1].strip()
    assert json.loads(command) == ["python", "-m", "deploy.tools.healthcheck"]
    assert "--start-period=" in healthcheck


def test_every_service_listens_on_all_interfaces_in_the_container() -> None:
    env = manifests.image_environment()
    for name in SERVICES:
        assert env[f"{manifests.prefix(name)}HTTP_HOST"] == "0.0.0.0"
        assert "http_host" in manifests.settings_class(name).model_fields
    assert env["PYTHONPATH"] == "/app"
    exposed = instructions(manifests.stages()[-1], "EXPOSE")
    assert sorted(int(p) for p in " ".join(exposed).split()) == sorted(manifests.PORTS.values())


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    build = manifests.stages()[0]
    for copy in instructions(build, "COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert included(source.rstrip("/"), patterns), f"{source} is left out by .dockerignore"
    assert not included("tests", patterns) and not included(".venv", patterns)
    assert not included("deploy/secrets/followup.env", patterns)


# Run in a fresh interpreter: refuses every top-level module of a distribution the image
# does not install, then imports (and calls) what the image runs.
IMPORT_CHECK = """
import importlib, importlib.abc, sys
blocked = set(filter(None, sys.argv[1].split(",")))
class RuntimeOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name}: not a runtime dependency", name=name)
        return None
sys.meta_path.insert(0, RuntimeOnly())
for spec in sys.argv[2:]:
    module, _, call = spec.partition(":")
    loaded = importlib.import_module(module)
    if call:
        getattr(loaded, call)()
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> set[str]:
    """What `uv sync --frozen --no-default-groups` installs: the project's dependencies
    in uv.lock and theirs, without the development groups."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    (project,) = packages["closeloop"]
    todo = list(project.get("dependencies", []))
    seen: set[str] = set()
    while todo:
        dependency = todo.pop()
        name, extras = dependency["name"], dependency.get("extra", [])
        if name in seen and not extras:
            continue
        seen.add(name)
        for package in packages[name]:
            todo += package.get("dependencies", [])
            optional = package.get("optional-dependencies", {})
            for extra in extras:
                todo += optional.get(extra, [])
    return {normalized(name) for name in seen} | {"closeloop"}


def test_what_the_image_runs_imports_only_its_runtime_dependencies() -> None:
    runtime = runtime_distributions()
    assert "pytest" not in runtime and "mypy" not in runtime  # development only
    assert "httpx" in runtime  # the operator CLI in the image talks HTTP
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if not any(normalized(dist) in runtime for dist in dists)
    )
    env = {
        **os.environ,
        # followup refuses to start without its secrets; any valid ones do here.
        "CLOSELOOP_FOLLOWUP_API_KEYS": '{"check": "an-api-key-for-the-check"}',
        "CLOSELOOP_FOLLOWUP_SURVEY_SECRET": "a-survey-secret-of-32-characters-at-least",
    }
    commands = [f"services.{name}.app:build" for name in SERVICES]
    commands += ["deploy.tools.topics", "deploy.tools.healthcheck", "shared.tools.cli"]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, ",".join(blocked), *commands],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The check is real: a development-only package is refused.
    refused = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, ",".join(blocked), "hypothesis"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "hypothesis: not a runtime dependency" in refused.stderr


def test_the_health_check_finds_the_service_in_the_container_command(tmp_path: Path) -> None:
    assert service_in_command(["python", "-m", "services.router"]) == "router"
    assert service_in_command(["/sbin/tini", "--", "python", "-m", "services.followup"]) == (
        "followup"
    )
    assert service_in_command(["python", "-m", "deploy.tools.topics"]) is None
    assert service_in_command(["python", "-m", "services.unknown"]) is None
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python\0-m\0services.intake\0")
    assert main_command(cmdline) == ["python", "-m", "services.intake"]
    assert main_command(tmp_path / "missing") == []
