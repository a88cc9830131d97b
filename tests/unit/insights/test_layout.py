"""insights' layout: the running service never imports its offline tooling (the health
score's fitting and simulation, python -m services.insights loyalty ...)."""

from __future__ import annotations

import ast
from pathlib import Path

INSIGHTS = Path(__file__).resolve().parents[3] / "services" / "insights"
OFFLINE = "services.insights.offline"


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_service_does_not_import_the_offline_tooling() -> None:
    # __main__ is the one door: with a command it hands over to the offline command line.
    service = [p for p in sorted(INSIGHTS.glob("*.py")) if p.name != "__main__.py"]
    assert len(service) > 10
    offenders = [
        f"{path.name}: {name}"
        for path in service
        for name in sorted(imported(path))
        if name == OFFLINE or name.startswith(OFFLINE + ".")
    ]
    assert not offenders, offenders


def test_the_offline_tooling_lives_in_its_package() -> None:
    assert {p.name for p in (INSIGHTS / "offline").glob("*.py")} == {
        "__init__.py",
        "cli.py",
        "fitting.py",
        "simulate.py",
    }
